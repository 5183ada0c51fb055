//! How domain values look on the wire. Each domain type names its JSON
//! representation (`Repr`) and converts both ways; conversion back checks the
//! value again, so a stored or typed-in value passes the same checks as one
//! built in code. Errors carry the path of the field at fault.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use seatledger_domain::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// A value that failed its checks, with the path of the field that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field names from the outside in, e.g. `["profile", "email"]`.
    pub path: Vec<String>,
    pub message: String,
}

impl FieldError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { path: vec![], message: message.into() }
    }

    /// Prefix the path with the field that contains the value.
    pub fn at(mut self, field: &str) -> Self {
        self.path.insert(0, field.to_owned());
        self
    }

    pub fn path_text(&self) -> String {
        self.path.join(".")
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "field `{}`: {}", self.path_text(), self.message)
        }
    }
}

impl From<InvalidValue> for FieldError {
    fn from(e: InvalidValue) -> Self {
        FieldError::new(e.to_string())
    }
}

/// A domain value with a JSON representation.
pub trait Wire: Sized {
    type Repr: Serialize + DeserializeOwned;
    fn to_wire(&self) -> Self::Repr;
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError>;
}

macro_rules! identity_wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            type Repr = $t;
            fn to_wire(&self) -> Self::Repr { self.clone() }
            fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> { Ok(repr) }
        }
    )*};
}
identity_wire!(String, bool, u32, u64, uuid::Uuid, NaiveDate);

impl Wire for DateTime<Utc> {
    type Repr = WireTime;
    fn to_wire(&self) -> Self::Repr {
        WireTime(*self)
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        Ok(repr.0)
    }
}

/// A point in time on the wire: RFC 3339 text, written exactly as chrono
/// writes a `DateTime<Utc>`. Read with chrono's strict RFC 3339 parser,
/// which is several times cheaper than the relaxed one chrono's serde
/// support uses, and with the relaxed one only when the strict one refuses:
/// the same texts are accepted as before, and refused with the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireTime(pub DateTime<Utc>);

impl Serialize for WireTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WireTime;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 date and time")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WireTime, E> {
                match DateTime::parse_from_rfc3339(text) {
                    Ok(t) => Ok(WireTime(t.with_timezone(&Utc))),
                    Err(_) => {
                        // What chrono's own `Deserialize` does, for the texts
                        // only its relaxed parser takes, and for its message.
                        let relaxed = serde::de::value::StrDeserializer::<E>::new(text);
                        DateTime::<Utc>::deserialize(relaxed).map(WireTime)
                    }
                }
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<T: Wire> Wire for Option<T> {
    type Repr = Option<T::Repr>;
    fn to_wire(&self) -> Self::Repr {
        self.as_ref().map(Wire::to_wire)
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        repr.map(T::from_wire).transpose()
    }
}

impl<T: Wire> Wire for Vec<T> {
    type Repr = Vec<T::Repr>;
    fn to_wire(&self) -> Self::Repr {
        self.iter().map(Wire::to_wire).collect()
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        repr.into_iter().enumerate().map(|(i, r)| T::from_wire(r).map_err(|e| e.at(&format!("[{i}]")))).collect()
    }
}

impl<T: Wire> Wire for Box<T> {
    type Repr = T::Repr;
    fn to_wire(&self) -> Self::Repr {
        (**self).to_wire()
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        T::from_wire(repr).map(Box::new)
    }
}

/// A decimal written as a JSON string ("29.95"), never as a JSON number:
/// a number would pass through a binary float and could lose digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalText(pub Decimal);

