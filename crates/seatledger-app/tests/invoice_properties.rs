//! Properties of invoices over random but valid histories of one workspace
//! for one month: a per-licence subscription whose quantity changes at
//! random days and times (one live the whole month, one starting in it),
//! per-active-user modules assigned and unassigned directly and through a
//! group, users added and flipping status, a random tax rate and discount,
//! in EUR, JPY or BHD. Everything goes through the real command handler,
//! store and invoice fold.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use seatledger_app::invoicing::{self, AsOf};
use seatledger_app::{AppError, CommandHandler, CommandMeta, HandleOutcome, SequentialIds};
use seatledger_domain::*;
use seatledger_store::{EventStore, MemoryStore, SteppingClock};
use std::sync::Arc;

const CURRENCIES: [&str; 3] = ["EUR", "JPY", "BHD"];
const MODULES: [&str; 2] = ["HYBRID", "DESK"];
const SUBSCRIPTIONS: [&str; 2] = ["s", "s2"];

/// A moment relative to the invoiced month: a day offset from its first day
/// (negative: the month before; wrapped into the month when too large) and
/// a second of that day.
#[derive(Debug, Clone, Copy)]
struct When {
    day: i32,
    second: u32,
}

#[derive(Debug, Clone)]
enum Op {
    /// Set the quantity of per-licence subscription 0 (`s`) or 1 (`s2`).
    Quantity(u8, u32),
    Assign(u8, u8),
    Unassign(u8, u8),
    Status(u8, u8),
    Join(u8),
    Leave(u8),
    /// Add user n (only generated for users not present from the start).
    AddUser(u8),
}

#[derive(Debug, Clone)]
struct UserSpec {
    guest: bool,
    /// Added during the history rather than before it.
    added: Option<When>,
}

#[derive(Debug, Clone)]
struct ModuleSub {
    price: Decimal,
    guest_price: Option<Decimal>,
    policy: CountingPolicy,
    /// Effective start, in days from the first of the month.
    start: i32,
    taxable: bool,
}

#[derive(Debug, Clone)]
struct History {
    currency: &'static str,
    /// Index of the month from 2024-02.
    month: u32,
    tax_rate: Decimal,
    discount: Decimal,
    seat_price: Decimal,
    seat_quantity: u32,
    seat_taxable: bool,
    /// Effective start of `s2`, in days from the first of the month.
    s2_start: i32,
    s2_quantity: u32,
    modules: Vec<ModuleSub>,
    users: Vec<UserSpec>,
    ops: Vec<(Op, When)>,
    /// Backdated into the month, recorded after the invoice was issued.
    later: Vec<(Op, When)>,
}

impl History {
    fn month(&self) -> Month {
        let index = 1 + self.month; // from February 2024
        Month::new(2024 + (index / 12) as i32, index % 12 + 1).unwrap()
    }

    fn currency(&self) -> Currency {
        Currency::from_code(self.currency).unwrap()
    }

    fn instant(&self, when: When) -> DateTime<Utc> {
        let month = self.month();
        let days = month.days() as i32;
        let day = if when.day >= days { when.day % days } else { when.day };
        let date = month.first_day() + Duration::days(i64::from(day));
        date.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::seconds(i64::from(when.second))
    }

    fn date(&self, offset: i32) -> NaiveDate {
        self.month().first_day() + Duration::days(i64::from(offset))
    }

    /// When the set-up happens: three weeks before the month.
    fn setup_at(&self) -> DateTime<Utc> {
        self.instant(When { day: -21, second: 9 * 3600 })
    }
}

/// A price with 0 to 4 decimals.
fn price() -> impl Strategy<Value = Decimal> {
    (1i64..200_000, 0u32..5).prop_map(|(m, scale)| Decimal::new(m, scale))
}

/// A percentage with 0 to 2 decimals, at most `max`.
fn percent(max: i64) -> impl Strategy<Value = Decimal> {
    prop_oneof![Just(Decimal::ZERO), (0i64..=max * 100).prop_map(|h| Decimal::new(h, 2))]
}

