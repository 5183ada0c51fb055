//! The directory projection: the Billing page overview, the user export rows
//! and the licensing reports, over events decided by the domain itself
//! (`decide`, then folded) and fed to the projection as recorded events.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use seatledger_domain::*;
use seatledger_projections::directory::{
    ApiVersion, Directory, DirectoryError, LicensingReport, ModuleUsers, ReportScope, UserCounts, UserRow,
    USER_CSV_HEADER,
};
use seatledger_projections::licence_state::LicenceState;
use seatledger_projections::{Projection, Recorded};
use std::collections::BTreeMap;

/// Commands decided by the domain on its own folded state; every event is
/// also recorded into the projections under test.
struct Ledger {
    catalog: Catalog,
    workspaces: BTreeMap<WorkspaceId, Workspace>,
    directory: Directory,
    licence_state: LicenceState,
    position: u64,
    versions: BTreeMap<StreamId, u64>,
}

fn ws(id: &str) -> WorkspaceId {
    WorkspaceId::new(id).unwrap()
}

fn sku(id: &str) -> Sku {
    Sku::new(id).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

fn group(id: &str) -> GroupId {
    GroupId::new(id).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap()
}

fn counts(regular: u64, guest: u64, inactive_regular: u64, inactive_guest: u64) -> UserCounts {
    UserCounts { regular, guest, inactive_regular, inactive_guest }
}

impl Ledger {
    fn new() -> Self {
        let mut l = Self {
            catalog: Catalog::default(),
            workspaces: BTreeMap::new(),
            directory: Directory::default(),
            licence_state: LicenceState::default(),
            position: 0,
            versions: BTreeMap::new(),
        };
        for (id, name, kind) in [
            ("BOOST", "Boost", ProductKind::LegacyPlan),
            ("SIMPLIFY", "Simplify", ProductKind::LegacyPlan),
            ("HYBRID", "Hybrid", ProductKind::Module),
            ("ENGAGE", "Engage", ProductKind::Module),
            ("UNIFY", "Unify", ProductKind::Module),
            ("O365", "Office 365", ProductKind::Service),
        ] {
            l.catalog_cmd(CatalogCommand::DefineProduct {
                sku: sku(id),
                name: name.to_owned(),
                kind,
                charge_model: ChargeModel::PerActiveUser,
                product_class: None,
                sales_unit: "user".to_owned(),
                manufacturer: None,
            });
        }
        l
    }

    fn record(&mut self, stream: StreamId, event: &Event, when: DateTime<Utc>) {
        self.position += 1;
        let version = self.versions.entry(stream.clone()).or_insert(0);
        *version += 1;
        let recorded = Recorded {
            position: self.position,
            id: uuid::Uuid::from_u128(u128::from(self.position)),
            stream: &stream,
            stream_version: *version,
            event_type: "test",
            recorded_at: when,
            effective_at: when,
            actor: "test",
            channel: "test",
            event,
        };
        self.directory.apply(&recorded);
        self.licence_state.apply(&recorded);
    }

    fn decide(&mut self, command: Command) {
        let stream = command.stream();
        let workspace = stream.workspace().and_then(|w| self.workspaces.get(w));
        let view = View { catalog: &self.catalog, workspace, invoices: None, outbox: None };
        let events = decide(&view, &command).unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
        for event in &events {
            match &stream {
                StreamId::Workspace(id) => {
                    let state = self.workspaces.remove(id);
                    let next = Workspace::evolve(state, event).expect("a workspace after its events");
                    self.workspaces.insert(id.clone(), next);
                }
                _ => self.catalog.apply(event),
            }
            self.record(stream.clone(), event, command.at);
        }
    }

    fn catalog_cmd(&mut self, command: CatalogCommand) {
        self.decide(Command { at: at(2023, 1, 2), body: CommandBody::Catalog(command) });
    }

    fn cmd(&mut self, workspace: &str, when: DateTime<Utc>, command: WorkspaceCommand) {
        self.decide(Command { at: when, body: CommandBody::Workspace { workspace: ws(workspace), command } });
    }

    /// A workspace with one organization, `hq`. Before 2024 it takes a legacy plan.
    fn workspace(&mut self, id: &str, name: &str, created_on: NaiveDate, plan: Option<LegacyPlan>) {
        let when = created_on.and_hms_opt(8, 0, 0).unwrap().and_utc();
        self.cmd(
            id,
            when,
            WorkspaceCommand::CreateWorkspace {
                name: name.to_owned(),
                billing_mode: BillingMode::Single,
                created_on,
                legacy_plan: plan,
            },
        );
        self.cmd(
            id,
            when,
            WorkspaceCommand::CreateOrganization {
                org: OrgId::new("hq").unwrap(),
                name: "HQ".to_owned(),
                parent: None,
                account: None,
            },
        );
    }

    fn add_user(&mut self, workspace: &str, id: &str, kind: UserKind, status: UserStatus) {
        let profile = UserProfile {
            first_name: id.to_uppercase(),
            last_name: "Tester".to_owned(),
            email: format!("{id}@example.com"),
            username: id.to_owned(),
            kind,
            audience: Audience::Internal,
            administrator: false,
        };
        self.add_profile(workspace, id, profile, status);
    }

    fn add_profile(&mut self, workspace: &str, id: &str, profile: UserProfile, status: UserStatus) {
        self.cmd(
            workspace,
            at(2024, 2, 1),
            WorkspaceCommand::AddUser {
                user: user(id),
                org: OrgId::new("hq").unwrap(),
                profile,
                status: Some(status),
                source: UserSource::Manual,
            },
        );
    }

    fn assign_user(&mut self, workspace: &str, module: &str, to: &str) {
        let target = ModuleTarget::User(user(to));
        self.cmd(workspace, at(2024, 2, 2), WorkspaceCommand::AssignModule { sku: sku(module), target });
    }

    fn group(&mut self, workspace: &str, id: &str, members: &[&str], modules: &[&str]) {
        self.cmd(workspace, at(2024, 2, 2), WorkspaceCommand::CreateGroup { group: group(id), name: id.to_owned() });
        for m in members {
            self.cmd(workspace, at(2024, 2, 2), WorkspaceCommand::AddGroupMember { group: group(id), user: user(m) });
        }
        for s in modules {
            let target = ModuleTarget::Group(group(id));
            self.cmd(workspace, at(2024, 2, 2), WorkspaceCommand::AssignModule { sku: sku(s), target });
        }
    }

    fn status(&mut self, workspace: &str, id: &str, status: UserStatus) {
        self.cmd(
            workspace,
            at(2024, 2, 3),
            WorkspaceCommand::ChangeUserStatus { user: user(id), status, source: StatusChangeSource::Manual },
        );
    }

    fn module<'a>(&self, overview: &'a [ModuleUsers], module: &str) -> &'a UserCounts {
        &overview.iter().find(|m| m.sku == module).unwrap_or_else(|| panic!("no row for {module}")).users
    }

    fn overview_module(&self, workspace: &str, module: &str) -> UserCounts {
        let o = self.directory.billing_overview(&ws(workspace)).unwrap();
        *self.module(&o.modules, module)
    }

    fn report_json(&self, version: ApiVersion, scope: &ReportScope) -> serde_json::Value {
        serde_json::to_value(self.directory.licensing_report(version, scope).unwrap()).unwrap()
    }
}