impl Serialize for DecimalText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DecimalText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a decimal written as a string, such as \"29.95\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DecimalText, E> {
                Decimal::from_str_exact(v.trim())
                    .map(DecimalText)
                    .map_err(|_| E::custom(format!("{v:?} is not a decimal number")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DecimalText, E> {
                Err(E::custom(format!(
                    "{v} is a JSON number; write decimals as strings, such as \"{v}\", so no digit is lost"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DecimalText, E> {
                Ok(DecimalText(Decimal::from(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DecimalText, E> {
                Ok(DecimalText(Decimal::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl Wire for Decimal {
    type Repr = DecimalText;
    fn to_wire(&self) -> Self::Repr {
        DecimalText(*self)
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        Ok(repr.0)
    }
}

// Ids and enum names are short texts: read into a `SmolStr`, which keeps
// up to 23 bytes inline, they cost no allocation between the payload and
// the domain value.
macro_rules! text_wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            type Repr = SmolStr;
            fn to_wire(&self) -> Self::Repr { self.to_smol_str() }
            fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
                <$t>::new(repr).map_err(FieldError::from)
            }
        }
    )*};
}
text_wire!(
    WorkspaceId,
    AccountId,
    OrgId,
    UserId,
    GroupId,
    Sku,
    PriceListId,
    SubscriptionId,
    RecipientId,
    ReservationId,
    SeriesId,
    MembershipId,
    PunchUseId
);

macro_rules! enum_wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            type Repr = SmolStr;
            fn to_wire(&self) -> Self::Repr { SmolStr::new_static(self.as_str()) }
            fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
                <$t>::parse(&repr).map_err(FieldError::from)
            }
        }
    )*};
}
enum_wire!(
    BillingMode,
    LegacyPlan,
    UserKind,
    Audience,
    UserStatus,
    StatusAuthority,
    SyncTool,
    UserSource,
    StatusChangeSource,
    ProductKind,
    ChargeModel,
    CountingPolicy,
    SubscriptionChannel,
    ProvisioningFrequency,
    BundleRole,
    NotificationKind
);

impl Wire for Currency {
    type Repr = String;
    fn to_wire(&self) -> Self::Repr {
        self.code().to_owned()
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        Currency::from_code(&repr).map_err(FieldError::from)
    }
}

impl Wire for Percent {
    type Repr = DecimalText;
    fn to_wire(&self) -> Self::Repr {
        DecimalText(self.value())
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        Percent::new(repr.0, "percentage").map_err(FieldError::from)
    }
}

/// Money on the wire: `{"amount": "29.95", "currency": "EUR"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyRepr {
    pub amount: DecimalText,
    pub currency: String,
}

impl Wire for Money {
    type Repr = MoneyRepr;
    fn to_wire(&self) -> Self::Repr {
        MoneyRepr { amount: DecimalText(self.amount), currency: self.currency.code().to_owned() }
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        let currency = Currency::from_code(&repr.currency).map_err(|e| FieldError::from(e).at("currency"))?;
        Money::price(repr.amount.0, currency, "amount").map_err(|e| FieldError::from(e).at("amount"))
    }
}

/// Declare the wire form of a domain struct, field by field. Attributes on a
/// field (such as `#[serde(default)]`) go onto the wire struct.
macro_rules! wire_struct {
    ($domain:ty as $repr:ident { $($(#[$attr:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $repr { $($(#[$attr])* pub $field: <$ty as Wire>::Repr),* }

        impl Wire for $domain {
            type Repr = $repr;
            fn to_wire(&self) -> Self::Repr {
                $repr { $($field: Wire::to_wire(&self.$field)),* }
            }
            fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
                Ok(Self { $($field: <$ty as Wire>::from_wire(repr.$field).map_err(|e| e.at(stringify!($field)))?),* })
            }
        }
    };
}
pub(crate) use wire_struct;

wire_struct!(BillingInfo as BillingInfoRepr {
    #[serde(default)] company_name: String,
    #[serde(default)] reference_number: String,
    #[serde(default)] customer_type: String,
    #[serde(default)] industry: String,
});
wire_struct!(PriceItem as PriceItemRepr {
    price_list: PriceListId,
    selling_per_unit: Money,
    cost_per_unit: Money,
    #[serde(default)] guest_selling_per_unit: Option<Money>,
    #[serde(default)] counting_policy: Option<CountingPolicy>,
});
wire_struct!(OrderDetails as OrderDetailsRepr {
    #[serde(default)] order_reference: Option<String>,
    #[serde(default)] order_date: Option<NaiveDate>,
    ordered_by: String,
    #[serde(default)] order_thru: Option<String>,
});
wire_struct!(ProviderDetails as ProviderDetailsRepr {
    provider: String,
    #[serde(default)] provider_account: Option<String>,
    #[serde(default)] provisioning_frequency: Option<ProvisioningFrequency>,
    #[serde(default)] provider_subscription_id: Option<String>,
    #[serde(default)] auto_renew: bool,
    #[serde(default)] part_number: Option<String>,
    #[serde(default)] order_id: Option<String>,
    #[serde(default)] commitment_end_date: Option<NaiveDate>,
    #[serde(default)] manufacturer: Option<String>,
});
wire_struct!(TopUpSettings as TopUpSettingsRepr {
    vacant_seat_threshold: u32,
    max_per_top_up: u32,
    max_per_month: u32,
});
wire_struct!(LicenceSettings as LicenceSettingsRepr {
    #[serde(default)] alert_threshold: Option<u32>,
    #[serde(default)] top_up: Option<TopUpSettings>,
});
wire_struct!(UserProfile as UserProfileRepr {
    first_name: String,
    last_name: String,
    email: String,
    username: String,
    #[serde(default = "regular")] kind: UserKind,
    #[serde(default = "internal")] audience: Audience,
    #[serde(default)] administrator: bool,
});
wire_struct!(SubscriptionTerms as SubscriptionTermsRepr {
    subscription: SubscriptionId,
    account: AccountId,
    organization: Option<OrgId>,
    sku: Sku,
    parent: Option<SubscriptionId>,
    bundle_role: BundleRole,
    name: String,
    friendly_name: Option<String>,
    effective_start: NaiveDate,
    billable: bool,
    trial: bool,
    deactivate_on: Option<NaiveDate>,
    channel: SubscriptionChannel,
    quantity: u32,
    order: OrderDetails,
    price_list: PriceListId,
    selling_per_unit: Money,
    cost_per_unit: Money,
    discount: Percent,
    taxable: bool,
    exempt_from_indexation: bool,
    product_class: Option<String>,
    sales_unit: String,
    description: Option<String>,
    provider: Option<ProviderDetails>,
    guest_selling_per_unit: Option<Money>,
    counting_policy: Option<CountingPolicy>,
});

impl Wire for Month {
    type Repr = String;
    fn to_wire(&self) -> Self::Repr {
        self.to_string()
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        Month::parse(&repr).map_err(FieldError::from)
    }
}

/// An amount that may be negative (note lines, differences), with its currency.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedMoneyRepr {
    pub amount: DecimalText,
    pub currency: String,
}

/// Money inside invoices and notes: may be negative, must be in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedMoney(pub Money);

impl Wire for SignedMoney {
    type Repr = SignedMoneyRepr;
    fn to_wire(&self) -> Self::Repr {
        SignedMoneyRepr { amount: DecimalText(self.0.amount), currency: self.0.currency.code().to_owned() }
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        let currency = Currency::from_code(&repr.currency).map_err(|e| FieldError::from(e).at("currency"))?;
        Money::price(repr.amount.0.abs(), currency, "amount").map_err(|e| FieldError::from(e).at("amount"))?;
        Ok(SignedMoney(Money::new(repr.amount.0, currency)))
    }
}

enum_wire!(NoteKind);

wire_struct!(LineInput as LineInputRepr { name: String, value: String });

/// Invoice lines carry signed money (a note line may be negative).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceLineRepr {
    pub key: String,
    pub description: String,
    pub sku: Option<SmolStr>,
    pub subscription: Option<SmolStr>,
    pub rule: String,
    pub formula: String,
    pub quantity: DecimalText,
    pub unit_price: MoneyRepr,
    pub discount: DecimalText,
    pub amount: SignedMoneyRepr,
    pub taxable: bool,
    pub inputs: Vec<LineInputRepr>,
    pub events: Vec<uuid::Uuid>,
}

impl Wire for InvoiceLine {
    type Repr = InvoiceLineRepr;
    fn to_wire(&self) -> Self::Repr {
        InvoiceLineRepr {
            key: self.key.clone(),
            description: self.description.clone(),
            sku: self.sku.to_wire(),
            subscription: self.subscription.to_wire(),
            rule: self.rule.clone(),
            formula: self.formula.clone(),
            quantity: DecimalText(self.quantity),
            unit_price: self.unit_price.to_wire(),
            discount: self.discount.to_wire(),
            amount: SignedMoney(self.amount).to_wire(),
            taxable: self.taxable,
            inputs: self.inputs.to_wire(),
            events: self.events.clone(),
        }
    }
    fn from_wire(r: Self::Repr) -> Result<Self, FieldError> {
        Ok(InvoiceLine {
            key: r.key,
            description: r.description,
            sku: Option::<Sku>::from_wire(r.sku).map_err(|e| e.at("sku"))?,
            subscription: Option::<SubscriptionId>::from_wire(r.subscription).map_err(|e| e.at("subscription"))?,
            rule: r.rule,
            formula: r.formula,
            quantity: r.quantity.0,
            unit_price: Money::from_wire(r.unit_price).map_err(|e| e.at("unit_price"))?,
            discount: Percent::from_wire(r.discount).map_err(|e| e.at("discount"))?,
            amount: SignedMoney::from_wire(r.amount).map_err(|e| e.at("amount"))?.0,
            taxable: r.taxable,
            inputs: Vec::<LineInput>::from_wire(r.inputs).map_err(|e| e.at("inputs"))?,
            events: r.events,
        })
    }
}

/// Tax lines likewise carry signed money (a note may lower tax).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxLineRepr {
    pub rate: DecimalText,
    pub taxable_subtotal: SignedMoneyRepr,
    pub tax: SignedMoneyRepr,
}

impl Wire for TaxLine {
    type Repr = TaxLineRepr;
    fn to_wire(&self) -> Self::Repr {
        TaxLineRepr {
            rate: self.rate.to_wire(),
            taxable_subtotal: SignedMoney(self.taxable_subtotal).to_wire(),
            tax: SignedMoney(self.tax).to_wire(),
        }
    }
    fn from_wire(r: Self::Repr) -> Result<Self, FieldError> {
        Ok(TaxLine {
            rate: Percent::from_wire(r.rate).map_err(|e| e.at("rate"))?,
            taxable_subtotal: SignedMoney::from_wire(r.taxable_subtotal).map_err(|e| e.at("taxable_subtotal"))?.0,
            tax: SignedMoney::from_wire(r.tax).map_err(|e| e.at("tax"))?.0,
        })
    }
}

/// Invoice and note totals may be negative in notes: a wrapper keeps the
/// document structs declarative.
macro_rules! document_wire {
    ($domain:ty as $repr:ident { $($field:ident : $ty:ty => $how:ident),* $(,)? }) => {
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $repr { $(pub $field: document_wire!(@repr $ty, $how)),* }

        impl Wire for $domain {
            type Repr = $repr;
            fn to_wire(&self) -> Self::Repr {
                $repr { $($field: document_wire!(@to self.$field, $ty, $how)),* }
            }
            fn from_wire(r: Self::Repr) -> Result<Self, FieldError> {
                Ok(Self { $($field: document_wire!(@from r.$field, $ty, $how, stringify!($field))),* })
            }
        }
    };
    (@repr $ty:ty, plain) => { <$ty as Wire>::Repr };
    (@repr $ty:ty, signed) => { SignedMoneyRepr };
    (@to $v:expr, $ty:ty, plain) => { Wire::to_wire(&$v) };
    (@to $v:expr, $ty:ty, signed) => { SignedMoney($v).to_wire() };
    (@from $v:expr, $ty:ty, plain, $name:expr) => { <$ty as Wire>::from_wire($v).map_err(|e| e.at($name))? };
    (@from $v:expr, $ty:ty, signed, $name:expr) => { SignedMoney::from_wire($v).map_err(|e| e.at($name))?.0 };
}

document_wire!(InvoiceDocument as InvoiceDocumentRepr {
    number: String => plain,
    workspace: WorkspaceId => plain,
    account: AccountId => plain,
    account_name: String => plain,
    period: Month => plain,
    currency: Currency => plain,
    billing_info: BillingInfo => plain,
    lines: Vec<InvoiceLine> => plain,
    subtotal: Money => signed,
    taxes: Vec<TaxLine> => plain,
    total: Money => signed,
    computed_at_position: u64 => plain,
    inputs_digest: String => plain,
});

document_wire!(NoteDocument as NoteDocumentRepr {
    number: String => plain,
    kind: NoteKind => plain,
    original: String => plain,
    workspace: WorkspaceId => plain,
    account: AccountId => plain,
    period: Month => plain,
    currency: Currency => plain,
    lines: Vec<InvoiceLine> => plain,
    subtotal: Money => signed,
    taxes: Vec<TaxLine> => plain,
    total: Money => signed,
    computed_at_position: u64 => plain,
    inputs_digest: String => plain,
});

fn regular() -> SmolStr {
    SmolStr::new_static(UserKind::Regular.as_str())
}

fn internal() -> SmolStr {
    SmolStr::new_static(Audience::Internal.as_str())
}

/// A pool on the wire: `{"sku": "HYBRID", "organization": "us"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolKeyRepr {
    pub sku: SmolStr,
    #[serde(default)]
    pub organization: Option<SmolStr>,
}