fn when() -> impl Strategy<Value = When> {
    let second = prop_oneof![1 => Just(0u32), 1 => Just(86_399u32), 1 => Just(43_200u32), 6 => 0u32..86_400];
    (-3i32..31, second).prop_map(|(day, second)| When { day, second })
}

/// A moment inside the month: what a backdated correction touches.
fn when_in_month() -> impl Strategy<Value = When> {
    (0i32..31, 0u32..86_400).prop_map(|(day, second)| When { day, second })
}

fn op(users: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 0u32..25).prop_map(|(s, q)| Op::Quantity(s, q)),
        3 => (0..users, 0u8..2).prop_map(|(u, m)| Op::Assign(u, m)),
        2 => (0..users, 0u8..2).prop_map(|(u, m)| Op::Unassign(u, m)),
        3 => (0..users, 0u8..3).prop_map(|(u, s)| Op::Status(u, s)),
        1 => (0..users).prop_map(Op::Join),
        1 => (0..users).prop_map(Op::Leave),
    ]
}

fn module_sub() -> impl Strategy<Value = ModuleSub> {
    (price(), proptest::option::of(price()), 0usize..4, -10i32..20, any::<bool>()).prop_map(
        |(price, guest_price, policy, start, taxable)| ModuleSub {
            price,
            guest_price,
            policy: CountingPolicy::ALL[policy],
            start,
            taxable,
        },
    )
}

fn history() -> impl Strategy<Value = History> {
    let user =
        (any::<bool>(), proptest::option::weighted(0.3, when())).prop_map(|(guest, added)| UserSpec { guest, added });
    (
        (0usize..3, 0u32..23, percent(30), percent(60)),
        (price(), 0u32..20, any::<bool>(), 0i32..28, 0u32..10),
        proptest::collection::vec(module_sub(), 2),
        proptest::collection::vec(user, 1..6),
    )
        .prop_flat_map(|(basics, seat, modules, users)| {
            let n = users.len() as u8;
            (
                Just((basics, seat, modules, users)),
                proptest::collection::vec((op(n), when()), 0..40),
                proptest::collection::vec((op(n), when_in_month()), 1..8),
            )
        })
        .prop_map(|((basics, seat, modules, users), mut ops, later)| {
            let (currency, month, tax_rate, discount) = basics;
            let (seat_price, seat_quantity, seat_taxable, s2_start, s2_quantity) = seat;
            for (i, u) in users.iter().enumerate() {
                if let Some(at) = u.added {
                    ops.push((Op::AddUser(i as u8), at));
                }
            }
            History {
                currency: CURRENCIES[currency],
                month,
                tax_rate,
                discount,
                seat_price,
                seat_quantity,
                seat_taxable,
                s2_start,
                s2_quantity,
                modules,
                users,
                ops,
                later,
            }
        })
}

fn ws() -> WorkspaceId {
    WorkspaceId::new("w").unwrap()
}

fn acc() -> AccountId {
    AccountId::new("a").unwrap()
}

fn in_ws(command: WorkspaceCommand) -> CommandBody {
    CommandBody::Workspace { workspace: ws(), command }
}

fn user_id(u: u8) -> UserId {
    UserId::new(format!("u{u}")).unwrap()
}

fn add_user(h: &History, u: u8) -> CommandBody {
    in_ws(WorkspaceCommand::AddUser {
        user: user_id(u),
        org: OrgId::new("o").unwrap(),
        profile: UserProfile {
            first_name: "F".into(),
            last_name: "L".into(),
            email: format!("u{u}@w.example"),
            username: format!("u{u}"),
            kind: if h.users[u as usize].guest { UserKind::Guest } else { UserKind::Regular },
            audience: Audience::Internal,
            administrator: false,
        },
        status: None,
        source: UserSource::Manual,
    })
}

