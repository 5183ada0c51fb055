//! Users and their status: who is the status authority, directory sync,
//! SCIM defaults and SCIM deactivation.

#[macro_use]
mod harness;

use harness::*;
use seatledger_domain::*;
use StatusChangeSource as Src;
use UserStatus::*;

fn change_status(u: &str, status: UserStatus, source: StatusChangeSource) -> WorkspaceCommand {
    WorkspaceCommand::ChangeUserStatus { user: user(u), status, source }
}

fn add_user(u: &str, status: Option<UserStatus>, source: UserSource) -> WorkspaceCommand {
    WorkspaceCommand::AddUser { user: user(u), org: org("hq"), profile: profile(u), status, source }
}

/// A single-mode workspace with users u1, u2 where the directory is the
/// status authority and Entra sync runs.
fn directory_syncing() -> TestHarness {
    let mut h = TestHarness::new();
    h.given(single_workspace(2));
    h.given([
        Event::StatusAuthoritySet { authority: StatusAuthority::Directory },
        Event::SyncStarted { tool: SyncTool::AzureAd },
    ]);
    h
}

#[test]
fn a_new_workspace_is_its_own_status_authority_with_active_scim_default() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    assert_eq!(h.ws().status_authority, StatusAuthority::Workspace);
    assert_eq!(h.ws().scim_default_status, Active);
    assert_eq!(h.ws().sync, None);
}

#[test]
fn manual_status_change_is_refused_while_the_directory_syncs() {
    let h = directory_syncing();
    for status in [Inactive, Deleted] {
        let err = then_refused!(
            h.when(change_status("u1", status, Src::Manual)),
            DomainError::StatusManagedByDirectory { user: u } if *u == user("u1"),
            ["`u1`", "managed by the directory", "stop the sync", "switch the status authority to the workspace"],
        );
        assert_eq!(
            err.to_string(),
            "the status of user `u1` is managed by the directory while sync runs; stop the sync or switch the status \
             authority to the workspace first"
        );
    }
    // The directory itself may change it.
    h.when(change_status("u1", Inactive, Src::DirectorySync)).then(&[status_changed(
        "u1",
        Active,
        Inactive,
        Src::DirectorySync,
    )]);
}

#[test]
fn manual_status_change_is_allowed_after_stopping_the_sync() {
    let mut h = directory_syncing();
    h.step(WorkspaceCommand::StopSync, &[Event::SyncStopped { tool: SyncTool::AzureAd }]);
    assert_eq!(h.ws().status_authority, StatusAuthority::Directory, "stopping the sync keeps the authority");
    h.step(change_status("u1", Inactive, Src::Manual), &[status_changed("u1", Active, Inactive, Src::Manual)]);
    assert_eq!(h.ws().users[&user("u1")].status, Inactive);
    then_refused!(
        h.when(WorkspaceCommand::StopSync),
        DomainError::SyncNotRunning(id) if *id == ws_id(),
        ["`acme`", "not running"],
    );
}

#[test]
fn manual_status_change_is_allowed_after_switching_the_authority_to_the_workspace() {
    let mut h = directory_syncing();
    h.step(
        WorkspaceCommand::SetStatusAuthority { authority: StatusAuthority::Workspace },
        &[Event::StatusAuthoritySet { authority: StatusAuthority::Workspace }],
    );
    assert!(h.ws().sync.is_some(), "the sync still runs");
    h.step(change_status("u2", Deleted, Src::Manual), &[status_changed("u2", Active, Deleted, Src::Manual)]);
    assert_eq!(h.ws().users[&user("u2")].status, Deleted);
}

#[test]
fn directory_status_changes_are_refused_when_the_workspace_is_the_authority() {
    let mut h = TestHarness::new();
    h.given(single_workspace(1));
    h.given([Event::SyncStarted { tool: SyncTool::Scim }]);
    for source in [Src::DirectorySync, Src::Scim] {
        then_refused!(
            h.when(change_status("u1", Inactive, source)),
            DomainError::DirectoryNotAuthority(id) if *id == ws_id(),
            ["`acme`", "not the status authority"],
        );
    }
    h.when(change_status("u1", Inactive, Src::Manual)).then(&[status_changed("u1", Active, Inactive, Src::Manual)]);
}

#[test]
fn setting_the_same_authority_or_status_again_records_nothing() {
    let mut h = TestHarness::new();
    h.given(single_workspace(1));
    h.when(WorkspaceCommand::SetStatusAuthority { authority: StatusAuthority::Workspace }).then_nothing();
    h.when(change_status("u1", Active, Src::Manual)).then_nothing();
    h.when(WorkspaceCommand::SetScimDefaultStatus { status: Active }).then_nothing();
}

#[test]
fn sync_cannot_start_twice() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.step(WorkspaceCommand::StartSync { tool: SyncTool::Scim }, &[Event::SyncStarted { tool: SyncTool::Scim }]);
    then_refused!(
        h.when(WorkspaceCommand::StartSync { tool: SyncTool::AzureAd }),
        DomainError::SyncAlreadyRunning(id) if *id == ws_id(),
        ["`acme`", "already running"],
    );
}