impl Wire for PoolKey {
    type Repr = PoolKeyRepr;
    fn to_wire(&self) -> Self::Repr {
        PoolKeyRepr {
            sku: self.sku.to_wire(),
            organization: match &self.scope {
                PoolScope::Workspace => None,
                PoolScope::Organization(o) => Some(o.to_wire()),
            },
        }
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        let sku = Sku::from_wire(repr.sku).map_err(|e| e.at("sku"))?;
        let scope = match repr.organization {
            None => PoolScope::Workspace,
            Some(o) => PoolScope::Organization(OrgId::from_wire(o).map_err(|e| e.at("organization"))?),
        };
        Ok(PoolKey { scope, sku })
    }
}

/// A module target on the wire: `{"user": "u1"}` or `{"group": "g1"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModuleTargetRepr {
    User(SmolStr),
    Group(SmolStr),
}

impl Wire for ModuleTarget {
    type Repr = ModuleTargetRepr;
    fn to_wire(&self) -> Self::Repr {
        match self {
            ModuleTarget::User(u) => ModuleTargetRepr::User(u.to_wire()),
            ModuleTarget::Group(g) => ModuleTargetRepr::Group(g.to_wire()),
        }
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        Ok(match repr {
            ModuleTargetRepr::User(u) => ModuleTarget::User(UserId::from_wire(u).map_err(|e| e.at("user"))?),
            ModuleTargetRepr::Group(g) => ModuleTarget::Group(GroupId::from_wire(g).map_err(|e| e.at("group"))?),
        })
    }
}

