//! Command files: one JSON object per line, for `seatledger apply`.
//!
//! ```json
//! {"command": "add_user", "workspace": "acme", "at": "2024-03-01T09:00:00Z",
//!  "actor": "ops@acme.example", "channel": "portal", "command_id": "…",
//!  "user": "u1", "org": "hq", "profile": {"first_name": "Ada", …}}
//! ```
//!
//! The envelope keys (`command`, `workspace`, `at`, `actor`, `channel`,
//! `command_id`, `correlation_id`, `causation_id`) sit beside the command's
//! own fields. Unknown keys are refused, so a typo never goes unnoticed.
//! Decimals are strings ("29.95"), never JSON numbers.

use crate::wire::{wire_struct, FieldError, Wire};
use chrono::{DateTime, NaiveDate, Utc};
use seatledger_domain::*;
use serde::{Deserialize, Serialize};

/// A parsed command line: the command and who sent it how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEnvelope {
    /// Business time; the edge fills in "now" when it is absent.
    pub at: Option<DateTime<Utc>>,
    pub body: CommandBody,
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub command_id: Option<uuid::Uuid>,
    pub correlation_id: Option<uuid::Uuid>,
    pub causation_id: Option<uuid::Uuid>,
}

/// Why a command line was refused: the field at fault (if one) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CommandParseError {
    pub field: Option<String>,
    pub message: String,
}

impl CommandParseError {
    fn new(field: Option<&str>, message: impl Into<String>) -> Self {
        Self { field: field.map(str::to_owned), message: message.into() }
    }

