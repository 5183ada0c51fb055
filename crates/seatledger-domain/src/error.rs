//! Why a command is refused.

use crate::ids::*;
use crate::model::{BillingMode, PoolKey, UserStatus};
use chrono::NaiveDate;

/// A value that does not pass its checks: which field kind, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {why}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub why: String,
}

impl InvalidValue {
    pub fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self { what, why: why.into() }
    }
}

/// Every reason the domain refuses a command. Each message says what is
/// wrong and names the thing at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(#[from] InvalidValue),

    // Workspaces.
    #[error("workspace `{0}` does not exist")]
    WorkspaceNotFound(WorkspaceId),
    #[error("workspace `{0}` already exists")]
    WorkspaceExists(WorkspaceId),
    #[error("the billing mode of workspace `{workspace}` is `{current}` and is permanent: it was chosen at creation and cannot be changed")]
    BillingModeIsPermanent { workspace: WorkspaceId, current: BillingMode },
    #[error("workspace `{0}` was created on or after 2024-01-01 and is on modules; a legacy plan does not apply")]
    LegacyPlanNotAllowed(WorkspaceId),
    #[error("workspace `{0}` was created before 2024-01-01 and needs a legacy plan (simplify, adapt or boost)")]
    LegacyPlanRequired(WorkspaceId),
    #[error("workspace `{0}` is already on modules; there is nothing to migrate")]
    AlreadyOnModules(WorkspaceId),
    #[error("billing for workspace `{0}` is already activated")]
    BillingAlreadyActivated(WorkspaceId),

    // Billing accounts and organizations.
    #[error("billing account `{0}` does not exist")]
    AccountNotFound(AccountId),
    #[error("billing account `{0}` already exists")]
    AccountExists(AccountId),
    #[error("workspace `{workspace}` is in single billing mode and already has its one billing account `{existing}`")]
    SingleModeHasOneAccount { workspace: WorkspaceId, existing: AccountId },
    #[error("organization `{0}` does not exist")]
    OrganizationNotFound(OrgId),
    #[error("organization `{0}` already exists")]
    OrganizationExists(OrgId),
    #[error("top-level organization `{0}` needs a billing account in assigned mode")]
    TopLevelNeedsAccount(OrgId),
    #[error("organization `{org}` is a child of `{parent}` and inherits its billing account; it cannot have its own")]
    ChildInheritsAccount { org: OrgId, parent: OrgId },
    #[error("organizations link to billing accounts only in assigned mode; workspace `{workspace}` is in {mode} mode")]
    AccountLinkNeedsAssignedMode { workspace: WorkspaceId, mode: BillingMode },

    // Catalog.
    #[error("product `{0}` is not in the catalog")]
    ProductNotFound(Sku),
    #[error("product `{0}` is already in the catalog")]
    ProductExists(Sku),
    #[error("product `{0}` is not a module and cannot be assigned to users or groups")]
    NotAModule(Sku),
    #[error("product `{sku}` has no price on price list `{price_list}` in {currency}")]
    PriceMissing { sku: Sku, price_list: PriceListId, currency: String },
    #[error("bundle `{parent}` cannot include `{child}`: {why}")]
    InvalidBundle { parent: Sku, child: Sku, why: String },

    // Subscriptions and pools.
    #[error("subscription `{0}` does not exist")]
    SubscriptionNotFound(SubscriptionId),
    #[error("subscription `{0}` already exists")]
    SubscriptionExists(SubscriptionId),
    #[error("subscription `{subscription}` has ended on {ended_on}")]
    SubscriptionEnded { subscription: SubscriptionId, ended_on: NaiveDate },
    #[error("subscription `{subscription}` is in {subscription_currency} but billing account `{account}` bills in {account_currency}")]
    CurrencyMismatch {
        subscription: SubscriptionId,
        account: AccountId,
        subscription_currency: String,
        account_currency: String,
    },
    #[error("subscription `{subscription}` must name the top-level organization whose pool it feeds: {why}")]
    SubscriptionNeedsOrganization { subscription: SubscriptionId, why: String },
    #[error("subscription `{subscription}` cannot have parent `{parent}`: {why}")]
    InvalidParent { subscription: SubscriptionId, parent: SubscriptionId, why: String },
    #[error("subscription `{0}` is not a trial")]
    NotATrial(SubscriptionId),
    #[error("no seat is free in pool {pool} on {on}: {available} available, {needed} needed")]
    PoolExhausted { pool: PoolKey, on: NaiveDate, available: u64, needed: u64 },
    #[error(
        "pool {pool} would hold {total_after} licences on {on} but {assigned} seats are assigned; unassign seats first"
    )]
    QuantityBelowAssigned { pool: PoolKey, on: NaiveDate, assigned: u64, total_after: u64 },
    #[error("pool {pool} has no live subscription to add licences to")]
    NoSubscriptionForPool { pool: PoolKey },
    #[error("pool {pool} has {count} live subscriptions; name the one to add licences to")]
    AmbiguousSubscription { pool: PoolKey, count: usize },
    #[error("pool {pool} has no automatic top-up settings")]
    NoTopUpSettings { pool: PoolKey },
    #[error("a top-up of {requested} licences to pool {pool} exceeds the {what} of {cap}")]
    TopUpCapExceeded { pool: PoolKey, requested: u64, cap: u64, what: &'static str },
    #[error("a top-up for trigger event {0} was already applied")]
    TopUpAlreadyApplied(uuid::Uuid),
    #[error("licence settings name {pool}, but no subscription in this workspace is for `{sku}`", sku = pool.sku)]
    SettingsForUnknownSku { pool: PoolKey },

    // Users, groups, modules.
    #[error("user `{0}` does not exist")]
    UserNotFound(UserId),
    #[error("user `{0}` already exists")]
    UserExists(UserId),
    #[error("username `{username}` is already used by user `{user}`")]
    UsernameTaken { username: String, user: UserId },
    #[error("user `{0}` is deleted")]
    UserDeleted(UserId),
    #[error("a new user cannot start as deleted")]
    NewUserDeleted,
    #[error("the status of user `{user}` is managed by the directory while sync runs; stop the sync or switch the status authority to the workspace first")]
    StatusManagedByDirectory { user: UserId },
    #[error("the directory is not the status authority of workspace `{0}`; directory status changes are not applied")]
    DirectoryNotAuthority(WorkspaceId),
    #[error("the scim default status must be active or inactive, not {0}")]
    InvalidDefaultStatus(UserStatus),
    #[error("sync is already running in workspace `{0}`")]
    SyncAlreadyRunning(WorkspaceId),
    #[error("sync is not running in workspace `{0}`")]
    SyncNotRunning(WorkspaceId),
    #[error("group `{0}` does not exist")]
    GroupNotFound(GroupId),
    #[error("group `{0}` already exists")]
    GroupExists(GroupId),
    #[error("user `{user}` is already a member of group `{group}`")]
    AlreadyMember { group: GroupId, user: UserId },
    #[error("user `{user}` is not a member of group `{group}`")]
    NotMember { group: GroupId, user: UserId },
    #[error("module `{sku}` is already assigned to {target}")]
    ModuleAlreadyAssigned { sku: Sku, target: String },
    #[error("module `{sku}` is not assigned to {target}")]
    ModuleNotAssigned { sku: Sku, target: String },

    // Notifications.
    #[error("recipient `{0}` does not exist")]
    RecipientNotFound(RecipientId),
    #[error("recipient `{0}` already exists")]
    RecipientExists(RecipientId),

    // Notifications.
    #[error("notification `{notification}` of workspace `{workspace}` was already sent")]
    NotificationAlreadySent { workspace: WorkspaceId, notification: String },
    #[error("notification `{notification}` was given up after {attempts} failed attempts")]
    DeliveryGivenUp { notification: String, attempts: u32 },

    // Invoices.
    #[error(
        "the invoice of account `{account}` for {period} was already issued as `{number}`; correct it with a note"
    )]
    InvoiceAlreadyIssued { account: AccountId, period: crate::calendar::Month, number: String },
    #[error("{period} has not ended yet; its invoice can be issued from the 1st of the next month")]
    PeriodNotEnded { period: crate::calendar::Month },
    #[error("invoice `{0}` was never issued")]
    InvoiceNotIssued(String),
    #[error("invoice `{0}` needs no correction: recomputing it gives the same amounts")]
    NothingToCorrect(String),

    // Activity.
    #[error("{kind} `{id}` was already recorded")]
    ActivityExists { kind: &'static str, id: String },
    #[error("membership `{0}` does not exist")]
    MembershipNotFound(MembershipId),
    #[error("{what}: {start} is after {end}")]
    InvertedRange { what: &'static str, start: String, end: String },
}
