//! The vocabulary of the domain: modes, kinds, statuses and the value types
//! that commands and events share.

use crate::ids::*;
use crate::money::{Currency, Money, Percent};
use chrono::NaiveDate;

/// The largest licence quantity of one subscription or one addition.
pub const MAX_QUANTITY: u32 = 1_000_000;

/// The first day of the modules licensing model; workspaces created before it
/// are billed on a legacy plan.
pub fn modules_start_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).expect("2024-01-01 is a date")
}

macro_rules! named_enum_impl {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used in files, events and on screen.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parse the stable name.
            pub fn parse(text: &str) -> Result<Self, crate::error::InvalidValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(crate::error::InvalidValue::new(
                        $what,
                        format!("{text:?} is not one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use named_enum_impl as named_enum;

named_enum!(
    /// How subscriptions feed organizations; chosen at creation, permanent.
    BillingMode, "billing mode" { Single => "single", Assigned => "assigned", Pooled => "pooled" });
named_enum!(
    /// The plans of workspaces created before 2024-01-01.
    LegacyPlan, "legacy plan" { Simplify => "simplify", Adapt => "adapt", Boost => "boost" });
named_enum!(
    /// Regular or guest user: priced separately.
    UserKind, "user kind" { Regular => "regular", Guest => "guest" });
named_enum!(
    /// Internal users (employees) always count as monthly active users;
    /// external ones only for qualifying activity.
    Audience, "audience" { Internal => "internal", External => "external" });
named_enum!(
    /// The status of a user.
    UserStatus, "user status" { Active => "active", Inactive => "inactive", Deleted => "deleted" });
named_enum!(
    /// Who decides user status.
    StatusAuthority, "status authority" { Workspace => "workspace", Directory => "directory" });
named_enum!(
    /// The tool that syncs users from the directory.
    SyncTool, "sync tool" { AzureAd => "azure_ad", Scim => "scim" });
named_enum!(
    /// Where a user came from; SCIM users start with the workspace's default status.
    UserSource, "user source" { Manual => "manual", DirectorySync => "directory_sync", Scim => "scim" });
named_enum!(
    /// Who asked for a status change.
    StatusChangeSource, "status change source" { Manual => "manual", DirectorySync => "directory_sync", Scim => "scim" });
named_enum!(
    /// What kind of product a SKU is.
    ProductKind, "product kind" { Module => "module", LegacyPlan => "legacy_plan", Service => "service" });
named_enum!(
/// How a product is charged.
ChargeModel, "charge model" {
    PerActiveUser => "per_active_user",
    MonthlyActiveUser => "monthly_active_user",
    PerLicence => "per_licence",
});
named_enum!(
/// How `per_active_user` counts users over a month.
CountingPolicy, "counting policy" {
    EndOfPeriod => "end_of_period",
    Peak => "peak",
    AnyTime => "any_time",
    DailyProrated => "daily_prorated",
});
named_enum!(
    /// Through which avenue a subscription was created.
    SubscriptionChannel, "subscription channel" { Portal => "portal", Provider => "provider", System => "system" });
named_enum!(
    /// How often the provider provisions a subscription.
    ProvisioningFrequency, "provisioning frequency" { Monthly => "monthly", Annual => "annual" });
named_enum!(
    /// A subscription's place in a bundle.
    BundleRole, "bundle role" { Standalone => "standalone", Parent => "parent", Child => "child", AddOn => "add_on" });
named_enum!(
/// Kinds of notification a recipient may receive.
NotificationKind, "notification kind" {
    LowLicence => "low_licence",
    TopUpConfirmation => "top_up_confirmation",
    CapReached => "cap_reached",
});

/// Billing information printed on invoices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillingInfo {
    pub company_name: String,
    pub reference_number: String,
    pub customer_type: String,
    pub industry: String,
}

/// The catalog's price for a product on a price list, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceItem {
    pub price_list: PriceListId,
    pub selling_per_unit: Money,
    pub cost_per_unit: Money,
    /// The price of a guest user, for per-user charge models.
    pub guest_selling_per_unit: Option<Money>,
    /// How `per_active_user` counts; `end_of_period` when not set.
    pub counting_policy: Option<CountingPolicy>,
}

impl PriceItem {
    pub fn currency(&self) -> Currency {
        self.selling_per_unit.currency
    }
}

/// The last change of a subscription's quantity, as the order recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderDetails {
    /// The order id of the change (from the sales order provisioning).
    pub order_reference: Option<String>,
    pub order_date: Option<NaiveDate>,
    /// The person who made the change.
    pub ordered_by: String,
    /// Where the change came from (automatic provider, portal, sales order).
    pub order_thru: Option<String>,
}

/// Provider details of a subscription provisioned through a provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderDetails {
    pub provider: String,
    pub provider_account: Option<String>,
    pub provisioning_frequency: Option<ProvisioningFrequency>,
    pub provider_subscription_id: Option<String>,
    pub auto_renew: bool,
    pub part_number: Option<String>,
    pub order_id: Option<String>,
    pub commitment_end_date: Option<NaiveDate>,
    pub manufacturer: Option<String>,
}