#[allow(clippy::too_many_arguments)]
fn subscription(
    h: &History,
    id: &str,
    sku: &str,
    start: NaiveDate,
    quantity: u32,
    price: Decimal,
    guest_price: Option<Decimal>,
    policy: Option<CountingPolicy>,
    taxable: bool,
) -> CommandBody {
    in_ws(WorkspaceCommand::CreateSubscription(Box::new(NewSubscription {
        subscription: SubscriptionId::new(id).unwrap(),
        account: acc(),
        organization: None,
        sku: Sku::new(sku).unwrap(),
        parent: None,
        name: format!("Subscription {id}"),
        friendly_name: None,
        effective_start: start,
        billable: None,
        trial: false,
        deactivate_on: None,
        channel: SubscriptionChannel::Portal,
        quantity,
        order: OrderDetails { ordered_by: "ops".into(), ..Default::default() },
        price_list: PriceListId::new("std").unwrap(),
        currency: h.currency(),
        selling_per_unit: Some(price),
        cost_per_unit: Some(Decimal::ZERO),
        discount: Percent::new(h.discount, "discount").unwrap(),
        taxable,
        exempt_from_indexation: false,
        description: None,
        provider: None,
        guest_selling_per_unit: guest_price,
        counting_policy: policy,
    })))
}

fn product(sku: &str, charge_model: ChargeModel) -> CommandBody {
    CommandBody::Catalog(CatalogCommand::DefineProduct {
        sku: Sku::new(sku).unwrap(),
        name: sku.to_lowercase(),
        kind: ProductKind::Module,
        charge_model,
        product_class: None,
        sales_unit: "unit".into(),
        manufacturer: None,
    })
}

fn setup(h: &History) -> Vec<CommandBody> {
    let first = h.month().first_day();
    let created = h.setup_at().date_naive();
    let mut v = vec![
        product("SEAT", ChargeModel::PerLicence),
        product("HYBRID", ChargeModel::PerActiveUser),
        product("DESK", ChargeModel::PerActiveUser),
        in_ws(WorkspaceCommand::CreateWorkspace {
            name: "W".into(),
            billing_mode: BillingMode::Single,
            created_on: created,
            legacy_plan: None,
        }),
        in_ws(WorkspaceCommand::OpenBillingAccount {
            account: acc(),
            name: "A".into(),
            currency: h.currency(),
            tax_rate: Percent::new(h.tax_rate, "tax rate").unwrap(),
            billing_contract: None,
        }),
        in_ws(WorkspaceCommand::CreateOrganization {
            org: OrgId::new("o").unwrap(),
            name: "O".into(),
            parent: None,
            account: None,
        }),
        in_ws(WorkspaceCommand::CreateGroup { group: GroupId::new("g").unwrap(), name: "G".into() }),
        in_ws(WorkspaceCommand::AssignModule {
            sku: Sku::new("DESK").unwrap(),
            target: ModuleTarget::Group(GroupId::new("g").unwrap()),
        }),
        // `s` is live the whole month; `s2` starts during it.
        subscription(h, "s", "SEAT", created, h.seat_quantity, h.seat_price, None, None, h.seat_taxable),
        subscription(h, "s2", "SEAT", h.date(h.s2_start), h.s2_quantity, h.seat_price, None, None, h.seat_taxable),
    ];
    for (m, sub) in h.modules.iter().enumerate() {
        v.push(subscription(
            h,
            &format!("m{m}"),
            MODULES[m],
            first + Duration::days(i64::from(sub.start)),
            0,
            sub.price,
            sub.guest_price,
            Some(sub.policy),
            sub.taxable,
        ));
    }
    for (u, spec) in h.users.iter().enumerate() {
        if spec.added.is_none() {
            v.push(add_user(h, u as u8));
        }
    }
    v
}

