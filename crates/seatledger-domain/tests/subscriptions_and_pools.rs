//! Subscriptions, licence pools and seats: assignment caps, pool isolation,
//! quantity changes, "add licences", top-ups, alerts, settings and bundles.

#[macro_use]
mod harness;

use harness::*;
use seatledger_domain::*;
use StatusChangeSource as Src;
use UserStatus::*;

fn assign(sku_text: &str, target: ModuleTarget) -> WorkspaceCommand {
    WorkspaceCommand::AssignModule { sku: sku(sku_text), target }
}

fn unassign(sku_text: &str, target: ModuleTarget) -> WorkspaceCommand {
    WorkspaceCommand::UnassignModule { sku: sku(sku_text), target }
}

fn add_member(g: &str, u: &str) -> WorkspaceCommand {
    WorkspaceCommand::AddGroupMember { group: group(g), user: user(u) }
}

fn remove_member(g: &str, u: &str) -> WorkspaceCommand {
    WorkspaceCommand::RemoveGroupMember { group: group(g), user: user(u) }
}

fn set_status(u: &str, status: UserStatus) -> WorkspaceCommand {
    WorkspaceCommand::ChangeUserStatus { user: user(u), status, source: Src::Manual }
}

fn change_quantity(s: &str, quantity: u32) -> WorkspaceCommand {
    WorkspaceCommand::ChangeQuantity {
        subscription: sub(s),
        quantity,
        order: order(),
        channel: SubscriptionChannel::Portal,
    }
}

fn add_licences(sku_text: &str, subscription: Option<&str>, quantity: u32) -> WorkspaceCommand {
    WorkspaceCommand::AddLicences {
        sku: sku(sku_text),
        organization: None,
        subscription: subscription.map(harness::sub),
        quantity,
        order: order(),
    }
}

fn create(new: NewSubscription) -> WorkspaceCommand {
    WorkspaceCommand::CreateSubscription(Box::new(new))
}

fn alert_at(threshold: u32) -> LicenceSettings {
    LicenceSettings { alert_threshold: Some(threshold), top_up: None }
}

fn configure(sku_text: &str, organization: Option<&str>, settings: LicenceSettings) -> WorkspaceCommand {
    WorkspaceCommand::ConfigureLicences { sku: sku(sku_text), organization: organization.map(org), settings }
}

fn exhausted(
    h: &TestHarness,
    cmd: WorkspaceCommand,
    expected_pool: PoolKey,
    expected_available: u64,
    expected_needed: u64,
) -> DomainError {
    then_refused!(
        h.when(cmd),
        DomainError::PoolExhausted { pool: p, on, available, needed }
            if *p == expected_pool && *on == h.at.date_naive()
                && *available == expected_available && *needed == expected_needed,
        [
            &format!("`{}`", expected_pool.sku),
            &format!("{expected_available} available"),
            &format!("{expected_needed} needed"),
        ],
    )
}

/// `users` active users, a workspace-wide HYBRID subscription `s1` of `quantity`.
fn hybrid_pool(users: usize, quantity: u32) -> TestHarness {
    let mut h = TestHarness::new();
    h.given(single_workspace(users));
    h.given(eur_subscription("s1", HYBRID, quantity));
    h
}

fn assert_seats(h: &TestHarness, pool: &PoolKey, expected: u64) {
    assert_eq!(h.assigned(pool), expected, "pool_assigned of {pool}");
    assert_eq!(h.recount(pool), expected, "brute-force recount of {pool}");
}

// ---------------------------------------------------------------------------
// Seats of a per-licence module.

#[test]
fn per_licence_module_seats_are_capped_by_the_subscription_quantity() {
    let mut h = hybrid_pool(3, 2);
    assert!(h.catalog.is_seat_limited(&sku(HYBRID)));
    h.step(assign(HYBRID, to_user("u1")), &[assigned(HYBRID, to_user("u1"))]);
    h.step(assign(HYBRID, to_user("u2")), &[assigned(HYBRID, to_user("u2"))]);
    assert_seats(&h, &pool(HYBRID), 2);
    let err = exhausted(&h, assign(HYBRID, to_user("u3")), pool(HYBRID), 0, 1);
    assert_eq!(err.to_string(), "no seat is free in pool `hybrid` on 2024-03-01: 0 available, 1 needed");
    assert_seats(&h, &pool(HYBRID), 2);
}

#[test]
fn assigning_checks_the_product_and_the_target() {
    let mut h = hybrid_pool(2, 2);
    h.given([assigned(HYBRID, to_user("u1")), status_changed("u2", Active, Deleted, Src::Manual)]);
    then_refused!(
        h.when(assign(ONBOARDING, to_user("u1"))),
        DomainError::NotAModule(s) if *s == sku(ONBOARDING),
        ["`onboarding`", "not a module"],
    );
    then_refused!(h.when(assign("ghost", to_user("u1"))), DomainError::ProductNotFound(s) if *s == sku("ghost"), ["`ghost`"]);
    then_refused!(
        h.when(assign(HYBRID, to_user("u1"))),
        DomainError::ModuleAlreadyAssigned { sku: s, target } if *s == sku(HYBRID) && target == "user `u1`",
        ["`hybrid`", "user `u1`"],
    );
    then_refused!(h.when(assign(HYBRID, to_user("u2"))), DomainError::UserDeleted(u) if *u == user("u2"), ["`u2`"]);
    then_refused!(h.when(assign(HYBRID, to_user("nobody"))), DomainError::UserNotFound(u) if *u == user("nobody"), ["`nobody`"]);
    then_refused!(h.when(assign(HYBRID, to_group("nogroup"))), DomainError::GroupNotFound(g) if *g == group("nogroup"), ["`nogroup`"]);
    then_refused!(
        h.when(unassign(UNIFY, to_user("u1"))),
        DomainError::ModuleNotAssigned { sku: s, target } if *s == sku(UNIFY) && target == "user `u1`",
        ["`unify`", "user `u1`"],
    );
}

#[test]
fn assigning_a_module_to_a_group_needs_a_seat_per_member() {
    let mut h = hybrid_pool(3, 2);
    h.given([
        group_created("team"),
        member_added("team", "u1"),
        member_added("team", "u2"),
        member_added("team", "u3"),
    ]);
    exhausted(&h, assign(HYBRID, to_group("team")), pool(HYBRID), 2, 3);
    assert_seats(&h, &pool(HYBRID), 0);

    // One more licence and the whole group fits.
    h.run(add_licences(HYBRID, None, 1));
    h.step(assign(HYBRID, to_group("team")), &[assigned(HYBRID, to_group("team"))]);
    assert_seats(&h, &pool(HYBRID), 3);
}

