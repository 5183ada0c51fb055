//! The user directory read model: the Billing page overview, the user
//! export of the Licensing page, and the versioned licensing reporting API
//! (seed 000, "Reporting overview", "Export to CSV" and "Reporting via
//! provisioning API").
//!
//! It folds the catalog and every workspace with the domain's own `evolve`
//! (it wraps [`LicenceState`]), so "who holds which module" is exactly what
//! decisions are made on: a user's modules are [`Workspace::modules_of`],
//! the direct ones plus those of their groups, each module once.
//!
//! Decisions (see `docs/reporting-api.md`):
//! - **Who counts.** Deleted users never count and are never exported.
//!   Active users are the counts (`regular`, `guest`): the Billing page feeds
//!   the monthly invoice, which is based on active users only. Inactive users
//!   who hold a module are counted apart (`inactive_regular`,
//!   `inactive_guest`), never mixed in, so the overview still reconciles with
//!   the Licence Manager's assigned seats (every non-deleted holder).
//! - **Modules** are the catalog's products of kind `module`, listed by SKU,
//!   every one of them even when nobody holds it.
//! - **Export.** Active and inactive users, ordered by username; modules as
//!   product names in SKU order joined by `", "`.
//! - **Licensing API.** 3.5 carries the licensing model and the legacy plan's
//!   users; 4.0 carries modules only and has no legacy field at all.

use crate::licence_state::LicenceState;
use crate::{Projection, Recorded};
use seatledger_domain::{Catalog, LegacyPlan, ProductKind, Sku, UserKind, UserStatus, Workspace, WorkspaceId};
use serde::Serialize;
use std::collections::BTreeMap;

/// The user directory: every workspace's users, groups and modules.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    state: LicenceState,
}

impl From<LicenceState> for Directory {
    /// Reuse state already folded for licence state.
    fn from(state: LicenceState) -> Self {
        Self { state }
    }
}

impl Projection for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        self.state.apply(r);
    }
}

/// Why a directory query has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryError {
    UnknownWorkspace(WorkspaceId),
}

impl std::fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectoryError::UnknownWorkspace(id) => write!(f, "workspace `{id}` is not in the ledger"),
        }
    }
}

impl std::error::Error for DirectoryError {}

// ---------------------------------------------------------------------------
// Counting users
// ---------------------------------------------------------------------------

/// Users counted by kind: active ones (what is billed) and, apart, inactive
/// ones. Deleted users are never counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UserCounts {
    /// Active regular users.
    pub regular: u64,
    /// Active guest users.
    pub guest: u64,
    /// Inactive regular users (not billed).
    pub inactive_regular: u64,
    /// Inactive guest users (not billed).
    pub inactive_guest: u64,
}

impl UserCounts {
    /// Count one user; a deleted user is not counted.
    pub fn count(&mut self, kind: UserKind, status: UserStatus) {
        let slot = match (status, kind) {
            (UserStatus::Active, UserKind::Regular) => &mut self.regular,
            (UserStatus::Active, UserKind::Guest) => &mut self.guest,
            (UserStatus::Inactive, UserKind::Regular) => &mut self.inactive_regular,
            (UserStatus::Inactive, UserKind::Guest) => &mut self.inactive_guest,
            (UserStatus::Deleted, _) => return,
        };
        *slot += 1;
    }

    pub fn add(&mut self, other: &UserCounts) {
        self.regular += other.regular;
        self.guest += other.guest;
        self.inactive_regular += other.inactive_regular;
        self.inactive_guest += other.inactive_guest;
    }
}

/// One module and the users holding it (directly or through a group, once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleUsers {
    pub sku: String,
    /// The product name in the catalog.
    pub name: String,
    #[serde(flatten)]
    pub users: UserCounts,
}

/// Every module product of the catalog, by SKU.
fn catalog_modules(catalog: &Catalog) -> BTreeMap<Sku, String> {
    catalog
        .products
        .values()
        .filter(|p| p.kind == ProductKind::Module)
        .map(|p| (p.sku.clone(), p.name.clone()))
        .collect()
}

/// Whether a SKU a user holds is a module. Only modules can be assigned, so
/// this is a guard: an unknown SKU is kept, a known non-module is not.
fn is_module(catalog: &Catalog, sku: &Sku) -> bool {
    catalog.product(sku).is_none_or(|p| p.kind == ProductKind::Module)
}

fn module_name(catalog: &Catalog, sku: &Sku) -> String {
    catalog.product(sku).map(|p| p.name.clone()).unwrap_or_else(|| sku.to_string())
}

