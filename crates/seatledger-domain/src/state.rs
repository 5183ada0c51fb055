//! State folded from events: the catalog, and one workspace. `evolve` never
//! fails: events are facts, checked when they were decided.

use crate::events::{Event, UserProfile};
use crate::ids::*;
use crate::model::*;
use crate::money::{Currency, Percent};
use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};

/// The product catalog of the hosting instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub products: BTreeMap<Sku, Product>,
    /// Price indexations: from this day on, non-exempt prices rise by this much.
    pub indexations: Vec<(NaiveDate, Percent)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: Sku,
    pub name: String,
    pub kind: ProductKind,
    pub charge_model: ChargeModel,
    pub product_class: Option<String>,
    pub sales_unit: String,
    pub manufacturer: Option<String>,
    /// Price list items, by price list and currency.
    pub prices: BTreeMap<(PriceListId, Currency), PriceItem>,
    /// Included (non-billable) child products, when this is a bundle.
    pub bundle_children: Vec<Sku>,
    /// Billable add-on products, when this is a bundle.
    pub bundle_add_ons: Vec<Sku>,
}

impl Product {
    /// Seats of this product are limited by the licences bought: a module
    /// sold per licence. Modules charged per active user have no cap.
    pub fn is_seat_limited(&self) -> bool {
        self.kind == ProductKind::Module && self.charge_model == ChargeModel::PerLicence
    }
}

impl Catalog {
    pub fn evolve(mut self, event: &Event) -> Self {
        self.apply(event);
        self
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::ProductDefined { sku, name, kind, charge_model, product_class, sales_unit, manufacturer } => {
                self.products.insert(
                    sku.clone(),
                    Product {
                        sku: sku.clone(),
                        name: name.clone(),
                        kind: *kind,
                        charge_model: *charge_model,
                        product_class: product_class.clone(),
                        sales_unit: sales_unit.clone(),
                        manufacturer: manufacturer.clone(),
                        prices: BTreeMap::new(),
                        bundle_children: vec![],
                        bundle_add_ons: vec![],
                    },
                );
            }
            Event::PriceSet { sku, price } => {
                let product = self.products.get_mut(sku).expect("a price is set only for a known product");
                product.prices.insert((price.price_list.clone(), price.currency()), price.clone());
            }
            Event::BundleDefined { parent, children, add_ons } => {
                let product = self.products.get_mut(parent).expect("a bundle is defined only for a known product");
                product.bundle_children = children.clone();
                product.bundle_add_ons = add_ons.clone();
            }
            Event::PricesIndexed { percent, effective_on } => {
                self.indexations.push((*effective_on, *percent));
                self.indexations.sort_by_key(|(d, _)| *d);
            }
            _ => {}
        }
    }

    pub fn product(&self, sku: &Sku) -> Option<&Product> {
        self.products.get(sku)
    }

    pub fn is_seat_limited(&self, sku: &Sku) -> bool {
        self.products.get(sku).is_some_and(Product::is_seat_limited)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub currency: Currency,
    pub tax_rate: Percent,
    pub billing_contract: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub parent: Option<OrgId>,
    /// Set on top-level organizations in assigned mode; children inherit.
    pub account: Option<AccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub org: OrgId,
    pub profile: UserProfile,
    pub status: UserStatus,
    pub source: UserSource,
    pub direct_modules: BTreeSet<Sku>,
    pub groups: BTreeSet<GroupId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub members: BTreeSet<UserId>,
    pub modules: BTreeSet<Sku>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub terms: SubscriptionTerms,
    pub quantity: u32,
    pub trial: bool,
    pub deactivate_on: Option<NaiveDate>,
    pub ended_on: Option<NaiveDate>,
    pub last_order: OrderDetails,
}

impl Subscription {
    /// Live on `date`: started, not yet deactivated, not ended.
    pub fn is_live_on(&self, date: NaiveDate) -> bool {
        self.terms.effective_start <= date
            && self.deactivate_on.is_none_or(|d| date < d)
            && self.ended_on.is_none_or(|d| date < d)
    }

