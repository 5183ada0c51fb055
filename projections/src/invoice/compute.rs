//! Monthly invoices, computed from the folded inputs. Every rule here is
//! written down in `docs/invoicing.md`; the comments say where a rule was a
//! choice.

use super::inputs::*;
use super::timeline::day_start;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use seatledger_domain::*;
use std::collections::{BTreeMap, BTreeSet};

/// Why an invoice cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceProblem {
    UnknownWorkspace(WorkspaceId),
    UnknownAccount {
        workspace: WorkspaceId,
        account: AccountId,
    },
    /// The account was opened after the month ended: it has no invoice for it.
    AccountNotOpened {
        workspace: WorkspaceId,
        account: AccountId,
        period: Month,
    },
    /// Users used a product that the account has no subscription pricing.
    Unpriced {
        workspace: WorkspaceId,
        account: AccountId,
        sku: Sku,
        currency: Currency,
        users: usize,
    },
}

impl std::fmt::Display for InvoiceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvoiceProblem::UnknownWorkspace(w) => write!(f, "workspace `{w}` does not exist"),
            InvoiceProblem::UnknownAccount { workspace, account } => {
                write!(f, "billing account `{account}` does not exist in workspace `{workspace}`")
            }
            InvoiceProblem::AccountNotOpened { workspace, account, period } => write!(
                f,
                "billing account `{account}` of workspace `{workspace}` was opened after {period} ended: it has no invoice for {period}"
            ),
            InvoiceProblem::Unpriced { workspace, account, sku, currency, users } => write!(
                f,
                "{users} user(s) of workspace `{workspace}` used `{sku}`, but billing account `{account}` has no \
                 subscription pricing it in {currency}: a price is missing"
            ),
        }
    }
}

impl std::error::Error for InvoiceProblem {}

/// The unit price factor from price indexations on `day`, for a
/// subscription that is not exempt.
fn index_factor(inputs: &InvoiceInputs, day: NaiveDate) -> (Decimal, Vec<uuid::Uuid>) {
    let mut factor = Decimal::ONE;
    let mut events = vec![];
    for (from, percent, id) in &inputs.indexations {
        if *from <= day {
            factor *= Decimal::ONE + percent.fraction();
            events.push(*id);
        }
    }
    (factor, events)
}

fn input(name: &str, value: impl ToString) -> LineInput {
    LineInput { name: name.to_owned(), value: value.to_string() }
}

fn discount_factor(discount: Percent) -> Decimal {
    Decimal::ONE - discount.fraction()
}

/// Round once, at the line: the single rounding rule of the ledger.
fn amount(value: Decimal, currency: Currency) -> Money {
    Money::new(value, currency).round_to_minor_unit()
}

/// A unit price keeps every digit it has (an indexed price is not rounded),
/// but zero is written like every other zero, to the minor unit.
fn unit_money(unit: Decimal, currency: Currency) -> Money {
    if unit.is_zero() {
        Money::zero(currency)
    } else {
        Money::new(unit, currency)
    }
}

/// Provenance ids, once each, in id order: event ids are UUIDv7, so this is
/// the order in which the ledger recorded them.
fn dedup(mut ids: Vec<uuid::Uuid>) -> Vec<uuid::Uuid> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

struct Ctx<'a> {
    inputs: &'a InvoiceInputs,
    ws: &'a WorkspaceInputs,
    month: Month,
    days: Vec<NaiveDate>,
}

