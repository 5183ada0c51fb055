//! Read models folded from recorded events.
//!
//! A projection is a fold: [`Projection::apply`] takes one [`Recorded`]
//! event at a time, in global order, and never looks anywhere else. Folding
//! the whole log from zero and folding it in pieces (saving and restoring
//! the state in between) give the same result; `tests/rebuild.rs` proves it.
//!
//! - [`licence_state::LicenceState`]: total, assigned and available seats per pool.
//! - [`change_log::ChangeLog`]: every licence quantity change.
//! - [`audit::AuditLog`]: who did what, when, through which channel.

#![forbid(unsafe_code)]

pub mod audit;
pub mod change_log;
pub mod directory;
pub mod invoice;
pub mod licence_state;
pub mod notifications;
pub mod reports;

use chrono::{DateTime, Utc};
use seatledger_domain::{Event, StreamId};

/// A map that is small by nature: the modules a user holds or a group
/// grants (bounded by the catalogue), the groups a user is in. Kept as one
/// sorted vector, it takes four slots for its first entries and grows by
/// doubling, where a `BTreeMap` takes a node of eleven slots even for one
/// entry (a projection keeps several per user; see docs/benchmarks.md,
/// lever 28). Lookups are binary searches; an insert moves the entries
/// after it, so a user who joins g groups costs O(g²) moves over the
/// history: nothing at the tens a user is in, a fraction of a second at
/// ten thousand. Not for maps that grow with a workspace (its users, its
/// groups' members), which stay `BTreeMap`s.
pub type SmallMap<K, V> = litemap::LiteMap<K, V>;

/// One recorded event, decoded, with the envelope fields projections use.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub position: u64,
    pub id: uuid::Uuid,
    pub stream: &'a StreamId,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub recorded_at: DateTime<Utc>,
    pub effective_at: DateTime<Utc>,
    pub actor: &'a str,
    pub channel: &'a str,
    pub event: &'a Event,
}

/// Why saved projection state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError(pub String);

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "saved projection state is unreadable: {}", self.0)
    }
}

impl std::error::Error for RestoreError {}

/// A read model folded from the global log.
pub trait Projection: Send {
    /// A stable name, used for its checkpoint.
    fn name(&self) -> &'static str;

    /// Fold one event. Events arrive in global order, each exactly once.
    fn apply(&mut self, event: &Recorded<'_>);

    /// Whether later events can no longer change this projection (a search
    /// whose page is full). A fold may stop reading once every projection
    /// it feeds is complete; most projections never are.
    fn is_complete(&self) -> bool {
        false
    }

    /// The state as JSON text, to store beside the checkpoint; `None` when
    /// the projection keeps no saved state and is rebuilt from zero instead.
    fn save(&self) -> Option<String> {
        None
    }

    /// Restore state written by [`Projection::save`].
    fn restore(&mut self, _state: &str) -> Result<(), RestoreError> {
        Err(RestoreError(format!("projection `{}` keeps no saved state", self.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::SmallMap;
    use seatledger_domain::Sku;

    fn sku(text: &str) -> Sku {
        Sku::new(text).expect("a valid SKU")
    }

    /// Invoice lines and reports walk a user's modules in key order, as they
    /// did when the map was a `BTreeMap`.
    #[test]
    fn a_small_map_keeps_its_keys_in_order_whatever_the_insertion_order() {
        let mut map: SmallMap<Sku, u32> = SmallMap::new();
        for (value, text) in [(1, "SEAT"), (2, "AI"), (3, "REPORTS"), (4, "HYBRID")] {
            *map.entry(sku(text)).or_default() += value;
        }
        *map.entry(sku("AI")).or_default() += 10;
        let walked: Vec<(&str, u32)> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(walked, [("AI", 12), ("HYBRID", 4), ("REPORTS", 3), ("SEAT", 1)]);
        assert_eq!(map.get(&sku("REPORTS")), Some(&3));
        assert_eq!(map.get(&sku("NONE")), None);
    }
}