#[test]
fn adding_a_member_to_a_group_that_holds_the_module_consumes_a_seat() {
    let mut h = hybrid_pool(3, 2);
    h.given([group_created("team"), assigned(HYBRID, to_group("team")), member_added("team", "u1")]);
    assert_seats(&h, &pool(HYBRID), 1);
    h.step(add_member("team", "u2"), &[member_added("team", "u2")]);
    assert_seats(&h, &pool(HYBRID), 2);
    exhausted(&h, add_member("team", "u3"), pool(HYBRID), 0, 1);

    // Leaving the group frees the seat.
    h.step(remove_member("team", "u1"), &[Event::GroupMemberRemoved { group: group("team"), user: user("u1") }]);
    assert_seats(&h, &pool(HYBRID), 1);
    h.step(add_member("team", "u3"), &[member_added("team", "u3")]);
    assert_seats(&h, &pool(HYBRID), 2);
    then_refused!(
        h.when(add_member("team", "u3")),
        DomainError::AlreadyMember { group: g, user: u } if *g == group("team") && *u == user("u3"),
        ["`team`", "`u3`"],
    );
    then_refused!(
        h.when(remove_member("team", "u1")),
        DomainError::NotMember { group: g, user: u } if *g == group("team") && *u == user("u1"),
        ["`team`", "`u1`"],
    );
}

#[test]
fn a_module_held_directly_and_through_a_group_takes_one_seat() {
    // One licence only: every step below would be refused if it took a second seat.
    let mut h = hybrid_pool(1, 1);
    h.given([group_created("team"), assigned(HYBRID, to_user("u1"))]);
    assert_seats(&h, &pool(HYBRID), 1);

    h.step(assign(HYBRID, to_group("team")), &[assigned(HYBRID, to_group("team"))]);
    h.step(add_member("team", "u1"), &[member_added("team", "u1")]);
    assert_seats(&h, &pool(HYBRID), 1);

    // Dropping the direct assignment keeps the seat: the group still gives it.
    h.step(unassign(HYBRID, to_user("u1")), &[unassigned(HYBRID, to_user("u1"))]);
    assert!(h.ws().modules_of(&user("u1")).contains(&sku(HYBRID)));
    assert_seats(&h, &pool(HYBRID), 1);

    // Direct again (no new seat), then leave the group: still one seat.
    h.step(assign(HYBRID, to_user("u1")), &[assigned(HYBRID, to_user("u1"))]);
    h.step(remove_member("team", "u1"), &[Event::GroupMemberRemoved { group: group("team"), user: user("u1") }]);
    assert_seats(&h, &pool(HYBRID), 1);

    // Last source gone: the seat is free.
    h.step(unassign(HYBRID, to_user("u1")), &[unassigned(HYBRID, to_user("u1"))]);
    assert_seats(&h, &pool(HYBRID), 0);
}

#[test]
fn unassigning_from_a_group_keeps_the_seats_of_members_holding_it_directly() {
    let mut h = hybrid_pool(2, 2);
    h.given([
        group_created("team"),
        member_added("team", "u1"),
        member_added("team", "u2"),
        assigned(HYBRID, to_group("team")),
        assigned(HYBRID, to_user("u2")),
    ]);
    assert_seats(&h, &pool(HYBRID), 2);
    h.step(unassign(HYBRID, to_group("team")), &[unassigned(HYBRID, to_group("team"))]);
    assert_seats(&h, &pool(HYBRID), 1);
    assert!(h.ws().modules_of(&user("u2")).contains(&sku(HYBRID)));
}

#[test]
fn deleting_a_user_frees_their_seats_and_undeleting_needs_them_again() {
    let mut h = TestHarness::new();
    h.given(single_workspace(2));
    h.given(eur_subscription("s1", HYBRID, 1));
    h.given(eur_subscription("s2", UNIFY, 1));
    h.given([
        group_created("team"),
        assigned(UNIFY, to_group("team")),
        member_added("team", "u1"),
        assigned(HYBRID, to_user("u1")),
    ]);
    assert_seats(&h, &pool(HYBRID), 1);
    assert_seats(&h, &pool(UNIFY), 1);

    // Inactive users keep their seats.
    h.step(set_status("u1", Inactive), &[status_changed("u1", Active, Inactive, Src::Manual)]);
    assert_seats(&h, &pool(HYBRID), 1);
    exhausted(&h, assign(HYBRID, to_user("u2")), pool(HYBRID), 0, 1);

    h.step(set_status("u1", Deleted), &[status_changed("u1", Inactive, Deleted, Src::Manual)]);
    assert_seats(&h, &pool(HYBRID), 0);
    assert_seats(&h, &pool(UNIFY), 0);
    assert!(h.ws().modules_of(&user("u1")).contains(&sku(HYBRID)), "the assignment itself stays");

    h.step(assign(HYBRID, to_user("u2")), &[assigned(HYBRID, to_user("u2"))]);
    exhausted(&h, set_status("u1", Active), pool(HYBRID), 0, 1);
    exhausted(&h, set_status("u1", Inactive), pool(HYBRID), 0, 1);

    h.step(unassign(HYBRID, to_user("u2")), &[unassigned(HYBRID, to_user("u2"))]);
    h.step(set_status("u1", Active), &[status_changed("u1", Deleted, Active, Src::Manual)]);
    assert_seats(&h, &pool(HYBRID), 1);
    assert_seats(&h, &pool(UNIFY), 1);
}

/// A group holding the module and a deleted member: the deleted member holds
/// no seat (`Workspace::seat_holdings`), so assigning the module to the group
/// needs seats only for the members who are not deleted.
#[test]
fn assigning_a_module_to_a_group_does_not_count_deleted_members() {
    let mut h = hybrid_pool(3, 2);
    h.given([
        group_created("team"),
        member_added("team", "u1"),
        member_added("team", "u2"),
        member_added("team", "u3"),
    ]);
    h.given([status_changed("u3", Active, Deleted, Src::Manual)]);
    assert_seats(&h, &pool(HYBRID), 0);

    // Two live members, two free licences.
    h.step(assign(HYBRID, to_group("team")), &[assigned(HYBRID, to_group("team"))]);
    assert_seats(&h, &pool(HYBRID), 2);
}