impl Ctx<'_> {
    fn days_in_month(&self) -> Decimal {
        Decimal::from(self.month.days())
    }

    fn product_name(&self, sku: &Sku) -> String {
        self.inputs.catalog.product(sku).map_or_else(|| sku.to_string(), |p| p.name.clone())
    }

    fn charge_model(&self, sku: &Sku) -> Option<ChargeModel> {
        self.inputs.catalog.product(sku).map(|p| p.charge_model)
    }

    /// The subscription that prices `sku` for `account` this month: the
    /// earliest-starting one live on some day of the month.
    fn pricing(&self, account: &AccountId, sku: &Sku) -> Option<&SubscriptionInputs> {
        self.ws
            .subscriptions
            .values()
            .filter(|s| &s.terms.account == account && &s.terms.sku == sku)
            .filter(|s| self.days.iter().any(|d| s.is_live_on(*d)))
            .min_by_key(|s| (s.terms.effective_start, s.terms.subscription.clone()))
            .map(|s| &**s)
    }

    /// The account a user's use of `sku` is billed to. Single: the one
    /// account. Assigned: the account of the user's top-level organization.
    /// Pooled (a documented rule): the account holding the earliest-starting
    /// live subscription for the SKU.
    fn account_for(&self, user: &UserInputs, sku: &Sku) -> Option<AccountId> {
        match self.ws.billing_mode {
            BillingMode::Single => self.ws.accounts.keys().next().cloned(),
            BillingMode::Assigned => self.ws.orgs.get(&self.ws.top_level_of(&user.org)).and_then(|o| o.1.clone()),
            BillingMode::Pooled => self
                .ws
                .subscriptions
                .values()
                .filter(|s| &s.terms.sku == sku && self.days.iter().any(|d| s.is_live_on(*d)))
                .min_by_key(|s| (s.terms.effective_start, s.terms.subscription.clone()))
                .map(|s| s.terms.account.clone()),
        }
    }

    /// The SKU of the workspace's legacy plan: the plan's name in capitals.
    fn legacy_sku(&self) -> Option<Sku> {
        let plan = self.ws.legacy_plan?;
        self.inputs
            .catalog
            .products
            .values()
            .find(|p| p.kind == ProductKind::LegacyPlan && p.sku.as_str().eq_ignore_ascii_case(plan.as_str()))
            .map(|p| p.sku.clone())
    }
}

