//! Deciding commands: pure functions from (state, command) to new events or
//! a typed refusal. Nothing here reads a clock, touches IO or makes an id.

use crate::calendar::Month;
use crate::commands::*;
use crate::error::{DomainError, InvalidValue};
use crate::events::Event;
use crate::ids::*;
use crate::model::*;
use crate::money::Money;
use crate::state::{Catalog, Workspace};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// What a decision may look at: the catalog, and the workspace the command
/// is for (`None` when its stream does not exist yet).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub catalog: &'a Catalog,
    pub workspace: Option<&'a Workspace>,
    /// The workspace's invoices stream, for invoice commands.
    pub invoices: Option<&'a crate::invoice::InvoiceBook>,
    /// The workspace's outbox stream, for delivery records.
    pub outbox: Option<&'a crate::outbox::OutboxBook>,
}

/// Decide a command. The events returned belong to the command's stream.
pub fn decide(view: &View<'_>, command: &Command) -> Result<Vec<Event>, DomainError> {
    match &command.body {
        CommandBody::Catalog(cmd) => decide_catalog(view.catalog, cmd),
        CommandBody::Workspace { workspace, command: cmd } => {
            decide_workspace(view.catalog, view.workspace, workspace, command.at, cmd)
        }
        CommandBody::Outbox { workspace, command: cmd } => {
            if view.workspace.is_none() {
                return Err(DomainError::WorkspaceNotFound(workspace.clone()));
            }
            let empty = crate::outbox::OutboxBook::default();
            crate::outbox::decide_outbox(view.outbox.unwrap_or(&empty), workspace, cmd)
        }
        CommandBody::Invoices { workspace, command: cmd } => {
            if view.workspace.is_none() {
                return Err(DomainError::WorkspaceNotFound(workspace.clone()));
            }
            let empty = crate::invoice::InvoiceBook::default();
            crate::invoice::decide_invoices(view.invoices.unwrap_or(&empty), workspace, command.at, cmd)
        }
    }
}

fn non_empty(text: &str, what: &'static str) -> Result<(), DomainError> {
    if text.trim().is_empty() {
        return Err(InvalidValue::new(what, "must not be empty").into());
    }
    Ok(())
}

fn quantity_in_range(quantity: u32, what: &'static str) -> Result<(), DomainError> {
    if quantity > MAX_QUANTITY {
        return Err(InvalidValue::new(what, format!("{quantity} is above the limit of {MAX_QUANTITY}")).into());
    }
    Ok(())
}

/// Decide a catalog command.
pub fn decide_catalog(catalog: &Catalog, cmd: &CatalogCommand) -> Result<Vec<Event>, DomainError> {
    match cmd {
        CatalogCommand::DefineProduct { sku, name, kind, charge_model, product_class, sales_unit, manufacturer } => {
            if catalog.products.contains_key(sku) {
                return Err(DomainError::ProductExists(sku.clone()));
            }
            non_empty(name, "product name")?;
            non_empty(sales_unit, "sales unit")?;
            Ok(vec![Event::ProductDefined {
                sku: sku.clone(),
                name: name.clone(),
                kind: *kind,
                charge_model: *charge_model,
                product_class: product_class.clone(),
                sales_unit: sales_unit.clone(),
                manufacturer: manufacturer.clone(),
            }])
        }
        CatalogCommand::SetPrice { sku, price } => {
            if !catalog.products.contains_key(sku) {
                return Err(DomainError::ProductNotFound(sku.clone()));
            }
            let currency = price.currency();
            let same = |m: &Money, what: &'static str| {
                if m.currency != currency {
                    Err(InvalidValue::new(what, format!("is in {} but the price is in {currency}", m.currency)))
                } else {
                    Money::price(m.amount, m.currency, what).map(|_| ())
                }
            };
            same(&price.selling_per_unit, "selling price per unit")?;
            same(&price.cost_per_unit, "cost price per unit")?;
            if let Some(g) = &price.guest_selling_per_unit {
                same(g, "guest selling price per unit")?;
            }
            Ok(vec![Event::PriceSet { sku: sku.clone(), price: price.clone() }])
        }
        CatalogCommand::DefineBundle { parent, children, add_ons } => {
            if !catalog.products.contains_key(parent) {
                return Err(DomainError::ProductNotFound(parent.clone()));
            }
            let mut seen = BTreeSet::new();
            for child in children.iter().chain(add_ons) {
                if !catalog.products.contains_key(child) {
                    return Err(DomainError::ProductNotFound(child.clone()));
                }
                let why = if child == parent {
                    Some("a bundle cannot include itself")
                } else if !seen.insert(child) {
                    Some("it is listed twice")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(DomainError::InvalidBundle {
                        parent: parent.clone(),
                        child: child.clone(),
                        why: why.to_owned(),
                    });
                }
            }
            Ok(vec![Event::BundleDefined {
                parent: parent.clone(),
                children: children.clone(),
                add_ons: add_ons.clone(),
            }])
        }
        CatalogCommand::IndexPrices { percent, effective_on } => {
            if percent.value().is_zero() {
                return Err(InvalidValue::new("indexation", "of 0% changes nothing").into());
            }
            if catalog.indexations.iter().any(|(d, _)| d == effective_on) {
                return Err(InvalidValue::new("indexation", format!("on {effective_on} was already applied")).into());
            }
            Ok(vec![Event::PricesIndexed { percent: *percent, effective_on: *effective_on }])
        }
    }
}

/// Seat and licence movements one decision causes, per pool.
#[derive(Debug, Default)]
struct PoolEffects {
    /// (seats gained or lost, licences gained or lost today)
    changes: BTreeMap<PoolKey, (i64, i64)>,
}

impl PoolEffects {
    fn seats(&mut self, pool: PoolKey, delta: i64) {
        self.changes.entry(pool).or_default().0 += delta;
    }
    fn total(&mut self, pool: PoolKey, delta: i64) {
        self.changes.entry(pool).or_default().1 += delta;
    }
    fn touch(&mut self, pool: PoolKey) {
        self.changes.entry(pool).or_default();
    }
}

fn apply_delta(value: u64, delta: i64) -> u64 {
    u64::try_from(i128::from(value) + i128::from(delta)).unwrap_or(0)
}

