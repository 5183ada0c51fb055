//! Where the store's `recorded_at` comes from.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

/// A source of the current time. The store asks it for `recorded_at`; the
/// domain never does (time arrives inside commands).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A deterministic clock for tests and golden files: it starts at a fixed
/// instant and moves forward by a fixed step on every read.
#[derive(Debug)]
pub struct SteppingClock {
    next: Mutex<DateTime<Utc>>,
    step: Duration,
}

impl SteppingClock {
    pub fn new(start: DateTime<Utc>, step: Duration) -> Self {
        Self { next: Mutex::new(start), step }
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> DateTime<Utc> {
        let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = *next;
        *next = now + self.step;
        now
    }
}
