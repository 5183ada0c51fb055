//! A small given/when/then harness for the domain.
//!
//! - given: catalog events and workspace events (or commands, decided and
//!   folded, for setup that is tedious to write as events);
//! - when: one workspace command at a business time;
//! - then: exactly these events, or a refusal of this `DomainError` variant
//!   whose message names the things at fault (`then_refused!`).
//!
//! Every test file includes this module, and none uses all of it.
#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use seatledger_domain::*;
use std::str::FromStr;

/// Assert that an outcome is a refusal matching `$pattern` (a `DomainError`
/// pattern, with an optional guard) and that its message contains every
/// needle. Evaluates to the error. Test files use `#[macro_use] mod harness;`.
#[allow(unused_macros)]
macro_rules! then_refused {
    ($outcome:expr, $pattern:pat $(if $guard:expr)?, [$($needle:expr),* $(,)?] $(,)?) => {{
        let err: ::seatledger_domain::DomainError = $outcome.refused();
        assert!(
            matches!(&err, $pattern $(if $guard)?),
            "expected a refusal matching `{}`, got {err:?}",
            stringify!($pattern)
        );
        let message = err.to_string();
        $(
            assert!(
                message.contains($needle),
                "the message {message:?} should name {:?}",
                $needle
            );
        )*
        err
    }};
}

// ---------------------------------------------------------------------------
// Values.

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

pub fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).single().expect("a valid time")
}

pub fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("a decimal")
}

pub fn eur() -> Currency {
    Currency::from_code("EUR").unwrap()
}

pub fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

pub fn ws_id() -> WorkspaceId {
    WorkspaceId::new("acme").unwrap()
}

pub fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

pub fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn org(s: &str) -> OrgId {
    OrgId::new(s).unwrap()
}

pub fn group(s: &str) -> GroupId {
    GroupId::new(s).unwrap()
}