/// Daily users per (account, sku, kind), for per-user charges. Users are
/// indices into the workspace's users in id order, so the daily lists stay
/// sorted and nothing is cloned or compared as text on the hot path.
#[derive(Debug, Default)]
struct Usage {
    daily: Vec<Vec<u32>>,
    /// Every user counted on some day, once.
    users: Vec<u32>,
    events: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum UsageKind {
    /// A per-active-user module, billed.
    Module,
    /// The legacy plan of a legacy workspace, billed.
    LegacyPlan,
    /// A module used by a legacy workspace before migration: a free trial.
    LegacyTrial,
}

type UsageKey = (AccountId, Sku, UserKind, UsageKind);

fn collect_usage<'a>(ctx: &Ctx<'a>) -> (BTreeMap<UsageKey, Usage>, Vec<&'a UserInputs>) {
    let users: Vec<&UserInputs> = ctx.ws.users.values().collect();
    let mut usage: BTreeMap<UsageKey, Usage> = BTreeMap::new();
    let n = ctx.days.len();
    let legacy_sku = ctx.legacy_sku();
    let bounds: Vec<_> = ctx.days.iter().map(|d| (day_start(*d), day_start(*d + chrono::Days::new(1)))).collect();
    let legacy_days: Vec<bool> = ctx.days.iter().map(|d| ctx.ws.is_legacy_on(*d)).collect();
    // Pooled mode asks which account bills a SKU; the answer is the same for every user.
    let mut pooled_accounts: BTreeMap<&Sku, Option<AccountId>> = BTreeMap::new();
    let legacy_mask: u64 = legacy_days.iter().enumerate().filter(|(_, l)| **l).fold(0, |m, (i, _)| m | 1 << i);
    for (index, user) in users.iter().enumerate() {
        let index = u32::try_from(index).expect("fewer than 4 billion users in a workspace");
        // Billable on a day if active at any moment of it.
        let active = user.status.mask_during(&bounds, |s| *s == UserStatus::Active);
        if active == 0 {
            continue;
        }
        // The user's kind on each day: as it stood at the day's end.
        let kinds = user.kind.last_in_each(&bounds);
        // Days on which each module was held at some moment.
        let mut held: BTreeMap<&Sku, u64> = BTreeMap::new();
        for (sku, tl) in &user.modules {
            *held.entry(sku).or_default() |= tl.mask_during(&bounds, |a| *a);
        }
        for (group, membership) in &user.groups {
            let member = membership.mask_during(&bounds, |m| *m);
            if member == 0 {
                continue;
            }
            for (sku, tl) in ctx.ws.group_modules.get(group).into_iter().flatten() {
                *held.entry(sku).or_default() |= member & tl.mask_during(&bounds, |a| *a);
            }
        }
        // Which days count for what: the plan on legacy days, modules as
        // trials on legacy days and as billed modules after migration.
        let mut grants: Vec<(&Sku, u64, UsageKind)> = vec![];
        if let Some(plan) = &legacy_sku {
            grants.push((plan, active & legacy_mask, UsageKind::LegacyPlan));
        }
        for (sku, days) in held {
            let days = days & active;
            let Some(product) = ctx.inputs.catalog.product(sku) else { continue };
            if days == 0 || product.kind != ProductKind::Module {
                continue;
            }
            grants.push((sku, days & legacy_mask, UsageKind::LegacyTrial));
            if product.charge_model == ChargeModel::PerActiveUser {
                grants.push((sku, days & !legacy_mask, UsageKind::Module));
            }
        }
        let mut mine: BTreeMap<(&Sku, UserKind, UsageKind), Vec<usize>> = BTreeMap::new();
        for (sku, days, what) in grants {
            for (i, kind) in kinds.iter().enumerate().take(n) {
                if days & (1 << i) != 0 {
                    if let Some((kind, _)) = kind {
                        mine.entry((sku, *kind, what)).or_default().push(i);
                    }
                }
            }
        }
        for ((sku, kind, what), days) in mine {
            let account = match ctx.ws.billing_mode {
                BillingMode::Pooled => pooled_accounts.entry(sku).or_insert_with(|| ctx.account_for(user, sku)).clone(),
                _ => ctx.account_for(user, sku),
            };
            let Some(account) = account else { continue };
            let u = usage.entry((account, sku.clone(), kind, what)).or_default();
            if u.daily.is_empty() {
                u.daily = vec![Vec::new(); n];
            }
            for i in days {
                u.daily[i].push(index);
            }
            u.users.push(index);
        }
    }
    // Provenance: the events that decided each counted user's status,
    // kind, modules and groups during the month.
    let (m_start, m_end) = (day_start(ctx.month.first_day()), day_start(ctx.month.next().first_day()));
    for ((_, sku, _, _), u) in usage.iter_mut() {
        for index in &u.users {
            let user = users[*index as usize];
            u.events.extend(user.status.events_during(m_start, m_end));
            u.events.extend(user.kind.events_during(m_start, m_end));
            if let Some(tl) = user.modules.get(sku) {
                u.events.extend(tl.events_during(m_start, m_end));
            }
            for (group, membership) in &user.groups {
                if let Some(tl) = ctx.ws.group_modules.get(group).and_then(|g| g.get(sku)) {
                    u.events.extend(membership.events_during(m_start, m_end));
                    u.events.extend(tl.events_during(m_start, m_end));
                }
            }
        }
    }
    (usage, users)
}

/// The distinct users of some days, in id order.
fn distinct(daily: &[&Vec<u32>]) -> Vec<u32> {
    let mut all: Vec<u32> = daily.iter().flat_map(|d| d.iter().copied()).collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn policy_name(p: CountingPolicy) -> &'static str {
    p.as_str()
}

/// A count of users: `numerator ÷ divisor`, kept apart so that amounts
/// multiply first and divide last (25 × 7.35 ÷ 30 is exactly 6.125, while
/// (25 ÷ 30) × 7.35 is 6.1249…).
struct Count {
    numerator: Decimal,
    divisor: Decimal,
    how: String,
}

impl Count {
    fn quantity(&self) -> Decimal {
        self.numerator / self.divisor
    }

    /// `quantity × unit × factor`, dividing last.
    fn times(&self, unit: Decimal, factor: Decimal) -> Decimal {
        self.numerator * unit * factor / self.divisor
    }
}