/// Per module, who holds it; and how many distinct users hold at least one.
fn module_distribution(catalog: &Catalog, ws: &Workspace) -> (Vec<ModuleUsers>, UserCounts) {
    let mut modules: BTreeMap<Sku, ModuleUsers> = catalog_modules(catalog)
        .into_iter()
        .map(|(sku, name)| (sku.clone(), ModuleUsers { sku: sku.to_string(), name, users: UserCounts::default() }))
        .collect();
    let mut holders = UserCounts::default();
    for user in ws.users.values() {
        if user.status == UserStatus::Deleted {
            continue;
        }
        let held: Vec<Sku> = ws.modules_of(&user.id).into_iter().filter(|s| is_module(catalog, s)).collect();
        if held.is_empty() {
            continue;
        }
        holders.count(user.profile.kind, user.status);
        for sku in held {
            modules
                .entry(sku.clone())
                .or_insert_with(|| ModuleUsers {
                    sku: sku.to_string(),
                    name: module_name(catalog, &sku),
                    users: UserCounts::default(),
                })
                .users
                .count(user.profile.kind, user.status);
        }
    }
    (modules.into_values().collect(), holders)
}

// ---------------------------------------------------------------------------
// The Billing page overview
// ---------------------------------------------------------------------------

/// The quick overview of the Billing page: modules per regular and guest user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingOverview {
    pub workspace: String,
    pub name: String,
    /// Every module of the catalog, by SKU.
    pub modules: Vec<ModuleUsers>,
    /// The sum over the modules: a user holding two modules counts twice.
    pub totals: UserCounts,
    /// Distinct users holding at least one module: each user counts once.
    pub users_with_modules: UserCounts,
}

/// The overview of one folded workspace.
pub fn overview_of(catalog: &Catalog, ws: &Workspace) -> BillingOverview {
    let (modules, users_with_modules) = module_distribution(catalog, ws);
    let mut totals = UserCounts::default();
    for m in &modules {
        totals.add(&m.users);
    }
    BillingOverview { workspace: ws.id.to_string(), name: ws.name.clone(), modules, totals, users_with_modules }
}

// ---------------------------------------------------------------------------
// The CSV export
// ---------------------------------------------------------------------------

/// The header of the user export, in column order (seed 000, "Export to CSV").
pub const USER_CSV_HEADER: [&str; 8] =
    ["first name", "last name", "email", "username", "status", "modules", "guest", "administrator"];

/// How the module names of one user are joined in the `modules` column.
pub const MODULE_SEPARATOR: &str = ", ";

/// One exported user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    /// `active` or `inactive`; deleted users are not exported.
    pub status: String,
    /// Module product names, in SKU order, each once.
    pub modules: Vec<String>,
    pub guest: bool,
    pub administrator: bool,
}

impl UserRow {
    /// The fields in [`USER_CSV_HEADER`] order, as text. Quoting is the CSV
    /// writer's job.
    pub fn csv_record(&self) -> [String; 8] {
        [
            self.first_name.clone(),
            self.last_name.clone(),
            self.email.clone(),
            self.username.clone(),
            self.status.clone(),
            self.modules.join(MODULE_SEPARATOR),
            self.guest.to_string(),
            self.administrator.to_string(),
        ]
    }
}

/// The users of one folded workspace that the Licensing page exports:
/// active and inactive ones, ordered by username (unique in a workspace).
pub fn user_rows_of(catalog: &Catalog, ws: &Workspace) -> Vec<UserRow> {
    let mut rows: Vec<UserRow> = ws
        .users
        .values()
        .filter(|u| u.status != UserStatus::Deleted)
        .map(|u| UserRow {
            first_name: u.profile.first_name.clone(),
            last_name: u.profile.last_name.clone(),
            email: u.profile.email.clone(),
            username: u.profile.username.clone(),
            status: u.status.as_str().to_owned(),
            modules: ws
                .modules_of(&u.id)
                .iter()
                .filter(|s| is_module(catalog, s))
                .map(|s| module_name(catalog, s))
                .collect(),
            guest: u.profile.kind == UserKind::Guest,
            administrator: u.profile.administrator,
        })
        .collect();
    rows.sort_by(|a, b| a.username.cmp(&b.username));
    rows
}

// ---------------------------------------------------------------------------
// The licensing reporting API
// ---------------------------------------------------------------------------

/// A version of the licensing reporting API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ApiVersion {
    /// The legacy plans (Simplify, Adapt, Boost) and the modules.
    #[serde(rename = "3.5")]
    V3_5,
    /// The modules (Hybrid, Engage, Unify) only.
    #[serde(rename = "4.0")]
    V4_0,
}

impl ApiVersion {
    pub const ALL: [ApiVersion; 2] = [ApiVersion::V3_5, ApiVersion::V4_0];