    fn describe(&self) -> String {
        match &self.field {
            Some(f) => format!("field `{f}`: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl From<FieldError> for CommandParseError {
    fn from(e: FieldError) -> Self {
        let field = (!e.path.is_empty()).then(|| e.path_text());
        Self { field, message: e.message }
    }
}

const ENVELOPE_KEYS: &[&str] =
    &["command", "workspace", "at", "actor", "channel", "command_id", "correlation_id", "causation_id"];

wire_struct!(NewSubscription as NewSubscriptionRepr {
    subscription: SubscriptionId,
    account: AccountId,
    #[serde(default)] organization: Option<OrgId>,
    sku: Sku,
    #[serde(default)] parent: Option<SubscriptionId>,
    name: String,
    #[serde(default)] friendly_name: Option<String>,
    effective_start: NaiveDate,
    #[serde(default)] billable: Option<bool>,
    #[serde(default)] trial: bool,
    #[serde(default)] deactivate_on: Option<NaiveDate>,
    // `channel` is the envelope's (where the command came from); this is the
    // avenue the subscription was created through.
    #[serde(rename = "subscription_channel")] channel: SubscriptionChannel,
    quantity: u32,
    order: OrderDetails,
    price_list: PriceListId,
    currency: Currency,
    #[serde(default)] selling_per_unit: Option<rust_decimal::Decimal>,
    #[serde(default)] cost_per_unit: Option<rust_decimal::Decimal>,
    #[serde(default = "no_discount")] discount: Percent,
    #[serde(default)] taxable: bool,
    #[serde(default)] exempt_from_indexation: bool,
    #[serde(default)] description: Option<String>,
    #[serde(default)] provider: Option<ProviderDetails>,
    #[serde(default)] guest_selling_per_unit: Option<rust_decimal::Decimal>,
    #[serde(default)] counting_policy: Option<CountingPolicy>,
});

fn no_discount() -> crate::wire::DecimalText {
    crate::wire::DecimalText(rust_decimal::Decimal::ZERO)
}

macro_rules! command_schemas {
    (
        catalog { $($cname:literal => $cvariant:ident as $crepr:ident { $($(#[$cattr:meta])* $cfield:ident : $cty:ty),* $(,)? })* }
        workspace { $($wname:literal => $wvariant:ident as $wrepr:ident { $($(#[$wattr:meta])* $wfield:ident : $wty:ty),* $(,)? })* }
    ) => {
        $(
            #[derive(Debug, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            struct $crepr { $($(#[$cattr])* $cfield: <$cty as Wire>::Repr),* }
        )*
        $(
            #[derive(Debug, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            struct $wrepr { $($(#[$wattr])* $wfield: <$wty as Wire>::Repr),* }
        )*

        /// Every command name a command file may use.
        pub const COMMAND_NAMES: &[&str] = &[$($cname,)* "create_subscription", $($wname),*];

        fn parse_body(name: &str, workspace: Option<WorkspaceId>, fields: serde_json::Value) -> Result<CommandBody, CommandParseError> {
            let need_workspace = || workspace.clone().ok_or_else(|| CommandParseError::new(Some("workspace"), format!("is required for `{name}`")));
            match name {
                $($cname => {
                    if workspace.is_some() {
                        return Err(CommandParseError::new(Some("workspace"), format!("`{name}` is a catalog command and takes no workspace")));
                    }
                    let repr: $crepr = from_fields(fields)?;
                    Ok(CommandBody::Catalog(CatalogCommand::$cvariant {
                        $($cfield: <$cty as Wire>::from_wire(repr.$cfield).map_err(|e| e.at(stringify!($cfield)))?),*
                    }))
                })*
                "create_subscription" => {
                    let workspace = need_workspace()?;
                    let repr: NewSubscriptionRepr = from_fields(fields)?;
                    Ok(CommandBody::Workspace { workspace, command: WorkspaceCommand::CreateSubscription(Box::new(NewSubscription::from_wire(repr)?)) })
                }
                $($wname => {
                    let workspace = need_workspace()?;
                    #[allow(unused_variables)]
                    let repr: $wrepr = from_fields(fields)?;
                    Ok(CommandBody::Workspace { workspace, command: WorkspaceCommand::$wvariant {
                        $($wfield: <$wty as Wire>::from_wire(repr.$wfield).map_err(|e| e.at(stringify!($wfield)))?),*
                    }})
                })*
                other => Err(CommandParseError::new(Some("command"), format!("unknown command `{other}`; known commands: {}", COMMAND_NAMES.join(", ")))),
            }
        }

        fn encode_body(body: &CommandBody) -> Option<(&'static str, Option<&WorkspaceId>, serde_json::Value)> {
            let to_value = |v: Result<serde_json::Value, serde_json::Error>| v.expect("a wire struct always serializes");
            Some(match body {
                // Invoices and delivery records come from the ledger's own
                // processes, never from a command file.
                CommandBody::Invoices { .. } | CommandBody::Outbox { .. } => return None,
                $(CommandBody::Catalog(CatalogCommand::$cvariant { $($cfield),* }) => {
                    ($cname, None, to_value(serde_json::to_value($crepr { $($cfield: Wire::to_wire($cfield)),* })))
                })*
                CommandBody::Workspace { workspace, command: WorkspaceCommand::CreateSubscription(new) } => {
                    ("create_subscription", Some(workspace), to_value(serde_json::to_value(new.to_wire())))
                }
                $(CommandBody::Workspace { workspace, command: WorkspaceCommand::$wvariant { $($wfield),* } } => {
                    ($wname, Some(workspace), to_value(serde_json::to_value($wrepr { $($wfield: Wire::to_wire($wfield)),* })))
                })*
            })
        }
    };
}

command_schemas! {
    catalog {
        "define_product" => DefineProduct as DefineProductC {
            sku: Sku, name: String, kind: ProductKind, charge_model: ChargeModel,
            #[serde(default)] product_class: Option<String>,
            sales_unit: String,
            #[serde(default)] manufacturer: Option<String>,
        }
        "set_price" => SetPrice as SetPriceC { sku: Sku, price: PriceItem }
        "define_bundle" => DefineBundle as DefineBundleC {
            parent: Sku, #[serde(default)] children: Vec<Sku>, #[serde(default)] add_ons: Vec<Sku>,
        }
        "index_prices" => IndexPrices as IndexPricesC { percent: Percent, effective_on: NaiveDate }
    }
    workspace {
        "create_workspace" => CreateWorkspace as CreateWorkspaceC {
            name: String, billing_mode: BillingMode, created_on: NaiveDate,
            #[serde(default)] legacy_plan: Option<LegacyPlan>,
        }
        "change_billing_mode" => ChangeBillingMode as ChangeBillingModeC { billing_mode: BillingMode }
        "set_billing_info" => SetBillingInfo as SetBillingInfoC { info: BillingInfo }
        "migrate_to_modules" => MigrateToModules as MigrateToModulesC {}
        "activate_billing" => ActivateBilling as ActivateBillingC {}
        "open_billing_account" => OpenBillingAccount as OpenBillingAccountC {
            account: AccountId, name: String, currency: Currency,
            #[serde(default = "no_discount")] tax_rate: Percent,
            #[serde(default)] billing_contract: Option<String>,
        }
        "create_organization" => CreateOrganization as CreateOrganizationC {
            org: OrgId, name: String,
            #[serde(default)] parent: Option<OrgId>,
            #[serde(default)] account: Option<AccountId>,
        }
        "change_quantity" => ChangeQuantity as ChangeQuantityC {
            subscription: SubscriptionId, quantity: u32, order: OrderDetails,
            #[serde(rename = "subscription_channel")] channel: SubscriptionChannel,
        }
        "add_licences" => AddLicences as AddLicencesC {
            sku: Sku,
            #[serde(default)] organization: Option<OrgId>,
            #[serde(default)] subscription: Option<SubscriptionId>,
            quantity: u32, order: OrderDetails,
        }
        "top_up_licences" => TopUpLicences as TopUpLicencesC {
            sku: Sku,
            #[serde(default)] organization: Option<OrgId>,
            #[serde(default)] subscription: Option<SubscriptionId>,
            quantity: u32, trigger_event: uuid::Uuid,
        }
        "auto_top_up" => AutoTopUp as AutoTopUpC {
            sku: Sku, #[serde(default)] organization: Option<OrgId>, trigger_event: uuid::Uuid,
        }
        "schedule_deactivation" => ScheduleDeactivation as ScheduleDeactivationC {
            subscription: SubscriptionId, #[serde(default)] deactivate_on: Option<NaiveDate>,
        }
        "end_trial" => EndTrial as EndTrialC { subscription: SubscriptionId, converted: bool }
        "end_subscription" => EndSubscription as EndSubscriptionC { subscription: SubscriptionId, ended_on: NaiveDate }
        "configure_licences" => ConfigureLicences as ConfigureLicencesC {
            sku: Sku, #[serde(default)] organization: Option<OrgId>, settings: LicenceSettings,
        }
        "add_notification_recipient" => AddNotificationRecipient as AddNotificationRecipientC {
            recipient: RecipientId, email: String, kinds: Vec<NotificationKind>,
        }
        "change_notification_settings" => ChangeNotificationSettings as ChangeNotificationSettingsC {
            recipient: RecipientId, kinds: Vec<NotificationKind>,
        }
        "remove_notification_recipient" => RemoveNotificationRecipient as RemoveNotificationRecipientC { recipient: RecipientId }
        "add_user" => AddUser as AddUserC {
            user: UserId, org: OrgId, profile: UserProfile,
            #[serde(default)] status: Option<UserStatus>,
            #[serde(default = "manual")] source: UserSource,
        }
        "update_user_profile" => UpdateUserProfile as UpdateUserProfileC { user: UserId, profile: UserProfile }
        "change_user_status" => ChangeUserStatus as ChangeUserStatusC {
            user: UserId, status: UserStatus, #[serde(default = "manual")] source: StatusChangeSource,
        }
        "scim_deactivate_user" => ScimDeactivateUser as ScimDeactivateUserC { user: UserId }
        "set_status_authority" => SetStatusAuthority as SetStatusAuthorityC { authority: StatusAuthority }
        "set_scim_default_status" => SetScimDefaultStatus as SetScimDefaultStatusC { status: UserStatus }
        "start_sync" => StartSync as StartSyncC { tool: SyncTool }
        "stop_sync" => StopSync as StopSyncC {}
        "create_group" => CreateGroup as CreateGroupC { group: GroupId, name: String }
        "add_group_member" => AddGroupMember as AddGroupMemberC { group: GroupId, user: UserId }
        "remove_group_member" => RemoveGroupMember as RemoveGroupMemberC { group: GroupId, user: UserId }
        "assign_module" => AssignModule as AssignModuleC { sku: Sku, target: ModuleTarget }
        "unassign_module" => UnassignModule as UnassignModuleC { sku: Sku, target: ModuleTarget }
        "record_reservation" => RecordReservation as RecordReservationC {
            reservation: ReservationId, user: UserId, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>,
        }
        "record_recurring_occurrence" => RecordRecurringOccurrence as RecordRecurringOccurrenceC {
            series: SeriesId, user: UserId, occurs_on: NaiveDate,
        }
        "start_membership" => StartMembership as StartMembershipC {
            membership: MembershipId, user: UserId, starts_on: NaiveDate, #[serde(default)] ends_on: Option<NaiveDate>,
        }
        "end_membership" => EndMembership as EndMembershipC { membership: MembershipId, ends_on: NaiveDate }
        "record_punch_pass_use" => RecordPunchPassUse as RecordPunchPassUseC { use_id: PunchUseId, user: UserId, used_on: NaiveDate }
    }
}

fn manual() -> smol_str::SmolStr {
    smol_str::SmolStr::new_static("manual")
}

/// Deserialize the command's own fields, naming the field serde complains about.
fn from_fields<T: serde::de::DeserializeOwned>(fields: serde_json::Value) -> Result<T, CommandParseError> {
    serde_path_to_error::deserialize(fields).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde names missing and unknown fields inside backticks; lift the
        // name out so the error points at it, below the path where it was.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.split_once(p).and_then(|(_, rest)| rest.split_once('`')).map(|(f, _)| f.to_owned()));
        let field = match (path.as_str(), named) {
            (".", None) => None,
            (".", Some(n)) => Some(n),
            (p, Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p.to_owned()),
            (p, Some(n)) => Some(format!("{p}.{n}")),
            (p, None) => Some(p.to_owned()),
        };
        CommandParseError { field, message }
    })
}

fn take_text(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<String>, CommandParseError> {
    match map.remove(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(CommandParseError::new(Some(key), format!("expected text, found {other}"))),
    }
}

fn take_uuid(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<uuid::Uuid>, CommandParseError> {
    take_text(map, key)?
        .map(|t| {
            uuid::Uuid::parse_str(&t)
                .map_err(|e| CommandParseError::new(Some(key), format!("{t:?} is not a uuid: {e}")))
        })
        .transpose()
}

/// Parse one line of a command file.
pub fn parse_command(line: &str) -> Result<CommandEnvelope, CommandParseError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| CommandParseError::new(None, format!("malformed JSON: {e}")))?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(CommandParseError::new(None, "a command line must be a JSON object"));
    };
    let name = take_text(&mut map, "command")?.ok_or_else(|| CommandParseError::new(Some("command"), "is missing"))?;
    let workspace = take_text(&mut map, "workspace")?
        .map(|w| WorkspaceId::new(w).map_err(|e| CommandParseError::new(Some("workspace"), e.why)))
        .transpose()?;
    let at = take_text(&mut map, "at")?
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| CommandParseError::new(Some("at"), format!("{t:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()?;
    let actor = take_text(&mut map, "actor")?;
    let channel = take_text(&mut map, "channel")?;
    let command_id = take_uuid(&mut map, "command_id")?;
    let correlation_id = take_uuid(&mut map, "correlation_id")?;
    let causation_id = take_uuid(&mut map, "causation_id")?;
    debug_assert!(ENVELOPE_KEYS.iter().all(|k| !map.contains_key(*k)));
    let body = parse_body(&name, workspace, serde_json::Value::Object(map))?;
    Ok(CommandEnvelope { at, body, actor, channel, command_id, correlation_id, causation_id })
}

/// Write a command as one line of a command file (the inverse of
/// [`parse_command`]); `None` for invoice commands, which have no file form.
pub fn encode_command(envelope: &CommandEnvelope) -> Option<String> {
    let (name, workspace, fields) = encode_body(&envelope.body)?;
    let mut map = serde_json::Map::new();
    map.insert("command".into(), name.into());
    if let Some(w) = workspace {
        map.insert("workspace".into(), w.to_string().into());
    }
    if let Some(at) = envelope.at {
        map.insert("at".into(), at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into());
    }
    for (k, v) in [("actor", &envelope.actor), ("channel", &envelope.channel)] {
        if let Some(v) = v {
            map.insert(k.into(), v.clone().into());
        }
    }
    for (k, v) in [
        ("command_id", envelope.command_id),
        ("correlation_id", envelope.correlation_id),
        ("causation_id", envelope.causation_id),
    ] {
        if let Some(v) = v {
            map.insert(k.into(), v.to_string().into());
        }
    }
    if let serde_json::Value::Object(fields) = fields {
        map.extend(fields);
    }
    Some(serde_json::Value::Object(map).to_string())
}