/// The same miscount seen through the alert: the decision thinks one seat
/// more is taken than evolve records, and raises an alert that is not due.
#[test]
fn a_deleted_group_member_does_not_trigger_a_low_licence_alert() {
    let mut h = hybrid_pool(2, 3);
    h.given([group_created("team"), member_added("team", "u1"), member_added("team", "u2")]);
    h.given([status_changed("u2", Active, Deleted, Src::Manual)]);
    h.run(configure(HYBRID, None, alert_at(1)));
    // 3 licences, 1 seat taken: 2 available, above the threshold of 1.
    h.step(assign(HYBRID, to_group("team")), &[assigned(HYBRID, to_group("team"))]);
    assert_seats(&h, &pool(HYBRID), 1);
}

#[test]
fn per_active_user_modules_have_no_seat_cap() {
    let mut h = TestHarness::new();
    h.given(single_workspace(3));
    h.given([group_created("team"), member_added("team", "u3")]);
    assert!(!h.catalog.is_seat_limited(&sku(ENGAGE)));
    assert_eq!(h.total(&pool(ENGAGE)), 0);
    h.step(assign(ENGAGE, to_user("u1")), &[assigned(ENGAGE, to_user("u1"))]);
    h.step(assign(ENGAGE, to_user("u2")), &[assigned(ENGAGE, to_user("u2"))]);
    h.step(assign(ENGAGE, to_group("team")), &[assigned(ENGAGE, to_group("team"))]);
    assert_eq!(h.recount(&pool(ENGAGE)), 3);
    assert_eq!(h.assigned(&pool(ENGAGE)), 3);
}

// ---------------------------------------------------------------------------
// Assigned mode: a pool per top-level organization.

/// Assigned mode: `us` (USD) pays for `us-branch` (child `boston`), `de` (EUR)
/// for `de-branch`. HYBRID: 5 licences for the US, 1 for Germany, taken by `fritz`.
fn assigned_workspace() -> TestHarness {
    let mut h = TestHarness::new();
    h.given([
        workspace_created(BillingMode::Assigned),
        account_opened("us", usd()),
        account_opened("de", eur()),
        org_created("us-branch", None, Some("us")),
        org_created("boston", Some("us-branch"), None),
        org_created("de-branch", None, Some("de")),
        user_added("alice", "us-branch"),
        user_added("bob", "boston"),
        user_added("hans", "de-branch"),
        user_added("fritz", "de-branch"),
    ]);
    // The organization is left out: the account's only top-level one is used.
    h.step(
        create(new_subscription("us-hybrid", "us", HYBRID, 5, usd())),
        &subscription_events(
            terms("us-hybrid", "us", Some("us-branch"), HYBRID, 5, usd()),
            org_pool("us-branch", HYBRID),
        ),
    );
    let mut de = new_subscription("de-hybrid", "de", HYBRID, 1, eur());
    de.organization = Some(org("de-branch"));
    h.step(
        create(de),
        &subscription_events(
            terms("de-hybrid", "de", Some("de-branch"), HYBRID, 1, eur()),
            org_pool("de-branch", HYBRID),
        ),
    );
    h.given([assigned(HYBRID, to_user("fritz"))]);
    h
}

#[test]
fn assigned_mode_pools_are_isolated_per_top_level_organization() {
    let mut h = assigned_workspace();
    let us = org_pool("us-branch", HYBRID);
    let de = org_pool("de-branch", HYBRID);
    assert_eq!((h.total(&us), h.assigned(&us)), (5, 0));
    assert_eq!((h.total(&de), h.assigned(&de)), (1, 1));

    let err = exhausted(&h, assign(HYBRID, to_user("hans")), de.clone(), 0, 1);
    assert!(err.to_string().contains("`hybrid` of organization `de-branch`"), "{err}");

    h.step(assign(HYBRID, to_user("alice")), &[assigned(HYBRID, to_user("alice"))]);
    h.step(assign(HYBRID, to_user("bob")), &[assigned(HYBRID, to_user("bob"))]);
    assert_seats(&h, &us, 2);
    assert_seats(&h, &de, 1);

    // A group spanning both countries needs a German seat too.
    h.given([group_created("global"), member_added("global", "alice"), member_added("global", "hans")]);
    exhausted(&h, assign(UNIFY, to_group("global")), org_pool("de-branch", UNIFY), 0, 1);
    exhausted(&h, assign(HYBRID, to_group("global")), de, 0, 1);
}

#[test]
fn assigned_mode_commands_address_a_top_level_organization() {
    let mut h = assigned_workspace();
    then_refused!(
        h.when(add_licences(HYBRID, None, 1)),
        DomainError::Invalid(InvalidValue { what: "organization", .. }),
        ["organization", "assigned mode"],
    );
    then_refused!(
        h.when(WorkspaceCommand::AddLicences {
            sku: sku(HYBRID),
            organization: Some(org("boston")),
            subscription: None,
            quantity: 1,
            order: order(),
        }),
        DomainError::ChildInheritsAccount { org: o, parent } if *o == org("boston") && *parent == org("us-branch"),
        ["`boston`", "`us-branch`"],
    );
    // Adding licences to Germany lets Hans in.
    h.step(
        WorkspaceCommand::AddLicences {
            sku: sku(HYBRID),
            organization: Some(org("de-branch")),
            subscription: None,
            quantity: 1,
            order: order(),
        },
        &[Event::QuantityChanged {
            subscription: sub("de-hybrid"),
            pool: org_pool("de-branch", HYBRID),
            from: 1,
            to: 2,
            reason: QuantityReason::ManualAddition,
            order: order(),
            channel: SubscriptionChannel::Portal,
        }],
    );
    h.step(assign(HYBRID, to_user("hans")), &[assigned(HYBRID, to_user("hans"))]);
    assert_seats(&h, &org_pool("de-branch", HYBRID), 2);

    // A subscription may not feed an organization of another account, or a child.
    let mut wrong = new_subscription("x", "us", HYBRID, 1, usd());
    wrong.organization = Some(org("de-branch"));
    then_refused!(
        h.when(create(wrong)),
        DomainError::SubscriptionNeedsOrganization { subscription, .. } if *subscription == sub("x"),
        ["`x`", "another account"],
    );
    let mut child = new_subscription("x", "us", HYBRID, 1, usd());
    child.organization = Some(org("boston"));
    then_refused!(
        h.when(create(child)),
        DomainError::SubscriptionNeedsOrganization { subscription, .. } if *subscription == sub("x"),
        ["`x`", "not top-level"],
    );
}

