//! A rebuild from zero equals the incremental result: projections folded
//! piece by piece, with their state saved to and restored from checkpoints
//! between pieces, end exactly where one fold of the whole log ends.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use seatledger_app::{CommandHandler, CommandMeta, ProjectionRunner, SequentialIds};
use seatledger_domain::*;
use seatledger_projections::audit::AuditLog;
use seatledger_projections::change_log::ChangeLog;
use seatledger_projections::licence_state::LicenceState;
use seatledger_projections::Projection;
use seatledger_store::{EventStore, MemoryStore, SteppingClock};
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    AddUser(u8),
    Assign(u8, bool),
    Unassign(u8, bool),
    Join(u8),
    Leave(u8),
    Status(u8, u8),
    Quantity(u8),
    AddLicences(u8),
    Project,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::AddUser),
        (0u8..6, any::<bool>()).prop_map(|(u, seat)| Op::Assign(u, seat)),
        (0u8..6, any::<bool>()).prop_map(|(u, seat)| Op::Unassign(u, seat)),
        (0u8..6).prop_map(Op::Join),
        (0u8..6).prop_map(Op::Leave),
        (0u8..6, 0u8..3).prop_map(|(u, s)| Op::Status(u, s)),
        (0u8..8).prop_map(Op::Quantity),
        (1u8..3).prop_map(Op::AddLicences),
        Just(Op::Project),
    ]
}

fn ws() -> WorkspaceId {
    WorkspaceId::new("w").unwrap()
}

fn at(step: usize) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(step as i64)
}

fn body(cmd: WorkspaceCommand) -> CommandBody {
    CommandBody::Workspace { workspace: ws(), command: cmd }
}

fn setup() -> Vec<CommandBody> {
    let eur = Currency::from_code("EUR").unwrap();
    let seat = Sku::new("SEAT").unwrap();
    vec![
        CommandBody::Catalog(CatalogCommand::DefineProduct {
            sku: seat.clone(),
            name: "Seat".into(),
            kind: ProductKind::Module,
            charge_model: ChargeModel::PerLicence,
            product_class: None,
            sales_unit: "licence".into(),
            manufacturer: None,
        }),
        CommandBody::Catalog(CatalogCommand::DefineProduct {
            sku: Sku::new("HYBRID").unwrap(),
            name: "Hybrid".into(),
            kind: ProductKind::Module,
            charge_model: ChargeModel::PerActiveUser,
            product_class: None,
            sales_unit: "user".into(),
            manufacturer: None,
        }),
        body(WorkspaceCommand::CreateWorkspace {
            name: "W".into(),
            billing_mode: BillingMode::Single,
            created_on: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            legacy_plan: None,
        }),
        body(WorkspaceCommand::OpenBillingAccount {
            account: AccountId::new("a").unwrap(),
            name: "A".into(),
            currency: eur,
            tax_rate: Percent::ZERO,
            billing_contract: None,
        }),
        body(WorkspaceCommand::CreateOrganization {
            org: OrgId::new("o").unwrap(),
            name: "O".into(),
            parent: None,
            account: None,
        }),
        body(WorkspaceCommand::CreateGroup { group: GroupId::new("g").unwrap(), name: "G".into() }),
        body(WorkspaceCommand::AssignModule {
            sku: seat.clone(),
            target: ModuleTarget::Group(GroupId::new("g").unwrap()),
        }),
        body(WorkspaceCommand::CreateSubscription(Box::new(NewSubscription {
            subscription: SubscriptionId::new("s").unwrap(),
            account: AccountId::new("a").unwrap(),
            organization: None,
            sku: seat,
            parent: None,
            name: "Seats".into(),
            friendly_name: None,
            effective_start: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            billable: None,
            trial: false,
            deactivate_on: None,
            channel: SubscriptionChannel::Portal,
            quantity: 3,
            order: OrderDetails { ordered_by: "ops".into(), ..Default::default() },
            price_list: PriceListId::new("std").unwrap(),
            currency: eur,
            selling_per_unit: Some(rust_decimal::Decimal::from_str("31").unwrap()),
            cost_per_unit: Some(rust_decimal::Decimal::from_str("20").unwrap()),
            discount: Percent::ZERO,
            taxable: true,
            exempt_from_indexation: false,
            description: None,
            provider: None,
            guest_selling_per_unit: None,
            counting_policy: None,
        }))),
        body(WorkspaceCommand::ConfigureLicences {
            sku: Sku::new("SEAT").unwrap(),
            organization: None,
            settings: LicenceSettings { alert_threshold: Some(1), top_up: None },
        }),
    ]
}

