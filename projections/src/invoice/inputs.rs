//! What invoicing needs to know, folded from recorded events on effective
//! (business) time: user status, kind and modules, group membership and
//! modules, subscription quantities, activity, accounts and the org tree.

use super::timeline::Timeline;
use crate::{Recorded, SmallMap};
use chrono::{DateTime, NaiveDate, Utc};
use seatledger_domain::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct UserInputs {
    pub id: UserId,
    pub org: OrgId,
    pub status: Timeline<UserStatus>,
    pub kind: Timeline<(UserKind, Audience)>,
    /// Direct module assignments: true while assigned.
    pub modules: SmallMap<Sku, Timeline<bool>>,
    /// Group membership: true while a member.
    pub groups: SmallMap<GroupId, Timeline<bool>>,
    /// Qualifying activity for monthly active users.
    pub reservations: Vec<(DateTime<Utc>, uuid::Uuid)>,
    pub occurrences: Vec<(NaiveDate, uuid::Uuid)>,
    pub punches: Vec<(NaiveDate, uuid::Uuid)>,
}

#[derive(Debug, Clone)]
pub struct MembershipInputs {
    pub user: UserId,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub events: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone)]
pub struct SubscriptionInputs {
    pub terms: SubscriptionTerms,
    pub created_event: uuid::Uuid,
    pub quantity: Timeline<u32>,
    /// The latest deactivate-on date recorded, with the event that set it.
    pub deactivate_on: Option<(NaiveDate, uuid::Uuid)>,
    /// When the trial ended and whether it converted.
    pub trial_ended: Option<(NaiveDate, bool, uuid::Uuid)>,
    pub ended_on: Option<(NaiveDate, uuid::Uuid)>,
}

impl SubscriptionInputs {
    /// Live on `day`: started, not deactivated, not ended, not an expired trial.
    pub fn is_live_on(&self, day: NaiveDate) -> bool {
        let before = |end: Option<NaiveDate>| end.is_none_or(|e| day < e);
        self.terms.effective_start <= day
            && before(self.deactivate_on.map(|d| d.0))
            && before(self.ended_on.map(|d| d.0))
            && before(self.trial_ended.filter(|t| !t.1).map(|t| t.0))
    }

    /// A trial on `day`: a trial subscription whose trial had not ended.
    pub fn is_trial_on(&self, day: NaiveDate) -> bool {
        self.terms.trial && self.trial_ended.is_none_or(|(ended, _, _)| day < ended)
    }

    /// Events that end or shape the subscription (beyond its quantities).
    pub fn lifecycle_events(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        std::iter::once(self.created_event)
            .chain(self.deactivate_on.map(|d| d.1))
            .chain(self.trial_ended.map(|t| t.2))
            .chain(self.ended_on.map(|e| e.1))
    }
}

#[derive(Debug, Clone)]
pub struct AccountInputs {
    pub id: AccountId,
    pub name: String,
    pub currency: Currency,
    pub tax_rate: Percent,
    pub event: uuid::Uuid,
    /// When the account was opened (business time).
    pub opened_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct WorkspaceInputs {
    pub id: WorkspaceId,
    pub billing_mode: BillingMode,
    pub legacy_plan: Option<LegacyPlan>,
    pub migrated_on: Option<(NaiveDate, uuid::Uuid)>,
    pub created_event: uuid::Uuid,
    pub billing_info: BillingInfo,
    /// When billing was activated (a new customer's first charge counts the
    /// users active at that instant).
    pub activated: Option<(DateTime<Utc>, uuid::Uuid)>,
    pub accounts: BTreeMap<AccountId, AccountInputs>,
    pub orgs: BTreeMap<OrgId, (Option<OrgId>, Option<AccountId>)>,
    pub users: BTreeMap<UserId, UserInputs>,
    pub group_modules: BTreeMap<GroupId, SmallMap<Sku, Timeline<bool>>>,
    /// Boxed: a subscription's inputs take about 700 bytes, and a map node
    /// holds eleven values inline however few a workspace has.
    pub subscriptions: BTreeMap<SubscriptionId, Box<SubscriptionInputs>>,
    pub memberships: BTreeMap<MembershipId, MembershipInputs>,
    /// Running SHA-256 over the ids of this workspace's events.
    pub digest: Sha256,
    pub last_position: u64,
}

impl WorkspaceInputs {
    pub fn top_level_of(&self, org: &OrgId) -> OrgId {
        let mut current = org.clone();
        for _ in 0..=self.orgs.len() {
            match self.orgs.get(&current).and_then(|(parent, _)| parent.clone()) {
                Some(parent) => current = parent,
                None => return current,
            }
        }
        panic!("organization tree of workspace `{}` has a cycle at `{org}`", self.id)
    }