// ---------------------------------------------------------------------------
// Quantities, ends and trials never leave fewer licences than assigned seats.

#[test]
fn lowering_a_quantity_below_the_seats_assigned_is_refused() {
    let mut h = hybrid_pool(2, 3);
    h.given([assigned(HYBRID, to_user("u1")), assigned(HYBRID, to_user("u2"))]);
    for q in [0, 1] {
        then_refused!(
            h.when(change_quantity("s1", q)),
            DomainError::QuantityBelowAssigned { pool: p, on, assigned, total_after }
                if *p == pool(HYBRID) && *on == today() && *assigned == 2 && *total_after == u64::from(q),
            ["`hybrid`", &format!("{q} licences"), "2 seats are assigned"],
        );
    }
    h.when(change_quantity("s1", 3)).then_nothing();
    h.step(
        change_quantity("s1", 2),
        &[Event::QuantityChanged {
            subscription: sub("s1"),
            pool: pool(HYBRID),
            from: 3,
            to: 2,
            reason: QuantityReason::Order,
            order: order(),
            channel: SubscriptionChannel::Portal,
        }],
    );
    assert_eq!(h.total(&pool(HYBRID)), 2);
    // A per-active-user pool has no such floor.
    let mut h = TestHarness::new();
    h.given(single_workspace(1));
    h.given(eur_subscription("e1", ENGAGE, 1));
    h.given([assigned(ENGAGE, to_user("u1"))]);
    h.when(change_quantity("e1", 0)).accepted();
}

#[test]
fn ending_a_subscription_that_would_leave_fewer_licences_than_assigned_is_refused() {
    let mut h = hybrid_pool(2, 2);
    h.given(eur_subscription("s2", HYBRID, 1));
    h.given([assigned(HYBRID, to_user("u1")), assigned(HYBRID, to_user("u2"))]);
    assert_eq!(h.total(&pool(HYBRID)), 3);

    for ended_on in [today(), date(2024, 6, 1)] {
        then_refused!(
            h.when(WorkspaceCommand::EndSubscription { subscription: sub("s1"), ended_on }),
            DomainError::QuantityBelowAssigned { pool: p, on, assigned: 2, total_after: 1 }
                if *p == pool(HYBRID) && *on == ended_on,
            ["`hybrid`", "1 licences", "2 seats"],
        );
    }
    then_refused!(
        h.when(WorkspaceCommand::ScheduleDeactivation {
            subscription: sub("s1"),
            deactivate_on: Some(date(2024, 6, 1))
        }),
        DomainError::QuantityBelowAssigned { assigned: 2, total_after: 1, .. },
        ["`hybrid`"],
    );

    h.step(
        WorkspaceCommand::EndSubscription { subscription: sub("s2"), ended_on: today() },
        &[Event::SubscriptionEnded { subscription: sub("s2"), ended_on: today() }],
    );
    assert_eq!(h.total(&pool(HYBRID)), 2);
    then_refused!(
        h.when(change_quantity("s2", 5)),
        DomainError::SubscriptionEnded { subscription, ended_on } if *subscription == sub("s2") && *ended_on == today(),
        ["`s2`", "2024-03-01"],
    );
}

#[test]
fn ending_a_trial_without_conversion_that_would_leave_fewer_licences_than_assigned_is_refused() {
    let mut h = TestHarness::new();
    h.given(single_workspace(2));
    let mut trial = terms("trial", "main", None, HYBRID, 2, eur());
    trial.trial = true;
    h.given(subscription_events(trial, pool(HYBRID)));
    h.given(eur_subscription("paid", HYBRID, 1));
    h.given([assigned(HYBRID, to_user("u1")), assigned(HYBRID, to_user("u2"))]);

    then_refused!(
        h.when(WorkspaceCommand::EndTrial { subscription: sub("trial"), converted: false }),
        DomainError::QuantityBelowAssigned { pool: p, assigned: 2, total_after: 1, .. } if *p == pool(HYBRID),
        ["`hybrid`", "1 licences", "2 seats"],
    );
    then_refused!(
        h.when(WorkspaceCommand::EndTrial { subscription: sub("paid"), converted: false }),
        DomainError::NotATrial(s) if *s == sub("paid"),
        ["`paid`", "not a trial"],
    );
    // Converting keeps the licences.
    h.step(
        WorkspaceCommand::EndTrial { subscription: sub("trial"), converted: true },
        &[Event::TrialEnded { subscription: sub("trial"), converted: true, ended_on: today() }],
    );
    assert_eq!(h.total(&pool(HYBRID)), 3);
    assert!(!h.ws().subscriptions[&sub("trial")].trial);
}

#[test]
fn ending_an_unconverted_trial_with_seats_to_spare_ends_its_licences() {
    let mut h = TestHarness::new();
    h.given(single_workspace(1));
    let mut trial = terms("trial", "main", None, HYBRID, 2, eur());
    trial.trial = true;
    h.given(subscription_events(trial, pool(HYBRID)));
    h.given(eur_subscription("paid", HYBRID, 1));
    h.given([assigned(HYBRID, to_user("u1"))]);
    h.step(
        WorkspaceCommand::EndTrial { subscription: sub("trial"), converted: false },
        &[Event::TrialEnded { subscription: sub("trial"), converted: false, ended_on: today() }],
    );
    assert_eq!(h.total(&pool(HYBRID)), 1);
}

// ---------------------------------------------------------------------------
// Add licences and automatic top-ups.

