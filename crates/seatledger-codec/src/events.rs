//! The stored form of every event: a stable type name, a schema version and
//! a JSON payload. The table below is the schema registry; `docs/events.md`
//! is its catalogue. A payload written under an older schema version is
//! upcast step by step to today's before it is decoded (see [`upcast`]).

use crate::wire::{FieldError, Wire};
use chrono::{DateTime, NaiveDate, Utc};
#[allow(unused_imports)]
use seatledger_domain::invoice::*;
use seatledger_domain::*;
use serde::{Deserialize, Serialize};

/// An event ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub event_type: &'static str,
    pub schema_version: u32,
    pub payload: String,
}

/// Why a stored event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("event type `{event_type}` has no schema version {version} (this build reads up to {current})")]
    UnknownVersion { event_type: String, version: u32, current: u32 },
    #[error("event `{event_type}` v{version}: payload is not valid: {message}")]
    BadPayload { event_type: String, version: u32, message: String },
    #[error("event `{event_type}` v{version}: {error}")]
    BadField { event_type: String, version: u32, error: FieldError },
}

macro_rules! event_schemas {
    ($(
        $variant:ident = $type_name:literal v $version:literal as $repr:ident {
            $($field:ident : $ty:ty),* $(,)?
        }
    )*) => {
        $(
            #[derive(Debug, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            #[allow(non_camel_case_types)]
            struct $repr { $($field: <$ty as Wire>::Repr),* }
        )*

        /// Every event type name with its current schema version.
        pub const EVENT_TYPES: &[(&str, u32)] = &[$(($type_name, $version)),*];

        /// Encode an event under its current schema.
        pub fn encode(event: &Event) -> Encoded {
            match event {
                $(Event::$variant { $($field),* } => Encoded {
                    event_type: $type_name,
                    schema_version: $version,
                    payload: serde_json::to_string(&$repr { $($field: Wire::to_wire($field)),* })
                        .expect("a wire struct always serializes"),
                },)*
            }
        }

        /// Decode a payload already at the current schema version of its
        /// type: straight from its text, or from the value an upcaster made.
        fn decode_current(event_type: &str, payload: Payload<'_>) -> Result<Event, DecodeError> {
            match event_type {
                $($type_name => {
                    let bad = |message: String| DecodeError::BadPayload {
                        event_type: $type_name.to_owned(), version: $version, message,
                    };
                    let repr: $repr = match payload {
                        Payload::Text(text) => serde_json::from_str(text),
                        Payload::Upcast(value) => serde_json::from_value(value),
                    }
                    .map_err(|e| bad(e.to_string()))?;
                    let field = |error: FieldError| DecodeError::BadField {
                        event_type: $type_name.to_owned(), version: $version, error,
                    };
                    Ok(Event::$variant {
                        $($field: <$ty as Wire>::from_wire(repr.$field).map_err(|e| field(e.at(stringify!($field))))?),*
                    })
                })*
                other => Err(DecodeError::UnknownType(other.to_owned())),
            }
        }
    };
}

