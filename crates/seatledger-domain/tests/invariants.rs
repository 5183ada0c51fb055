//! Workspace invariants: billing mode, licensing model, billing accounts,
//! the organization tree, and the bounds on money and quantities.

#[macro_use]
mod harness;

use harness::*;
use seatledger_domain::*;

fn create_workspace(mode: BillingMode, created: chrono::NaiveDate, plan: Option<LegacyPlan>) -> WorkspaceCommand {
    WorkspaceCommand::CreateWorkspace {
        name: "Acme".to_owned(),
        billing_mode: mode,
        created_on: created,
        legacy_plan: plan,
    }
}

fn open_account(id: &str, currency: Currency) -> WorkspaceCommand {
    WorkspaceCommand::OpenBillingAccount {
        account: account(id),
        name: format!("{id} account"),
        currency,
        tax_rate: Percent::new(dec("20"), "tax rate").unwrap(),
        billing_contract: None,
    }
}

fn create_org(id: &str, parent: Option<&str>, acc: Option<&str>) -> WorkspaceCommand {
    WorkspaceCommand::CreateOrganization {
        org: org(id),
        name: format!("{id} organization"),
        parent: parent.map(harness::org),
        account: acc.map(harness::account),
    }
}

// ---------------------------------------------------------------------------
// Billing mode.

#[test]
fn billing_mode_is_permanent_in_every_mode() {
    for &mode in BillingMode::ALL {
        let mut h = TestHarness::new();
        h.given([workspace_created(mode)]);
        for &other in BillingMode::ALL {
            let err = then_refused!(
                h.when(WorkspaceCommand::ChangeBillingMode { billing_mode: other }),
                DomainError::BillingModeIsPermanent { workspace, current } if *workspace == ws_id() && *current == mode,
                ["`acme`", &format!("`{mode}`"), "permanent"],
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "the billing mode of workspace `acme` is `{mode}` and is permanent: it was chosen at creation and \
                     cannot be changed"
                )
            );
        }
        assert_eq!(h.ws().billing_mode, mode);
    }
}

#[test]
fn creating_a_workspace_records_its_mode_and_cannot_happen_twice() {
    let mut h = TestHarness::new();
    h.step(
        create_workspace(BillingMode::Pooled, created_on(), None),
        &[Event::WorkspaceCreated {
            workspace: ws_id(),
            name: "Acme".to_owned(),
            billing_mode: BillingMode::Pooled,
            created_on: created_on(),
            legacy_plan: None,
        }],
    );
    then_refused!(
        h.when(create_workspace(BillingMode::Single, created_on(), None)),
        DomainError::WorkspaceExists(id) if *id == ws_id(),
        ["`acme`", "already exists"],
    );
    assert_eq!(h.ws().billing_mode, BillingMode::Pooled);
}

#[test]
fn commands_on_a_missing_workspace_are_refused() {
    let h = TestHarness::new();
    then_refused!(
        h.when(WorkspaceCommand::MigrateToModules),
        DomainError::WorkspaceNotFound(id) if *id == ws_id(),
        ["`acme`", "does not exist"],
    );
}

// ---------------------------------------------------------------------------
// Licensing model by creation date.

#[test]
fn workspace_created_before_2024_requires_a_legacy_plan() {
    let h = TestHarness::new();
    then_refused!(
        h.when(create_workspace(BillingMode::Single, date(2023, 12, 31), None)),
        DomainError::LegacyPlanRequired(id) if *id == ws_id(),
        ["`acme`", "before 2024-01-01", "legacy plan"],
    );
    h.when(create_workspace(BillingMode::Single, date(2023, 12, 31), Some(LegacyPlan::Boost))).then(&[
        Event::WorkspaceCreated {
            workspace: ws_id(),
            name: "Acme".to_owned(),
            billing_mode: BillingMode::Single,
            created_on: date(2023, 12, 31),
            legacy_plan: Some(LegacyPlan::Boost),
        },
    ]);
}