    /// Whether `day` is billed on the legacy plan.
    pub fn is_legacy_on(&self, day: NaiveDate) -> bool {
        self.legacy_plan.is_some() && self.migrated_on.is_none_or(|(m, _)| day < m)
    }
}

/// The invoice inputs of every workspace, plus the catalog.
#[derive(Debug, Clone, Default)]
pub struct InvoiceInputs {
    pub catalog: Catalog,
    /// Price indexations with the events that recorded them.
    pub indexations: Vec<(NaiveDate, Percent, uuid::Uuid)>,
    pub catalog_digest: Sha256,
    pub workspaces: BTreeMap<WorkspaceId, WorkspaceInputs>,
    pub last_position: u64,
}

impl InvoiceInputs {
    /// The digest of every event an invoice of `workspace` could depend on.
    pub fn digest_for(&self, workspace: &WorkspaceInputs) -> String {
        let mut h = Sha256::new();
        h.update(self.catalog_digest.clone().finalize());
        h.update(workspace.digest.clone().finalize());
        hex_string(&h.finalize())
    }

    pub fn apply(&mut self, r: &Recorded<'_>) {
        self.last_position = r.position;
        match r.stream {
            StreamId::Catalog => {
                self.catalog_digest.update(r.id.as_bytes());
                if let Event::PricesIndexed { percent, effective_on } = r.event {
                    self.indexations.push((*effective_on, *percent, r.id));
                    self.indexations.sort_by_key(|i| i.0);
                }
                self.catalog.apply(r.event);
            }
            StreamId::Invoices(_) | StreamId::Outbox(_) => {}
            StreamId::Workspace(id) => {
                if let Event::WorkspaceCreated { workspace, billing_mode, legacy_plan, .. } = r.event {
                    self.workspaces.insert(
                        id.clone(),
                        WorkspaceInputs {
                            id: workspace.clone(),
                            billing_mode: *billing_mode,
                            legacy_plan: *legacy_plan,
                            migrated_on: None,
                            created_event: r.id,
                            billing_info: BillingInfo::default(),
                            activated: None,
                            accounts: BTreeMap::new(),
                            orgs: BTreeMap::new(),
                            users: BTreeMap::new(),
                            group_modules: BTreeMap::new(),
                            subscriptions: BTreeMap::new(),
                            memberships: BTreeMap::new(),
                            digest: Sha256::new(),
                            last_position: 0,
                        },
                    );
                }
                let Some(ws) = self.workspaces.get_mut(id) else { return };
                ws.digest.update(r.id.as_bytes());
                ws.last_position = r.position;
                apply_workspace(ws, r);
            }
        }
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn apply_workspace(ws: &mut WorkspaceInputs, r: &Recorded<'_>) {
    let at = r.effective_at;
    let (pos, id) = (r.position, r.id);
    match r.event {
        Event::BillingInfoSet { info } => ws.billing_info = info.clone(),
        Event::WorkspaceMigratedToModules { migrated_on } => ws.migrated_on = Some((*migrated_on, id)),
        Event::BillingActivated { .. } => ws.activated = Some((at, id)),
        Event::BillingAccountOpened { account, name, currency, tax_rate, .. } => {
            ws.accounts.insert(
                account.clone(),
                AccountInputs {
                    id: account.clone(),
                    name: name.clone(),
                    currency: *currency,
                    tax_rate: *tax_rate,
                    event: id,
                    opened_at: at,
                },
            );
        }
        Event::OrganizationCreated { org, parent, account, .. } => {
            ws.orgs.insert(org.clone(), (parent.clone(), account.clone()));
        }
        Event::SubscriptionCreated { terms } => {
            // The ordered quantity holds from the effective start when the
            // order is backdated; otherwise from the order itself, so that a
            // change made before a future start still wins.
            let mut quantity = Timeline::default();
            quantity.push(super::timeline::day_start(terms.effective_start).min(at), pos, terms.quantity, id);
            ws.subscriptions.insert(
                terms.subscription.clone(),
                Box::new(SubscriptionInputs {
                    terms: (**terms).clone(),
                    created_event: id,
                    quantity,
                    deactivate_on: terms.deactivate_on.map(|d| (d, id)),
                    trial_ended: None,
                    ended_on: None,
                }),
            );
        }
        Event::QuantityChanged { subscription, to, .. } => {
            if let Some(s) = ws.subscriptions.get_mut(subscription) {
                s.quantity.push(at, pos, *to, id);
            }
        }
        Event::DeactivationScheduled { subscription, deactivate_on } => {
            if let Some(s) = ws.subscriptions.get_mut(subscription) {
                s.deactivate_on = deactivate_on.map(|d| (d, id));
            }
        }
        Event::TrialEnded { subscription, converted, ended_on } => {
            if let Some(s) = ws.subscriptions.get_mut(subscription) {
                s.trial_ended = Some((*ended_on, *converted, id));
            }
        }
        Event::SubscriptionEnded { subscription, ended_on } => {
            if let Some(s) = ws.subscriptions.get_mut(subscription) {
                s.ended_on = Some((*ended_on, id));
            }
        }
        Event::UserAdded { user, org, profile, status, .. } => {
            let mut u = UserInputs {
                id: user.clone(),
                org: org.clone(),
                status: Timeline::default(),
                kind: Timeline::default(),
                modules: SmallMap::new(),
                groups: SmallMap::new(),
                reservations: vec![],
                occurrences: vec![],
                punches: vec![],
            };
            u.status.push(at, pos, *status, id);
            u.kind.push(at, pos, (profile.kind, profile.audience), id);
            ws.users.insert(user.clone(), u);
        }
        Event::UserProfileUpdated { user, profile } => {
            if let Some(u) = ws.users.get_mut(user) {
                u.kind.push(at, pos, (profile.kind, profile.audience), id);
            }
        }
        Event::UserStatusChanged { user, to, .. } => {
            if let Some(u) = ws.users.get_mut(user) {
                u.status.push(at, pos, *to, id);
            }
        }
        Event::GroupCreated { group, .. } => {
            ws.group_modules.entry(group.clone()).or_default();
        }
        Event::GroupMemberAdded { group, user } | Event::GroupMemberRemoved { group, user } => {
            let joined = matches!(r.event, Event::GroupMemberAdded { .. });
            if let Some(u) = ws.users.get_mut(user) {
                u.groups.entry(group.clone()).or_default().push(at, pos, joined, id);
            }
        }
        Event::ModuleAssigned { sku, target } | Event::ModuleUnassigned { sku, target } => {
            let assigned = matches!(r.event, Event::ModuleAssigned { .. });
            let timeline = match target {
                ModuleTarget::User(u) => ws.users.get_mut(u).map(|u| u.modules.entry(sku.clone()).or_default()),
                ModuleTarget::Group(g) => {
                    Some(ws.group_modules.entry(g.clone()).or_default().entry(sku.clone()).or_default())
                }
            };
            if let Some(t) = timeline {
                t.push(at, pos, assigned, id);
            }
        }
        Event::ReservationMade { user, starts_at, .. } => {
            if let Some(u) = ws.users.get_mut(user) {
                u.reservations.push((*starts_at, id));
            }
        }
        Event::RecurringReservationOccurred { user, occurs_on, .. } => {
            if let Some(u) = ws.users.get_mut(user) {
                u.occurrences.push((*occurs_on, id));
            }
        }
        Event::PunchPassUsed { user, used_on, .. } => {
            if let Some(u) = ws.users.get_mut(user) {
                u.punches.push((*used_on, id));
            }
        }
        Event::MembershipStarted { membership, user, starts_on, ends_on } => {
            ws.memberships.insert(
                membership.clone(),
                MembershipInputs { user: user.clone(), starts_on: *starts_on, ends_on: *ends_on, events: vec![id] },
            );
        }
        Event::MembershipEnded { membership, ends_on } => {
            if let Some(m) = ws.memberships.get_mut(membership) {
                m.ends_on = Some(*ends_on);
                m.events.push(id);
            }
        }
        _ => {}
    }
}