/// Why a quantity changed: `{"kind": "automatic_top_up", "trigger_event": "…"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantityReasonRepr {
    pub kind: SmolStr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_event: Option<uuid::Uuid>,
}

impl Wire for QuantityReason {
    type Repr = QuantityReasonRepr;
    fn to_wire(&self) -> Self::Repr {
        let trigger_event = match self {
            QuantityReason::AutomaticTopUp { trigger_event } => Some(*trigger_event),
            _ => None,
        };
        QuantityReasonRepr { kind: SmolStr::new_static(self.as_str()), trigger_event }
    }
    fn from_wire(repr: Self::Repr) -> Result<Self, FieldError> {
        match (repr.kind.as_str(), repr.trigger_event) {
            ("order", None) => Ok(QuantityReason::Order),
            ("manual_addition", None) => Ok(QuantityReason::ManualAddition),
            ("automatic_top_up", Some(trigger_event)) => Ok(QuantityReason::AutomaticTopUp { trigger_event }),
            ("automatic_top_up", None) => {
                Err(FieldError::new("an automatic top-up needs its trigger_event").at("trigger_event"))
            }
            (kind, _) => {
                Err(FieldError::new(format!("{kind:?} is not one of: order, manual_addition, automatic_top_up"))
                    .at("kind"))
            }
        }
    }
}