/// Count users over the counted days according to the policy.
fn count(policy: CountingPolicy, daily: &[&Vec<u32>], days_in_month: Decimal) -> Count {
    let counts: Vec<usize> = daily.iter().map(|d| d.len()).collect();
    let list = counts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let whole = |n: usize, how: String| Count { numerator: Decimal::from(n), divisor: Decimal::ONE, how };
    match policy {
        CountingPolicy::EndOfPeriod => {
            let last = counts.last().copied().unwrap_or(0);
            whole(last, format!("{last} users on the last day"))
        }
        CountingPolicy::Peak => {
            let peak = counts.iter().copied().max().unwrap_or(0);
            whole(peak, format!("peak of daily counts [{list}] = {peak}"))
        }
        CountingPolicy::AnyTime => {
            let users = distinct(daily).len();
            whole(users, format!("{users} distinct users on any day"))
        }
        CountingPolicy::DailyProrated => {
            let sum: usize = counts.iter().sum();
            Count {
                numerator: Decimal::from(sum),
                divisor: days_in_month,
                how: format!("Σ daily counts {sum} ÷ {days_in_month} days"),
            }
        }
    }
}

fn per_user_lines(
    ctx: &Ctx<'_>,
    lines: &mut BTreeMap<AccountId, Vec<InvoiceLine>>,
    problems: &mut Vec<InvoiceProblem>,
) {
    let (all_usage, users) = collect_usage(ctx);
    for ((account, sku, kind, what), usage) in all_usage {
        let Some(acc) = ctx.ws.accounts.get(&account) else { continue };
        let name = ctx.product_name(&sku);
        let kind_word = kind.as_str();
        if what == UsageKind::LegacyTrial {
            let all: Vec<&Vec<u32>> = usage.daily.iter().collect();
            let counted = count(CountingPolicy::AnyTime, &all, ctx.days_in_month());
            let (quantity, how) = (counted.quantity(), counted.how);
            lines.entry(account.clone()).or_default().push(InvoiceLine {
                key: format!("legacy_trial/{sku}/{kind_word}"),
                description: format!("{name} ({kind_word} users) — free trial until the workspace migrates to modules"),
                sku: Some(sku.clone()),
                subscription: None,
                rule: "legacy.module_trial".to_owned(),
                formula: format!("{how} × 0.00 (trial)"),
                quantity,
                unit_price: Money::zero(acc.currency),
                discount: Percent::ZERO,
                amount: amount(Decimal::ZERO, acc.currency),
                taxable: false,
                inputs: vec![input("days_in_month", ctx.month.days()), input("users", quantity)],
                events: dedup(usage.events.clone()),
            });
            continue;
        }
        let Some(sub) = ctx.pricing(&account, &sku) else {
            problems.push(InvoiceProblem::Unpriced {
                workspace: ctx.ws.id.clone(),
                account: account.clone(),
                sku: sku.clone(),
                currency: acc.currency,
                users: usage.users.len(),
            });
            continue;
        };
        let paid: Vec<usize> =
            (0..ctx.days.len()).filter(|i| sub.is_live_on(ctx.days[*i]) && !sub.is_trial_on(ctx.days[*i])).collect();
        let trial: Vec<usize> =
            (0..ctx.days.len()).filter(|i| sub.is_live_on(ctx.days[*i]) && sub.is_trial_on(ctx.days[*i])).collect();
        let (counted, is_trial) = if paid.is_empty() { (trial, true) } else { (paid, false) };
        if counted.is_empty() {
            continue;
        }
        let policy = sub.terms.counting_policy.unwrap_or(CountingPolicy::EndOfPeriod);
        let daily: Vec<&Vec<u32>> = counted.iter().map(|i| &usage.daily[*i]).collect();
        let counted_users = count(policy, &daily, ctx.days_in_month());
        let quantity = counted_users.quantity();
        let how = counted_users.how.clone();
        let list_price = match kind {
            UserKind::Regular => sub.terms.selling_per_unit,
            UserKind::Guest => sub.terms.guest_selling_per_unit.unwrap_or(sub.terms.selling_per_unit),
        };
        let last_day = ctx.days[*counted.last().expect("counted is not empty")];
        let (factor, index_events) =
            if sub.terms.exempt_from_indexation { (Decimal::ONE, vec![]) } else { index_factor(ctx.inputs, last_day) };
        let unit = if is_trial { Decimal::ZERO } else { list_price.amount * factor };
        let value = counted_users.times(unit, discount_factor(sub.terms.discount));
        let rule_base = match what {
            UsageKind::LegacyPlan => "legacy_plan",
            _ => "per_active_user",
        };
        let mut events = vec![sub.created_event];
        events.extend(usage.events.iter().copied());
        events.extend(index_events);
        let users: Vec<String> = distinct(&daily).iter().map(|i| users[*i as usize].id.to_string()).collect();
        lines.entry(account.clone()).or_default().push(InvoiceLine {
            key: format!("{rule_base}/{sku}/{kind_word}"),
            description: format!("{name}, {kind_word} users{}", if is_trial { " (trial)" } else { "" }),
            sku: Some(sku.clone()),
            subscription: Some(sub.terms.subscription.clone()),
            rule: format!("{rule_base}.{}{}", policy_name(policy), if is_trial { ".trial" } else { "" }),
            formula: format!(
                "{how} × {} {} × (1 − {})",
                unit.round_dp(6).normalize(),
                acc.currency,
                sub.terms.discount
            ),
            quantity,
            unit_price: unit_money(unit, acc.currency),
            discount: sub.terms.discount,
            amount: amount(value, acc.currency),
            taxable: sub.terms.taxable,
            inputs: vec![
                input("counting_policy", policy_name(policy)),
                input("days_in_month", ctx.month.days()),
                input("counted_days", counted.len()),
                input("daily_counts", daily.iter().map(|d| d.len().to_string()).collect::<Vec<_>>().join(",")),
                input("users", users.join(",")),
                input("unit_price", format!("{} {}", list_price.amount, acc.currency)),
                input("indexation_factor", factor.normalize()),
                input("discount", sub.terms.discount),
            ],
            events: dedup(events),
        });
    }
}