/// Decide a command in one workspace's stream.
pub fn decide_workspace(
    catalog: &Catalog,
    state: Option<&Workspace>,
    id: &WorkspaceId,
    at: DateTime<Utc>,
    cmd: &WorkspaceCommand,
) -> Result<Vec<Event>, DomainError> {
    let ws = match (state, cmd) {
        (None, WorkspaceCommand::CreateWorkspace { name, billing_mode, created_on, legacy_plan }) => {
            non_empty(name, "workspace name")?;
            let legacy = *created_on < modules_start_date();
            match (legacy, legacy_plan) {
                (true, None) => return Err(DomainError::LegacyPlanRequired(id.clone())),
                (false, Some(_)) => return Err(DomainError::LegacyPlanNotAllowed(id.clone())),
                _ => {}
            }
            return Ok(vec![Event::WorkspaceCreated {
                workspace: id.clone(),
                name: name.clone(),
                billing_mode: *billing_mode,
                created_on: *created_on,
                legacy_plan: *legacy_plan,
            }]);
        }
        (Some(_), WorkspaceCommand::CreateWorkspace { .. }) => return Err(DomainError::WorkspaceExists(id.clone())),
        (None, _) => return Err(DomainError::WorkspaceNotFound(id.clone())),
        (Some(ws), _) => ws,
    };
    let today = at.date_naive();
    let mut effects = PoolEffects::default();
    let mut settings_override = None;
    let events = decide_existing(catalog, ws, today, cmd, &mut effects, &mut settings_override)?;
    let mut events = events;
    events.extend(check_pools(catalog, ws, today, &effects, settings_override)?);
    Ok(events)
}