pub fn account(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub fn sub(s: &str) -> SubscriptionId {
    SubscriptionId::new(s).unwrap()
}

pub fn price_list() -> PriceListId {
    PriceListId::new("std").unwrap()
}

pub fn pool(sku_text: &str) -> PoolKey {
    PoolKey { scope: PoolScope::Workspace, sku: sku(sku_text) }
}

pub fn org_pool(org_text: &str, sku_text: &str) -> PoolKey {
    PoolKey { scope: PoolScope::Organization(org(org_text)), sku: sku(sku_text) }
}

pub fn to_user(u: &str) -> ModuleTarget {
    ModuleTarget::User(user(u))
}

pub fn to_group(g: &str) -> ModuleTarget {
    ModuleTarget::Group(group(g))
}

// ---------------------------------------------------------------------------
// The catalog.

/// A module sold per licence: its seats are capped by the licences bought.
pub const HYBRID: &str = "hybrid";
/// A second module sold per licence.
pub const UNIFY: &str = "unify";
/// A module charged per active user: no seat cap.
pub const ENGAGE: &str = "engage";
/// A legacy plan.
pub const SIMPLIFY: &str = "simplify";
/// A bundle parent with two included children and one add-on.
pub const SUITE: &str = "suite";
pub const SUITE_CORE: &str = "suite-core";
pub const SUITE_REPORTS: &str = "suite-reports";
pub const SUITE_AI: &str = "suite-ai";
/// A service that no bundle lists.
pub const ONBOARDING: &str = "onboarding";
/// A module with no price at all.
pub const UNPRICED: &str = "unpriced";

pub fn product_defined(sku_text: &str, kind: ProductKind, charge_model: ChargeModel) -> Event {
    Event::ProductDefined {
        sku: sku(sku_text),
        name: format!("{sku_text} product"),
        kind,
        charge_model,
        product_class: Some(format!("{sku_text}-class")),
        sales_unit: "licence".to_owned(),
        manufacturer: None,
    }
}

pub fn price_item(currency: Currency, selling: &str, cost: &str) -> PriceItem {
    PriceItem {
        price_list: price_list(),
        selling_per_unit: Money::new(dec(selling), currency),
        cost_per_unit: Money::new(dec(cost), currency),
        guest_selling_per_unit: None,
        counting_policy: None,
    }
}

pub fn price_set(sku_text: &str, currency: Currency, selling: &str, cost: &str) -> Event {
    Event::PriceSet { sku: sku(sku_text), price: price_item(currency, selling, cost) }
}

/// The catalog every test starts from unless it says otherwise.
pub fn catalog_events() -> Vec<Event> {
    use ChargeModel::*;
    use ProductKind::*;
    let mut events = vec![
        product_defined(HYBRID, Module, PerLicence),
        product_defined(UNIFY, Module, PerLicence),
        product_defined(ENGAGE, Module, PerActiveUser),
        product_defined(SIMPLIFY, LegacyPlan, PerLicence),
        product_defined(SUITE, Service, PerLicence),
        product_defined(SUITE_CORE, Module, PerLicence),
        product_defined(SUITE_REPORTS, Service, PerLicence),
        product_defined(SUITE_AI, Service, PerLicence),
        product_defined(ONBOARDING, Service, PerLicence),
        product_defined(UNPRICED, Module, PerLicence),
    ];
    for s in [HYBRID, UNIFY, ENGAGE, SIMPLIFY, SUITE, SUITE_CORE, SUITE_REPORTS, SUITE_AI, ONBOARDING] {
        events.push(price_set(s, eur(), "10.00", "4.00"));
        events.push(price_set(s, usd(), "11.00", "4.50"));
    }
    events.push(Event::BundleDefined {
        parent: sku(SUITE),
        children: vec![sku(SUITE_CORE), sku(SUITE_REPORTS)],
        add_ons: vec![sku(SUITE_AI)],
    });
    events
}

// ---------------------------------------------------------------------------
// Workspace events.

/// The day the test workspaces are created on: after 2024-01-01, on modules.
pub fn created_on() -> NaiveDate {
    date(2024, 2, 1)
}

/// The default business time of a command: a month after creation.
pub fn now() -> DateTime<Utc> {
    at(2024, 3, 1)
}

pub fn today() -> NaiveDate {
    now().date_naive()
}

pub fn workspace_created(mode: BillingMode) -> Event {
    Event::WorkspaceCreated {
        workspace: ws_id(),
        name: "Acme".to_owned(),
        billing_mode: mode,
        created_on: created_on(),
        legacy_plan: None,
    }
}

pub fn account_opened(id: &str, currency: Currency) -> Event {
    Event::BillingAccountOpened {
        account: account(id),
        name: format!("{id} account"),
        currency,
        tax_rate: Percent::new(dec("20"), "tax rate").unwrap(),
        billing_contract: None,
    }
}

pub fn org_created(id: &str, parent: Option<&str>, acc: Option<&str>) -> Event {
    Event::OrganizationCreated {
        org: org(id),
        name: format!("{id} organization"),
        parent: parent.map(org),
        account: acc.map(account),
    }
}

pub fn profile(username: &str) -> UserProfile {
    UserProfile {
        first_name: username.to_owned(),
        last_name: "Tester".to_owned(),
        email: format!("{username}@acme.example"),
        username: username.to_owned(),
        kind: UserKind::Regular,
        audience: Audience::Internal,
        administrator: false,
    }
}

pub fn user_added(id: &str, org_id: &str) -> Event {
    Event::UserAdded {
        user: user(id),
        org: org(org_id),
        profile: profile(id),
        status: UserStatus::Active,
        source: UserSource::Manual,
    }
}

pub fn group_created(id: &str) -> Event {
    Event::GroupCreated { group: group(id), name: format!("{id} group") }
}

pub fn member_added(g: &str, u: &str) -> Event {
    Event::GroupMemberAdded { group: group(g), user: user(u) }
}

pub fn assigned(sku_text: &str, target: ModuleTarget) -> Event {
    Event::ModuleAssigned { sku: sku(sku_text), target }
}

pub fn unassigned(sku_text: &str, target: ModuleTarget) -> Event {
    Event::ModuleUnassigned { sku: sku(sku_text), target }
}

pub fn status_changed(u: &str, from: UserStatus, to: UserStatus, source: StatusChangeSource) -> Event {
    Event::UserStatusChanged { user: user(u), from, to, source }
}

pub fn order() -> OrderDetails {
    OrderDetails {
        order_reference: Some("SO-1".to_owned()),
        order_date: Some(created_on()),
        ordered_by: "sales@acme.example".to_owned(),
        order_thru: Some("portal".to_owned()),
    }
}

/// The terms `decide` records for a standalone subscription priced from the
/// fixture catalog in `currency`.
pub fn terms(
    id: &str,
    acc: &str,
    organization: Option<&str>,
    sku_text: &str,
    quantity: u32,
    currency: Currency,
) -> SubscriptionTerms {
    let (selling, cost) = if currency == eur() { ("10.00", "4.00") } else { ("11.00", "4.50") };
    SubscriptionTerms {
        subscription: sub(id),
        account: account(acc),
        organization: organization.map(org),
        sku: sku(sku_text),
        parent: None,
        bundle_role: BundleRole::Standalone,
        name: format!("{id} subscription"),
        friendly_name: None,
        effective_start: created_on(),
        billable: true,
        trial: false,
        deactivate_on: None,
        channel: SubscriptionChannel::Portal,
        quantity,
        order: order(),
        price_list: price_list(),
        selling_per_unit: Money::new(dec(selling), currency),
        cost_per_unit: Money::new(dec(cost), currency),
        discount: Percent::ZERO,
        taxable: true,
        exempt_from_indexation: false,
        product_class: Some(format!("{sku_text}-class")),
        sales_unit: "licence".to_owned(),
        description: None,
        provider: None,
        guest_selling_per_unit: None,
        counting_policy: None,
    }
}

/// The events of a new subscription: created, then its first quantity.
pub fn subscription_events(terms: SubscriptionTerms, pool: PoolKey) -> Vec<Event> {
    let quantity_changed = Event::QuantityChanged {
        subscription: terms.subscription.clone(),
        pool,
        from: 0,
        to: terms.quantity,
        reason: QuantityReason::Order,
        order: terms.order.clone(),
        channel: terms.channel,
    };
    if terms.quantity == 0 {
        vec![Event::SubscriptionCreated { terms: Box::new(terms) }]
    } else {
        vec![Event::SubscriptionCreated { terms: Box::new(terms) }, quantity_changed]
    }
}

/// A workspace-wide EUR subscription of account `main`.
pub fn eur_subscription(id: &str, sku_text: &str, quantity: u32) -> Vec<Event> {
    subscription_events(terms(id, "main", None, sku_text, quantity, eur()), pool(sku_text))
}

/// A new-subscription command matching [`terms`].
pub fn new_subscription(id: &str, acc: &str, sku_text: &str, quantity: u32, currency: Currency) -> NewSubscription {
    NewSubscription {
        subscription: sub(id),
        account: account(acc),
        organization: None,
        sku: sku(sku_text),
        parent: None,
        name: format!("{id} subscription"),
        friendly_name: None,
        effective_start: created_on(),
        billable: None,
        trial: false,
        deactivate_on: None,
        channel: SubscriptionChannel::Portal,
        quantity,
        order: order(),
        price_list: price_list(),
        currency,
        selling_per_unit: None,
        cost_per_unit: None,
        discount: Percent::ZERO,
        taxable: true,
        exempt_from_indexation: false,
        description: None,
        provider: None,
        guest_selling_per_unit: None,
        counting_policy: None,
    }
}

/// A single-mode workspace with account `main` (EUR), organization `hq` and
/// active users `u1`..`u{users}`.
pub fn single_workspace(users: usize) -> Vec<Event> {
    let mut events =
        vec![workspace_created(BillingMode::Single), account_opened("main", eur()), org_created("hq", None, None)];
    for i in 1..=users {
        events.push(user_added(&format!("u{i}"), "hq"));
    }
    events
}

// ---------------------------------------------------------------------------
// The harness.

/// State given to a decision, and the business time of the next command.
#[derive(Debug, Clone)]
pub struct TestHarness {
    pub catalog: Catalog,
    pub workspace: Option<Workspace>,
    pub id: WorkspaceId,
    pub at: DateTime<Utc>,
}

impl Default for TestHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHarness {
    /// The fixture catalog, no workspace yet, commands at [`now`].
    pub fn new() -> Self {
        let mut h = Self { catalog: Catalog::default(), workspace: None, id: ws_id(), at: now() };
        h.given_catalog(catalog_events());
        h
    }

    /// Fold catalog events.
    pub fn given_catalog(&mut self, events: impl IntoIterator<Item = Event>) -> &mut Self {
        for e in events {
            self.catalog.apply(&e);
        }
        self
    }

    /// Fold workspace events.
    pub fn given(&mut self, events: impl IntoIterator<Item = Event>) -> &mut Self {
        for e in events {
            self.workspace = Workspace::evolve(self.workspace.take(), &e);
        }
        self
    }

    /// Decide commands and fold their events; setup only, so a refusal panics.
    pub fn given_commands(&mut self, commands: impl IntoIterator<Item = WorkspaceCommand>) -> &mut Self {
        for c in commands {
            self.run(c);
        }
        self
    }

    /// Commands from now on happen at `at`.
    pub fn at(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.at = at;
        self
    }

    pub fn command(&self, cmd: WorkspaceCommand) -> Command {
        Command { at: self.at, body: CommandBody::Workspace { workspace: self.id.clone(), command: cmd } }
    }

    /// Decide a command on the state given so far. Nothing is folded.
    pub fn when(&self, cmd: WorkspaceCommand) -> Outcome {
        let command = self.command(cmd);
        let view = View { catalog: &self.catalog, workspace: self.workspace.as_ref(), invoices: None, outbox: None };
        Outcome { result: decide(&view, &command) }
    }

    /// Decide, fold and return the events; panics on a refusal.
    pub fn run(&mut self, cmd: WorkspaceCommand) -> Vec<Event> {
        let events = self.when(cmd.clone()).accepted();
        self.given(events.clone());
        events
    }

    /// when + then exactly `expected` + fold them.
    pub fn step(&mut self, cmd: WorkspaceCommand, expected: &[Event]) {
        let events = self.when(cmd).then(expected);
        self.given(events);
    }

    pub fn ws(&self) -> &Workspace {
        self.workspace.as_ref().expect("the workspace was created")
    }

    pub fn assigned(&self, pool: &PoolKey) -> u64 {
        self.ws().pool_assigned(pool)
    }

    pub fn total(&self, pool: &PoolKey) -> u64 {
        self.ws().pool_total_on(pool, self.at.date_naive())
    }

    /// Seats of `pool` held, counted from scratch: non-deleted users in the
    /// pool's scope whose modules (direct and via groups) include its SKU.
    pub fn recount(&self, pool: &PoolKey) -> u64 {
        recount(self.ws(), pool)
    }
}

/// Brute-force recount of a pool's seats.
pub fn recount(ws: &Workspace, pool: &PoolKey) -> u64 {
    ws.users
        .values()
        .filter(|u| u.status != UserStatus::Deleted)
        .filter(|u| ws.pool_scope_of_user(&u.id) == pool.scope)
        .filter(|u| ws.modules_of(&u.id).contains(&pool.sku))
        .count() as u64
}

/// What a decision returned.
#[derive(Debug)]
#[must_use]
pub struct Outcome {
    pub result: Result<Vec<Event>, DomainError>,
}

impl Outcome {
    /// Then exactly these events, in this order.
    pub fn then(self, expected: &[Event]) -> Vec<Event> {
        let events = self.accepted();
        assert_eq!(events, expected, "the decision's events differ from the expected ones");
        events
    }

    /// Then no event: accepted, nothing to record.
    pub fn then_nothing(self) {
        self.then(&[]);
    }

    pub fn accepted(self) -> Vec<Event> {
        match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected the command to be accepted, it was refused: {e:?} ({e})"),
        }
    }

    pub fn refused(self) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected a refusal, the command was accepted with {events:#?}"),
            Err(e) => e,
        }
    }
}