#[test]
fn workspace_created_on_or_after_2024_refuses_a_legacy_plan() {
    let h = TestHarness::new();
    for created in [date(2024, 1, 1), date(2025, 6, 30)] {
        for &plan in LegacyPlan::ALL {
            then_refused!(
                h.when(create_workspace(BillingMode::Assigned, created, Some(plan))),
                DomainError::LegacyPlanNotAllowed(id) if *id == ws_id(),
                ["`acme`", "on modules", "legacy plan does not apply"],
            );
        }
        h.when(create_workspace(BillingMode::Assigned, created, None)).then(&[Event::WorkspaceCreated {
            workspace: ws_id(),
            name: "Acme".to_owned(),
            billing_mode: BillingMode::Assigned,
            created_on: created,
            legacy_plan: None,
        }]);
    }
}

#[test]
fn a_legacy_workspace_migrates_to_modules_exactly_once() {
    let mut h = TestHarness::new();
    h.given([Event::WorkspaceCreated {
        workspace: ws_id(),
        name: "Acme".to_owned(),
        billing_mode: BillingMode::Single,
        created_on: date(2022, 5, 1),
        legacy_plan: Some(LegacyPlan::Simplify),
    }]);
    assert!(h.ws().is_legacy());
    h.at(at(2024, 4, 15));
    h.step(WorkspaceCommand::MigrateToModules, &[Event::WorkspaceMigratedToModules { migrated_on: date(2024, 4, 15) }]);
    assert!(!h.ws().is_legacy());
    assert_eq!(h.ws().migrated_on, Some(date(2024, 4, 15)));
    then_refused!(
        h.when(WorkspaceCommand::MigrateToModules),
        DomainError::AlreadyOnModules(id) if *id == ws_id(),
        ["`acme`", "already on modules"],
    );
}

#[test]
fn a_modules_workspace_has_nothing_to_migrate() {
    let mut h = TestHarness::new();
    h.given([workspace_created(BillingMode::Single)]);
    assert!(!h.ws().is_legacy());
    then_refused!(
        h.when(WorkspaceCommand::MigrateToModules),
        DomainError::AlreadyOnModules(id) if *id == ws_id(),
        ["`acme`", "nothing to migrate"],
    );
}

// ---------------------------------------------------------------------------
// Billing accounts.

#[test]
fn single_mode_has_exactly_one_billing_account() {
    let mut h = TestHarness::new();
    h.given([workspace_created(BillingMode::Single)]);
    h.step(open_account("main", eur()), &[account_opened("main", eur())]);
    then_refused!(
        h.when(open_account("second", eur())),
        DomainError::SingleModeHasOneAccount { workspace, existing }
            if *workspace == ws_id() && *existing == account("main"),
        ["`acme`", "single", "`main`"],
    );
    then_refused!(
        h.when(open_account("main", usd())),
        DomainError::AccountExists(a) if *a == account("main"),
        ["`main`", "already exists"],
    );
    assert_eq!(h.ws().accounts.len(), 1);
}

#[test]
fn pooled_and_assigned_modes_open_many_accounts_in_any_currency() {
    for mode in [BillingMode::Pooled, BillingMode::Assigned] {
        let mut h = TestHarness::new();
        h.given([workspace_created(mode)]);
        h.step(open_account("eu", eur()), &[account_opened("eu", eur())]);
        h.step(open_account("us", usd()), &[account_opened("us", usd())]);
        assert_eq!(h.ws().accounts.len(), 2, "{mode}");
    }
}

#[test]
fn billing_info_is_recorded() {
    let mut h = TestHarness::new();
    h.given([workspace_created(BillingMode::Single)]);
    let info = BillingInfo {
        company_name: "Acme GmbH".to_owned(),
        reference_number: "REF-42".to_owned(),
        customer_type: "enterprise".to_owned(),
        industry: "manufacturing".to_owned(),
    };
    h.step(WorkspaceCommand::SetBillingInfo { info: info.clone() }, &[Event::BillingInfoSet { info: info.clone() }]);
    assert_eq!(h.ws().billing_info, info);
}