fn decide_existing(
    catalog: &Catalog,
    ws: &Workspace,
    today: NaiveDate,
    cmd: &WorkspaceCommand,
    effects: &mut PoolEffects,
    settings_override: &mut Option<(PoolKey, LicenceSettings)>,
) -> Result<Vec<Event>, DomainError> {
    use WorkspaceCommand as C;
    let events = match cmd {
        C::CreateWorkspace { .. } => unreachable!("handled before"),
        C::ChangeBillingMode { .. } => {
            return Err(DomainError::BillingModeIsPermanent { workspace: ws.id.clone(), current: ws.billing_mode });
        }
        C::SetBillingInfo { info } => vec![Event::BillingInfoSet { info: info.clone() }],
        C::MigrateToModules => {
            if !ws.is_legacy() {
                return Err(DomainError::AlreadyOnModules(ws.id.clone()));
            }
            vec![Event::WorkspaceMigratedToModules { migrated_on: today }]
        }
        C::ActivateBilling => {
            if ws.billing_activated_on.is_some() {
                return Err(DomainError::BillingAlreadyActivated(ws.id.clone()));
            }
            vec![Event::BillingActivated { activated_on: today }]
        }
        C::OpenBillingAccount { account, name, currency, tax_rate, billing_contract } => {
            if ws.accounts.contains_key(account) {
                return Err(DomainError::AccountExists(account.clone()));
            }
            if ws.billing_mode == BillingMode::Single {
                if let Some(existing) = ws.accounts.keys().next() {
                    return Err(DomainError::SingleModeHasOneAccount {
                        workspace: ws.id.clone(),
                        existing: existing.clone(),
                    });
                }
            }
            non_empty(name, "account name")?;
            vec![Event::BillingAccountOpened {
                account: account.clone(),
                name: name.clone(),
                currency: *currency,
                tax_rate: *tax_rate,
                billing_contract: billing_contract.clone(),
            }]
        }
        C::CreateOrganization { org, name, parent, account } => {
            decide_create_org(ws, org, name, parent.as_ref(), account.as_ref())?
        }
        C::CreateSubscription(new) => decide_create_subscription(catalog, ws, today, new, effects)?,
        C::ChangeQuantity { subscription, quantity, order, channel } => {
            let sub = live_subscription(ws, subscription, today)?;
            quantity_in_range(*quantity, "quantity")?;
            if *quantity == sub.quantity {
                return Ok(vec![]);
            }
            // A bundle's included children follow its quantity; add-ons are
            // bought on their own and keep theirs.
            let mut events = vec![];
            for s in std::iter::once(sub).chain(included_children(ws, subscription, today)) {
                if s.quantity == *quantity {
                    continue;
                }
                let pool = ws.pool_of_subscription(&s.terms);
                if s.is_live_on(today) {
                    effects.total(pool.clone(), i64::from(*quantity) - i64::from(s.quantity));
                }
                events.push(Event::QuantityChanged {
                    subscription: s.terms.subscription.clone(),
                    pool,
                    from: s.quantity,
                    to: *quantity,
                    reason: QuantityReason::Order,
                    order: order.clone(),
                    channel: *channel,
                });
            }
            events
        }
        C::AddLicences { sku, organization, subscription, quantity, order } => add_licences(
            ws,
            today,
            sku,
            organization.as_ref(),
            subscription.as_ref(),
            *quantity,
            effects,
            |pool, sub, from| Event::QuantityChanged {
                subscription: sub,
                pool,
                from,
                to: from + *quantity,
                reason: QuantityReason::ManualAddition,
                order: order.clone(),
                channel: SubscriptionChannel::Portal,
            },
        )?,
        C::TopUpLicences { sku, organization, subscription, quantity, trigger_event } => {
            let pool = pool_for(ws, sku, organization.as_ref())?;
            if ws.applied_top_ups.contains(&(*trigger_event, pool.clone())) {
                return Err(DomainError::TopUpAlreadyApplied(*trigger_event));
            }
            let caps = ws
                .settings
                .get(&pool)
                .and_then(|s| s.top_up)
                .ok_or_else(|| DomainError::NoTopUpSettings { pool: pool.clone() })?;
            let used = ws.top_ups_by_month.get(&(pool.clone(), Month::containing(today))).copied().unwrap_or(0);
            let requested = u64::from(*quantity);
            if requested > u64::from(caps.max_per_top_up) {
                return Err(DomainError::TopUpCapExceeded {
                    pool,
                    requested,
                    cap: caps.max_per_top_up.into(),
                    what: "cap per top-up",
                });
            }
            if used + requested > u64::from(caps.max_per_month) {
                return Err(DomainError::TopUpCapExceeded {
                    pool,
                    requested: used + requested,
                    cap: caps.max_per_month.into(),
                    what: "cap per month",
                });
            }
            add_licences(
                ws,
                today,
                sku,
                organization.as_ref(),
                subscription.as_ref(),
                *quantity,
                effects,
                |pool, sub, from| Event::QuantityChanged {
                    subscription: sub,
                    pool,
                    from,
                    to: from + *quantity,
                    reason: QuantityReason::AutomaticTopUp { trigger_event: *trigger_event },
                    order: OrderDetails {
                        order_reference: Some(format!("top-up/{trigger_event}")),
                        order_date: Some(today),
                        ordered_by: "licence-manager".to_owned(),
                        order_thru: Some("automatic top-up".to_owned()),
                    },
                    channel: SubscriptionChannel::System,
                },
            )?
        }
        C::AutoTopUp { sku, organization, trigger_event } => {
            auto_top_up(catalog, ws, today, sku, organization.as_ref(), *trigger_event, effects)?
        }
        C::ScheduleDeactivation { subscription, deactivate_on } => {
            let sub = live_subscription(ws, subscription, today)?;
            if let Some(d) = deactivate_on {
                if *d < sub.terms.effective_start {
                    return Err(DomainError::InvertedRange {
                        what: "deactivate-on date",
                        start: sub.terms.effective_start.to_string(),
                        end: d.to_string(),
                    });
                }
            }
            // Children and add-ons of a bundle end with it.
            let mut events = vec![];
            for s in std::iter::once(sub).chain(dependants(ws, subscription, today)) {
                if let Some(d) = deactivate_on {
                    check_pool_without(catalog, ws, &s.terms, (*d).max(today))?;
                    if *d <= today && s.is_live_on(today) {
                        effects.total(ws.pool_of_subscription(&s.terms), -i64::from(s.quantity));
                    }
                }
                events.push(Event::DeactivationScheduled {
                    subscription: s.terms.subscription.clone(),
                    deactivate_on: *deactivate_on,
                });
            }
            events
        }
        C::EndTrial { subscription, converted } => {
            let sub = live_subscription(ws, subscription, today)?;
            if !sub.trial {
                return Err(DomainError::NotATrial(subscription.clone()));
            }
            // The included children of a trial bundle end their trial with it.
            let trial_children = included_children(ws, subscription, today).filter(|c| c.trial);
            let mut events = vec![];
            for s in std::iter::once(sub).chain(trial_children) {
                if !converted {
                    check_pool_without(catalog, ws, &s.terms, today)?;
                    if s.is_live_on(today) {
                        effects.total(ws.pool_of_subscription(&s.terms), -i64::from(s.quantity));
                    }
                }
                events.push(Event::TrialEnded {
                    subscription: s.terms.subscription.clone(),
                    converted: *converted,
                    ended_on: today,
                });
            }
            events
        }
        C::EndSubscription { subscription, ended_on } => {
            let sub = live_subscription(ws, subscription, today)?;
            if *ended_on < sub.terms.effective_start {
                return Err(DomainError::InvertedRange {
                    what: "subscription",
                    start: sub.terms.effective_start.to_string(),
                    end: ended_on.to_string(),
                });
            }
            let mut events = vec![];
            for s in std::iter::once(sub).chain(dependants(ws, subscription, today)) {
                check_pool_without(catalog, ws, &s.terms, (*ended_on).max(today))?;
                if *ended_on <= today && s.is_live_on(today) {
                    effects.total(ws.pool_of_subscription(&s.terms), -i64::from(s.quantity));
                }
                events
                    .push(Event::SubscriptionEnded { subscription: s.terms.subscription.clone(), ended_on: *ended_on });
            }
            events
        }
        C::ConfigureLicences { sku, organization, settings } => {
            if catalog.product(sku).is_none() {
                return Err(DomainError::ProductNotFound(sku.clone()));
            }
            let pool = pool_for(ws, sku, organization.as_ref())?;
            if !ws.subscriptions.values().any(|s| ws.pool_of_subscription(&s.terms) == pool) {
                return Err(DomainError::SettingsForUnknownSku { pool });
            }
            validate_settings(settings)?;
            effects.touch(pool.clone());
            *settings_override = Some((pool.clone(), *settings));
            vec![Event::LicenceSettingsChanged { pool, settings: *settings }]
        }
        C::AddNotificationRecipient { recipient, email, kinds } => {
            if ws.recipients.contains_key(recipient) {
                return Err(DomainError::RecipientExists(recipient.clone()));
            }
            check_email(email)?;
            vec![Event::NotificationRecipientAdded {
                recipient: recipient.clone(),
                email: email.clone(),
                kinds: dedup(kinds),
            }]
        }
        C::ChangeNotificationSettings { recipient, kinds } => {
            if !ws.recipients.contains_key(recipient) {
                return Err(DomainError::RecipientNotFound(recipient.clone()));
            }
            vec![Event::NotificationSettingsChanged { recipient: recipient.clone(), kinds: dedup(kinds) }]
        }
        C::RemoveNotificationRecipient { recipient } => {
            if !ws.recipients.contains_key(recipient) {
                return Err(DomainError::RecipientNotFound(recipient.clone()));
            }
            vec![Event::NotificationRecipientRemoved { recipient: recipient.clone() }]
        }
        C::AddUser { user, org, profile, status, source } => {
            if ws.users.contains_key(user) {
                return Err(DomainError::UserExists(user.clone()));
            }
            if !ws.organizations.contains_key(org) {
                return Err(DomainError::OrganizationNotFound(org.clone()));
            }
            check_profile(ws, None, profile)?;
            let status = match (status, source) {
                (Some(s), _) => *s,
                (None, UserSource::Scim) => ws.scim_default_status,
                (None, _) => UserStatus::Active,
            };
            if status == UserStatus::Deleted {
                return Err(DomainError::NewUserDeleted);
            }
            vec![Event::UserAdded {
                user: user.clone(),
                org: org.clone(),
                profile: profile.clone(),
                status,
                source: *source,
            }]
        }
        C::UpdateUserProfile { user, profile } => {
            let u = existing_user(ws, user)?;
            check_profile(ws, Some(user), profile)?;
            if u.profile == *profile {
                return Ok(vec![]);
            }
            vec![Event::UserProfileUpdated { user: user.clone(), profile: profile.clone() }]
        }
        C::ChangeUserStatus { user, status, source } => {
            let u = existing_user(ws, user)?;
            match source {
                StatusChangeSource::Manual => {
                    if ws.status_authority == StatusAuthority::Directory && ws.sync.is_some() {
                        return Err(DomainError::StatusManagedByDirectory { user: user.clone() });
                    }
                }
                StatusChangeSource::DirectorySync | StatusChangeSource::Scim => {
                    if ws.status_authority != StatusAuthority::Directory {
                        return Err(DomainError::DirectoryNotAuthority(ws.id.clone()));
                    }
                }
            }
            if u.status == *status {
                return Ok(vec![]);
            }
            if u.status == UserStatus::Deleted {
                gain_seats(ws, user, ws.modules_of(user), effects);
            } else if *status == UserStatus::Deleted {
                lose_seats(ws, user, ws.seat_holdings(user), effects);
            }
            vec![Event::UserStatusChanged { user: user.clone(), from: u.status, to: *status, source: *source }]
        }
        C::ScimDeactivateUser { user } => {
            let u = existing_user(ws, user)?;
            if u.status == UserStatus::Deleted {
                return Ok(vec![]);
            }
            lose_seats(ws, user, ws.seat_holdings(user), effects);
            vec![Event::UserStatusChanged {
                user: user.clone(),
                from: u.status,
                to: UserStatus::Deleted,
                source: StatusChangeSource::Scim,
            }]
        }
        C::SetStatusAuthority { authority } => {
            if ws.status_authority == *authority {
                return Ok(vec![]);
            }
            vec![Event::StatusAuthoritySet { authority: *authority }]
        }
        C::SetScimDefaultStatus { status } => {
            if *status == UserStatus::Deleted {
                return Err(DomainError::InvalidDefaultStatus(*status));
            }
            if ws.scim_default_status == *status {
                return Ok(vec![]);
            }
            vec![Event::ScimDefaultStatusSet { status: *status }]
        }
        C::StartSync { tool } => {
            if ws.sync.is_some() {
                return Err(DomainError::SyncAlreadyRunning(ws.id.clone()));
            }
            vec![Event::SyncStarted { tool: *tool }]
        }
        C::StopSync => match ws.sync {
            Some(tool) => vec![Event::SyncStopped { tool }],
            None => return Err(DomainError::SyncNotRunning(ws.id.clone())),
        },
        C::CreateGroup { group, name } => {
            if ws.groups.contains_key(group) {
                return Err(DomainError::GroupExists(group.clone()));
            }
            non_empty(name, "group name")?;
            vec![Event::GroupCreated { group: group.clone(), name: name.clone() }]
        }
        C::AddGroupMember { group, user } => {
            let g = ws.groups.get(group).ok_or_else(|| DomainError::GroupNotFound(group.clone()))?;
            live_user(ws, user)?;
            if g.members.contains(user) {
                return Err(DomainError::AlreadyMember { group: group.clone(), user: user.clone() });
            }
            gain_seats(ws, user, g.modules.clone(), effects);
            vec![Event::GroupMemberAdded { group: group.clone(), user: user.clone() }]
        }
        C::RemoveGroupMember { group, user } => {
            let g = ws.groups.get(group).ok_or_else(|| DomainError::GroupNotFound(group.clone()))?;
            if !g.members.contains(user) {
                return Err(DomainError::NotMember { group: group.clone(), user: user.clone() });
            }
            let mut after = ws.users[user].direct_modules.clone();
            for other in ws.users[user].groups.iter().filter(|o| *o != group) {
                after.extend(ws.groups[other].modules.iter().cloned());
            }
            let lost: BTreeSet<Sku> = ws.seat_holdings(user).difference(&after).cloned().collect();
            lose_seats(ws, user, lost, effects);
            vec![Event::GroupMemberRemoved { group: group.clone(), user: user.clone() }]
        }
        C::AssignModule { sku, target } => {
            let product = catalog.product(sku).ok_or_else(|| DomainError::ProductNotFound(sku.clone()))?;
            if product.kind != ProductKind::Module {
                return Err(DomainError::NotAModule(sku.clone()));
            }
            if target_modules(ws, target)?.contains(sku) {
                return Err(DomainError::ModuleAlreadyAssigned { sku: sku.clone(), target: target.to_string() });
            }
            if let ModuleTarget::User(u) = target {
                live_user(ws, u)?;
            }
            // Deleted members hold no seat and take none.
            for user in ws.users_of(target).iter().filter(|u| ws.users[*u].status != UserStatus::Deleted) {
                gain_seats(ws, user, BTreeSet::from([sku.clone()]), effects);
            }
            vec![Event::ModuleAssigned { sku: sku.clone(), target: target.clone() }]
        }
        C::UnassignModule { sku, target } => {
            if !target_modules(ws, target)?.contains(sku) {
                return Err(DomainError::ModuleNotAssigned { sku: sku.clone(), target: target.to_string() });
            }
            for user in ws.users_of(target) {
                // The user keeps the seat if another source still gives the module.
                let sources = ws.users[&user].direct_modules.contains(sku) as usize
                    + ws.users[&user].groups.iter().filter(|g| ws.groups[*g].modules.contains(sku)).count();
                if sources == 1 {
                    lose_seats(ws, &user, ws.seat_holdings(&user).into_iter().filter(|s| s == sku).collect(), effects);
                }
            }
            vec![Event::ModuleUnassigned { sku: sku.clone(), target: target.clone() }]
        }
        C::RecordReservation { reservation, user, starts_at, ends_at } => {
            existing_user(ws, user)?;
            if ends_at < starts_at {
                return Err(DomainError::InvertedRange {
                    what: "reservation",
                    start: starts_at.to_rfc3339(),
                    end: ends_at.to_rfc3339(),
                });
            }
            new_activity(ws, "reservation", format!("reservation/{reservation}"))?;
            vec![Event::ReservationMade {
                reservation: reservation.clone(),
                user: user.clone(),
                starts_at: *starts_at,
                ends_at: *ends_at,
            }]
        }
        C::RecordRecurringOccurrence { series, user, occurs_on } => {
            existing_user(ws, user)?;
            new_activity(ws, "recurring reservation occurrence", format!("series/{series}/{user}/{occurs_on}"))?;
            vec![Event::RecurringReservationOccurred {
                series: series.clone(),
                user: user.clone(),
                occurs_on: *occurs_on,
            }]
        }
        C::StartMembership { membership, user, starts_on, ends_on } => {
            existing_user(ws, user)?;
            if ws.memberships.contains_key(membership) {
                return Err(DomainError::ActivityExists { kind: "membership", id: membership.to_string() });
            }
            if let Some(end) = ends_on {
                if end < starts_on {
                    return Err(DomainError::InvertedRange {
                        what: "membership",
                        start: starts_on.to_string(),
                        end: end.to_string(),
                    });
                }
            }
            vec![Event::MembershipStarted {
                membership: membership.clone(),
                user: user.clone(),
                starts_on: *starts_on,
                ends_on: *ends_on,
            }]
        }
        C::EndMembership { membership, ends_on } => {
            let m =
                ws.memberships.get(membership).ok_or_else(|| DomainError::MembershipNotFound(membership.clone()))?;
            if *ends_on < m.starts_on {
                return Err(DomainError::InvertedRange {
                    what: "membership",
                    start: m.starts_on.to_string(),
                    end: ends_on.to_string(),
                });
            }
            vec![Event::MembershipEnded { membership: membership.clone(), ends_on: *ends_on }]
        }
        C::RecordPunchPassUse { use_id, user, used_on } => {
            existing_user(ws, user)?;
            new_activity(ws, "punch pass use", format!("punch/{use_id}"))?;
            vec![Event::PunchPassUsed { use_id: use_id.clone(), user: user.clone(), used_on: *used_on }]
        }
    };
    Ok(events)
}