#[test]
fn add_licences_picks_the_single_live_subscription_of_the_pool() {
    let mut h = hybrid_pool(0, 2);
    // A trial and a finished subscription of the same pool are not candidates.
    let mut trial = terms("trial", "main", None, HYBRID, 4, eur());
    trial.trial = true;
    h.given(subscription_events(trial, pool(HYBRID)));
    h.given(eur_subscription("old", HYBRID, 7));
    h.given([Event::SubscriptionEnded { subscription: sub("old"), ended_on: date(2024, 2, 15) }]);
    h.step(
        add_licences(HYBRID, None, 3),
        &[Event::QuantityChanged {
            subscription: sub("s1"),
            pool: pool(HYBRID),
            from: 2,
            to: 5,
            reason: QuantityReason::ManualAddition,
            order: order(),
            channel: SubscriptionChannel::Portal,
        }],
    );
    assert_eq!(h.ws().subscriptions[&sub("s1")].quantity, 5);
    assert_eq!(h.total(&pool(HYBRID)), 9);
}

#[test]
fn add_licences_without_a_subscription_for_the_pool_is_refused() {
    let mut h = hybrid_pool(0, 2);
    then_refused!(
        h.when(add_licences(UNIFY, None, 1)),
        DomainError::NoSubscriptionForPool { pool: p } if *p == pool(UNIFY),
        ["`unify`", "no live subscription"],
    );
    // Only a trial: still none to add to.
    let mut trial = terms("trial", "main", None, UNIFY, 4, eur());
    trial.trial = true;
    h.given(subscription_events(trial, pool(UNIFY)));
    then_refused!(
        h.when(add_licences(UNIFY, None, 1)),
        DomainError::NoSubscriptionForPool { pool: p } if *p == pool(UNIFY),
        ["`unify`"],
    );
}

#[test]
fn add_licences_with_several_live_subscriptions_must_name_one() {
    let mut h = hybrid_pool(0, 2);
    h.given(eur_subscription("s2", HYBRID, 10));
    then_refused!(
        h.when(add_licences(HYBRID, None, 1)),
        DomainError::AmbiguousSubscription { pool: p, count: 2 } if *p == pool(HYBRID),
        ["`hybrid`", "2 live subscriptions", "name the one"],
    );
    h.step(
        add_licences(HYBRID, Some("s2"), 4),
        &[Event::QuantityChanged {
            subscription: sub("s2"),
            pool: pool(HYBRID),
            from: 10,
            to: 14,
            reason: QuantityReason::ManualAddition,
            order: order(),
            channel: SubscriptionChannel::Portal,
        }],
    );
    h.given(eur_subscription("u-sub", UNIFY, 1));
    then_refused!(
        h.when(add_licences(HYBRID, Some("u-sub"), 1)),
        DomainError::Invalid(InvalidValue { what: "subscription", .. }),
        ["`u-sub`", "does not feed pool `hybrid`"],
    );
    then_refused!(
        h.when(add_licences(HYBRID, Some("ghost"), 1)),
        DomainError::SubscriptionNotFound(s) if *s == sub("ghost"),
        ["`ghost`"],
    );
}

#[test]
fn a_top_up_is_applied_once_per_trigger_event() {
    let mut h = hybrid_pool(0, 2);
    h.run(configure(HYBRID, None, top_up_settings(4, 2, 5)));
    let trigger = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0042);
    let top_up = WorkspaceCommand::TopUpLicences {
        sku: sku(HYBRID),
        organization: None,
        subscription: None,
        quantity: 2,
        trigger_event: trigger,
    };
    h.step(
        top_up.clone(),
        &[Event::QuantityChanged {
            subscription: sub("s1"),
            pool: pool(HYBRID),
            from: 2,
            to: 4,
            reason: QuantityReason::AutomaticTopUp { trigger_event: trigger },
            order: OrderDetails {
                order_reference: Some(format!("top-up/{trigger}")),
                order_date: Some(today()),
                ordered_by: "licence-manager".to_owned(),
                order_thru: Some("automatic top-up".to_owned()),
            },
            channel: SubscriptionChannel::System,
        }],
    );
    assert!(h.ws().applied_top_ups.contains(&(trigger, pool(HYBRID))));
    then_refused!(h.when(top_up), DomainError::TopUpAlreadyApplied(t) if *t == trigger, [&trigger.to_string()]);
    assert_eq!(h.ws().subscriptions[&sub("s1")].quantity, 4);
}

// ---------------------------------------------------------------------------
// Low-licence alerts.

fn raised(available: u64, threshold: u32) -> Event {
    Event::LowLicenceAlertRaised { pool: pool(HYBRID), available, threshold }
}

fn cleared(available: u64, threshold: u32) -> Event {
    Event::LicenceAlertCleared { pool: pool(HYBRID), available, threshold }
}

#[test]
fn a_low_licence_alert_is_raised_once_per_crossing() {
    let mut h = hybrid_pool(3, 3);
    h.step(
        configure(HYBRID, None, alert_at(1)),
        &[Event::LicenceSettingsChanged { pool: pool(HYBRID), settings: alert_at(1) }],
    );
    // 3 → 2 available: above the threshold.
    h.step(assign(HYBRID, to_user("u1")), &[assigned(HYBRID, to_user("u1"))]);
    // 2 → 1: crosses; the alert follows the assignment in the same decision.
    h.step(assign(HYBRID, to_user("u2")), &[assigned(HYBRID, to_user("u2")), raised(1, 1)]);
    assert!(h.ws().alerts_raised.contains(&pool(HYBRID)));
    // 1 → 0: still low, not raised again.
    h.step(assign(HYBRID, to_user("u3")), &[assigned(HYBRID, to_user("u3"))]);
    // 0 → 1: still at the threshold, nothing cleared.
    h.step(unassign(HYBRID, to_user("u3")), &[unassigned(HYBRID, to_user("u3"))]);
    // 1 → 2: recovered above the threshold.
    h.step(unassign(HYBRID, to_user("u2")), &[unassigned(HYBRID, to_user("u2")), cleared(2, 1)]);
    assert!(!h.ws().alerts_raised.contains(&pool(HYBRID)));
    // Dropping again raises again.
    h.step(assign(HYBRID, to_user("u2")), &[assigned(HYBRID, to_user("u2")), raised(1, 1)]);
    // Buying licences clears it.
    let events = h.run(add_licences(HYBRID, None, 2));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1], cleared(3, 1));
}