    /// The first day it is no longer live, if one is known.
    pub fn end_date(&self) -> Option<NaiveDate> {
        match (self.deactivate_on, self.ended_on) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub id: RecipientId,
    pub email: String,
    pub kinds: BTreeSet<NotificationKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub id: MembershipId,
    pub user: UserId,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
}

/// One workspace, folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub billing_mode: BillingMode,
    pub created_on: NaiveDate,
    pub legacy_plan: Option<LegacyPlan>,
    pub migrated_on: Option<NaiveDate>,
    pub billing_info: BillingInfo,
    pub billing_activated_on: Option<NaiveDate>,
    pub status_authority: StatusAuthority,
    pub scim_default_status: UserStatus,
    pub sync: Option<SyncTool>,
    pub accounts: BTreeMap<AccountId, Account>,
    pub organizations: BTreeMap<OrgId, Organization>,
    pub users: BTreeMap<UserId, User>,
    pub usernames: BTreeMap<String, UserId>,
    pub groups: BTreeMap<GroupId, Group>,
    /// Boxed: a subscription takes about 700 bytes, and a map node holds
    /// eleven values inline however few a workspace has (docs/benchmarks.md,
    /// lever 28).
    pub subscriptions: BTreeMap<SubscriptionId, Box<Subscription>>,
    pub settings: BTreeMap<PoolKey, LicenceSettings>,
    pub alerts_raised: BTreeSet<PoolKey>,
    pub recipients: BTreeMap<RecipientId, Recipient>,
    /// (trigger event, pool) of every top-up applied or stopped by a cap:
    /// one event may drain several pools, and each is topped up once.
    pub applied_top_ups: BTreeSet<(uuid::Uuid, PoolKey)>,
    /// Licences added by top-ups, per pool and calendar month (for the cap per month).
    pub top_ups_by_month: BTreeMap<(PoolKey, crate::calendar::Month), u64>,
    pub memberships: BTreeMap<MembershipId, Membership>,
    /// Ids of recorded one-off activity ("reservation/…", "series/…/date",
    /// "punch/…"), kept so that `decide` refuses the same activity twice.
    /// The one part of a workspace that grows with its history rather than
    /// with its size; a read-side copy drops it ([`Workspace::for_reading`]).
    pub activity_ids: BTreeSet<String>,
    /// False on a read-side copy, which keeps no activity ids and must not
    /// be decided on.
    pub keeps_activity_ids: bool,
    /// Seats held per pool: non-deleted users holding the SKU directly or
    /// through a group. Kept up to date by `evolve`; never below zero.
    pub seats: BTreeMap<PoolKey, u64>,
}

impl Workspace {
    /// This workspace as a read-side copy: projections that show or count
    /// what a workspace holds, and never decide on it, need not remember
    /// every reservation and punch-pass id ever recorded. Everything else
    /// folds exactly as before.
    pub fn for_reading(mut self) -> Workspace {
        self.keeps_activity_ids = false;
        self.activity_ids = BTreeSet::new();
        self
    }

    /// Remember a one-off activity's id, unless this is a read-side copy
    /// (the id is then not even formatted).
    fn remember_activity(&mut self, id: impl FnOnce() -> String) {
        if self.keeps_activity_ids {
            self.activity_ids.insert(id());
        }
    }

    /// A workspace exists from its `WorkspaceCreated` event on.
    pub fn evolve(state: Option<Workspace>, event: &Event) -> Option<Workspace> {
        match (state, event) {
            (None, Event::WorkspaceCreated { workspace, name, billing_mode, created_on, legacy_plan }) => {
                Some(Workspace {
                    id: workspace.clone(),
                    name: name.clone(),
                    billing_mode: *billing_mode,
                    created_on: *created_on,
                    legacy_plan: *legacy_plan,
                    migrated_on: None,
                    billing_info: BillingInfo::default(),
                    billing_activated_on: None,
                    status_authority: StatusAuthority::Workspace,
                    scim_default_status: UserStatus::Active,
                    sync: None,
                    accounts: BTreeMap::new(),
                    organizations: BTreeMap::new(),
                    users: BTreeMap::new(),
                    usernames: BTreeMap::new(),
                    groups: BTreeMap::new(),
                    subscriptions: BTreeMap::new(),
                    settings: BTreeMap::new(),
                    alerts_raised: BTreeSet::new(),
                    recipients: BTreeMap::new(),
                    applied_top_ups: BTreeSet::new(),
                    top_ups_by_month: BTreeMap::new(),
                    memberships: BTreeMap::new(),
                    activity_ids: BTreeSet::new(),
                    keeps_activity_ids: true,
                    seats: BTreeMap::new(),
                })
            }
            (Some(mut ws), event) => {
                ws.apply(event);
                Some(ws)
            }
            (None, other) => panic!("event {other:?} recorded before its workspace was created"),
        }
    }