/// A modules workspace `acme` with no users yet.
fn acme() -> Ledger {
    let mut l = Ledger::new();
    l.workspace("acme", "Acme", day(2024, 1, 15), None);
    l
}

#[test]
fn a_user_holding_a_module_directly_and_through_a_group_counts_once() {
    let mut l = acme();
    l.add_user("acme", "ada", UserKind::Regular, UserStatus::Active);
    l.assign_user("acme", "HYBRID", "ada");
    l.group("acme", "sales", &["ada"], &["HYBRID"]);
    l.group("acme", "support", &["ada"], &["HYBRID"]);
    assert_eq!(l.overview_module("acme", "HYBRID"), counts(1, 0, 0, 0));
    let o = l.directory.billing_overview(&ws("acme")).unwrap();
    assert_eq!(o.totals, counts(1, 0, 0, 0));
    assert_eq!(o.users_with_modules, counts(1, 0, 0, 0));
    let rows = l.directory.user_rows(&ws("acme")).unwrap();
    assert_eq!(rows[0].modules, ["Hybrid"], "the export names the module once");
}

#[test]
fn two_modules_count_once_each_and_the_user_once_among_users_with_modules() {
    let mut l = acme();
    l.add_user("acme", "ada", UserKind::Regular, UserStatus::Active);
    l.assign_user("acme", "HYBRID", "ada");
    l.group("acme", "sales", &["ada"], &["ENGAGE", "HYBRID"]);
    let o = l.directory.billing_overview(&ws("acme")).unwrap();
    assert_eq!(*l.module(&o.modules, "HYBRID"), counts(1, 0, 0, 0));
    assert_eq!(*l.module(&o.modules, "ENGAGE"), counts(1, 0, 0, 0));
    assert_eq!(*l.module(&o.modules, "UNIFY"), counts(0, 0, 0, 0));
    assert_eq!(o.totals, counts(2, 0, 0, 0), "two module assignments");
    assert_eq!(o.users_with_modules, counts(1, 0, 0, 0), "one user");
    let rows = l.directory.user_rows(&ws("acme")).unwrap();
    assert_eq!(rows[0].modules, ["Engage", "Hybrid"], "product names in SKU order");
    assert_eq!(rows[0].csv_record()[5], "Engage, Hybrid");
}