#[test]
fn configuring_a_threshold_checks_the_pool_at_once_and_removing_it_clears_the_alert() {
    let mut h = hybrid_pool(2, 2);
    h.given([assigned(HYBRID, to_user("u1"))]);
    h.step(
        configure(HYBRID, None, alert_at(1)),
        &[Event::LicenceSettingsChanged { pool: pool(HYBRID), settings: alert_at(1) }, raised(1, 1)],
    );
    let none = LicenceSettings::default();
    h.step(
        configure(HYBRID, None, none),
        &[Event::LicenceSettingsChanged { pool: pool(HYBRID), settings: none }, cleared(1, 0)],
    );
    h.step(assign(HYBRID, to_user("u2")), &[assigned(HYBRID, to_user("u2"))]);
}

/// Deactivating a subscription from today takes its licences away today, just
/// as ending it today does, so the low-licence alert must follow in both cases.
#[test]
fn deactivating_licences_from_today_raises_the_low_licence_alert_like_ending_them() {
    let mut h = hybrid_pool(1, 2);
    h.given(eur_subscription("s2", HYBRID, 1));
    h.given([assigned(HYBRID, to_user("u1"))]);
    h.run(configure(HYBRID, None, alert_at(1)));
    assert!(h.ws().alerts_raised.is_empty(), "3 licences, 1 seat: 2 available");

    h.when(WorkspaceCommand::EndSubscription { subscription: sub("s2"), ended_on: today() })
        .then(&[Event::SubscriptionEnded { subscription: sub("s2"), ended_on: today() }, raised(1, 1)]);
    h.when(WorkspaceCommand::ScheduleDeactivation { subscription: sub("s2"), deactivate_on: Some(today()) })
        .then(&[Event::DeactivationScheduled { subscription: sub("s2"), deactivate_on: Some(today()) }, raised(1, 1)]);
}

#[test]
fn a_deactivation_date_before_the_start_is_refused_and_a_later_one_is_recorded() {
    let mut h = hybrid_pool(0, 2);
    then_refused!(
        h.when(WorkspaceCommand::ScheduleDeactivation {
            subscription: sub("s1"),
            deactivate_on: Some(date(2024, 1, 31))
        }),
        DomainError::InvertedRange { what: "deactivate-on date", .. },
        ["deactivate-on date", "2024-02-01 is after 2024-01-31"],
    );
    h.step(
        WorkspaceCommand::ScheduleDeactivation { subscription: sub("s1"), deactivate_on: Some(date(2024, 6, 1)) },
        &[Event::DeactivationScheduled { subscription: sub("s1"), deactivate_on: Some(date(2024, 6, 1)) }],
    );
    assert_eq!(h.total(&pool(HYBRID)), 2);
    assert_eq!(h.ws().pool_total_on(&pool(HYBRID), date(2024, 6, 1)), 0, "not live on its deactivate-on date");
}

// ---------------------------------------------------------------------------
// Licence settings.

#[test]
fn licence_settings_are_validated() {
    let mut h = hybrid_pool(0, 2);
    let top_up = |threshold, per_top_up, per_month| LicenceSettings {
        alert_threshold: None,
        top_up: Some(TopUpSettings {
            vacant_seat_threshold: threshold,
            max_per_top_up: per_top_up,
            max_per_month: per_month,
        }),
    };
    then_refused!(
        h.when(configure(HYBRID, None, top_up(2, 10, 9))),
        DomainError::Invalid(InvalidValue { what: "cap per month", .. }),
        ["cap per month", "9", "below the cap per top-up of 10"],
    );
    then_refused!(
        h.when(configure(HYBRID, None, top_up(0, 1, 1))),
        DomainError::Invalid(InvalidValue { what: "vacant seat threshold", .. }),
        ["vacant seat threshold"],
    );
    then_refused!(
        h.when(configure(HYBRID, None, top_up(1, 0, 1))),
        DomainError::Invalid(InvalidValue { what: "cap per top-up", .. }),
        ["cap per top-up"],
    );
    then_refused!(
        h.when(configure(HYBRID, None, alert_at(MAX_QUANTITY + 1))),
        DomainError::Invalid(InvalidValue { what: "alert threshold", .. }),
        ["alert threshold", "1000001"],
    );
    then_refused!(
        h.when(configure("ghost", None, alert_at(1))),
        DomainError::ProductNotFound(s) if *s == sku("ghost"),
        ["`ghost`", "not in the catalog"],
    );
    then_refused!(
        h.when(configure(UNIFY, None, alert_at(1))),
        DomainError::SettingsForUnknownSku { pool: p } if *p == pool(UNIFY),
        ["`unify`", "no subscription"],
    );
    then_refused!(
        h.when(configure(HYBRID, Some("hq"), alert_at(1))),
        DomainError::AccountLinkNeedsAssignedMode { mode: BillingMode::Single, .. },
        ["single"],
    );
    let ok = top_up(2, 10, 10);
    h.step(configure(HYBRID, None, ok), &[Event::LicenceSettingsChanged { pool: pool(HYBRID), settings: ok }]);
    assert_eq!(h.ws().settings[&pool(HYBRID)], ok);
}

#[test]
fn licence_settings_in_assigned_mode_belong_to_a_top_level_organization_with_a_subscription() {
    let h = assigned_workspace();
    then_refused!(
        h.when(configure(UNIFY, Some("us-branch"), alert_at(1))),
        DomainError::SettingsForUnknownSku { pool: p } if *p == org_pool("us-branch", UNIFY),
        ["`unify` of organization `us-branch`"],
    );
    then_refused!(
        h.when(configure(HYBRID, Some("boston"), alert_at(1))),
        DomainError::ChildInheritsAccount { org: o, .. } if *o == org("boston"),
        ["`boston`"],
    );
    h.when(configure(HYBRID, Some("de-branch"), alert_at(0))).then(&[
        Event::LicenceSettingsChanged { pool: org_pool("de-branch", HYBRID), settings: alert_at(0) },
        Event::LowLicenceAlertRaised { pool: org_pool("de-branch", HYBRID), available: 0, threshold: 0 },
    ]);
}

// ---------------------------------------------------------------------------
// Bundles.

fn bundle_child(parent: &SubscriptionTerms, child_sku: &str) -> SubscriptionTerms {
    let mut t = parent.clone();
    t.subscription = sub(&format!("{}.{child_sku}", parent.subscription));
    t.sku = sku(child_sku);
    t.parent = Some(parent.subscription.clone());
    t.bundle_role = BundleRole::Child;
    t.name = format!("{child_sku} product");
    t.friendly_name = None;
    t.billable = false;
    t.selling_per_unit = Money::zero(eur());
    t.cost_per_unit = Money::zero(eur());
    t.product_class = Some(format!("{child_sku}-class"));
    t
}