fn to_body(h: &History, op: &Op) -> CommandBody {
    let module = |m: &u8| Sku::new(MODULES[*m as usize]).unwrap();
    let group = GroupId::new("g").unwrap();
    match op {
        Op::Quantity(s, q) => in_ws(WorkspaceCommand::ChangeQuantity {
            subscription: SubscriptionId::new(SUBSCRIPTIONS[*s as usize]).unwrap(),
            quantity: *q,
            order: OrderDetails { ordered_by: "ops".into(), ..Default::default() },
            channel: SubscriptionChannel::Portal,
        }),
        Op::Assign(u, m) => {
            in_ws(WorkspaceCommand::AssignModule { sku: module(m), target: ModuleTarget::User(user_id(*u)) })
        }
        Op::Unassign(u, m) => {
            in_ws(WorkspaceCommand::UnassignModule { sku: module(m), target: ModuleTarget::User(user_id(*u)) })
        }
        Op::Status(u, s) => in_ws(WorkspaceCommand::ChangeUserStatus {
            user: user_id(*u),
            status: UserStatus::ALL[*s as usize],
            source: StatusChangeSource::Manual,
        }),
        Op::Join(u) => in_ws(WorkspaceCommand::AddGroupMember { group, user: user_id(*u) }),
        Op::Leave(u) => in_ws(WorkspaceCommand::RemoveGroupMember { group, user: user_id(*u) }),
        Op::AddUser(u) => add_user(h, *u),
    }
}

/// The ledger a history built, and the quantity changes that were recorded
/// for each per-licence subscription: (effective time, recording order, quantity).
struct Ledger {
    h: History,
    store: Arc<dyn EventStore>,
    handler: CommandHandler,
    commands: u128,
    quantities: [Vec<(DateTime<Utc>, u128, u32)>; 2],
}