event_schemas! {
    ProductDefined = "ProductDefined" v 1 as ProductDefinedV1 {
        sku: Sku, name: String, kind: ProductKind, charge_model: ChargeModel,
        product_class: Option<String>, sales_unit: String, manufacturer: Option<String>,
    }
    PriceSet = "PriceSet" v 1 as PriceSetV1 { sku: Sku, price: PriceItem }
    BundleDefined = "BundleDefined" v 1 as BundleDefinedV1 { parent: Sku, children: Vec<Sku>, add_ons: Vec<Sku> }
    PricesIndexed = "PricesIndexed" v 1 as PricesIndexedV1 { percent: Percent, effective_on: NaiveDate }
    WorkspaceCreated = "WorkspaceCreated" v 1 as WorkspaceCreatedV1 {
        workspace: WorkspaceId, name: String, billing_mode: BillingMode, created_on: NaiveDate,
        legacy_plan: Option<LegacyPlan>,
    }
    BillingInfoSet = "BillingInfoSet" v 1 as BillingInfoSetV1 { info: BillingInfo }
    WorkspaceMigratedToModules = "WorkspaceMigratedToModules" v 1 as WorkspaceMigratedToModulesV1 { migrated_on: NaiveDate }
    BillingActivated = "BillingActivated" v 1 as BillingActivatedV1 { activated_on: NaiveDate }
    BillingAccountOpened = "BillingAccountOpened" v 1 as BillingAccountOpenedV1 {
        account: AccountId, name: String, currency: Currency, tax_rate: Percent, billing_contract: Option<String>,
    }
    OrganizationCreated = "OrganizationCreated" v 1 as OrganizationCreatedV1 {
        org: OrgId, name: String, parent: Option<OrgId>, account: Option<AccountId>,
    }
    SubscriptionCreated = "SubscriptionCreated" v 1 as SubscriptionCreatedV1 { terms: Box<SubscriptionTerms> }
    QuantityChanged = "QuantityChanged" v 1 as QuantityChangedV1 {
        subscription: SubscriptionId, pool: PoolKey, from: u32, to: u32, reason: QuantityReason,
        order: OrderDetails, channel: SubscriptionChannel,
    }
    DeactivationScheduled = "DeactivationScheduled" v 1 as DeactivationScheduledV1 {
        subscription: SubscriptionId, deactivate_on: Option<NaiveDate>,
    }
    TrialEnded = "TrialEnded" v 1 as TrialEndedV1 { subscription: SubscriptionId, converted: bool, ended_on: NaiveDate }
    SubscriptionEnded = "SubscriptionEnded" v 1 as SubscriptionEndedV1 { subscription: SubscriptionId, ended_on: NaiveDate }
    LicenceSettingsChanged = "LicenceSettingsChanged" v 1 as LicenceSettingsChangedV1 { pool: PoolKey, settings: LicenceSettings }
    LowLicenceAlertRaised = "LowLicenceAlertRaised" v 1 as LowLicenceAlertRaisedV1 { pool: PoolKey, available: u64, threshold: u32 }
    LicenceAlertCleared = "LicenceAlertCleared" v 1 as LicenceAlertClearedV1 { pool: PoolKey, available: u64, threshold: u32 }
    TopUpCapReached = "TopUpCapReached" v 1 as TopUpCapReachedV1 {
        pool: PoolKey, trigger_event: uuid::Uuid, needed: u64, allowed: u64, month_used: u64,
    }
    NotificationRecipientAdded = "NotificationRecipientAdded" v 1 as NotificationRecipientAddedV1 {
        recipient: RecipientId, email: String, kinds: Vec<NotificationKind>,
    }
    NotificationSettingsChanged = "NotificationSettingsChanged" v 1 as NotificationSettingsChangedV1 {
        recipient: RecipientId, kinds: Vec<NotificationKind>,
    }
    NotificationRecipientRemoved = "NotificationRecipientRemoved" v 1 as NotificationRecipientRemovedV1 { recipient: RecipientId }
    UserAdded = "UserAdded" v 2 as UserAddedV2 {
        user: UserId, org: OrgId, profile: UserProfile, status: UserStatus, source: UserSource,
    }
    UserProfileUpdated = "UserProfileUpdated" v 1 as UserProfileUpdatedV1 { user: UserId, profile: UserProfile }
    UserStatusChanged = "UserStatusChanged" v 1 as UserStatusChangedV1 {
        user: UserId, from: UserStatus, to: UserStatus, source: StatusChangeSource,
    }
    StatusAuthoritySet = "StatusAuthoritySet" v 1 as StatusAuthoritySetV1 { authority: StatusAuthority }
    ScimDefaultStatusSet = "ScimDefaultStatusSet" v 1 as ScimDefaultStatusSetV1 { status: UserStatus }
    SyncStarted = "SyncStarted" v 1 as SyncStartedV1 { tool: SyncTool }
    SyncStopped = "SyncStopped" v 1 as SyncStoppedV1 { tool: SyncTool }
    GroupCreated = "GroupCreated" v 1 as GroupCreatedV1 { group: GroupId, name: String }
    GroupMemberAdded = "GroupMemberAdded" v 1 as GroupMemberAddedV1 { group: GroupId, user: UserId }
    GroupMemberRemoved = "GroupMemberRemoved" v 1 as GroupMemberRemovedV1 { group: GroupId, user: UserId }
    ModuleAssigned = "ModuleAssigned" v 1 as ModuleAssignedV1 { sku: Sku, target: ModuleTarget }
    ModuleUnassigned = "ModuleUnassigned" v 1 as ModuleUnassignedV1 { sku: Sku, target: ModuleTarget }
    ReservationMade = "ReservationMade" v 1 as ReservationMadeV1 {
        reservation: ReservationId, user: UserId, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>,
    }
    RecurringReservationOccurred = "RecurringReservationOccurred" v 1 as RecurringReservationOccurredV1 {
        series: SeriesId, user: UserId, occurs_on: NaiveDate,
    }
    MembershipStarted = "MembershipStarted" v 1 as MembershipStartedV1 {
        membership: MembershipId, user: UserId, starts_on: NaiveDate, ends_on: Option<NaiveDate>,
    }
    MembershipEnded = "MembershipEnded" v 1 as MembershipEndedV1 { membership: MembershipId, ends_on: NaiveDate }
    PunchPassUsed = "PunchPassUsed" v 1 as PunchPassUsedV1 { use_id: PunchUseId, user: UserId, used_on: NaiveDate }
    NotificationSent = "NotificationSent" v 1 as NotificationSentV1 { notification: String, attempt: u32 }
    NotificationFailed = "NotificationFailed" v 1 as NotificationFailedV1 { notification: String, attempt: u32, reason: String }
    InvoiceIssued = "InvoiceIssued" v 1 as InvoiceIssuedV1 { invoice: Box<InvoiceDocument> }
    CreditNoteIssued = "CreditNoteIssued" v 1 as CreditNoteIssuedV1 { note: Box<NoteDocument> }
    DebitNoteIssued = "DebitNoteIssued" v 1 as DebitNoteIssuedV1 { note: Box<NoteDocument> }
}