    /// Apply one recorded event in place.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::WorkspaceCreated { .. } => panic!("workspace `{}` created twice", self.id),
            Event::BillingInfoSet { info } => self.billing_info = info.clone(),
            Event::WorkspaceMigratedToModules { migrated_on } => self.migrated_on = Some(*migrated_on),
            Event::BillingActivated { activated_on } => self.billing_activated_on = Some(*activated_on),
            Event::BillingAccountOpened { account, name, currency, tax_rate, billing_contract } => {
                self.accounts.insert(
                    account.clone(),
                    Account {
                        id: account.clone(),
                        name: name.clone(),
                        currency: *currency,
                        tax_rate: *tax_rate,
                        billing_contract: billing_contract.clone(),
                    },
                );
            }
            Event::OrganizationCreated { org, name, parent, account } => {
                self.organizations.insert(
                    org.clone(),
                    Organization {
                        id: org.clone(),
                        name: name.clone(),
                        parent: parent.clone(),
                        account: account.clone(),
                    },
                );
            }
            Event::SubscriptionCreated { terms } => {
                self.subscriptions.insert(
                    terms.subscription.clone(),
                    Box::new(Subscription {
                        quantity: terms.quantity,
                        trial: terms.trial,
                        deactivate_on: terms.deactivate_on,
                        ended_on: None,
                        last_order: terms.order.clone(),
                        terms: (**terms).clone(),
                    }),
                );
            }
            Event::QuantityChanged { subscription, pool, from, to, reason, order, .. } => {
                let sub = self.subscription_mut(subscription);
                sub.quantity = *to;
                sub.last_order = order.clone();
                if let QuantityReason::AutomaticTopUp { trigger_event } = reason {
                    self.applied_top_ups.insert((*trigger_event, pool.clone()));
                    // A top-up's order date is the day it was decided on.
                    if let Some(day) = order.order_date {
                        let month = crate::calendar::Month::containing(day);
                        *self.top_ups_by_month.entry((pool.clone(), month)).or_default() +=
                            u64::from(to.saturating_sub(*from));
                    }
                }
            }
            Event::TopUpCapReached { trigger_event, pool, .. } => {
                self.applied_top_ups.insert((*trigger_event, pool.clone()));
            }
            Event::DeactivationScheduled { subscription, deactivate_on } => {
                self.subscription_mut(subscription).deactivate_on = *deactivate_on;
            }
            Event::TrialEnded { subscription, converted, ended_on } => {
                let sub = self.subscription_mut(subscription);
                sub.trial = false;
                if !converted {
                    sub.ended_on = Some(*ended_on);
                }
            }
            Event::SubscriptionEnded { subscription, ended_on } => {
                self.subscription_mut(subscription).ended_on = Some(*ended_on);
            }
            Event::LicenceSettingsChanged { pool, settings } => {
                self.settings.insert(pool.clone(), *settings);
            }
            Event::LowLicenceAlertRaised { pool, .. } => {
                self.alerts_raised.insert(pool.clone());
            }
            Event::LicenceAlertCleared { pool, .. } => {
                self.alerts_raised.remove(pool);
            }
            Event::NotificationRecipientAdded { recipient, email, kinds } => {
                self.recipients.insert(
                    recipient.clone(),
                    Recipient { id: recipient.clone(), email: email.clone(), kinds: kinds.iter().copied().collect() },
                );
            }
            Event::NotificationSettingsChanged { recipient, kinds } => {
                if let Some(r) = self.recipients.get_mut(recipient) {
                    r.kinds = kinds.iter().copied().collect();
                }
            }
            Event::NotificationRecipientRemoved { recipient } => {
                self.recipients.remove(recipient);
            }
            Event::UserAdded { user, org, profile, status, source } => {
                self.usernames.insert(profile.username.clone(), user.clone());
                self.users.insert(
                    user.clone(),
                    User {
                        id: user.clone(),
                        org: org.clone(),
                        profile: profile.clone(),
                        status: *status,
                        source: *source,
                        direct_modules: BTreeSet::new(),
                        groups: BTreeSet::new(),
                    },
                );
            }
            Event::UserProfileUpdated { user, profile } => {
                let old = self.user_mut(user).profile.username.clone();
                self.usernames.remove(&old);
                self.usernames.insert(profile.username.clone(), user.clone());
                self.user_mut(user).profile = profile.clone();
            }
            Event::UserStatusChanged { user, to, .. } => {
                let to = *to;
                self.track_seats(std::slice::from_ref(user), |ws| ws.user_mut(user).status = to);
            }
            Event::StatusAuthoritySet { authority } => self.status_authority = *authority,
            Event::ScimDefaultStatusSet { status } => self.scim_default_status = *status,
            Event::SyncStarted { tool } => self.sync = Some(*tool),
            Event::SyncStopped { .. } => self.sync = None,
            Event::GroupCreated { group, name } => {
                self.groups.insert(
                    group.clone(),
                    Group { id: group.clone(), name: name.clone(), members: BTreeSet::new(), modules: BTreeSet::new() },
                );
            }
            Event::GroupMemberAdded { group, user } => {
                self.track_seats(std::slice::from_ref(user), |ws| {
                    ws.group_mut(group).members.insert(user.clone());
                    ws.user_mut(user).groups.insert(group.clone());
                });
            }
            Event::GroupMemberRemoved { group, user } => {
                self.track_seats(std::slice::from_ref(user), |ws| {
                    ws.group_mut(group).members.remove(user);
                    ws.user_mut(user).groups.remove(group);
                });
            }
            Event::ModuleAssigned { sku, target } | Event::ModuleUnassigned { sku, target } => {
                let assign = matches!(event, Event::ModuleAssigned { .. });
                let affected = self.users_of(target);
                self.track_seats(&affected, |ws| {
                    let modules = match target {
                        ModuleTarget::User(u) => &mut ws.user_mut(u).direct_modules,
                        ModuleTarget::Group(g) => &mut ws.group_mut(g).modules,
                    };
                    if assign {
                        modules.insert(sku.clone());
                    } else {
                        modules.remove(sku);
                    }
                });
            }
            Event::ReservationMade { reservation, .. } => {
                self.remember_activity(|| format!("reservation/{reservation}"));
            }
            Event::RecurringReservationOccurred { series, user, occurs_on } => {
                self.remember_activity(|| format!("series/{series}/{user}/{occurs_on}"));
            }
            Event::MembershipStarted { membership, user, starts_on, ends_on } => {
                self.memberships.insert(
                    membership.clone(),
                    Membership { id: membership.clone(), user: user.clone(), starts_on: *starts_on, ends_on: *ends_on },
                );
            }
            Event::MembershipEnded { membership, ends_on } => {
                if let Some(m) = self.memberships.get_mut(membership) {
                    m.ends_on = Some(*ends_on);
                }
            }
            Event::PunchPassUsed { use_id, .. } => {
                self.remember_activity(|| format!("punch/{use_id}"));
            }
            Event::ProductDefined { .. }
            | Event::PriceSet { .. }
            | Event::BundleDefined { .. }
            | Event::PricesIndexed { .. } => panic!("catalog event recorded in workspace `{}`", self.id),
            Event::InvoiceIssued { .. }
            | Event::CreditNoteIssued { .. }
            | Event::DebitNoteIssued { .. }
            | Event::NotificationSent { .. }
            | Event::NotificationFailed { .. } => {
                panic!("an invoice or outbox event recorded in the workspace stream of `{}`", self.id)
            }
        }
    }

    fn subscription_mut(&mut self, id: &SubscriptionId) -> &mut Subscription {
        self.subscriptions.get_mut(id).unwrap_or_else(|| panic!("subscription `{id}` is not in the workspace"))
    }

    fn user_mut(&mut self, id: &UserId) -> &mut User {
        self.users.get_mut(id).unwrap_or_else(|| panic!("user `{id}` is not in the workspace"))
    }

    fn group_mut(&mut self, id: &GroupId) -> &mut Group {
        self.groups.get_mut(id).unwrap_or_else(|| panic!("group `{id}` is not in the workspace"))
    }

    /// The users a module assignment reaches.
    pub fn users_of(&self, target: &ModuleTarget) -> Vec<UserId> {
        match target {
            ModuleTarget::User(u) => vec![u.clone()],
            ModuleTarget::Group(g) => {
                self.groups.get(g).map(|g| g.members.iter().cloned().collect()).unwrap_or_default()
            }
        }
    }

    /// Run `change` and move the seat counts of `users` from what they held
    /// before to what they hold after.
    fn track_seats(&mut self, users: &[UserId], change: impl FnOnce(&mut Self)) {
        let before: Vec<(PoolScope, BTreeSet<Sku>)> =
            users.iter().map(|u| (self.pool_scope_of_user(u), self.seat_holdings(u))).collect();
        change(self);
        for (user, (scope, held_before)) in users.iter().zip(before) {
            let held_after = self.seat_holdings(user);
            for sku in held_before.difference(&held_after) {
                let key = PoolKey { scope: scope.clone(), sku: sku.clone() };
                let seats = self.seats.get_mut(&key).expect("a held seat is counted");
                assert!(*seats > 0, "seat count of pool {key} would go below zero");
                *seats -= 1;
            }
            for sku in held_after.difference(&held_before) {
                *self.seats.entry(PoolKey { scope: scope.clone(), sku: sku.clone() }).or_insert(0) += 1;
            }
        }
    }

    /// The modules a user holds: direct ones plus those of their groups.
    pub fn modules_of(&self, user: &UserId) -> BTreeSet<Sku> {
        let Some(u) = self.users.get(user) else { return BTreeSet::new() };
        let mut modules = u.direct_modules.clone();
        for g in &u.groups {
            if let Some(group) = self.groups.get(g) {
                modules.extend(group.modules.iter().cloned());
            }
        }
        modules
    }

    /// The modules that occupy a seat: none for a deleted user.
    pub fn seat_holdings(&self, user: &UserId) -> BTreeSet<Sku> {
        match self.users.get(user) {
            Some(u) if u.status != UserStatus::Deleted => self.modules_of(user),
            _ => BTreeSet::new(),
        }
    }

    /// The top of an organization's tree.
    pub fn top_level_of(&self, org: &OrgId) -> OrgId {
        let mut current = org.clone();
        // The tree is acyclic: a parent must exist before its child is created.
        for _ in 0..=self.organizations.len() {
            match self.organizations.get(&current).and_then(|o| o.parent.clone()) {
                Some(parent) => current = parent,
                None => return current,
            }
        }
        panic!("organization tree of workspace `{}` has a cycle at `{org}`", self.id)
    }

    /// The billing account an organization bills to in assigned mode (its
    /// top-level organization's), or the workspace's only account in single mode.
    pub fn account_of_org(&self, org: &OrgId) -> Option<AccountId> {
        match self.billing_mode {
            BillingMode::Assigned => self.organizations.get(&self.top_level_of(org)).and_then(|o| o.account.clone()),
            BillingMode::Single => self.accounts.keys().next().cloned(),
            BillingMode::Pooled => None,
        }
    }

    /// Which pool scope a user's seats come from.
    pub fn pool_scope_of_user(&self, user: &UserId) -> PoolScope {
        match (self.billing_mode, self.users.get(user)) {
            (BillingMode::Assigned, Some(u)) => PoolScope::Organization(self.top_level_of(&u.org)),
            _ => PoolScope::Workspace,
        }
    }

    /// Which pool a subscription feeds.
    pub fn pool_of_subscription(&self, sub: &SubscriptionTerms) -> PoolKey {
        let scope = match (self.billing_mode, &sub.organization) {
            (BillingMode::Assigned, Some(org)) => PoolScope::Organization(org.clone()),
            _ => PoolScope::Workspace,
        };
        PoolKey { scope, sku: sub.sku.clone() }
    }

    /// Licences in a pool on a day: the sum of its live subscriptions.
    pub fn pool_total_on(&self, pool: &PoolKey, date: NaiveDate) -> u64 {
        self.subscriptions
            .values()
            .filter(|s| s.terms.sku == pool.sku && self.pool_of_subscription(&s.terms) == *pool && s.is_live_on(date))
            .map(|s| u64::from(s.quantity))
            .sum()
    }

    /// Seats assigned in a pool now.
    pub fn pool_assigned(&self, pool: &PoolKey) -> u64 {
        self.seats.get(pool).copied().unwrap_or(0)
    }

    /// Every pool that has a subscription, settings or assigned seats.
    pub fn pools(&self) -> BTreeSet<PoolKey> {
        let mut pools: BTreeSet<PoolKey> =
            self.subscriptions.values().map(|s| self.pool_of_subscription(&s.terms)).collect();
        pools.extend(self.settings.keys().cloned());
        pools.extend(self.seats.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k.clone()));
        pools
    }

    /// Whether the workspace is still billed on a legacy plan.
    pub fn is_legacy(&self) -> bool {
        self.legacy_plan.is_some() && self.migrated_on.is_none()
    }
}