#[test]
fn guests_and_regular_users_are_counted_apart() {
    let mut l = acme();
    l.add_user("acme", "ada", UserKind::Regular, UserStatus::Active);
    l.add_user("acme", "bob", UserKind::Regular, UserStatus::Active);
    l.add_user("acme", "gus", UserKind::Guest, UserStatus::Active);
    l.group("acme", "everyone", &["ada", "bob", "gus"], &["UNIFY"]);
    assert_eq!(l.overview_module("acme", "UNIFY"), counts(2, 1, 0, 0));
}

#[test]
fn only_module_products_are_listed_every_one_of_them_by_sku() {
    let l = acme();
    let o = l.directory.billing_overview(&ws("acme")).unwrap();
    let skus: Vec<&str> = o.modules.iter().map(|m| m.sku.as_str()).collect();
    assert_eq!(skus, ["ENGAGE", "HYBRID", "UNIFY"], "no legacy plan, no service");
    assert!(o.modules.iter().all(|m| m.users == UserCounts::default()));
}

#[test]
fn inactive_holders_are_counted_apart_and_deleted_users_not_at_all() {
    let mut l = acme();
    l.add_user("acme", "ada", UserKind::Regular, UserStatus::Active);
    l.add_user("acme", "ina", UserKind::Regular, UserStatus::Inactive);
    l.add_user("acme", "ign", UserKind::Guest, UserStatus::Inactive);
    l.add_user("acme", "del", UserKind::Regular, UserStatus::Active);
    l.group("acme", "all", &["ada", "ina", "ign", "del"], &["HYBRID"]);
    l.status("acme", "del", UserStatus::Deleted);
    assert_eq!(l.overview_module("acme", "HYBRID"), counts(1, 0, 1, 1));
    // The licence pool counts every non-deleted holder: active + inactive.
    let pool = l.licence_state.pools_on(day(2024, 3, 1));
    let hybrid = pool.iter().find(|p| p.sku == "HYBRID").unwrap();
    let h = l.overview_module("acme", "HYBRID");
    assert_eq!(hybrid.assigned, h.regular + h.guest + h.inactive_regular + h.inactive_guest);

    let rows = l.directory.user_rows(&ws("acme")).unwrap();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r.username.as_str(), r.status.as_str())).collect();
    assert_eq!(names, [("ada", "active"), ("ign", "inactive"), ("ina", "inactive")], "by username, no deleted user");
}

#[test]
fn a_user_leaving_the_group_no_longer_counts_for_its_modules() {
    let mut l = acme();
    l.add_user("acme", "ada", UserKind::Guest, UserStatus::Active);
    l.group("acme", "sales", &["ada"], &["ENGAGE"]);
    assert_eq!(l.overview_module("acme", "ENGAGE"), counts(0, 1, 0, 0));
    l.cmd("acme", at(2024, 2, 4), WorkspaceCommand::RemoveGroupMember { group: group("sales"), user: user("ada") });
    assert_eq!(l.overview_module("acme", "ENGAGE"), counts(0, 0, 0, 0));
    assert!(l.directory.user_rows(&ws("acme")).unwrap()[0].modules.is_empty());
}