impl Ledger {
    async fn build(h: History) -> Self {
        let clock =
            Arc::new(SteppingClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Duration::seconds(1)));
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new(clock));
        let handler = CommandHandler::new(store.clone(), Arc::new(SequentialIds::new(1_767_225_600_000)));
        let mut l = Ledger { h, store, handler, commands: 0, quantities: [vec![], vec![]] };
        let setup_at = l.h.setup_at();
        for body in setup(&l.h) {
            l.must(Command { at: setup_at, body }).await;
        }
        for (s, q) in [l.h.seat_quantity, l.h.s2_quantity].into_iter().enumerate() {
            // A subscription created with no quantity has none until changed.
            l.quantities[s].push((setup_at, 0, q));
        }
        let mut ops = l.h.ops.clone();
        ops.sort_by_key(|(_, w)| l.h.instant(*w));
        for (op, w) in ops {
            l.apply(&op, w).await;
        }
        l
    }

    fn meta(&mut self) -> CommandMeta {
        self.commands += 1;
        CommandMeta::new("prop", "cli", uuid::Uuid::from_u128(self.commands))
    }

    async fn must(&mut self, command: Command) {
        let meta = self.meta();
        self.handler.handle(&command, &meta).await.unwrap_or_else(|e| panic!("{command:?}: {e}"));
    }

    /// Decide one operation at its time; refusals are part of life.
    async fn apply(&mut self, op: &Op, w: When) {
        let at = self.h.instant(w);
        let meta = self.meta();
        let command = Command { at, body: to_body(&self.h, op) };
        match self.handler.handle(&command, &meta).await {
            Ok(HandleOutcome::Appended { .. }) => {
                if let Op::Quantity(s, q) = op {
                    self.quantities[*s as usize].push((at, self.commands, *q));
                }
            }
            Ok(_) | Err(AppError::Rejected(_)) => {}
            Err(e) => panic!("{op:?} at {at}: {e}"),
        }
    }

    async fn preview(&self) -> InvoiceDocument {
        let mut docs = invoicing::preview(self.store.as_ref(), &ws(), None, self.h.month(), AsOf::Head)
            .await
            .unwrap_or_else(|e| panic!("preview: {e}"));
        assert_eq!(docs.len(), 1, "one account, one invoice");
        docs.pop().unwrap()
    }

    async fn issue(&mut self) -> InvoiceDocument {
        let at = self.h.month().next().first_day().and_hms_opt(6, 0, 0).unwrap().and_utc();
        let meta = self.meta();
        let (doc, _) = invoicing::issue(&self.handler, &ws(), &acc(), self.h.month(), at, &meta)
            .await
            .unwrap_or_else(|e| panic!("issue: {e}"));
        doc
    }

    async fn backdate(&mut self) {
        for (op, w) in self.h.later.clone() {
            self.apply(&op, w).await;
        }
    }

    /// The lowest and highest quantity `s`/`s2` held at any moment of the
    /// month, from the changes recorded (ordered on effective time, then on
    /// recording order, as the ledger orders them).
    fn quantity_range(&self, s: usize) -> (u32, u32) {
        let month = self.h.month();
        let start = month.first_day().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let end = month.next().first_day().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let mut changes = self.quantities[s].clone();
        changes.sort_by_key(|(at, seq, _)| (*at, *seq));
        let at_start = changes.iter().rfind(|(at, _, _)| *at <= start).map_or(0, |c| c.2);
        let during = changes.iter().filter(|(at, _, _)| *at > start && *at < end).map(|c| c.2);
        let held: Vec<u32> = std::iter::once(at_start).chain(during).collect();
        (*held.iter().min().unwrap(), *held.iter().max().unwrap())
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn is_rounded(m: Money) -> bool {
    m.amount == m.amount.round_dp(m.currency.minor_unit_digits())
}

/// Property 1 on one document.
fn check_sums(doc: &InvoiceDocument) -> Result<(), TestCaseError> {
    let currency = doc.currency;
    let lines: Decimal = doc.lines.iter().map(|l| l.amount.amount).sum();
    let taxes: Decimal = doc.taxes.iter().map(|t| t.tax.amount).sum();
    for l in &doc.lines {
        prop_assert_eq!(l.amount.currency, currency, "line {} currency", &l.key);
        prop_assert!(is_rounded(l.amount), "line {} amount {} is not rounded", &l.key, l.amount);
    }
    for t in &doc.taxes {
        prop_assert_eq!(t.tax.currency, currency);
        prop_assert!(is_rounded(t.tax), "tax {} is not rounded", t.tax);
        let taxable: Decimal = doc.lines.iter().filter(|l| l.taxable).map(|l| l.amount.amount).sum();
        prop_assert_eq!(t.taxable_subtotal.amount, taxable, "taxable subtotal");
        let expected = Money::new(taxable * t.rate.fraction(), currency).round_to_minor_unit();
        prop_assert_eq!(t.tax.amount, expected.amount, "tax on {} at {}", taxable, t.rate);
    }
    prop_assert_eq!(doc.taxes.is_empty(), !doc.lines.iter().any(|l| l.taxable), "a tax line iff a taxable line");
    prop_assert_eq!(doc.subtotal.amount, lines, "subtotal = Σ lines");
    prop_assert_eq!(doc.total.amount, lines + taxes, "total = Σ lines + Σ tax");
    prop_assert!(is_rounded(doc.subtotal) && is_rounded(doc.total), "subtotal and total are rounded");
    Ok(())
}

/// Property 4 on one document.
fn check_prorated_bounds(l: &Ledger, doc: &InvoiceDocument) -> Result<(), TestCaseError> {
    let h = &l.h;
    let month = h.month();
    let days = Decimal::from(month.days());
    let unit = h.seat_price * (Decimal::ONE - h.discount / Decimal::ONE_HUNDRED);
    for (s, id) in SUBSCRIPTIONS.iter().enumerate() {
        // `s` started before the month; `s2` on its start day.
        let live_days =
            if s == 0 { days } else { Decimal::from(month.each_day().filter(|d| *d >= h.date(h.s2_start)).count()) };
        let line = doc.lines.iter().find(|l| l.key == format!("per_licence/{id}"));
        let Some(line) = line else {
            prop_assert!(live_days.is_zero(), "subscription {} live {} days has no line", id, live_days);
            continue;
        };
        let (lo, hi) = l.quantity_range(s);
        let bound = |q: u32| Money::new(unit * Decimal::from(q) * live_days / days, h.currency()).round_to_minor_unit();
        let (low, high) = (bound(lo), bound(hi));
        prop_assert!(
            low.amount <= line.amount.amount && line.amount.amount <= high.amount,
            "{}: {} not within [{}, {}] for quantities {}..={} over {} live days ({})",
            id,
            line.amount,
            low,
            high,
            lo,
            hi,
            live_days,
            &line.formula
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// 1. total = Σ lines + tax, subtotal = Σ lines, and every line and tax
    ///    amount is already rounded to the currency's minor unit.
    #[test]
    fn totals_add_up_and_every_amount_is_rounded_to_the_minor_unit(h in history()) {
        run(async {
            let mut l = Ledger::build(h).await;
            check_sums(&l.preview().await)?;
            let issued = l.issue().await;
            check_sums(&issued)?;
            l.backdate().await;
            check_sums(&l.preview().await)
        })?;
    }

    /// 2. An issued invoice reproduces byte for byte, also after more
    ///    (backdated) events were appended.
    #[test]
    fn reproduce_is_byte_identical_even_after_backdated_events(h in history()) {
        run(async {
            let mut l = Ledger::build(h).await;
            let issued = l.issue().await;
            let r = invoicing::reproduce(&l.handler, &issued.number).await.unwrap();
            prop_assert!(r.identical, "right after issuing: {:?}", r.differences);
            prop_assert_eq!(invoicing::document_bytes(&r.recomputed), invoicing::document_bytes(&issued));
            l.backdate().await;
            let r = invoicing::reproduce(&l.handler, &issued.number).await.unwrap();
            prop_assert!(r.identical, "after backdated events: {:?}", r.differences);
            prop_assert_eq!(invoicing::document_bytes(&r.issued), invoicing::document_bytes(&issued));
            Ok(())
        })?;
    }

    /// 3. With nothing hypothetical, preview and issue are the same
    ///    computation: `issue` returns exactly the preview made just before,
    ///    and `preview_with` an empty list equals `preview`.
    #[test]
    fn issue_equals_the_preview_and_preview_with_nothing_equals_preview(h in history()) {
        run(async {
            let mut l = Ledger::build(h).await;
            let month = l.h.month();
            let preview = l.preview().await;
            let pinned = month.next().first_day().and_hms_opt(5, 0, 0).unwrap().and_utc();
            let ids = Arc::new(SequentialIds::new(1_800_000_000_000));
            let (with, refused) =
                invoicing::preview_with(l.store.as_ref(), &[], pinned, ids, &ws(), None, month).await.unwrap();
            prop_assert!(refused.is_empty());
            prop_assert_eq!(with.len(), 1);
            prop_assert_eq!(invoicing::document_bytes(&with[0]), invoicing::document_bytes(&preview));
            let issued = l.issue().await;
            prop_assert_eq!(invoicing::document_bytes(&issued), invoicing::document_bytes(&preview));
            let stored = invoicing::find_issued(&l.handler, &issued.number).await.unwrap().invoice;
            prop_assert_eq!(invoicing::document_bytes(&stored), invoicing::document_bytes(&preview));
            // Still true once the ledger holds more (backdated) events.
            l.backdate().await;
            let preview = l.preview().await;
            let ids = Arc::new(SequentialIds::new(1_800_000_000_000));
            let (with, _) =
                invoicing::preview_with(l.store.as_ref(), &[], pinned, ids, &ws(), None, month).await.unwrap();
            prop_assert_eq!(invoicing::document_bytes(&with[0]), invoicing::document_bytes(&preview));
            Ok(())
        })?;
    }

    /// 4. A prorated per-licence amount lies between the amounts for the
    ///    lowest and the highest quantity held in the month:
    ///    price × (1 − discount) × q × live days ÷ days, rounded.
    #[test]
    fn prorated_per_licence_amounts_lie_between_the_lowest_and_highest_quantity(h in history()) {
        run(async {
            let mut l = Ledger::build(h).await;
            check_prorated_bounds(&l, &l.preview().await)?;
            l.backdate().await;
            check_prorated_bounds(&l, &l.preview().await)
        })?;
    }
}
