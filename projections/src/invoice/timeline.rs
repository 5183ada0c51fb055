//! Values over business time. Invoices are computed on effective time, so
//! a backdated event lands where it belongs, whenever it was recorded.

use chrono::{DateTime, NaiveDate, Utc};

/// The UTC instant a day starts.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// A value that changes at effective instants. Entries are kept in
/// (effective time, global position) order, so two changes at the same
/// instant apply in the order they were recorded.
#[derive(Debug, Clone)]
pub struct Timeline<T> {
    entries: Vec<Entry<T>>,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    at: DateTime<Utc>,
    position: u64,
    value: T,
    event: uuid::Uuid,
}

impl<T> Default for Timeline<T> {
    fn default() -> Self {
        Self { entries: vec![] }
    }
}

impl<T: Clone> Timeline<T> {
    pub fn push(&mut self, at: DateTime<Utc>, position: u64, value: T, event: uuid::Uuid) {
        // Most timelines hold one entry (a status never changed, a module
        // assigned once): the first takes a slot of its own, not the four a
        // vector grows to (docs/benchmarks.md, lever 28).
        self.entries.reserve_exact(usize::from(self.entries.capacity() == 0));
        let index = self.entries.partition_point(|e| (e.at, e.position) <= (at, position));
        self.entries.insert(index, Entry { at, position, value, event });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Index of the entry in effect at `instant`, if any.
    fn index_at(&self, instant: DateTime<Utc>) -> Option<usize> {
        self.entries.partition_point(|e| e.at <= instant).checked_sub(1)
    }

    /// The value in effect at `instant`.
    pub fn at(&self, instant: DateTime<Utc>) -> Option<&T> {
        self.index_at(instant).map(|i| &self.entries[i].value)
    }

    /// The value in effect just before `instant` (the last change earlier than it).
    pub fn before(&self, instant: DateTime<Utc>) -> Option<&T> {
        self.entries.partition_point(|e| e.at < instant).checked_sub(1).map(|i| &self.entries[i].value)
    }

    fn range(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> std::ops::Range<usize> {
        let first = self.index_at(start).unwrap_or_else(|| self.entries.partition_point(|e| e.at < start));
        let last = self.entries.partition_point(|e| e.at < end);
        first..last.max(first)
    }

    /// Every value in effect at some moment of `[start, end)`.
    pub fn during(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> impl Iterator<Item = &T> {
        let range = self.range(start, end);
        self.entries[range].iter().filter(move |e| e.at < end).map(|e| &e.value)
    }

    /// The events that decided the values of `[start, end)`: the one in
    /// effect at `start` and every change before `end`.
    pub fn events_during(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> impl Iterator<Item = uuid::Uuid> + '_ {
        let range = self.range(start, end);
        self.entries[range].iter().filter(move |e| e.at < end).map(|e| e.event)
    }

    /// For consecutive periods `[start, end)` (days, in order), a bit per
    /// period: set when a value satisfying `pred` was in effect at some moment
    /// of it. One sweep over the entries, instead of a search per period.
    pub fn mask_during(&self, periods: &[(DateTime<Utc>, DateTime<Utc>)], pred: impl Fn(&T) -> bool) -> u64 {
        assert!(periods.len() <= 64, "a mask holds at most 64 periods");
        let mut mask = 0u64;
        let mut next = 0;
        let mut current: Option<&T> = None;
        for (i, (start, end)) in periods.iter().enumerate() {
            while next < self.entries.len() && self.entries[next].at <= *start {
                current = Some(&self.entries[next].value);
                next += 1;
            }
            let any = current.is_some_and(&pred)
                || self.entries[next..].iter().take_while(|e| e.at < *end).any(|e| pred(&e.value));
            if any {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// For consecutive periods, the value in effect just before each one ends.
    pub fn last_in_each(&self, periods: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<Option<&T>> {
        let mut out = Vec::with_capacity(periods.len());
        let mut next = 0;
        let mut current: Option<&T> = None;
        for (_, end) in periods {
            while next < self.entries.len() && self.entries[next].at < *end {
                current = Some(&self.entries[next].value);
                next += 1;
            }
            out.push(current);
        }
        out
    }

    /// Whether any value in effect during `[start, end)` satisfies `pred`.
    pub fn any_during(&self, start: DateTime<Utc>, end: DateTime<Utc>, pred: impl Fn(&T) -> bool) -> bool {
        self.during(start, end).any(pred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, d, h, 0, 0).unwrap()
    }

    #[test]
    fn values_are_found_by_effective_time_whatever_the_recording_order() {
        let mut tl = Timeline::default();
        tl.push(t(10, 9), 1, 5u32, uuid::Uuid::from_u128(1));
        tl.push(t(20, 9), 2, 8, uuid::Uuid::from_u128(2));
        // Recorded last, effective first: a backdated correction.
        tl.push(t(5, 9), 3, 2, uuid::Uuid::from_u128(3));
        assert_eq!(tl.at(t(4, 0)), None);
        assert_eq!(tl.at(t(6, 0)), Some(&2));
        assert_eq!(tl.at(t(10, 9)), Some(&5));
        assert_eq!(tl.at(t(25, 0)), Some(&8));
        assert_eq!(tl.before(t(10, 9)), Some(&2));
        let day: Vec<u32> = tl.during(t(20, 0), t(21, 0)).copied().collect();
        assert_eq!(day, [5, 8]);
        let ids: Vec<u128> = tl.events_during(t(11, 0), t(21, 0)).map(|u| u.as_u128()).collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn a_first_entry_takes_one_slot_and_later_ones_keep_their_order() {
        let mut tl = Timeline::default();
        tl.push(t(10, 9), 1, 5u32, uuid::Uuid::from_u128(1));
        assert!(tl.entries.capacity() < 4, "one entry, not the four slots a vector starts with");
        tl.push(t(20, 9), 2, 8, uuid::Uuid::from_u128(2));
        tl.push(t(5, 9), 3, 2, uuid::Uuid::from_u128(3));
        let values: Vec<u32> = tl.during(t(1, 0), t(31, 0)).copied().collect();
        assert_eq!(values, [2, 5, 8]);
    }

    #[test]
    fn masks_agree_with_one_search_per_day() {
        let mut tl = Timeline::default();
        tl.push(t(3, 12), 1, false, uuid::Uuid::from_u128(1));
        tl.push(t(5, 0), 2, true, uuid::Uuid::from_u128(2));
        tl.push(t(9, 18), 3, false, uuid::Uuid::from_u128(3));
        tl.push(t(9, 19), 4, true, uuid::Uuid::from_u128(4));
        tl.push(t(9, 20), 5, false, uuid::Uuid::from_u128(5));
        let days: Vec<(DateTime<Utc>, DateTime<Utc>)> = (1..=12).map(|d| (t(d, 0), t(d + 1, 0))).collect();
        let mask = tl.mask_during(&days, |v| *v);
        for (i, (start, end)) in days.iter().enumerate() {
            assert_eq!(mask & (1 << i) != 0, tl.any_during(*start, *end, |v| *v), "day {}", i + 1);
        }
        assert_eq!(mask, 0b0_0001_1111_0000, "true from the 5th to the 9th");
        let last = tl.last_in_each(&days);
        for (i, (_, end)) in days.iter().enumerate() {
            assert_eq!(last[i], tl.before(*end), "day {}", i + 1);
        }
    }
}