fn dedup(kinds: &[NotificationKind]) -> Vec<NotificationKind> {
    kinds.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
}

fn check_email(email: &str) -> Result<(), DomainError> {
    let ok = email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !email.contains(' '));
    if !ok {
        return Err(InvalidValue::new("email", format!("{email:?} is not an email address")).into());
    }
    Ok(())
}

fn check_profile(
    ws: &Workspace,
    user: Option<&UserId>,
    profile: &crate::events::UserProfile,
) -> Result<(), DomainError> {
    non_empty(&profile.username, "username")?;
    check_email(&profile.email)?;
    if let Some(owner) = ws.usernames.get(&profile.username) {
        if Some(owner) != user {
            return Err(DomainError::UsernameTaken { username: profile.username.clone(), user: owner.clone() });
        }
    }
    Ok(())
}

fn existing_user<'a>(ws: &'a Workspace, user: &UserId) -> Result<&'a crate::state::User, DomainError> {
    ws.users.get(user).ok_or_else(|| DomainError::UserNotFound(user.clone()))
}

fn live_user<'a>(ws: &'a Workspace, user: &UserId) -> Result<&'a crate::state::User, DomainError> {
    let u = existing_user(ws, user)?;
    if u.status == UserStatus::Deleted {
        return Err(DomainError::UserDeleted(user.clone()));
    }
    Ok(u)
}

