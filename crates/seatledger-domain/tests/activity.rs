//! Activity: reservations, recurring occurrences, memberships and punch-pass uses.

#[macro_use]
mod harness;

use chrono::{DateTime, TimeZone, Utc};
use harness::*;
use seatledger_domain::*;

fn time(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, d, h, 0, 0).single().unwrap()
}

fn reservation(id: &str, u: &str, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> WorkspaceCommand {
    WorkspaceCommand::RecordReservation {
        reservation: ReservationId::new(id).unwrap(),
        user: user(u),
        starts_at,
        ends_at,
    }
}

fn start_membership(
    id: &str,
    u: &str,
    starts_on: chrono::NaiveDate,
    ends_on: Option<chrono::NaiveDate>,
) -> WorkspaceCommand {
    WorkspaceCommand::StartMembership { membership: MembershipId::new(id).unwrap(), user: user(u), starts_on, ends_on }
}

fn workspace() -> TestHarness {
    let mut h = TestHarness::new();
    h.given(single_workspace(2));
    h
}

#[test]
fn a_reservation_is_recorded_once_per_id() {
    let mut h = workspace();
    let cmd = reservation("r1", "u1", time(4, 9), time(4, 11));
    h.step(
        cmd.clone(),
        &[Event::ReservationMade {
            reservation: ReservationId::new("r1").unwrap(),
            user: user("u1"),
            starts_at: time(4, 9),
            ends_at: time(4, 11),
        }],
    );
    then_refused!(
        h.when(cmd),
        DomainError::ActivityExists { kind: "reservation", id } if id.contains("r1"),
        ["reservation", "r1", "already recorded"],
    );
    // The same id is taken whoever books it and whenever.
    then_refused!(
        h.when(reservation("r1", "u2", time(5, 9), time(5, 10))),
        DomainError::ActivityExists { kind: "reservation", .. },
        ["r1"],
    );
    h.when(reservation("r2", "u1", time(4, 9), time(4, 11))).accepted();
}

#[test]
fn a_reservation_ending_before_it_starts_is_refused() {
    let h = workspace();
    then_refused!(
        h.when(reservation("r1", "u1", time(4, 11), time(4, 9))),
        DomainError::InvertedRange { what: "reservation", start, end }
            if *start == time(4, 11).to_rfc3339() && *end == time(4, 9).to_rfc3339(),
        ["reservation", "2024-03-04T11:00:00", "is after", "2024-03-04T09:00:00"],
    );
    // Zero length is not inverted.
    h.when(reservation("r1", "u1", time(4, 9), time(4, 9))).accepted();
}

#[test]
fn a_reservation_needs_a_known_user() {
    let h = workspace();
    then_refused!(
        h.when(reservation("r1", "ghost", time(4, 9), time(4, 10))),
        DomainError::UserNotFound(u) if *u == user("ghost"),
        ["`ghost`"],
    );
}

#[test]
fn a_recurring_occurrence_is_recorded_once_per_user_and_day() {
    let mut h = workspace();
    let occurrence = |u: &str, d: u32| WorkspaceCommand::RecordRecurringOccurrence {
        series: SeriesId::new("yoga").unwrap(),
        user: user(u),
        occurs_on: date(2024, 3, d),
    };
    h.step(
        occurrence("u1", 5),
        &[Event::RecurringReservationOccurred {
            series: SeriesId::new("yoga").unwrap(),
            user: user("u1"),
            occurs_on: date(2024, 3, 5),
        }],
    );
    then_refused!(
        h.when(occurrence("u1", 5)),
        DomainError::ActivityExists { kind: "recurring reservation occurrence", .. },
        ["recurring reservation occurrence", "yoga", "2024-03-05"],
    );
    h.when(occurrence("u1", 12)).accepted();
    h.when(occurrence("u2", 5)).accepted();
}

#[test]
fn a_membership_ending_before_it_starts_is_refused() {
    let mut h = workspace();
    then_refused!(
        h.when(start_membership("m1", "u1", date(2024, 3, 10), Some(date(2024, 3, 9)))),
        DomainError::InvertedRange { what: "membership", start, end } if start == "2024-03-10" && end == "2024-03-09",
        ["membership", "2024-03-10 is after 2024-03-09"],
    );
    h.step(
        start_membership("m1", "u1", date(2024, 3, 10), None),
        &[Event::MembershipStarted {
            membership: MembershipId::new("m1").unwrap(),
            user: user("u1"),
            starts_on: date(2024, 3, 10),
            ends_on: None,
        }],
    );
    then_refused!(
        h.when(WorkspaceCommand::EndMembership {
            membership: MembershipId::new("m1").unwrap(),
            ends_on: date(2024, 3, 1),
        }),
        DomainError::InvertedRange { what: "membership", .. },
        ["membership", "2024-03-10 is after 2024-03-01"],
    );
    h.step(
        WorkspaceCommand::EndMembership { membership: MembershipId::new("m1").unwrap(), ends_on: date(2024, 3, 10) },
        &[Event::MembershipEnded { membership: MembershipId::new("m1").unwrap(), ends_on: date(2024, 3, 10) }],
    );
    assert_eq!(h.ws().memberships[&MembershipId::new("m1").unwrap()].ends_on, Some(date(2024, 3, 10)));
}

#[test]
fn a_membership_id_is_used_once_and_must_exist_to_end() {
    let mut h = workspace();
    h.run(start_membership("m1", "u1", date(2024, 3, 1), Some(date(2024, 3, 31))));
    then_refused!(
        h.when(start_membership("m1", "u2", date(2024, 4, 1), None)),
        DomainError::ActivityExists { kind: "membership", id } if id == "m1",
        ["membership", "`m1`", "already recorded"],
    );
    then_refused!(
        h.when(WorkspaceCommand::EndMembership {
            membership: MembershipId::new("m9").unwrap(),
            ends_on: date(2024, 3, 1),
        }),
        DomainError::MembershipNotFound(m) if m.as_str() == "m9",
        ["`m9`", "does not exist"],
    );
}

#[test]
fn a_punch_pass_use_is_recorded_once_per_id() {
    let mut h = workspace();
    let use_of = |id: &str, u: &str| WorkspaceCommand::RecordPunchPassUse {
        use_id: PunchUseId::new(id).unwrap(),
        user: user(u),
        used_on: date(2024, 3, 7),
    };
    h.step(
        use_of("p1", "u1"),
        &[Event::PunchPassUsed { use_id: PunchUseId::new("p1").unwrap(), user: user("u1"), used_on: date(2024, 3, 7) }],
    );
    then_refused!(
        h.when(use_of("p1", "u2")),
        DomainError::ActivityExists { kind: "punch pass use", .. },
        ["punch pass use", "p1", "already recorded"],
    );
    h.when(use_of("p2", "u1")).accepted();
}

#[test]
fn a_read_side_copy_folds_the_same_workspace_without_its_activity_ids() {
    let mut h = workspace();
    let mut events = single_workspace(2);
    events.extend(h.run(reservation("r1", "u1", time(4, 9), time(4, 11))));
    events.extend(h.run(reservation("r2", "u2", time(5, 9), time(5, 10))));
    events.extend(h.run(WorkspaceCommand::RecordPunchPassUse {
        use_id: PunchUseId::new("p1").unwrap(),
        user: user("u1"),
        used_on: date(2024, 3, 7),
    }));
    events.extend(h.run(start_membership("m1", "u2", date(2024, 3, 1), None)));

    let mut full: Option<Workspace> = None;
    let mut read: Option<Workspace> = None;
    for e in &events {
        full = Workspace::evolve(full.take(), e);
        // A read-side copy from its creation on, as the licence state keeps it.
        read = match read.take() {
            None => Workspace::evolve(None, e).map(Workspace::for_reading),
            Some(ws) => Workspace::evolve(Some(ws), e),
        };
    }
    let (full, read) = (full.unwrap(), read.unwrap());
    assert_eq!(full.activity_ids.len(), 3, "two reservations and a punch-pass use");
    assert!(read.activity_ids.is_empty());
    assert!(!read.keeps_activity_ids);
    // Everything else is the same fold.
    let mut same = read.clone();
    same.activity_ids = full.activity_ids.clone();
    same.keeps_activity_ids = true;
    assert_eq!(same, full);
    assert_eq!(read.memberships.len(), 1);
}

#[test]
#[should_panic(expected = "read-side copy")]
fn a_read_side_copy_is_never_decided_on() {
    let mut h = workspace();
    h.workspace = h.workspace.take().map(Workspace::for_reading);
    // Without its activity ids it could not tell a repeated reservation.
    let _ = h.when(reservation("r1", "u1", time(4, 9), time(4, 11)));
}