/// Where a pool's seats live: the whole workspace (single, pooled), or one
/// top-level organization (assigned).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PoolScope {
    Workspace,
    Organization(OrgId),
}

/// One licence pool: a scope and a SKU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    pub scope: PoolScope,
    pub sku: Sku,
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scope {
            PoolScope::Workspace => write!(f, "`{}`", self.sku),
            PoolScope::Organization(org) => write!(f, "`{}` of organization `{org}`", self.sku),
        }
    }
}

/// Automatic top-up settings of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUpSettings {
    /// Top up when available seats fall below this, back up to it.
    pub vacant_seat_threshold: u32,
    /// The most licences one top-up may add.
    pub max_per_top_up: u32,
    /// The most licences top-ups may add in one calendar month.
    pub max_per_month: u32,
}

/// Alert and top-up settings of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LicenceSettings {
    /// Alert when available seats fall to or below this.
    pub alert_threshold: Option<u32>,
    pub top_up: Option<TopUpSettings>,
}

/// What a module is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleTarget {
    User(UserId),
    Group(GroupId),
}

impl std::fmt::Display for ModuleTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleTarget::User(u) => write!(f, "user `{u}`"),
            ModuleTarget::Group(g) => write!(f, "group `{g}`"),
        }
    }
}

/// Why a subscription's quantity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityReason {
    /// An order changed the quantity (up or down).
    Order,
    /// "Add licences" by a person in the Licence Manager.
    ManualAddition,
    /// An automatic top-up, caused by the event with this id.
    AutomaticTopUp { trigger_event: uuid::Uuid },
}

impl QuantityReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            QuantityReason::Order => "order",
            QuantityReason::ManualAddition => "manual_addition",
            QuantityReason::AutomaticTopUp { .. } => "automatic_top_up",
        }
    }
}

/// Everything a subscription is, as recorded when it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionTerms {
    pub subscription: SubscriptionId,
    /// The billing account (and its billing contract) that pays for it.
    pub account: AccountId,
    /// The top-level organization whose pool it feeds (assigned mode only).
    pub organization: Option<OrgId>,
    pub sku: Sku,
    pub parent: Option<SubscriptionId>,
    pub bundle_role: BundleRole,
    /// Appears on the invoice.
    pub name: String,
    /// Appears on the invoice for write-in products and on the portal.
    pub friendly_name: Option<String>,
    pub effective_start: NaiveDate,
    pub billable: bool,
    pub trial: bool,
    /// Charges and seats end on this date (the subscription is not live on it).
    pub deactivate_on: Option<NaiveDate>,
    pub channel: SubscriptionChannel,
    pub quantity: u32,
    pub order: OrderDetails,
    pub price_list: PriceListId,
    pub selling_per_unit: Money,
    pub cost_per_unit: Money,
    pub discount: Percent,
    pub taxable: bool,
    pub exempt_from_indexation: bool,
    pub product_class: Option<String>,
    pub sales_unit: String,
    /// Printed on the invoice PDF.
    pub description: Option<String>,
    pub provider: Option<ProviderDetails>,
    /// The price of a guest user, for per-user charge models; regular price when absent.
    pub guest_selling_per_unit: Option<Money>,
    /// How `per_active_user` counts; `end_of_period` when absent.
    pub counting_policy: Option<CountingPolicy>,
}

impl SubscriptionTerms {
    pub fn currency(&self) -> Currency {
        self.selling_per_unit.currency
    }
}