fn per_licence_lines(ctx: &Ctx<'_>, lines: &mut BTreeMap<AccountId, Vec<InvoiceLine>>) {
    let (m_start, m_end) = (day_start(ctx.month.first_day()), day_start(ctx.month.next().first_day()));
    for sub in ctx.ws.subscriptions.values() {
        if ctx.charge_model(&sub.terms.sku) != Some(ChargeModel::PerLicence) {
            continue;
        }
        let Some(acc) = ctx.ws.accounts.get(&sub.terms.account) else { continue };
        let mut paid: Vec<(NaiveDate, u32, Decimal)> = vec![];
        let mut trial: Vec<(NaiveDate, u32)> = vec![];
        let mut index_events = vec![];
        for day in &ctx.days {
            if !sub.is_live_on(*day) {
                continue;
            }
            let (start, end) = (day_start(*day), day_start(*day + chrono::Days::new(1)));
            // Each day is charged at the highest quantity held that day.
            let q = sub.quantity.during(start, end).copied().max().unwrap_or(0);
            if sub.is_trial_on(*day) {
                trial.push((*day, q));
            } else {
                let (factor, ids) = if sub.terms.exempt_from_indexation {
                    (Decimal::ONE, vec![])
                } else {
                    index_factor(ctx.inputs, *day)
                };
                index_events.extend(ids);
                paid.push((*day, q, factor));
            }
        }
        if paid.is_empty() && trial.is_empty() {
            continue;
        }
        let mut events: Vec<uuid::Uuid> = sub.lifecycle_events().collect();
        events.extend(sub.quantity.events_during(m_start, m_end));
        let name = sub.terms.friendly_name.clone().unwrap_or_else(|| sub.terms.name.clone());
        let zero_reason = if sub.terms.bundle_role == BundleRole::Child {
            Some("included in its bundle")
        } else if !sub.terms.billable {
            Some("not billable")
        } else {
            None
        };
        let days = ctx.days_in_month();
        let currency = acc.currency;
        let out = lines.entry(sub.terms.account.clone()).or_default();
        if !paid.is_empty() {
            let quantity_days: u64 = paid.iter().map(|(_, q, _)| u64::from(*q)).sum();
            let weighted: Decimal = paid.iter().map(|(_, q, f)| Decimal::from(*q) * f).sum();
            let list = sub.terms.selling_per_unit.amount;
            let price = if zero_reason.is_some() { Decimal::ZERO } else { list };
            let value = price * weighted * discount_factor(sub.terms.discount) / days;
            let quantity = Decimal::from(quantity_days) / days;
            let indexed = paid.iter().any(|(_, _, f)| *f != Decimal::ONE);
            let formula = if indexed {
                format!(
                    "{price} {currency} × Σ(daily quantity × indexation factor) {} ÷ {days} days × (1 − {})",
                    weighted.normalize(),
                    sub.terms.discount
                )
            } else {
                format!(
                    "{price} {currency} × {quantity_days} quantity-days ÷ {days} days × (1 − {})",
                    sub.terms.discount
                )
            };
            let mut all_events = events.clone();
            all_events.extend(index_events.iter().copied());
            out.push(InvoiceLine {
                key: format!("per_licence/{}", sub.terms.subscription),
                description: match zero_reason {
                    Some(why) => format!("{name} ({why})"),
                    None => name.clone(),
                },
                sku: Some(sub.terms.sku.clone()),
                subscription: Some(sub.terms.subscription.clone()),
                rule: format!("per_licence.daily_prorated{}", if zero_reason.is_some() { ".zero" } else { "" }),
                formula,
                quantity,
                unit_price: unit_money(price, currency),
                discount: sub.terms.discount,
                amount: amount(value, currency),
                taxable: sub.terms.taxable,
                inputs: vec![
                    input("days_in_month", ctx.month.days()),
                    input("billed_days", paid.len()),
                    input("quantity_days", quantity_days),
                    input("daily_quantities", paid.iter().map(|(_, q, _)| q.to_string()).collect::<Vec<_>>().join(",")),
                    input("unit_price", format!("{list} {currency}")),
                    input("discount", sub.terms.discount),
                    input("weighted_quantity_days", weighted.normalize()),
                    input(
                        "provisioning",
                        sub.terms
                            .provider
                            .as_ref()
                            .and_then(|p| p.provisioning_frequency)
                            .map_or("monthly", |f| f.as_str()),
                    ),
                ],
                events: dedup(all_events),
            });
        }
        if !trial.is_empty() {
            let quantity_days: u64 = trial.iter().map(|(_, q)| u64::from(*q)).sum();
            out.push(InvoiceLine {
                key: format!("per_licence/{}/trial", sub.terms.subscription),
                description: format!("{name} (trial)"),
                sku: Some(sub.terms.sku.clone()),
                subscription: Some(sub.terms.subscription.clone()),
                rule: "per_licence.trial".to_owned(),
                formula: format!("0.00 {currency} × {quantity_days} quantity-days ÷ {days} days (trial)"),
                quantity: Decimal::from(quantity_days) / days,
                unit_price: Money::zero(currency),
                discount: sub.terms.discount,
                amount: Money::zero(currency),
                taxable: sub.terms.taxable,
                inputs: vec![
                    input("days_in_month", ctx.month.days()),
                    input("trial_days", trial.len()),
                    input("quantity_days", quantity_days),
                ],
                events: dedup(events),
            });
        }
    }
}