#[test]
fn a_scim_user_without_a_status_takes_the_scim_default() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    // Default default: active.
    h.step(
        add_user("a1", None, UserSource::Scim),
        &[Event::UserAdded {
            user: user("a1"),
            org: org("hq"),
            profile: profile("a1"),
            status: Active,
            source: UserSource::Scim,
        }],
    );
    h.step(
        WorkspaceCommand::SetScimDefaultStatus { status: Inactive },
        &[Event::ScimDefaultStatusSet { status: Inactive }],
    );
    h.step(
        add_user("s1", None, UserSource::Scim),
        &[Event::UserAdded {
            user: user("s1"),
            org: org("hq"),
            profile: profile("s1"),
            status: Inactive,
            source: UserSource::Scim,
        }],
    );
    // Users from elsewhere, or with a status given, are not affected.
    for (u, status, source, expected) in [
        ("m1", None, UserSource::Manual, Active),
        ("d1", None, UserSource::DirectorySync, Active),
        ("s2", Some(Active), UserSource::Scim, Active),
    ] {
        h.step(
            add_user(u, status, source),
            &[Event::UserAdded { user: user(u), org: org("hq"), profile: profile(u), status: expected, source }],
        );
    }
}

#[test]
fn changing_the_scim_default_does_not_change_existing_users() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    h.run(add_user("s1", None, UserSource::Scim));
    h.run(add_user("s2", Some(Inactive), UserSource::Scim));
    let before = h.ws().users.clone();
    let events = h.run(WorkspaceCommand::SetScimDefaultStatus { status: Inactive });
    assert_eq!(events, [Event::ScimDefaultStatusSet { status: Inactive }], "no status change of any user");
    assert_eq!(h.ws().users, before);
    assert_eq!(h.ws().users[&user("s1")].status, Active);
    assert_eq!(h.ws().scim_default_status, Inactive);
}

#[test]
fn the_scim_default_cannot_be_deleted_and_users_cannot_start_deleted() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    then_refused!(
        h.when(WorkspaceCommand::SetScimDefaultStatus { status: Deleted }),
        DomainError::InvalidDefaultStatus(Deleted),
        ["scim default status", "deleted"],
    );
    then_refused!(h.when(add_user("x", Some(Deleted), UserSource::Manual)), DomainError::NewUserDeleted, ["deleted"]);
}

#[test]
fn scim_deactivation_moves_a_user_to_deleted_and_frees_their_seat() {
    let mut h = TestHarness::new();
    h.given(single_workspace(2));
    h.given(eur_subscription("s1", HYBRID, 2));
    h.given([
        assigned(HYBRID, to_user("u1")),
        Event::UserStatusChanged { user: user("u2"), from: Active, to: Inactive, source: Src::Manual },
    ]);
    assert_eq!(h.assigned(&pool(HYBRID)), 1);
    h.step(
        WorkspaceCommand::ScimDeactivateUser { user: user("u1") },
        &[status_changed("u1", Active, Deleted, Src::Scim)],
    );
    assert_eq!(h.ws().users[&user("u1")].status, Deleted);
    assert_eq!(h.assigned(&pool(HYBRID)), 0);
    // An inactive user is deactivated to deleted too.
    h.step(
        WorkspaceCommand::ScimDeactivateUser { user: user("u2") },
        &[status_changed("u2", Inactive, Deleted, Src::Scim)],
    );
    // Already deleted: nothing more to record.
    h.when(WorkspaceCommand::ScimDeactivateUser { user: user("u1") }).then_nothing();
    then_refused!(
        h.when(WorkspaceCommand::ScimDeactivateUser { user: user("ghost") }),
        DomainError::UserNotFound(u) if *u == user("ghost"),
        ["`ghost`"],
    );
}

#[test]
fn usernames_are_unique() {
    let mut h = TestHarness::new();
    h.given(single_workspace(1));
    then_refused!(
        h.when(WorkspaceCommand::AddUser {
            user: user("other"),
            org: org("hq"),
            profile: profile("u1"),
            status: None,
            source: UserSource::Manual,
        }),
        DomainError::UsernameTaken { username, user: owner } if username == "u1" && *owner == user("u1"),
        ["`u1`"],
    );
    then_refused!(
        h.when(add_user("u1", None, UserSource::Manual)),
        DomainError::UserExists(u) if *u == user("u1"),
        ["`u1`", "already exists"],
    );
    // Renaming frees the old username.
    h.step(
        WorkspaceCommand::UpdateUserProfile { user: user("u1"), profile: profile("renamed") },
        &[Event::UserProfileUpdated { user: user("u1"), profile: profile("renamed") }],
    );
    h.when(add_user("u9", None, UserSource::Manual)).accepted();
    h.when(WorkspaceCommand::AddUser {
        user: user("other"),
        org: org("hq"),
        profile: profile("u1"),
        status: None,
        source: UserSource::Manual,
    })
    .accepted();
}

#[test]
fn a_user_needs_an_existing_organization() {
    let mut h = TestHarness::new();
    h.given(single_workspace(0));
    then_refused!(
        h.when(WorkspaceCommand::AddUser {
            user: user("x"),
            org: org("nowhere"),
            profile: profile("x"),
            status: None,
            source: UserSource::Manual,
        }),
        DomainError::OrganizationNotFound(o) if *o == org("nowhere"),
        ["`nowhere`"],
    );
}