#[test]
fn a_bundle_parent_subscription_creates_its_children() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    let mut new = new_subscription("b1", "main", SUITE, 5, eur());
    new.friendly_name = Some("Our suite".to_owned());
    let mut parent = terms("b1", "main", None, SUITE, 5, eur());
    parent.bundle_role = BundleRole::Parent;
    parent.friendly_name = Some("Our suite".to_owned());
    let core = bundle_child(&parent, SUITE_CORE);
    let reports = bundle_child(&parent, SUITE_REPORTS);
    assert_eq!(core.subscription, sub("b1.suite-core"));
    let mut expected = subscription_events(parent, pool(SUITE));
    expected.extend(subscription_events(core, pool(SUITE_CORE)));
    expected.extend(subscription_events(reports, pool(SUITE_REPORTS)));
    h.step(create(new), &expected);

    let ws = h.ws();
    assert_eq!(ws.subscriptions.len(), 3);
    let child = &ws.subscriptions[&sub("b1.suite-reports")];
    assert_eq!(child.terms.bundle_role, BundleRole::Child);
    assert!(!child.terms.billable);
    assert!(child.terms.selling_per_unit.amount.is_zero());
    assert!(!ws.subscriptions.contains_key(&sub("b1.suite-ai")), "add-ons are not created with the parent");
    // Children are not where licences are added.
    then_refused!(
        h.when(add_licences(SUITE_CORE, None, 1)),
        DomainError::NoSubscriptionForPool { pool: p } if *p == pool(SUITE_CORE),
        ["`suite-core`"],
    );
}

#[test]
fn a_bundle_child_id_that_is_taken_refuses_the_parent() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.given(eur_subscription("b1.suite-core", SUITE_CORE, 1));
    then_refused!(
        h.when(create(new_subscription("b1", "main", SUITE, 5, eur()))),
        DomainError::SubscriptionExists(s) if *s == sub("b1.suite-core"),
        ["`b1.suite-core`"],
    );
}

#[test]
fn an_add_on_under_its_parent_is_billable_and_a_listed_child_is_not() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.run(create(new_subscription("b1", "main", SUITE, 5, eur())));

    let mut new = new_subscription("ai", "main", SUITE_AI, 2, eur());
    new.parent = Some(sub("b1"));
    let mut expected = terms("ai", "main", None, SUITE_AI, 2, eur());
    expected.parent = Some(sub("b1"));
    expected.bundle_role = BundleRole::AddOn;
    h.step(create(new), &subscription_events(expected, pool(SUITE_AI)));

    // A child named under its parent is never billable, whatever is asked.
    let mut extra = new_subscription("extra", "main", SUITE_REPORTS, 1, eur());
    extra.parent = Some(sub("b1"));
    extra.billable = Some(true);
    extra.selling_per_unit = Some(dec("99"));
    extra.cost_per_unit = Some(dec("1"));
    let events = h.when(create(extra)).accepted();
    let Event::SubscriptionCreated { terms } = &events[0] else { panic!("{events:?}") };
    assert_eq!(terms.bundle_role, BundleRole::Child);
    assert!(!terms.billable);
    assert_eq!(terms.selling_per_unit, Money::zero(eur()));
    assert_eq!(terms.cost_per_unit, Money::zero(eur()));
}

#[test]
fn a_sku_outside_the_parents_bundle_is_refused() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.run(create(new_subscription("b1", "main", SUITE, 5, eur())));
    let mut new = new_subscription("x", "main", ONBOARDING, 1, eur());
    new.parent = Some(sub("b1"));
    then_refused!(
        h.when(create(new)),
        DomainError::InvalidParent { subscription, parent, .. } if *subscription == sub("x") && *parent == sub("b1"),
        ["`x`", "`b1`", "`suite`", "`onboarding`"],
    );
    let mut new = new_subscription("x", "main", SUITE_AI, 1, eur());
    new.parent = Some(sub("nope"));
    then_refused!(h.when(create(new)), DomainError::SubscriptionNotFound(s) if *s == sub("nope"), ["`nope`"]);
}

#[test]
fn an_add_on_must_share_its_parents_account() {
    let mut h = TestHarness::new();
    h.given([workspace_created(BillingMode::Pooled), account_opened("a", eur()), account_opened("b", eur())]);
    h.run(create(new_subscription("b1", "a", SUITE, 5, eur())));
    let mut new = new_subscription("ai", "b", SUITE_AI, 1, eur());
    new.parent = Some(sub("b1"));
    then_refused!(
        h.when(create(new)),
        DomainError::InvalidParent { subscription, parent, .. } if *subscription == sub("ai") && *parent == sub("b1"),
        ["`ai`", "`b1`", "another billing account"],
    );
}

#[test]
fn pooled_mode_adds_every_accounts_subscriptions_into_one_pool() {
    let mut h = TestHarness::new();
    h.given([
        workspace_created(BillingMode::Pooled),
        account_opened("a", eur()),
        account_opened("b", usd()),
        org_created("hq", None, None),
        user_added("u1", "hq"),
        user_added("u2", "hq"),
        user_added("u3", "hq"),
    ]);
    h.run(create(new_subscription("sa", "a", HYBRID, 1, eur())));
    h.run(create(new_subscription("sb", "b", HYBRID, 1, usd())));
    assert_eq!(h.total(&pool(HYBRID)), 2);
    h.run(assign(HYBRID, to_user("u1")));
    h.run(assign(HYBRID, to_user("u2")));
    exhausted(&h, assign(HYBRID, to_user("u3")), pool(HYBRID), 0, 1);
}