// ---------------------------------------------------------------------------
// The organization tree and account links.

#[test]
fn assigned_mode_top_level_organization_needs_an_account() {
    let mut h = TestHarness::new();
    h.given([workspace_created(BillingMode::Assigned), account_opened("us", usd())]);
    then_refused!(
        h.when(create_org("us-branch", None, None)),
        DomainError::TopLevelNeedsAccount(o) if *o == org("us-branch"),
        ["`us-branch`", "needs a billing account", "assigned"],
    );
    then_refused!(
        h.when(create_org("us-branch", None, Some("nope"))),
        DomainError::AccountNotFound(a) if *a == account("nope"),
        ["`nope`"],
    );
    h.step(create_org("us-branch", None, Some("us")), &[org_created("us-branch", None, Some("us"))]);
    assert_eq!(h.ws().account_of_org(&org("us-branch")), Some(account("us")));
}

#[test]
fn assigned_mode_children_inherit_the_account_and_cannot_name_their_own() {
    let mut h = TestHarness::new();
    h.given([
        workspace_created(BillingMode::Assigned),
        account_opened("us", usd()),
        account_opened("de", eur()),
        org_created("us-branch", None, Some("us")),
    ]);
    for own in ["de", "us"] {
        then_refused!(
            h.when(create_org("boston", Some("us-branch"), Some(own))),
            DomainError::ChildInheritsAccount { org: o, parent } if *o == org("boston") && *parent == org("us-branch"),
            ["`boston`", "`us-branch`", "inherits"],
        );
    }
    h.step(create_org("boston", Some("us-branch"), None), &[org_created("boston", Some("us-branch"), None)]);
    h.step(create_org("back-bay", Some("boston"), None), &[org_created("back-bay", Some("boston"), None)]);

    let ws = h.ws();
    assert_eq!(ws.top_level_of(&org("back-bay")), org("us-branch"));
    assert_eq!(ws.account_of_org(&org("back-bay")), Some(account("us")), "a grandchild bills to the top level");
    assert_eq!(ws.account_of_org(&org("boston")), Some(account("us")));
    assert_eq!(ws.organizations[&org("back-bay")].account, None, "the child stores no account of its own");
}

#[test]
fn an_organization_needs_an_existing_parent() {
    let mut h = TestHarness::new();
    h.given([workspace_created(BillingMode::Single)]);
    then_refused!(
        h.when(create_org("child", Some("ghost"), None)),
        DomainError::OrganizationNotFound(o) if *o == org("ghost"),
        ["`ghost`"],
    );
}

#[test]
fn single_and_pooled_organizations_cannot_link_accounts() {
    for mode in [BillingMode::Single, BillingMode::Pooled] {
        let mut h = TestHarness::new();
        h.given([workspace_created(mode), account_opened("main", eur())]);
        for parent in [None, Some("hq")] {
            then_refused!(
                h.when(create_org("sales", parent, Some("main"))),
                DomainError::AccountLinkNeedsAssignedMode { workspace, mode: m } if *workspace == ws_id() && *m == mode,
                ["`acme`", &format!("{mode} mode"), "only in assigned mode"],
            );
            if parent.is_none() {
                h.step(create_org("hq", None, None), &[org_created("hq", None, None)]);
            }
        }
        // Single mode: every organization draws from the one account.
        let expected = (mode == BillingMode::Single).then(|| account("main"));
        assert_eq!(h.ws().account_of_org(&org("hq")), expected, "{mode}");
    }
}

// ---------------------------------------------------------------------------
// Money and quantities: never negative, never absurd.