/// The current schema version of an event type.
pub fn current_version(event_type: &str) -> Option<u32> {
    EVENT_TYPES.iter().find(|(t, _)| *t == event_type).map(|(_, v)| *v)
}

/// Decode a stored event, upcasting it from its schema version first.
pub fn decode(event_type: &str, schema_version: u32, payload: &str) -> Result<Event, DecodeError> {
    let current = current_version(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
    if schema_version == 0 || schema_version > current {
        return Err(DecodeError::UnknownVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
            current,
        });
    }
    if schema_version == current {
        // Today's schema: one pass from the text into the wire struct.
        return decode_current(event_type, Payload::Text(payload));
    }
    // An older schema: the upcasters work on a `serde_json::Value`.
    let value: serde_json::Value = serde_json::from_str(payload).map_err(|e| DecodeError::BadPayload {
        event_type: event_type.to_owned(),
        version: schema_version,
        message: e.to_string(),
    })?;
    let value = upcast(event_type, schema_version, value)?;
    decode_current(event_type, Payload::Upcast(value))
}

/// A payload at the current schema version of its type.
enum Payload<'a> {
    /// As stored.
    Text(&'a str),
    /// Made by the upcasters from an older version.
    Upcast(serde_json::Value),
}

/// Bring a payload from `version` up to the current schema, one step at a time.
///
/// The steps, each kept forever:
/// - `UserAdded` v1 → v2: v1 had one `name` (the full name) and the profile
///   fields at the top level, with no audience; v2 nests a `profile` with
///   first and last name and an audience. The full name is split at its first
///   space; v1 users were all internal (external users came with seed 004).
pub fn upcast(
    event_type: &str,
    mut version: u32,
    mut value: serde_json::Value,
) -> Result<serde_json::Value, DecodeError> {
    while version < current_version(event_type).unwrap_or(version) {
        value = match (event_type, version) {
            ("UserAdded", 1) => user_added_v1_to_v2(value).map_err(|message| DecodeError::BadPayload {
                event_type: event_type.to_owned(),
                version,
                message,
            })?,
            _ => {
                return Err(DecodeError::UnknownVersion {
                    event_type: event_type.to_owned(),
                    version,
                    current: current_version(event_type).unwrap_or(version),
                })
            }
        };
        version += 1;
    }
    Ok(value)
}

fn user_added_v1_to_v2(value: serde_json::Value) -> Result<serde_json::Value, String> {
    let serde_json::Value::Object(mut v1) = value else { return Err("payload is not an object".to_owned()) };
    let mut take = |k: &str| v1.remove(k).ok_or_else(|| format!("missing field `{k}`"));
    let name = take("name")?;
    let name = name.as_str().ok_or("field `name` is not text")?;
    let (first, last) = name.trim().split_once(' ').unwrap_or((name.trim(), ""));
    let profile = serde_json::json!({
        "first_name": first,
        "last_name": last.trim(),
        "email": take("email")?,
        "username": take("username")?,
        "kind": take("kind")?,
        "audience": "internal",
        "administrator": take("administrator")?,
    });
    Ok(serde_json::json!({
        "user": take("user")?,
        "org": take("org")?,
        "profile": profile,
        "status": take("status")?,
        "source": take("source")?,
    }))
}
