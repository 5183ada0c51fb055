//! Events: the facts the ledger records. Each variant's stable type name and
//! schema version live in the codec crate, not here.

use crate::ids::*;
use crate::model::*;
use crate::money::{Currency, Percent};
use chrono::{DateTime, NaiveDate, Utc};

/// Every fact the ledger records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    // The catalog stream.
    ProductDefined {
        sku: Sku,
        name: String,
        kind: ProductKind,
        charge_model: ChargeModel,
        product_class: Option<String>,
        sales_unit: String,
        manufacturer: Option<String>,
    },
    PriceSet {
        sku: Sku,
        price: PriceItem,
    },
    BundleDefined {
        parent: Sku,
        children: Vec<Sku>,
        add_ons: Vec<Sku>,
    },
    /// Prices of subscriptions not exempt from indexation rise by `percent`
    /// for every day on or after `effective_on`.
    PricesIndexed {
        percent: Percent,
        effective_on: NaiveDate,
    },

    // A workspace stream: the workspace itself.
    WorkspaceCreated {
        workspace: WorkspaceId,
        name: String,
        billing_mode: BillingMode,
        created_on: NaiveDate,
        legacy_plan: Option<LegacyPlan>,
    },
    BillingInfoSet {
        info: BillingInfo,
    },
    WorkspaceMigratedToModules {
        migrated_on: NaiveDate,
    },
    BillingActivated {
        activated_on: NaiveDate,
    },
    BillingAccountOpened {
        account: AccountId,
        name: String,
        currency: Currency,
        tax_rate: Percent,
        billing_contract: Option<String>,
    },
    OrganizationCreated {
        org: OrgId,
        name: String,
        parent: Option<OrgId>,
        account: Option<AccountId>,
    },

    // Subscriptions and pools.
    SubscriptionCreated {
        terms: Box<SubscriptionTerms>,
    },
    QuantityChanged {
        subscription: SubscriptionId,
        pool: PoolKey,
        from: u32,
        to: u32,
        reason: QuantityReason,
        order: OrderDetails,
        channel: SubscriptionChannel,
    },
    DeactivationScheduled {
        subscription: SubscriptionId,
        deactivate_on: Option<NaiveDate>,
    },
    TrialEnded {
        subscription: SubscriptionId,
        converted: bool,
        ended_on: NaiveDate,
    },
    SubscriptionEnded {
        subscription: SubscriptionId,
        ended_on: NaiveDate,
    },
    LicenceSettingsChanged {
        pool: PoolKey,
        settings: LicenceSettings,
    },
    LowLicenceAlertRaised {
        pool: PoolKey,
        available: u64,
        threshold: u32,
    },
    LicenceAlertCleared {
        pool: PoolKey,
        available: u64,
        threshold: u32,
    },
    /// A cap kept an automatic top-up from restoring the vacant-seat
    /// threshold: `allowed` of the `needed` licences were added (maybe none).
    TopUpCapReached {
        pool: PoolKey,
        trigger_event: uuid::Uuid,
        needed: u64,
        allowed: u64,
        /// Licences topped up earlier in the same calendar month.
        month_used: u64,
    },
    NotificationRecipientAdded {
        recipient: RecipientId,
        email: String,
        kinds: Vec<NotificationKind>,
    },
    NotificationSettingsChanged {
        recipient: RecipientId,
        kinds: Vec<NotificationKind>,
    },
    NotificationRecipientRemoved {
        recipient: RecipientId,
    },

    // Users and groups.
    UserAdded {
        user: UserId,
        org: OrgId,
        profile: UserProfile,
        status: UserStatus,
        source: UserSource,
    },
    UserProfileUpdated {
        user: UserId,
        profile: UserProfile,
    },
    UserStatusChanged {
        user: UserId,
        from: UserStatus,
        to: UserStatus,
        source: StatusChangeSource,
    },
    StatusAuthoritySet {
        authority: StatusAuthority,
    },
    ScimDefaultStatusSet {
        status: UserStatus,
    },
    SyncStarted {
        tool: SyncTool,
    },
    SyncStopped {
        tool: SyncTool,
    },
    GroupCreated {
        group: GroupId,
        name: String,
    },
    GroupMemberAdded {
        group: GroupId,
        user: UserId,
    },
    GroupMemberRemoved {
        group: GroupId,
        user: UserId,
    },
    ModuleAssigned {
        sku: Sku,
        target: ModuleTarget,
    },
    ModuleUnassigned {
        sku: Sku,
        target: ModuleTarget,
    },

    // Activity.
    ReservationMade {
        reservation: ReservationId,
        user: UserId,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    RecurringReservationOccurred {
        series: SeriesId,
        user: UserId,
        occurs_on: NaiveDate,
    },
    MembershipStarted {
        membership: MembershipId,
        user: UserId,
        starts_on: NaiveDate,
        ends_on: Option<NaiveDate>,
    },
    MembershipEnded {
        membership: MembershipId,
        ends_on: NaiveDate,
    },
    PunchPassUsed {
        use_id: PunchUseId,
        user: UserId,
        used_on: NaiveDate,
    },

    // A workspace's outbox stream.
    NotificationSent {
        notification: String,
        attempt: u32,
    },
    NotificationFailed {
        notification: String,
        attempt: u32,
        reason: String,
    },

    // A workspace's invoices stream.
    InvoiceIssued {
        invoice: Box<crate::invoice::InvoiceDocument>,
    },
    CreditNoteIssued {
        note: Box<crate::invoice::NoteDocument>,
    },
    DebitNoteIssued {
        note: Box<crate::invoice::NoteDocument>,
    },
}