fn monthly_active_lines(ctx: &Ctx<'_>, lines: &mut BTreeMap<AccountId, Vec<InvoiceLine>>) {
    let month_start = day_start(ctx.month.first_day());
    let month_end = day_start(ctx.month.next().first_day());
    let mut priced: BTreeSet<(AccountId, Sku)> = BTreeSet::new();
    for sub in ctx.ws.subscriptions.values() {
        if ctx.charge_model(&sub.terms.sku) != Some(ChargeModel::MonthlyActiveUser) {
            continue;
        }
        let key = (sub.terms.account.clone(), sub.terms.sku.clone());
        if priced.contains(&key)
            || ctx.pricing(&key.0, &key.1).map(|p| &p.terms.subscription) != Some(&sub.terms.subscription)
        {
            continue;
        }
        priced.insert(key);
        let Some(acc) = ctx.ws.accounts.get(&sub.terms.account) else { continue };
        let billed_here = |u: &UserInputs| ctx.account_for(u, &sub.terms.sku).as_ref() == Some(&acc.id);
        let mut counted: Vec<&UserId> = vec![];
        let mut events = vec![sub.created_event];
        let rule;
        let mut how_inputs = vec![];
        match ctx.ws.activated {
            Some((at, _)) if at >= month_end => continue,
            Some((at, id)) if at >= month_start => {
                // A new customer's first charge: the users active at activation.
                rule = "monthly_active_user.first_charge";
                events.push(id);
                for u in ctx.ws.users.values().filter(|u| billed_here(u)) {
                    if u.status.at(at) == Some(&UserStatus::Active) {
                        counted.push(&u.id);
                        events.extend(u.status.events_during(at, at + chrono::Duration::microseconds(1)));
                    }
                }
                how_inputs.push(input("activated_at", at.to_rfc3339()));
            }
            _ => {
                rule = "monthly_active_user";
                let m_first = ctx.month.first_day();
                let m_last = ctx.month.last_day();
                for u in ctx.ws.users.values().filter(|u| billed_here(u)) {
                    let audience = u.kind.before(month_end).map(|k| k.1);
                    let counts = match audience {
                        None => false,
                        Some(Audience::Internal) => {
                            let active = u.status.any_during(month_start, month_end, |s| *s == UserStatus::Active);
                            if active {
                                events.extend(u.status.events_during(month_start, month_end));
                            }
                            active
                        }
                        Some(Audience::External) => {
                            let mut acts: Vec<uuid::Uuid> = vec![];
                            acts.extend(
                                u.reservations.iter().filter(|(t, _)| *t >= month_start && *t < month_end).map(|r| r.1),
                            );
                            acts.extend(u.occurrences.iter().filter(|(d, _)| ctx.month.contains(*d)).map(|r| r.1));
                            acts.extend(u.punches.iter().filter(|(d, _)| ctx.month.contains(*d)).map(|r| r.1));
                            for m in ctx.ws.memberships.values().filter(|m| m.user == u.id) {
                                if m.starts_on <= m_last && m.ends_on.is_none_or(|e| e >= m_first) {
                                    acts.extend(m.events.iter().copied());
                                }
                            }
                            let any = !acts.is_empty();
                            events.extend(acts);
                            any
                        }
                    };
                    if counts {
                        counted.push(&u.id);
                    }
                }
            }
        }
        let quantity = Decimal::from(counted.len());
        let (factor, index_events) = if sub.terms.exempt_from_indexation {
            (Decimal::ONE, vec![])
        } else {
            index_factor(ctx.inputs, ctx.month.last_day())
        };
        events.extend(index_events);
        let unit = sub.terms.selling_per_unit.amount * factor;
        let value = quantity * unit * discount_factor(sub.terms.discount);
        let mut inputs = vec![
            input("active_users", counted.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",")),
            input("unit_price", format!("{} {}", sub.terms.selling_per_unit.amount, acc.currency)),
            input("indexation_factor", factor.normalize()),
            input("discount", sub.terms.discount),
        ];
        inputs.extend(how_inputs);
        lines.entry(acc.id.clone()).or_default().push(InvoiceLine {
            key: format!("monthly_active_user/{}", sub.terms.sku),
            description: format!("{}, monthly active users", ctx.product_name(&sub.terms.sku)),
            sku: Some(sub.terms.sku.clone()),
            subscription: Some(sub.terms.subscription.clone()),
            rule: rule.to_owned(),
            formula: format!(
                "{} active users × {} {} × (1 − {})",
                counted.len(),
                unit.normalize(),
                acc.currency,
                sub.terms.discount
            ),
            quantity,
            unit_price: unit_money(unit, acc.currency),
            discount: sub.terms.discount,
            amount: amount(value, acc.currency),
            taxable: sub.terms.taxable,
            inputs,
            events: dedup(events),
        });
    }
}