    pub fn as_str(&self) -> &'static str {
        match self {
            ApiVersion::V3_5 => "3.5",
            ApiVersion::V4_0 => "4.0",
        }
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A licensing API version that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedVersion(pub String);

impl std::fmt::Display for UnsupportedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "licensing API version {:?} is not supported; use 3.5 or 4.0", self.0)
    }
}

impl std::error::Error for UnsupportedVersion {}

impl std::str::FromStr for ApiVersion {
    type Err = UnsupportedVersion;

    /// Exactly `3.5` or `4.0`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApiVersion::ALL.into_iter().find(|v| v.as_str() == text).ok_or_else(|| UnsupportedVersion(text.to_owned()))
    }
}

/// Which workspaces a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportScope {
    /// Every workspace of the hosting instance.
    All,
    Workspace(WorkspaceId),
}

/// How a workspace is licensed (3.5 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicensingModel {
    /// `legacy_plan` while billed on its legacy plan, else `modules`.
    pub model: &'static str,
    /// `simplify`, `adapt` or `boost` for a workspace created before
    /// 2024-01-01 (kept after migration); `null` otherwise.
    pub legacy_plan: Option<&'static str>,
    /// Whether a legacy workspace has migrated to modules.
    pub migrated: bool,
    /// The first day billed on modules, when migrated.
    pub migrated_on: Option<chrono::NaiveDate>,
}

/// The users on a legacy plan: every non-deleted user, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyPlanUsers {
    pub plan: &'static str,
    #[serde(flatten)]
    pub users: UserCounts,
}

/// 3.5: the legacy plan's users and the modules' users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistributionV3_5 {
    /// `null` unless the workspace is still billed on its legacy plan.
    pub legacy_plan: Option<LegacyPlanUsers>,
    pub modules: Vec<ModuleUsers>,
}

/// 4.0: the modules' users only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistributionV4_0 {
    pub modules: Vec<ModuleUsers>,
}

/// One workspace in a 3.5 report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceV3_5 {
    pub workspace: String,
    pub name: String,
    pub company_name: Option<String>,
    pub customer_type: Option<String>,
    pub industry: Option<String>,
    pub licensing_model: LicensingModel,
    pub licence_distribution: DistributionV3_5,
}

/// One workspace in a 4.0 report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceV4_0 {
    pub workspace: String,
    pub name: String,
    pub company_name: Option<String>,
    pub customer_type: Option<String>,
    pub industry: Option<String>,
    pub licence_distribution: DistributionV4_0,
}

/// 3.5 totals over the workspaces reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TotalsV3_5 {
    /// Every legacy plan, in the order simplify, adapt, boost.
    pub legacy_plans: Vec<LegacyPlanUsers>,
    pub modules: Vec<ModuleUsers>,
}

/// 4.0 totals over the workspaces reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TotalsV4_0 {
    pub modules: Vec<ModuleUsers>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportV3_5 {
    pub version: ApiVersion,
    pub workspaces: Vec<WorkspaceV3_5>,
    pub totals: TotalsV3_5,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportV4_0 {
    pub version: ApiVersion,
    pub workspaces: Vec<WorkspaceV4_0>,
    pub totals: TotalsV4_0,
}

/// A licensing report; it serializes as the version's own shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LicensingReport {
    V3_5(ReportV3_5),
    V4_0(ReportV4_0),
}

impl LicensingReport {
    pub fn version(&self) -> ApiVersion {
        match self {
            LicensingReport::V3_5(r) => r.version,
            LicensingReport::V4_0(r) => r.version,
        }
    }
}