#[test]
fn export_rows_carry_the_seed_columns_verbatim() {
    let mut l = acme();
    let profile = UserProfile {
        first_name: "Seán \"Shawn\"".to_owned(),
        last_name: "O'Brien, Jr.".to_owned(),
        email: "sean@example.com".to_owned(),
        username: "zoë.李".to_owned(),
        kind: UserKind::Guest,
        audience: Audience::External,
        administrator: true,
    };
    l.add_profile("acme", "sean", profile, UserStatus::Inactive);
    l.assign_user("acme", "UNIFY", "sean");
    let rows = l.directory.user_rows(&ws("acme")).unwrap();
    assert_eq!(
        rows,
        [UserRow {
            first_name: "Seán \"Shawn\"".to_owned(),
            last_name: "O'Brien, Jr.".to_owned(),
            email: "sean@example.com".to_owned(),
            username: "zoë.李".to_owned(),
            status: "inactive".to_owned(),
            modules: vec!["Unify".to_owned()],
            guest: true,
            administrator: true,
        }]
    );
    assert_eq!(
        rows[0].csv_record(),
        ["Seán \"Shawn\"", "O'Brien, Jr.", "sean@example.com", "zoë.李", "inactive", "Unify", "true", "true"]
    );
    assert_eq!(
        USER_CSV_HEADER,
        ["first name", "last name", "email", "username", "status", "modules", "guest", "administrator"]
    );
}

/// `acme` on modules, `oldtown` still on Boost (olga tries HYBRID), `oldco`
/// migrated off Simplify.
fn three_workspaces() -> Ledger {
    let mut l = acme();
    l.cmd(
        "acme",
        at(2024, 1, 16),
        WorkspaceCommand::SetBillingInfo {
            info: BillingInfo {
                company_name: "Acme B.V.".to_owned(),
                reference_number: "A-1".to_owned(),
                customer_type: "Direct customer".to_owned(),
                industry: "Retail".to_owned(),
            },
        },
    );
    l.add_user("acme", "ada", UserKind::Regular, UserStatus::Active);
    l.assign_user("acme", "HYBRID", "ada");

    l.workspace("oldtown", "Oldtown", day(2023, 6, 1), Some(LegacyPlan::Boost));
    l.add_user("oldtown", "olga", UserKind::Regular, UserStatus::Active);
    l.add_user("oldtown", "piet", UserKind::Regular, UserStatus::Inactive);
    l.add_user("oldtown", "gwen", UserKind::Guest, UserStatus::Active);
    l.add_user("oldtown", "dirk", UserKind::Guest, UserStatus::Active);
    l.status("oldtown", "dirk", UserStatus::Deleted);
    l.assign_user("oldtown", "HYBRID", "olga");

    l.workspace("oldco", "Oldco", day(2023, 9, 1), Some(LegacyPlan::Simplify));
    l.add_user("oldco", "tom", UserKind::Regular, UserStatus::Active);
    l.cmd("oldco", at(2024, 3, 16), WorkspaceCommand::MigrateToModules);
    l
}

#[test]
fn version_3_5_carries_the_licensing_model_and_the_legacy_plan_users() {
    let l = three_workspaces();
    let report = l.report_json(ApiVersion::V3_5, &ReportScope::Workspace(ws("oldtown")));
    assert_eq!(report["version"], "3.5");
    let w = &report["workspaces"][0];
    assert_eq!(w["workspace"], "oldtown");
    assert_eq!(w["company_name"], serde_json::Value::Null, "no billing info set");
    assert_eq!(
        w["licensing_model"],
        serde_json::json!({"model": "legacy_plan", "legacy_plan": "boost", "migrated": false, "migrated_on": null})
    );
    // Every non-deleted user counts for the plan, module or not.
    assert_eq!(
        w["licence_distribution"]["legacy_plan"],
        serde_json::json!({"plan": "boost", "regular": 1, "guest": 1, "inactive_regular": 1, "inactive_guest": 0})
    );
    let hybrid = &w["licence_distribution"]["modules"][1];
    assert_eq!(hybrid["sku"], "HYBRID");
    assert_eq!(hybrid["regular"], 1, "the free trial of a module is module data too");

    let oldco = l.report_json(ApiVersion::V3_5, &ReportScope::Workspace(ws("oldco")));
    let w = &oldco["workspaces"][0];
    assert_eq!(
        w["licensing_model"],
        serde_json::json!({"model": "modules", "legacy_plan": "simplify", "migrated": true, "migrated_on": "2024-03-16"})
    );
    assert_eq!(w["licence_distribution"]["legacy_plan"], serde_json::Value::Null, "nobody is on the plan any more");
}