fn target_modules<'a>(ws: &'a Workspace, target: &ModuleTarget) -> Result<&'a BTreeSet<Sku>, DomainError> {
    match target {
        ModuleTarget::User(u) => Ok(&existing_user(ws, u)?.direct_modules),
        ModuleTarget::Group(g) => Ok(&ws.groups.get(g).ok_or_else(|| DomainError::GroupNotFound(g.clone()))?.modules),
    }
}

fn new_activity(ws: &Workspace, kind: &'static str, key: String) -> Result<(), DomainError> {
    assert!(
        ws.keeps_activity_ids,
        "workspace `{}` is a read-side copy without its activity ids and cannot be decided on",
        ws.id
    );
    if ws.activity_ids.contains(&key) {
        return Err(DomainError::ActivityExists { kind, id: key });
    }
    Ok(())
}

/// Seats a user would newly take for `skus`.
fn gain_seats(ws: &Workspace, user: &UserId, skus: BTreeSet<Sku>, effects: &mut PoolEffects) {
    // A deleted user holds no seat, so undeleting gains every module held.
    let held = ws.seat_holdings(user);
    let scope = ws.pool_scope_of_user(user);
    for sku in skus.difference(&held) {
        effects.seats(PoolKey { scope: scope.clone(), sku: sku.clone() }, 1);
    }
}

fn lose_seats(ws: &Workspace, user: &UserId, skus: BTreeSet<Sku>, effects: &mut PoolEffects) {
    let scope = ws.pool_scope_of_user(user);
    for sku in skus {
        effects.seats(PoolKey { scope: scope.clone(), sku }, -1);
    }
}

fn live_subscription<'a>(
    ws: &'a Workspace,
    id: &SubscriptionId,
    today: NaiveDate,
) -> Result<&'a crate::state::Subscription, DomainError> {
    let sub = ws.subscriptions.get(id).ok_or_else(|| DomainError::SubscriptionNotFound(id.clone()))?;
    if let Some(ended_on) = sub.end_date() {
        if ended_on <= today {
            return Err(DomainError::SubscriptionEnded { subscription: id.clone(), ended_on });
        }
    }
    Ok(sub)
}

/// The not-yet-ended subscriptions that hang off a bundle parent.
fn dependants<'a>(
    ws: &'a Workspace,
    parent: &'a SubscriptionId,
    today: NaiveDate,
) -> impl Iterator<Item = &'a crate::state::Subscription> + 'a {
    ws.subscriptions
        .values()
        .map(|s| &**s)
        .filter(move |s| s.terms.parent.as_ref() == Some(parent) && s.end_date().is_none_or(|d| d > today))
}

/// The included (non-billable) children of a bundle parent.
fn included_children<'a>(
    ws: &'a Workspace,
    parent: &'a SubscriptionId,
    today: NaiveDate,
) -> impl Iterator<Item = &'a crate::state::Subscription> + 'a {
    dependants(ws, parent, today).filter(|s| s.terms.bundle_role == BundleRole::Child)
}

/// The pool a SKU command addresses: the workspace's, or in assigned mode a
/// top-level organization's.
fn pool_for(ws: &Workspace, sku: &Sku, organization: Option<&OrgId>) -> Result<PoolKey, DomainError> {
    let scope = match (ws.billing_mode, organization) {
        (BillingMode::Assigned, Some(org)) => {
            let o = ws.organizations.get(org).ok_or_else(|| DomainError::OrganizationNotFound(org.clone()))?;
            if let Some(parent) = &o.parent {
                return Err(DomainError::ChildInheritsAccount { org: org.clone(), parent: parent.clone() });
            }
            PoolScope::Organization(org.clone())
        }
        (BillingMode::Assigned, None) => {
            return Err(InvalidValue::new(
                "organization",
                "is required in assigned mode: pools belong to top-level organizations",
            )
            .into())
        }
        (mode, Some(_)) => {
            return Err(DomainError::AccountLinkNeedsAssignedMode { workspace: ws.id.clone(), mode });
        }
        (_, None) => PoolScope::Workspace,
    };
    Ok(PoolKey { scope, sku: sku.clone() })
}