fn assemble(ctx: &Ctx<'_>, acc: &AccountInputs, mut lines: Vec<InvoiceLine>) -> InvoiceDocument {
    lines.sort_by(|a, b| a.key.cmp(&b.key));
    let currency = acc.currency;
    let subtotal = amount(
        lines.iter().fold(Money::zero(currency), |s, l| s.checked_add(l.amount).expect("one currency")).amount,
        currency,
    );
    let taxable = lines
        .iter()
        .filter(|l| l.taxable)
        .fold(Money::zero(currency), |s, l| s.checked_add(l.amount).expect("one currency"));
    let taxes = if lines.iter().any(|l| l.taxable) {
        vec![TaxLine {
            rate: acc.tax_rate,
            taxable_subtotal: taxable,
            tax: amount(taxable.amount * acc.tax_rate.fraction(), currency),
        }]
    } else {
        vec![]
    };
    let total =
        amount(taxes.iter().fold(subtotal, |s, t| s.checked_add(t.tax).expect("one currency")).amount, currency);
    InvoiceDocument {
        number: format!("{}-{}-{}", ctx.ws.id, acc.id, ctx.month),
        workspace: ctx.ws.id.clone(),
        account: acc.id.clone(),
        account_name: acc.name.clone(),
        period: ctx.month,
        currency,
        billing_info: ctx.ws.billing_info.clone(),
        lines,
        subtotal,
        taxes,
        total,
        computed_at_position: ctx.inputs.last_position,
        inputs_digest: ctx.inputs.digest_for(ctx.ws),
    }
}