#[test]
fn negative_and_absurd_prices_are_refused() {
    let err = Money::price(dec("-0.01"), eur(), "selling price per unit").unwrap_err();
    assert_eq!(err.what, "selling price per unit");
    assert_eq!(err.to_string(), "selling price per unit -0.01 is negative");
    let err = Money::price(dec("1000000000.01"), eur(), "cost price per unit").unwrap_err();
    assert!(err.to_string().starts_with("cost price per unit 1000000000.01 is above the limit"), "{err}");
    assert_eq!(Money::price(dec("0"), eur(), "selling price per unit").unwrap().amount, dec("0"));
    assert_eq!(Money::price(dec("-0"), eur(), "selling price per unit").unwrap().amount, dec("0"));

    // Through a subscription's own price.
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    let mut new = new_subscription("s1", "main", HYBRID, 1, eur());
    new.selling_per_unit = Some(dec("-5"));
    new.cost_per_unit = Some(dec("1"));
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new))),
        DomainError::Invalid(InvalidValue { what: "selling price per unit", .. }),
        ["selling price per unit", "-5", "negative"],
    );
    let mut new = new_subscription("s1", "main", HYBRID, 1, eur());
    new.cost_per_unit = Some(dec("-1"));
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new))),
        DomainError::Invalid(InvalidValue { what: "cost price per unit", .. }),
        ["cost price per unit", "-1", "negative"],
    );

    // Through the catalog.
    let negative = CatalogCommand::SetPrice { sku: sku(HYBRID), price: price_item(eur(), "-1", "0") };
    then_refused!(
        harness::Outcome { result: decide_catalog(&h.catalog, &negative) },
        DomainError::Invalid(InvalidValue { what: "selling price per unit", .. }),
        ["selling price per unit", "negative"],
    );
}

#[test]
fn a_price_item_mixing_currencies_is_refused() {
    let h = TestHarness::new();
    let mut item = price_item(eur(), "10", "4");
    item.cost_per_unit = Money::new(dec("4"), usd());
    then_refused!(
        harness::Outcome {
            result: decide_catalog(&h.catalog, &CatalogCommand::SetPrice { sku: sku(HYBRID), price: item })
        },
        DomainError::Invalid(InvalidValue { what: "cost price per unit", .. }),
        ["cost price per unit", "USD", "EUR"],
    );
}

#[test]
fn quantities_above_the_maximum_are_refused() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    let too_many = MAX_QUANTITY + 1;
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "main", HYBRID, too_many, eur())))),
        DomainError::Invalid(InvalidValue { what: "quantity", .. }),
        ["quantity", "1000001", "above the limit of 1000000"],
    );

    h.given_commands([WorkspaceCommand::CreateSubscription(Box::new(new_subscription(
        "s1",
        "main",
        HYBRID,
        MAX_QUANTITY,
        eur(),
    )))]);
    then_refused!(
        h.when(WorkspaceCommand::ChangeQuantity {
            subscription: sub("s1"),
            quantity: too_many,
            order: order(),
            channel: SubscriptionChannel::Portal,
        }),
        DomainError::Invalid(InvalidValue { what: "quantity", .. }),
        ["quantity", "1000001"],
    );
    then_refused!(
        h.when(WorkspaceCommand::AddLicences {
            sku: sku(HYBRID),
            organization: None,
            subscription: None,
            quantity: 1,
            order: order(),
        }),
        DomainError::Invalid(InvalidValue { what: "quantity", .. }),
        ["quantity", "1000000 + 1", "above the limit"],
    );
    then_refused!(
        h.when(WorkspaceCommand::AddLicences {
            sku: sku(HYBRID),
            organization: None,
            subscription: None,
            quantity: 0,
            order: order(),
        }),
        DomainError::Invalid(InvalidValue { what: "quantity", .. }),
        ["quantity", "at least 1"],
    );
    assert_eq!(h.ws().subscriptions[&sub("s1")].quantity, MAX_QUANTITY);
}

