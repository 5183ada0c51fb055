//! Commands: what someone asks the ledger to do. Time arrives inside the
//! command (`at`), and so does every id; the domain never reads a clock.

use crate::events::UserProfile;
use crate::ids::*;
use crate::model::*;
use crate::money::{Currency, Percent};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

/// A command and the business time at which it takes effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Business time. Backdated for corrections; defaults to "now" at the edge.
    pub at: DateTime<Utc>,
    pub body: CommandBody,
}

/// Which consistency boundary a command is decided in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Catalog(CatalogCommand),
    Workspace { workspace: WorkspaceId, command: WorkspaceCommand },
    Invoices { workspace: WorkspaceId, command: crate::invoice::InvoiceCommand },
    Outbox { workspace: WorkspaceId, command: crate::outbox::OutboxCommand },
}

/// Commands on the product catalog of the hosting instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogCommand {
    DefineProduct {
        sku: Sku,
        name: String,
        kind: ProductKind,
        charge_model: ChargeModel,
        product_class: Option<String>,
        sales_unit: String,
        manufacturer: Option<String>,
    },
    SetPrice {
        sku: Sku,
        price: PriceItem,
    },
    DefineBundle {
        parent: Sku,
        children: Vec<Sku>,
        add_ons: Vec<Sku>,
    },
    IndexPrices {
        percent: Percent,
        effective_on: NaiveDate,
    },
}

/// A new subscription, as ordered. Prices left out are taken from the
/// catalog's price list item for the subscription's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub subscription: SubscriptionId,
    pub account: AccountId,
    pub organization: Option<OrgId>,
    pub sku: Sku,
    pub parent: Option<SubscriptionId>,
    pub name: String,
    pub friendly_name: Option<String>,
    pub effective_start: NaiveDate,
    /// Defaults to billable; bundle children are never billable.
    pub billable: Option<bool>,
    pub trial: bool,
    pub deactivate_on: Option<NaiveDate>,
    pub channel: SubscriptionChannel,
    pub quantity: u32,
    pub order: OrderDetails,
    pub price_list: PriceListId,
    pub currency: Currency,
    pub selling_per_unit: Option<Decimal>,
    pub cost_per_unit: Option<Decimal>,
    pub discount: Percent,
    pub taxable: bool,
    pub exempt_from_indexation: bool,
    pub description: Option<String>,
    pub provider: Option<ProviderDetails>,
    /// Taken from the catalog's price item when absent.
    pub guest_selling_per_unit: Option<Decimal>,
    /// Taken from the catalog's price item when absent.
    pub counting_policy: Option<CountingPolicy>,
}

/// Commands decided in one workspace's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceCommand {
    CreateWorkspace {
        name: String,
        billing_mode: BillingMode,
        created_on: NaiveDate,
        legacy_plan: Option<LegacyPlan>,
    },
    /// Always refused: the billing mode is permanent. Kept as a command so
    /// that the refusal is explicit, typed and audited at the edge.
    ChangeBillingMode {
        billing_mode: BillingMode,
    },
    SetBillingInfo {
        info: BillingInfo,
    },
    MigrateToModules,
    ActivateBilling,
    OpenBillingAccount {
        account: AccountId,
        name: String,
        currency: Currency,
        tax_rate: Percent,
        billing_contract: Option<String>,
    },
    CreateOrganization {
        org: OrgId,
        name: String,
        parent: Option<OrgId>,
        account: Option<AccountId>,
    },
    CreateSubscription(Box<NewSubscription>),
    ChangeQuantity {
        subscription: SubscriptionId,
        quantity: u32,
        order: OrderDetails,
        channel: SubscriptionChannel,
    },
    /// "Add licences" in the Licence Manager.
    AddLicences {
        sku: Sku,
        organization: Option<OrgId>,
        subscription: Option<SubscriptionId>,
        quantity: u32,
        order: OrderDetails,
    },
    /// An automatic top-up, caused by the event `trigger_event`.
    TopUpLicences {
        sku: Sku,
        organization: Option<OrgId>,
        subscription: Option<SubscriptionId>,
        quantity: u32,
        trigger_event: uuid::Uuid,
    },
    /// The Licence Manager's automatic top-up for the pool of `sku`, caused
    /// by `trigger_event`: the domain works out how many licences restore the
    /// vacant-seat threshold within the caps.
    AutoTopUp {
        sku: Sku,
        organization: Option<OrgId>,
        trigger_event: uuid::Uuid,
    },
    ScheduleDeactivation {
        subscription: SubscriptionId,
        deactivate_on: Option<NaiveDate>,
    },
    EndTrial {
        subscription: SubscriptionId,
        converted: bool,
    },
    EndSubscription {
        subscription: SubscriptionId,
        ended_on: NaiveDate,
    },
    ConfigureLicences {
        sku: Sku,
        organization: Option<OrgId>,
        settings: LicenceSettings,
    },
    AddNotificationRecipient {
        recipient: RecipientId,
        email: String,
        kinds: Vec<NotificationKind>,
    },
    ChangeNotificationSettings {
        recipient: RecipientId,
        kinds: Vec<NotificationKind>,
    },
    RemoveNotificationRecipient {
        recipient: RecipientId,
    },
    AddUser {
        user: UserId,
        org: OrgId,
        profile: UserProfile,
        /// Defaults to active, or to the SCIM default status for SCIM users.
        status: Option<UserStatus>,
        source: UserSource,
    },
    UpdateUserProfile {
        user: UserId,
        profile: UserProfile,
    },
    ChangeUserStatus {
        user: UserId,
        status: UserStatus,
        source: StatusChangeSource,
    },
    /// The directory deactivated the user through SCIM: it moves to deleted.
    ScimDeactivateUser {
        user: UserId,
    },
    SetStatusAuthority {
        authority: StatusAuthority,
    },
    SetScimDefaultStatus {
        status: UserStatus,
    },
    StartSync {
        tool: SyncTool,
    },
    StopSync,
    CreateGroup {
        group: GroupId,
        name: String,
    },
    AddGroupMember {
        group: GroupId,
        user: UserId,
    },
    RemoveGroupMember {
        group: GroupId,
        user: UserId,
    },
    AssignModule {
        sku: Sku,
        target: ModuleTarget,
    },
    UnassignModule {
        sku: Sku,
        target: ModuleTarget,
    },
    RecordReservation {
        reservation: ReservationId,
        user: UserId,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    RecordRecurringOccurrence {
        series: SeriesId,
        user: UserId,
        occurs_on: NaiveDate,
    },
    StartMembership {
        membership: MembershipId,
        user: UserId,
        starts_on: NaiveDate,
        ends_on: Option<NaiveDate>,
    },
    EndMembership {
        membership: MembershipId,
        ends_on: NaiveDate,
    },
    RecordPunchPassUse {
        use_id: PunchUseId,
        user: UserId,
        used_on: NaiveDate,
    },
}
