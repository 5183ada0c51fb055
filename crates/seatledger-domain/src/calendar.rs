//! Calendar periods: invoices and reports work on whole UTC days and months.

use crate::error::InvalidValue;
use chrono::{Datelike, NaiveDate};

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Result<Self, InvalidValue> {
        if !(1..=12).contains(&month) {
            return Err(InvalidValue::new("month", format!("{month} is not between 1 and 12")));
        }
        if !(1970..=9999).contains(&year) {
            return Err(InvalidValue::new("month", format!("year {year} is outside 1970 to 9999")));
        }
        Ok(Self { year, month })
    }

    /// Parse `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let bad = || InvalidValue::new("month", format!("{text:?} is not a month written as YYYY-MM"));
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        Self::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }

    pub fn containing(date: NaiveDate) -> Self {
        Self { year: date.year(), month: date.month() }
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    pub fn first_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("month was checked at construction")
    }

    pub fn next(&self) -> Month {
        if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }

    pub fn last_day(&self) -> NaiveDate {
        self.next().first_day().pred_opt().expect("a month has a last day")
    }

    pub fn days(&self) -> u32 {
        self.last_day().day()
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        Month::containing(date) == *self
    }

    /// Every day of the month, in order.
    pub fn each_day(&self) -> impl Iterator<Item = NaiveDate> {
        self.first_day().iter_days().take(self.days() as usize)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A closed range of days, `start` to `end` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DayRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl DayRange {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self, InvalidValue> {
        if end < start {
            return Err(InvalidValue::new("date range", format!("ends on {end}, before it starts on {start}")));
        }
        Ok(Self { start, end })
    }

    pub fn days(&self) -> u64 {
        (self.end - self.start).num_days() as u64 + 1
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_know_their_days() {
        assert_eq!(Month::new(2024, 2).unwrap().days(), 29);
        assert_eq!(Month::new(2023, 2).unwrap().days(), 28);
        assert_eq!(Month::new(2024, 12).unwrap().last_day(), NaiveDate::from_ymd_opt(2024, 12, 31).unwrap());
        assert_eq!(Month::new(2024, 3).unwrap().each_day().count(), 31);
    }

    #[test]
    fn months_parse_strictly() {
        assert_eq!(Month::parse("2024-03").unwrap().to_string(), "2024-03");
        assert!(Month::parse("2024-13").is_err());
        assert!(Month::parse("2024-3").is_err());
        assert!(Month::parse("march").is_err());
    }

    #[test]
    fn inverted_ranges_are_refused() {
        let a = NaiveDate::from_ymd_opt(2024, 3, 2).unwrap();
        let b = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert!(DayRange::new(a, b).is_err());
        assert_eq!(DayRange::new(b, a).unwrap().days(), 2);
    }
}