#[test]
fn discounts_and_tax_rates_stay_between_0_and_100_percent() {
    let err = Percent::new(dec("100.01"), "discount").unwrap_err();
    assert_eq!(err.to_string(), "discount 100.01% is above 100%");
    let err = Percent::new(dec("-0.5"), "tax rate").unwrap_err();
    assert_eq!(err.to_string(), "tax rate -0.5% is negative");
    assert_eq!(Percent::new(dec("100"), "discount").unwrap().fraction(), dec("1"));
    assert_eq!(Percent::new(dec("0"), "discount").unwrap(), Percent::ZERO);
}

#[test]
fn unknown_currency_codes_are_refused() {
    for code in ["EUX", "eur", "", "EURO"] {
        let err = Currency::from_code(code).unwrap_err();
        assert_eq!(err.what, "currency");
        assert!(err.to_string().contains(&format!("{code:?}")), "{err}");
    }
    let err = Currency::from_code("XAU").unwrap_err();
    assert!(err.to_string().contains("XAU") && err.to_string().contains("no minor unit"), "{err}");
    assert_eq!(Currency::from_code("USD").unwrap().code(), "USD");
}

#[test]
fn a_subscription_in_another_currency_than_its_account_is_refused() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "main", HYBRID, 2, usd())))),
        DomainError::CurrencyMismatch { subscription, account: a, subscription_currency, account_currency }
            if *subscription == sub("s1") && *a == account("main") && subscription_currency == "USD" && account_currency == "EUR",
        ["`s1`", "`main`", "USD", "EUR"],
    );
}

#[test]
fn a_subscription_without_a_catalog_price_is_refused() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "main", UNPRICED, 2, eur())))),
        DomainError::PriceMissing { sku: s, price_list: pl, currency } if *s == sku(UNPRICED) && *pl == price_list() && currency == "EUR",
        ["`unpriced`", "`std`", "EUR"],
    );
    // A price list that does not exist is just as missing.
    let mut new = new_subscription("s1", "main", HYBRID, 2, eur());
    new.price_list = PriceListId::new("partner").unwrap();
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new))),
        DomainError::PriceMissing { sku: s, .. } if *s == sku(HYBRID),
        ["`hybrid`", "`partner`", "EUR"],
    );
    // Prices given in full need no price list item.
    let mut new = new_subscription("s1", "main", UNPRICED, 2, eur());
    new.selling_per_unit = Some(dec("7"));
    new.cost_per_unit = Some(dec("3"));
    let events = h.when(WorkspaceCommand::CreateSubscription(Box::new(new))).accepted();
    let Event::SubscriptionCreated { terms } = &events[0] else { panic!("{events:?}") };
    assert_eq!(terms.selling_per_unit, Money::new(dec("7"), eur()));
    assert_eq!(terms.cost_per_unit, Money::new(dec("3"), eur()));
}

#[test]
fn a_subscription_for_an_unknown_product_or_account_is_refused() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "main", "ghost", 2, eur())))),
        DomainError::ProductNotFound(s) if *s == sku("ghost"),
        ["`ghost`", "not in the catalog"],
    );
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "other", HYBRID, 2, eur())))),
        DomainError::AccountNotFound(a) if *a == account("other"),
        ["`other`"],
    );
}

#[test]
fn a_standalone_subscription_records_its_terms_and_first_quantity() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.step(
        WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "main", HYBRID, 3, eur()))),
        &eur_subscription("s1", HYBRID, 3),
    );
    assert_eq!(h.total(&pool(HYBRID)), 3);
    then_refused!(
        h.when(WorkspaceCommand::CreateSubscription(Box::new(new_subscription("s1", "main", HYBRID, 3, eur())))),
        DomainError::SubscriptionExists(s) if *s == sub("s1"),
        ["`s1`", "already exists"],
    );
}