#[test]
fn a_bundle_parent_carries_its_children_through_quantity_changes_and_its_end() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.run(create(new_subscription("b1", "main", SUITE, 5, eur())));
    let mut addon = new_subscription("ai", "main", SUITE_AI, 2, eur());
    addon.parent = Some(sub("b1"));
    h.run(create(addon));

    // The included children follow the parent's quantity; the add-on keeps its own.
    let events = h
        .when(WorkspaceCommand::ChangeQuantity {
            subscription: sub("b1"),
            quantity: 8,
            order: order(),
            channel: SubscriptionChannel::Portal,
        })
        .accepted();
    let changed: Vec<(String, u32, u32)> = events
        .iter()
        .map(|e| match e {
            Event::QuantityChanged { subscription, from, to, .. } => (subscription.to_string(), *from, *to),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        changed,
        [("b1".to_owned(), 5, 8), ("b1.suite-core".to_owned(), 5, 8), ("b1.suite-reports".to_owned(), 5, 8)]
    );
    h.given(events);
    assert_eq!(h.ws().subscriptions[&sub("ai")].quantity, 2);

    // Ending the parent ends everything that hangs off it, add-ons included.
    let events = h.when(WorkspaceCommand::EndSubscription { subscription: sub("b1"), ended_on: today() }).accepted();
    let ended: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::SubscriptionEnded { subscription, .. } => subscription.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ended, ["b1", "ai", "b1.suite-core", "b1.suite-reports"]);
}

// ---------------------------------------------------------------------------
// Automatic top-ups: the domain decides how many licences restore the
// vacant-seat threshold, within the caps.

fn top_up_settings(threshold: u32, per_top_up: u32, per_month: u32) -> LicenceSettings {
    LicenceSettings {
        alert_threshold: None,
        top_up: Some(TopUpSettings {
            vacant_seat_threshold: threshold,
            max_per_top_up: per_top_up,
            max_per_month: per_month,
        }),
    }
}

fn auto(trigger: u128) -> WorkspaceCommand {
    WorkspaceCommand::AutoTopUp { sku: sku(HYBRID), organization: None, trigger_event: uuid::Uuid::from_u128(trigger) }
}

fn topped_up(events: &[Event]) -> Vec<(u32, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::QuantityChanged { from, to, reason: QuantityReason::AutomaticTopUp { .. }, .. } => {
                Some((*from, *to))
            }
            _ => None,
        })
        .collect()
}

fn cap_reached(events: &[Event]) -> Option<(u64, u64, u64)> {
    events.iter().find_map(|e| match e {
        Event::TopUpCapReached { needed, allowed, month_used, .. } => Some((*needed, *allowed, *month_used)),
        _ => None,
    })
}

#[test]
fn an_automatic_top_up_restores_the_vacant_seat_threshold() {
    // 4 licences, 3 users holding seats: 1 free; the threshold is 3 free.
    let mut h = hybrid_pool(3, 4);
    for u in ["u1", "u2", "u3"] {
        h.run(assign(HYBRID, to_user(u)));
    }
    h.run(configure(HYBRID, None, top_up_settings(3, 5, 10)));
    let events = h.when(auto(1)).accepted();
    assert_eq!(topped_up(&events), [(4, 6)], "2 licences bring the free seats from 1 to 3");
    assert_eq!(cap_reached(&events), None);
    h.given(events);
    // Nothing to do when the threshold's seats are free.
    assert!(h.when(auto(2)).accepted().is_empty());
}

#[test]
fn the_cap_per_top_up_and_the_cap_per_month_stop_a_top_up_and_say_so() {
    let mut h = hybrid_pool(4, 4);
    for u in ["u1", "u2", "u3", "u4"] {
        h.run(assign(HYBRID, to_user(u)));
    }
    // 0 free, threshold 5: 5 needed; 2 per top-up, 3 per month.
    h.run(configure(HYBRID, None, top_up_settings(5, 2, 3)));
    let first = h.run(auto(1));
    assert_eq!(topped_up(&first), [(4, 6)]);
    assert_eq!(cap_reached(&first), Some((5, 2, 0)));
    // 2 free now, 3 needed; the month has 1 licence of cap left.
    let second = h.run(auto(2));
    assert_eq!(topped_up(&second), [(6, 7)]);
    assert_eq!(cap_reached(&second), Some((3, 1, 2)));
    // The month's cap is used up: only the notification event.
    let third = h.run(auto(3));
    assert!(topped_up(&third).is_empty());
    assert_eq!(cap_reached(&third), Some((2, 0, 3)));
    // Each trigger acts once, capped or not.
    then_refused!(h.when(auto(3)), DomainError::TopUpAlreadyApplied(_), ["already applied"]);
    assert_eq!(h.ws().top_ups_by_month.values().sum::<u64>(), 3);
}

#[test]
fn top_ups_need_settings_and_explicit_ones_respect_the_caps() {
    let mut h = hybrid_pool(0, 2);
    then_refused!(h.when(auto(1)), DomainError::NoTopUpSettings { .. }, ["no automatic top-up settings"]);
    h.run(configure(HYBRID, None, top_up_settings(2, 2, 3)));
    let explicit = |n: u128, quantity: u32| WorkspaceCommand::TopUpLicences {
        sku: sku(HYBRID),
        organization: None,
        subscription: None,
        quantity,
        trigger_event: uuid::Uuid::from_u128(n),
    };
    then_refused!(
        h.when(explicit(5, 3)),
        DomainError::TopUpCapExceeded { what: "cap per top-up", .. },
        ["exceeds the cap per top-up of 2"]
    );
    h.run(explicit(6, 2));
    then_refused!(
        h.when(explicit(7, 2)),
        DomainError::TopUpCapExceeded { what: "cap per month", .. },
        ["exceeds the cap per month of 3"]
    );
}

#[test]
fn one_event_that_drains_two_pools_tops_up_each_pool_once() {
    let mut h = TestHarness::new();
    h.given(single_workspace(1));
    h.given(eur_subscription("s1", HYBRID, 1));
    h.given(eur_subscription("s2", UNIFY, 1));
    h.run(configure(HYBRID, None, top_up_settings(1, 5, 10)));
    h.run(configure(UNIFY, None, top_up_settings(1, 5, 10)));
    h.run(assign(HYBRID, to_user("u1")));
    h.run(assign(UNIFY, to_user("u1")));
    // The same trigger (say, the user's return from deleted) for both pools.
    let trigger = uuid::Uuid::from_u128(77);
    let for_pool = |s: &str| WorkspaceCommand::AutoTopUp { sku: sku(s), organization: None, trigger_event: trigger };
    assert_eq!(topped_up(&h.run(for_pool(HYBRID))), [(1, 2)]);
    assert_eq!(topped_up(&h.run(for_pool(UNIFY))), [(1, 2)]);
    then_refused!(h.when(for_pool(UNIFY)), DomainError::TopUpAlreadyApplied(t) if *t == trigger, ["already applied"]);
}