/// Billing info text, `None` when never filled in.
fn filled(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

fn licensing_model(ws: &Workspace) -> LicensingModel {
    LicensingModel {
        model: if ws.is_legacy() { "legacy_plan" } else { "modules" },
        legacy_plan: ws.legacy_plan.map(|p| p.as_str()),
        migrated: ws.migrated_on.is_some(),
        migrated_on: ws.migrated_on,
    }
}

/// On a legacy plan every user counts for the plan, module or not (as the
/// invoice counts them); `None` once migrated or for a modules workspace.
fn legacy_plan_users(ws: &Workspace) -> Option<LegacyPlanUsers> {
    let plan = ws.legacy_plan.filter(|_| ws.is_legacy())?;
    let mut users = UserCounts::default();
    for u in ws.users.values() {
        users.count(u.profile.kind, u.status);
    }
    Some(LegacyPlanUsers { plan: plan.as_str(), users })
}

fn sum_modules(into: &mut BTreeMap<String, ModuleUsers>, modules: &[ModuleUsers]) {
    for m in modules {
        into.entry(m.sku.clone())
            .or_insert_with(|| ModuleUsers { sku: m.sku.clone(), name: m.name.clone(), users: UserCounts::default() })
            .users
            .add(&m.users);
    }
}

/// The report of the given folded workspaces, in the order given.
pub fn licensing_report_of<'a>(
    catalog: &Catalog,
    version: ApiVersion,
    workspaces: impl IntoIterator<Item = &'a Workspace>,
) -> LicensingReport {
    let mut module_totals: BTreeMap<String, ModuleUsers> = BTreeMap::new();
    // Every module of the catalog appears in the totals, even with no workspace.
    sum_modules(
        &mut module_totals,
        &catalog_modules(catalog)
            .into_iter()
            .map(|(sku, name)| ModuleUsers { sku: sku.to_string(), name, users: UserCounts::default() })
            .collect::<Vec<_>>(),
    );
    let mut plan_totals: Vec<LegacyPlanUsers> =
        LegacyPlan::ALL.iter().map(|p| LegacyPlanUsers { plan: p.as_str(), users: UserCounts::default() }).collect();
    let mut v35 = vec![];
    let mut v40 = vec![];
    for ws in workspaces {
        let (modules, _) = module_distribution(catalog, ws);
        sum_modules(&mut module_totals, &modules);
        let info = &ws.billing_info;
        match version {
            ApiVersion::V3_5 => {
                let legacy = legacy_plan_users(ws);
                if let Some(l) = &legacy {
                    if let Some(t) = plan_totals.iter_mut().find(|t| t.plan == l.plan) {
                        t.users.add(&l.users);
                    }
                }
                v35.push(WorkspaceV3_5 {
                    workspace: ws.id.to_string(),
                    name: ws.name.clone(),
                    company_name: filled(&info.company_name),
                    customer_type: filled(&info.customer_type),
                    industry: filled(&info.industry),
                    licensing_model: licensing_model(ws),
                    licence_distribution: DistributionV3_5 { legacy_plan: legacy, modules },
                });
            }
            ApiVersion::V4_0 => v40.push(WorkspaceV4_0 {
                workspace: ws.id.to_string(),
                name: ws.name.clone(),
                company_name: filled(&info.company_name),
                customer_type: filled(&info.customer_type),
                industry: filled(&info.industry),
                licence_distribution: DistributionV4_0 { modules },
            }),
        }
    }
    let modules = module_totals.into_values().collect();
    match version {
        ApiVersion::V3_5 => LicensingReport::V3_5(ReportV3_5 {
            version,
            workspaces: v35,
            totals: TotalsV3_5 { legacy_plans: plan_totals, modules },
        }),
        ApiVersion::V4_0 => {
            LicensingReport::V4_0(ReportV4_0 { version, workspaces: v40, totals: TotalsV4_0 { modules } })
        }
    }
}

// ---------------------------------------------------------------------------
// Queries on the projection
// ---------------------------------------------------------------------------

impl Directory {
    /// The folded catalog and workspaces.
    pub fn state(&self) -> &LicenceState {
        &self.state
    }

    pub fn catalog(&self) -> &Catalog {
        &self.state.catalog
    }

    pub fn workspace(&self, id: &WorkspaceId) -> Result<&Workspace, DirectoryError> {
        self.state.workspaces.get(id).ok_or_else(|| DirectoryError::UnknownWorkspace(id.clone()))
    }

    /// Every workspace, by id.
    pub fn workspaces(&self) -> impl Iterator<Item = &Workspace> {
        self.state.workspaces.values()
    }

    /// The Billing page overview of one workspace.
    pub fn billing_overview(&self, workspace: &WorkspaceId) -> Result<BillingOverview, DirectoryError> {
        Ok(overview_of(self.catalog(), self.workspace(workspace)?))
    }

    /// The Billing page overview of every workspace, by id.
    pub fn billing_overviews(&self) -> Vec<BillingOverview> {
        self.workspaces().map(|ws| overview_of(self.catalog(), ws)).collect()
    }

    /// The rows of the CSV export of one workspace's users.
    pub fn user_rows(&self, workspace: &WorkspaceId) -> Result<Vec<UserRow>, DirectoryError> {
        Ok(user_rows_of(self.catalog(), self.workspace(workspace)?))
    }

    /// The licensing report of one workspace or all, by workspace id.
    pub fn licensing_report(
        &self,
        version: ApiVersion,
        scope: &ReportScope,
    ) -> Result<LicensingReport, DirectoryError> {
        match scope {
            ReportScope::All => Ok(licensing_report_of(self.catalog(), version, self.workspaces())),
            ReportScope::Workspace(id) => Ok(licensing_report_of(self.catalog(), version, [self.workspace(id)?])),
        }
    }
}