fn to_body(op: &Op) -> Option<CommandBody> {
    let user = |u: &u8| UserId::new(format!("u{u}")).unwrap();
    let module = |seat: bool| Sku::new(if seat { "SEAT" } else { "HYBRID" }).unwrap();
    Some(body(match op {
        Op::AddUser(u) => WorkspaceCommand::AddUser {
            user: user(u),
            org: OrgId::new("o").unwrap(),
            profile: UserProfile {
                first_name: "F".into(),
                last_name: "L".into(),
                email: format!("u{u}@w.example"),
                username: format!("u{u}"),
                kind: if u % 2 == 0 { UserKind::Regular } else { UserKind::Guest },
                audience: Audience::Internal,
                administrator: false,
            },
            status: None,
            source: UserSource::Manual,
        },
        Op::Assign(u, seat) => {
            WorkspaceCommand::AssignModule { sku: module(*seat), target: ModuleTarget::User(user(u)) }
        }
        Op::Unassign(u, seat) => {
            WorkspaceCommand::UnassignModule { sku: module(*seat), target: ModuleTarget::User(user(u)) }
        }
        Op::Join(u) => WorkspaceCommand::AddGroupMember { group: GroupId::new("g").unwrap(), user: user(u) },
        Op::Leave(u) => WorkspaceCommand::RemoveGroupMember { group: GroupId::new("g").unwrap(), user: user(u) },
        Op::Status(u, s) => WorkspaceCommand::ChangeUserStatus {
            user: user(u),
            status: UserStatus::ALL[*s as usize],
            source: StatusChangeSource::Manual,
        },
        Op::Quantity(q) => WorkspaceCommand::ChangeQuantity {
            subscription: SubscriptionId::new("s").unwrap(),
            quantity: u32::from(*q),
            order: OrderDetails {
                ordered_by: "ops".into(),
                order_reference: Some(format!("SO-{q}")),
                ..Default::default()
            },
            channel: SubscriptionChannel::Portal,
        },
        Op::AddLicences(n) => WorkspaceCommand::AddLicences {
            sku: Sku::new("SEAT").unwrap(),
            organization: None,
            subscription: None,
            quantity: u32::from(*n),
            order: OrderDetails { ordered_by: "ops".into(), ..Default::default() },
        },
        Op::Project => return None,
    }))
}

/// Fold projections the way a long-running process does: the change log and
/// audit log come back from their checkpoints, the licence state lives on.
async fn resume(store: &Arc<dyn EventStore>, state: &mut LicenceState, state_at: &mut u64) {
    let runner = ProjectionRunner::new(store.clone());
    let mut changes = ChangeLog::default();
    let mut audit = AuditLog::default();
    runner.run(&mut [&mut changes, &mut audit], &mut |_, _| {}).await.unwrap();
    let mut positions = [*state_at];
    runner.catch_up(&mut [state as &mut dyn Projection], &mut positions, &mut |_, _| {}).await.unwrap();
    *state_at = positions[0];
}

async fn scenario(ops: Vec<Op>) {
    let clock = Arc::new(SteppingClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Duration::seconds(1)));
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock));
    let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_767_225_600_000)));
    let mut live_state = LicenceState::default();
    let mut live_at = 0;
    let bodies: Vec<Option<CommandBody>> = setup().into_iter().map(Some).chain(ops.iter().map(to_body)).collect();
    for (step, body) in bodies.into_iter().enumerate() {
        match body {
            None => resume(&store, &mut live_state, &mut live_at).await,
            Some(body) => {
                let meta = CommandMeta::new("prop", "cli", uuid::Uuid::from_u128(step as u128 + 1));
                // Refusals are part of life; only store errors would be bugs.
                match handler.handle(&Command { at: at(step), body }, &meta).await {
                    Ok(_) | Err(seatledger_app::AppError::Rejected(_)) => {}
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
        }
    }
    resume(&store, &mut live_state, &mut live_at).await;
    let runner = ProjectionRunner::new(store.clone());
    let (mut changes, mut audit) = (ChangeLog::default(), AuditLog::default());
    runner.run(&mut [&mut changes, &mut audit], &mut |_, _| {}).await.unwrap();

    // From zero, in one go, into fresh projections.
    let (mut z_state, mut z_changes, mut z_audit) =
        (LicenceState::default(), ChangeLog::default(), AuditLog::default());
    let mut positions = [0, 0, 0];
    runner.catch_up(&mut [&mut z_state, &mut z_changes, &mut z_audit], &mut positions, &mut |_, _| {}).await.unwrap();
    assert_eq!(z_changes, changes, "change log");
    assert_eq!(z_audit, audit, "audit log");
    let day = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
    assert_eq!(z_state.pools_on(day), live_state.pools_on(day), "licence state");
    assert_eq!(z_state.workspaces, live_state.workspaces, "folded workspaces");
    assert_eq!(z_audit.entries.len() as u64, store.head_position().await.unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_rebuild_from_zero_equals_the_incremental_result(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(scenario(ops));
    }
}