/// A user's descriptive fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub kind: UserKind,
    pub audience: Audience,
    pub administrator: bool,
}

/// What an event is about, for audit queries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityRef {
    Sku(Sku),
    Account(AccountId),
    Organization(OrgId),
    User(UserId),
    Group(GroupId),
    Subscription(SubscriptionId),
    Recipient(RecipientId),
    Activity(String),
}

impl EntityRef {
    /// `kind:id`, the form the audit filter takes.
    pub fn label(&self) -> String {
        let (kind, id) = self.kind_and_id();
        // Built in one allocation.
        let mut label = String::with_capacity(kind.len() + 1 + id.len());
        label.push_str(kind);
        label.push(':');
        label.push_str(id);
        label
    }

    /// The two parts of [`EntityRef::label`]: its kind (`user`) and the id.
    pub fn kind_and_id(&self) -> (&'static str, &str) {
        match self {
            EntityRef::Sku(x) => ("sku", x.as_str()),
            EntityRef::Account(x) => ("account", x.as_str()),
            EntityRef::Organization(x) => ("organization", x.as_str()),
            EntityRef::User(x) => ("user", x.as_str()),
            EntityRef::Group(x) => ("group", x.as_str()),
            EntityRef::Subscription(x) => ("subscription", x.as_str()),
            EntityRef::Recipient(x) => ("recipient", x.as_str()),
            EntityRef::Activity(x) => ("activity", x.as_str()),
        }
    }
}

impl Event {
    /// The entities this event is about.
    pub fn entities(&self) -> Vec<EntityRef> {
        use EntityRef as E;
        match self {
            Event::ProductDefined { sku, .. } | Event::PriceSet { sku, .. } => vec![E::Sku(sku.clone())],
            Event::BundleDefined { parent, children, add_ons } => {
                std::iter::once(parent).chain(children).chain(add_ons).map(|s| E::Sku(s.clone())).collect()
            }
            Event::PricesIndexed { .. } => vec![],
            Event::NotificationSent { notification, .. } | Event::NotificationFailed { notification, .. } => {
                vec![E::Activity(format!("notification/{notification}"))]
            }
            Event::InvoiceIssued { invoice } => vec![E::Account(invoice.account.clone())],
            Event::CreditNoteIssued { note } | Event::DebitNoteIssued { note } => {
                vec![E::Account(note.account.clone())]
            }
            Event::WorkspaceCreated { .. }
            | Event::BillingInfoSet { .. }
            | Event::WorkspaceMigratedToModules { .. }
            | Event::BillingActivated { .. }
            | Event::StatusAuthoritySet { .. }
            | Event::ScimDefaultStatusSet { .. }
            | Event::SyncStarted { .. }
            | Event::SyncStopped { .. } => vec![],
            Event::BillingAccountOpened { account, .. } => vec![E::Account(account.clone())],
            Event::OrganizationCreated { org, account, .. } => {
                let mut v = vec![E::Organization(org.clone())];
                v.extend(account.iter().map(|a| E::Account(a.clone())));
                v
            }
            Event::SubscriptionCreated { terms } => vec![
                E::Subscription(terms.subscription.clone()),
                E::Account(terms.account.clone()),
                E::Sku(terms.sku.clone()),
            ],
            Event::QuantityChanged { subscription, pool, .. } => {
                vec![E::Subscription(subscription.clone()), E::Sku(pool.sku.clone())]
            }
            Event::DeactivationScheduled { subscription, .. }
            | Event::TrialEnded { subscription, .. }
            | Event::SubscriptionEnded { subscription, .. } => vec![E::Subscription(subscription.clone())],
            Event::LicenceSettingsChanged { pool, .. }
            | Event::LowLicenceAlertRaised { pool, .. }
            | Event::LicenceAlertCleared { pool, .. }
            | Event::TopUpCapReached { pool, .. } => vec![E::Sku(pool.sku.clone())],
            Event::NotificationRecipientAdded { recipient, .. }
            | Event::NotificationSettingsChanged { recipient, .. }
            | Event::NotificationRecipientRemoved { recipient } => vec![E::Recipient(recipient.clone())],
            Event::UserAdded { user, org, .. } => vec![E::User(user.clone()), E::Organization(org.clone())],
            Event::UserProfileUpdated { user, .. } | Event::UserStatusChanged { user, .. } => {
                vec![E::User(user.clone())]
            }
            Event::GroupCreated { group, .. } => vec![E::Group(group.clone())],
            Event::GroupMemberAdded { group, user } | Event::GroupMemberRemoved { group, user } => {
                vec![E::Group(group.clone()), E::User(user.clone())]
            }
            Event::ModuleAssigned { sku, target } | Event::ModuleUnassigned { sku, target } => vec![
                E::Sku(sku.clone()),
                match target {
                    ModuleTarget::User(u) => E::User(u.clone()),
                    ModuleTarget::Group(g) => E::Group(g.clone()),
                },
            ],
            Event::ReservationMade { reservation, user, .. } => {
                vec![E::Activity(format!("reservation/{reservation}")), E::User(user.clone())]
            }
            Event::RecurringReservationOccurred { series, user, occurs_on } => {
                vec![E::Activity(format!("series/{series}/{user}/{occurs_on}")), E::User(user.clone())]
            }
            Event::MembershipStarted { membership, user, .. } => {
                vec![E::Activity(format!("membership/{membership}")), E::User(user.clone())]
            }
            Event::MembershipEnded { membership, .. } => vec![E::Activity(format!("membership/{membership}"))],
            Event::PunchPassUsed { use_id, user, .. } => {
                vec![E::Activity(format!("punch/{use_id}")), E::User(user.clone())]
            }
        }
    }
}