/// Every invoice of one workspace for `month`, one per billing account that
/// existed before the month ended, in account order; fails on the first
/// account whose invoice cannot be computed (see [`account_invoice`] for one
/// account's invoice whatever the others' problems).
pub fn workspace_invoices(
    inputs: &InvoiceInputs,
    workspace: &WorkspaceId,
    month: Month,
) -> Result<Vec<InvoiceDocument>, InvoiceProblem> {
    compute(inputs, workspace, month)?.into_iter().map(|(_, invoice)| invoice).collect()
}

/// Every account's invoice or the problem that keeps it from being computed.
/// A problem of one account never blocks another's invoice.
#[allow(clippy::type_complexity)]
fn compute(
    inputs: &InvoiceInputs,
    workspace: &WorkspaceId,
    month: Month,
) -> Result<Vec<(AccountId, Result<InvoiceDocument, InvoiceProblem>)>, InvoiceProblem> {
    let ws = inputs.workspaces.get(workspace).ok_or_else(|| InvoiceProblem::UnknownWorkspace(workspace.clone()))?;
    let ctx = Ctx { inputs, ws, month, days: month.each_day().collect() };
    let mut lines: BTreeMap<AccountId, Vec<InvoiceLine>> = BTreeMap::new();
    let mut problems = vec![];
    per_licence_lines(&ctx, &mut lines);
    per_user_lines(&ctx, &mut lines, &mut problems);
    monthly_active_lines(&ctx, &mut lines);
    let month_end = day_start(month.next().first_day());
    Ok(ws
        .accounts
        .values()
        .filter(|a| a.opened_at < month_end)
        .map(|acc| {
            let problem =
                problems.iter().find(|p| matches!(p, InvoiceProblem::Unpriced { account, .. } if *account == acc.id));
            let result = match problem {
                Some(p) => Err(p.clone()),
                None => Ok(assemble(&ctx, acc, lines.remove(&acc.id).unwrap_or_default())),
            };
            (acc.id.clone(), result)
        })
        .collect())
}

/// The invoice of one account for `month`.
pub fn account_invoice(
    inputs: &InvoiceInputs,
    workspace: &WorkspaceId,
    account: &AccountId,
    month: Month,
) -> Result<InvoiceDocument, InvoiceProblem> {
    let ws = inputs.workspaces.get(workspace).ok_or_else(|| InvoiceProblem::UnknownWorkspace(workspace.clone()))?;
    if !ws.accounts.contains_key(account) {
        return Err(InvoiceProblem::UnknownAccount { workspace: workspace.clone(), account: account.clone() });
    }
    compute(inputs, workspace, month)?
        .into_iter()
        .find(|(id, _)| id == account)
        .map(|(_, invoice)| invoice)
        .unwrap_or_else(|| {
            Err(InvoiceProblem::AccountNotOpened {
                workspace: workspace.clone(),
                account: account.clone(),
                period: month,
            })
        })
}