#[test]
fn version_4_0_carries_modules_only_and_no_legacy_field() {
    let l = three_workspaces();
    let report = l.report_json(ApiVersion::V4_0, &ReportScope::All);
    assert_eq!(report["version"], "4.0");
    let text = report.to_string();
    for legacy in ["legacy", "boost", "simplify", "migrated", "licensing_model"] {
        assert!(!text.contains(legacy), "4.0 mentions {legacy:?}: {text}");
    }
    let ids: Vec<&str> =
        report["workspaces"].as_array().unwrap().iter().map(|w| w["workspace"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme", "oldco", "oldtown"], "every workspace, by id");
    let keys: Vec<&String> = report["workspaces"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert_eq!(report["workspaces"][0]["industry"], "Retail");
    assert_eq!(report["workspaces"][0]["customer_type"], "Direct customer");
    assert_eq!(report["workspaces"][0]["company_name"], "Acme B.V.");
    assert_eq!(report["totals"].as_object().unwrap().keys().collect::<Vec<_>>(), ["modules"]);
    // acme's ada and oldtown's olga hold HYBRID.
    assert_eq!(report["totals"]["modules"][1]["sku"], "HYBRID");
    assert_eq!(report["totals"]["modules"][1]["regular"], 2);
}

#[test]
fn version_3_5_totals_sum_every_plan_and_module_over_the_scope() {
    let l = three_workspaces();
    let report = l.directory.licensing_report(ApiVersion::V3_5, &ReportScope::All).unwrap();
    let LicensingReport::V3_5(r) = &report else { panic!("asked for 3.5") };
    assert_eq!(report.version(), ApiVersion::V3_5);
    let plans: Vec<(&str, UserCounts)> = r.totals.legacy_plans.iter().map(|p| (p.plan, p.users)).collect();
    assert_eq!(
        plans,
        [("simplify", counts(0, 0, 0, 0)), ("adapt", counts(0, 0, 0, 0)), ("boost", counts(1, 1, 1, 0))],
        "oldco migrated: its Simplify users are no longer on the plan"
    );
    let hybrid = r.totals.modules.iter().find(|m| m.sku == "HYBRID").unwrap();
    assert_eq!(hybrid.users, counts(2, 0, 0, 0));
}

#[test]
fn versions_parse_exactly_and_anything_else_is_refused() {
    assert_eq!("3.5".parse::<ApiVersion>(), Ok(ApiVersion::V3_5));
    assert_eq!("4.0".parse::<ApiVersion>(), Ok(ApiVersion::V4_0));
    for bad in ["3", "4", "3.0", "4.1", "v4.0", " 4.0", ""] {
        let e = bad.parse::<ApiVersion>().unwrap_err();
        assert_eq!(e.to_string(), format!("licensing API version {bad:?} is not supported; use 3.5 or 4.0"));
    }
    assert_eq!(serde_json::to_string(&ApiVersion::V3_5).unwrap(), r#""3.5""#);
}

#[test]
fn an_unknown_workspace_is_named() {
    let l = acme();
    let nowhere = ws("nowhere");
    let expected = DirectoryError::UnknownWorkspace(nowhere.clone());
    assert_eq!(l.directory.billing_overview(&nowhere).unwrap_err(), expected);
    assert_eq!(l.directory.user_rows(&nowhere).unwrap_err(), expected);
    assert_eq!(
        l.directory.licensing_report(ApiVersion::V4_0, &ReportScope::Workspace(nowhere.clone())).unwrap_err(),
        expected
    );
    assert_eq!(expected.to_string(), "workspace `nowhere` is not in the ledger");
}

#[test]
fn the_directory_is_the_licence_state_fold() {
    let l = three_workspaces();
    let reused = Directory::from(l.licence_state.clone());
    assert_eq!(reused.billing_overviews(), l.directory.billing_overviews());
    // Folded with the domain's own evolve, as read-side copies (no activity
    // ids: the projection never decides).
    let read_side: std::collections::BTreeMap<_, _> =
        l.workspaces.iter().map(|(id, ws)| (id.clone(), ws.clone().for_reading())).collect();
    assert_eq!(reused.state().workspaces, read_side, "folded with the domain's own evolve");
    assert_eq!(l.directory.name(), "directory");
}