#[allow(clippy::too_many_arguments)]
fn add_licences(
    ws: &Workspace,
    today: NaiveDate,
    sku: &Sku,
    organization: Option<&OrgId>,
    subscription: Option<&SubscriptionId>,
    quantity: u32,
    effects: &mut PoolEffects,
    event: impl FnOnce(PoolKey, SubscriptionId, u32) -> Event,
) -> Result<Vec<Event>, DomainError> {
    if quantity == 0 {
        return Err(InvalidValue::new("quantity", "must be at least 1 to add licences").into());
    }
    quantity_in_range(quantity, "quantity")?;
    let pool = pool_for(ws, sku, organization)?;
    let sub = match subscription {
        Some(id) => {
            let sub = live_subscription(ws, id, today)?;
            if ws.pool_of_subscription(&sub.terms) != pool {
                return Err(InvalidValue::new("subscription", format!("`{id}` does not feed pool {pool}")).into());
            }
            sub
        }
        None => {
            let candidates: Vec<_> = ws
                .subscriptions
                .values()
                .filter(|s| {
                    ws.pool_of_subscription(&s.terms) == pool
                        && s.is_live_on(today)
                        && !s.trial
                        && s.terms.bundle_role != BundleRole::Child
                })
                .collect();
            match candidates.as_slice() {
                [one] => *one,
                [] => return Err(DomainError::NoSubscriptionForPool { pool }),
                many => return Err(DomainError::AmbiguousSubscription { pool, count: many.len() }),
            }
        }
    };
    let to = sub.quantity.checked_add(quantity).filter(|q| *q <= MAX_QUANTITY).ok_or_else(|| {
        InvalidValue::new("quantity", format!("{} + {quantity} is above the limit of {MAX_QUANTITY}", sub.quantity))
    })?;
    debug_assert!(to > sub.quantity);
    if sub.is_live_on(today) {
        effects.total(pool.clone(), i64::from(quantity));
    }
    Ok(vec![event(pool, sub.terms.subscription.clone(), sub.quantity)])
}

/// The automatic top-up: restore the vacant-seat threshold, within the cap
/// per top-up and what is left of the cap per month; when a cap stops it
/// short, say so with `TopUpCapReached`. Nothing to do when the pool already
/// has the threshold's seats free.
fn auto_top_up(
    catalog: &Catalog,
    ws: &Workspace,
    today: NaiveDate,
    sku: &Sku,
    organization: Option<&OrgId>,
    trigger_event: uuid::Uuid,
    effects: &mut PoolEffects,
) -> Result<Vec<Event>, DomainError> {
    if catalog.product(sku).is_none() {
        return Err(DomainError::ProductNotFound(sku.clone()));
    }
    let pool = pool_for(ws, sku, organization)?;
    if ws.applied_top_ups.contains(&(trigger_event, pool.clone())) {
        return Err(DomainError::TopUpAlreadyApplied(trigger_event));
    }
    let caps = ws
        .settings
        .get(&pool)
        .and_then(|s| s.top_up)
        .ok_or_else(|| DomainError::NoTopUpSettings { pool: pool.clone() })?;
    let available = ws.pool_total_on(&pool, today).saturating_sub(ws.pool_assigned(&pool));
    let threshold = u64::from(caps.vacant_seat_threshold);
    if available >= threshold {
        return Ok(vec![]);
    }
    let needed = threshold - available;
    let used = ws.top_ups_by_month.get(&(pool.clone(), Month::containing(today))).copied().unwrap_or(0);
    let allowed = needed.min(caps.max_per_top_up.into()).min(u64::from(caps.max_per_month).saturating_sub(used));
    let mut events = vec![];
    if allowed > 0 {
        // The earliest-starting live, paid subscription of the pool takes the licences.
        let target = ws
            .subscriptions
            .values()
            .filter(|s| {
                ws.pool_of_subscription(&s.terms) == pool
                    && s.is_live_on(today)
                    && !s.trial
                    && s.terms.bundle_role != BundleRole::Child
            })
            .min_by_key(|s| (s.terms.effective_start, s.terms.subscription.clone()))
            .ok_or_else(|| DomainError::NoSubscriptionForPool { pool: pool.clone() })?;
        let allowed_u32 = u32::try_from(allowed).expect("allowed is below a u32 cap");
        let to = target.quantity.checked_add(allowed_u32).filter(|q| *q <= MAX_QUANTITY).ok_or_else(|| {
            InvalidValue::new(
                "quantity",
                format!("{} + {allowed} is above the limit of {MAX_QUANTITY}", target.quantity),
            )
        })?;
        effects.total(pool.clone(), i64::from(allowed_u32));
        events.push(Event::QuantityChanged {
            subscription: target.terms.subscription.clone(),
            pool: pool.clone(),
            from: target.quantity,
            to,
            reason: QuantityReason::AutomaticTopUp { trigger_event },
            order: OrderDetails {
                order_reference: Some(format!("top-up/{trigger_event}")),
                order_date: Some(today),
                ordered_by: "licence-manager".to_owned(),
                order_thru: Some("automatic top-up".to_owned()),
            },
            channel: SubscriptionChannel::System,
        });
    }
    if allowed < needed {
        effects.touch(pool.clone());
        events.push(Event::TopUpCapReached { pool, trigger_event, needed, allowed, month_used: used });
    }
    Ok(events)
}

/// Ending or deactivating `terms` on `on` must leave the pool holding at
/// least the seats assigned now.
fn check_pool_without(
    catalog: &Catalog,
    ws: &Workspace,
    terms: &SubscriptionTerms,
    on: NaiveDate,
) -> Result<(), DomainError> {
    if !catalog.is_seat_limited(&terms.sku) {
        return Ok(());
    }
    let pool = ws.pool_of_subscription(terms);
    let sub = &ws.subscriptions[&terms.subscription];
    let total_after = ws.pool_total_on(&pool, on) - if sub.is_live_on(on) { u64::from(sub.quantity) } else { 0 };
    let assigned = ws.pool_assigned(&pool);
    if assigned > total_after {
        return Err(DomainError::QuantityBelowAssigned { pool, on, assigned, total_after });
    }
    Ok(())
}

fn validate_settings(settings: &LicenceSettings) -> Result<(), DomainError> {
    if let Some(t) = &settings.top_up {
        if t.vacant_seat_threshold == 0 {
            return Err(
                InvalidValue::new("vacant seat threshold", "must be at least 1 for top-ups to restore it").into()
            );
        }
        if t.max_per_top_up == 0 {
            return Err(InvalidValue::new("cap per top-up", "must be at least 1").into());
        }
        if t.max_per_month < t.max_per_top_up {
            return Err(InvalidValue::new(
                "cap per month",
                format!("{} is below the cap per top-up of {}", t.max_per_month, t.max_per_top_up),
            )
            .into());
        }
        for (v, what) in [(t.vacant_seat_threshold, "vacant seat threshold"), (t.max_per_month, "cap per month")] {
            if v > MAX_QUANTITY {
                return Err(InvalidValue::new(what, format!("{v} is above the limit of {MAX_QUANTITY}")).into());
            }
        }
    }
    if let Some(a) = settings.alert_threshold {
        if a > MAX_QUANTITY {
            return Err(
                InvalidValue::new("alert threshold", format!("{a} is above the limit of {MAX_QUANTITY}")).into()
            );
        }
    }
    Ok(())
}

/// Check every pool the decision moved, and raise or clear its low-licence
/// alert: once per crossing, again only after recovery above the threshold.
fn check_pools(
    catalog: &Catalog,
    ws: &Workspace,
    today: NaiveDate,
    effects: &PoolEffects,
    settings_override: Option<(PoolKey, LicenceSettings)>,
) -> Result<Vec<Event>, DomainError> {
    let mut events = vec![];
    for (pool, (d_seats, d_total)) in &effects.changes {
        let total_before = ws.pool_total_on(pool, today);
        let assigned_before = ws.pool_assigned(pool);
        let total_after = apply_delta(total_before, *d_total);
        let assigned_after = apply_delta(assigned_before, *d_seats);
        if catalog.is_seat_limited(&pool.sku) && assigned_after > total_after {
            if *d_seats > 0 {
                return Err(DomainError::PoolExhausted {
                    pool: pool.clone(),
                    on: today,
                    available: total_before.saturating_sub(assigned_before),
                    needed: *d_seats as u64,
                });
            }
            if *d_total < 0 {
                return Err(DomainError::QuantityBelowAssigned {
                    pool: pool.clone(),
                    on: today,
                    assigned: assigned_after,
                    total_after,
                });
            }
        }
        let settings = match &settings_override {
            Some((p, s)) if p == pool => Some(*s),
            _ => ws.settings.get(pool).copied(),
        };
        let raised = ws.alerts_raised.contains(pool);
        let available = total_after.saturating_sub(assigned_after);
        match settings.and_then(|s| s.alert_threshold) {
            Some(threshold) if available <= u64::from(threshold) && !raised => {
                events.push(Event::LowLicenceAlertRaised { pool: pool.clone(), available, threshold });
            }
            Some(threshold) if available > u64::from(threshold) && raised => {
                events.push(Event::LicenceAlertCleared { pool: pool.clone(), available, threshold });
            }
            None if raised => {
                // The threshold was removed: the alert no longer stands.
                events.push(Event::LicenceAlertCleared { pool: pool.clone(), available, threshold: 0 });
            }
            _ => {}
        }
    }
    Ok(events)
}

fn decide_create_org(
    ws: &Workspace,
    org: &OrgId,
    name: &str,
    parent: Option<&OrgId>,
    account: Option<&AccountId>,
) -> Result<Vec<Event>, DomainError> {
    if ws.organizations.contains_key(org) {
        return Err(DomainError::OrganizationExists(org.clone()));
    }
    non_empty(name, "organization name")?;
    if let Some(p) = parent {
        if !ws.organizations.contains_key(p) {
            return Err(DomainError::OrganizationNotFound(p.clone()));
        }
    }
    match (ws.billing_mode, parent, account) {
        (BillingMode::Assigned, None, None) => return Err(DomainError::TopLevelNeedsAccount(org.clone())),
        (BillingMode::Assigned, None, Some(a)) if !ws.accounts.contains_key(a) => {
            return Err(DomainError::AccountNotFound(a.clone()));
        }
        (BillingMode::Assigned, Some(p), Some(_)) => {
            return Err(DomainError::ChildInheritsAccount { org: org.clone(), parent: p.clone() })
        }
        (mode, _, Some(_)) if mode != BillingMode::Assigned => {
            return Err(DomainError::AccountLinkNeedsAssignedMode { workspace: ws.id.clone(), mode })
        }
        _ => {}
    }
    Ok(vec![Event::OrganizationCreated {
        org: org.clone(),
        name: name.to_owned(),
        parent: parent.cloned(),
        account: account.cloned(),
    }])
}

fn decide_create_subscription(
    catalog: &Catalog,
    ws: &Workspace,
    today: NaiveDate,
    new: &NewSubscription,
    effects: &mut PoolEffects,
) -> Result<Vec<Event>, DomainError> {
    if ws.subscriptions.contains_key(&new.subscription) {
        return Err(DomainError::SubscriptionExists(new.subscription.clone()));
    }
    let account = ws.accounts.get(&new.account).ok_or_else(|| DomainError::AccountNotFound(new.account.clone()))?;
    let product = catalog.product(&new.sku).ok_or_else(|| DomainError::ProductNotFound(new.sku.clone()))?;
    non_empty(&new.name, "subscription name")?;
    quantity_in_range(new.quantity, "quantity")?;
    if new.currency != account.currency {
        return Err(DomainError::CurrencyMismatch {
            subscription: new.subscription.clone(),
            account: account.id.clone(),
            subscription_currency: new.currency.to_string(),
            account_currency: account.currency.to_string(),
        });
    }
    if let Some(d) = new.deactivate_on {
        if d < new.effective_start {
            return Err(DomainError::InvertedRange {
                what: "subscription",
                start: new.effective_start.to_string(),
                end: d.to_string(),
            });
        }
    }
    let organization = subscription_organization(ws, new)?;

    // Bundle role: a parent's bundle lists this SKU as a child or an add-on.
    let bundle_role = match &new.parent {
        None if !product.bundle_children.is_empty() || !product.bundle_add_ons.is_empty() => BundleRole::Parent,
        None => BundleRole::Standalone,
        Some(parent_id) => {
            let parent =
                ws.subscriptions.get(parent_id).ok_or_else(|| DomainError::SubscriptionNotFound(parent_id.clone()))?;
            let invalid = |why: String| DomainError::InvalidParent {
                subscription: new.subscription.clone(),
                parent: parent_id.clone(),
                why,
            };
            if parent.terms.account != new.account {
                return Err(invalid("the parent belongs to another billing account".to_owned()));
            }
            let parent_product = catalog
                .product(&parent.terms.sku)
                .ok_or_else(|| DomainError::ProductNotFound(parent.terms.sku.clone()))?;
            if parent_product.bundle_children.contains(&new.sku) {
                BundleRole::Child
            } else if parent_product.bundle_add_ons.contains(&new.sku) {
                BundleRole::AddOn
            } else {
                return Err(invalid(format!("its bundle `{}` has no child or add-on `{}`", parent.terms.sku, new.sku)));
            }
        }
    };

    let price = |sku: &Sku| -> Result<&PriceItem, DomainError> {
        catalog.product(sku).and_then(|p| p.prices.get(&(new.price_list.clone(), new.currency))).ok_or_else(|| {
            DomainError::PriceMissing {
                sku: sku.clone(),
                price_list: new.price_list.clone(),
                currency: new.currency.to_string(),
            }
        })
    };
    let billable = bundle_role != BundleRole::Child && new.billable.unwrap_or(true);
    let catalog_item = catalog.product(&new.sku).and_then(|p| p.prices.get(&(new.price_list.clone(), new.currency)));
    let guest_selling = match (bundle_role, new.guest_selling_per_unit) {
        (BundleRole::Child, _) => None,
        (_, Some(g)) => Some(Money::price(g, new.currency, "guest selling price per unit")?),
        (_, None) => catalog_item.and_then(|i| i.guest_selling_per_unit),
    };
    let counting_policy = new.counting_policy.or_else(|| catalog_item.and_then(|i| i.counting_policy));
    let (selling, cost) = match (bundle_role, new.selling_per_unit, new.cost_per_unit) {
        (BundleRole::Child, _, _) => (Money::zero(new.currency), Money::zero(new.currency)),
        (_, Some(s), Some(c)) => (
            Money::price(s, new.currency, "selling price per unit")?,
            Money::price(c, new.currency, "cost price per unit")?,
        ),
        (_, s, c) => {
            let item = price(&new.sku)?;
            (
                match s {
                    Some(s) => Money::price(s, new.currency, "selling price per unit")?,
                    None => item.selling_per_unit,
                },
                match c {
                    Some(c) => Money::price(c, new.currency, "cost price per unit")?,
                    None => item.cost_per_unit,
                },
            )
        }
    };
    let terms = SubscriptionTerms {
        subscription: new.subscription.clone(),
        account: new.account.clone(),
        organization: organization.clone(),
        sku: new.sku.clone(),
        parent: new.parent.clone(),
        bundle_role,
        name: new.name.clone(),
        friendly_name: new.friendly_name.clone(),
        effective_start: new.effective_start,
        billable,
        trial: new.trial,
        deactivate_on: new.deactivate_on,
        channel: new.channel,
        quantity: new.quantity,
        order: new.order.clone(),
        price_list: new.price_list.clone(),
        selling_per_unit: selling,
        cost_per_unit: cost,
        discount: new.discount,
        taxable: new.taxable,
        exempt_from_indexation: new.exempt_from_indexation,
        product_class: product.product_class.clone(),
        sales_unit: product.sales_unit.clone(),
        description: new.description.clone(),
        provider: new.provider.clone(),
        guest_selling_per_unit: guest_selling,
        counting_policy,
    };
    let mut events = vec![];
    let mut all_terms = vec![terms];
    // A bundle sets up its included children with it, non-billable, with
    // ids derived from the parent's so that the decision stays deterministic.
    if bundle_role == BundleRole::Parent {
        for child_sku in &product.bundle_children {
            let child_id = SubscriptionId::new(format!("{}.{}", new.subscription, child_sku))?;
            if ws.subscriptions.contains_key(&child_id) {
                return Err(DomainError::SubscriptionExists(child_id));
            }
            let child = catalog.product(child_sku).ok_or_else(|| DomainError::ProductNotFound(child_sku.clone()))?;
            let mut t = all_terms[0].clone();
            t.subscription = child_id;
            t.sku = child_sku.clone();
            t.parent = Some(new.subscription.clone());
            t.bundle_role = BundleRole::Child;
            t.name = child.name.clone();
            t.friendly_name = None;
            t.billable = false;
            t.selling_per_unit = Money::zero(new.currency);
            t.cost_per_unit = Money::zero(new.currency);
            t.product_class = child.product_class.clone();
            t.sales_unit = child.sales_unit.clone();
            all_terms.push(t);
        }
    }
    for t in all_terms {
        let pool = ws.pool_of_subscription(&t);
        if t.effective_start <= today && t.deactivate_on.is_none_or(|d| today < d) {
            effects.total(pool.clone(), i64::from(t.quantity));
        }
        if t.quantity > 0 {
            events.push(Event::QuantityChanged {
                subscription: t.subscription.clone(),
                pool,
                from: 0,
                to: t.quantity,
                reason: QuantityReason::Order,
                order: t.order.clone(),
                channel: t.channel,
            });
        }
        events.insert(events.len() - usize::from(t.quantity > 0), Event::SubscriptionCreated { terms: Box::new(t) });
    }
    Ok(events)
}

/// In assigned mode a subscription feeds one top-level organization's pool:
/// the one named, or the only top-level organization of its account.
fn subscription_organization(ws: &Workspace, new: &NewSubscription) -> Result<Option<OrgId>, DomainError> {
    let needs = |why: &str| DomainError::SubscriptionNeedsOrganization {
        subscription: new.subscription.clone(),
        why: why.to_owned(),
    };
    match (ws.billing_mode, &new.organization) {
        (BillingMode::Assigned, Some(org)) => {
            let o = ws.organizations.get(org).ok_or_else(|| DomainError::OrganizationNotFound(org.clone()))?;
            if o.parent.is_some() {
                return Err(needs("the organization named is not top-level"));
            }
            if o.account.as_ref() != Some(&new.account) {
                return Err(needs("the organization named bills to another account"));
            }
            Ok(Some(org.clone()))
        }
        (BillingMode::Assigned, None) => {
            let tops: Vec<&OrgId> = ws
                .organizations
                .values()
                .filter(|o| o.parent.is_none() && o.account.as_ref() == Some(&new.account))
                .map(|o| &o.id)
                .collect();
            match tops.as_slice() {
                [one] => Ok(Some((*one).clone())),
                [] => Err(needs("no top-level organization bills to its account")),
                _ => Err(needs("several top-level organizations bill to its account")),
            }
        }
        (mode, Some(_)) => Err(DomainError::AccountLinkNeedsAssignedMode { workspace: ws.id.clone(), mode }),
        (_, None) => Ok(None),
    }
}
