//! Money: an amount in `rust_decimal` with its ISO 4217 currency.
//!
//! Rounding happens in exactly one place, [`Money::round_to_minor_unit`]:
//! half away from zero, to the currency's minor unit as ISO 4217 gives it
//! (EUR 2, JPY 0, BHD 3). Everything else keeps full precision.

use crate::error::InvalidValue;
use rust_decimal::{Decimal, RoundingStrategy};

/// The largest amount of money (in major units) the ledger accepts anywhere.
/// Anything above it is a typing mistake, not a price.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// An ISO 4217 currency, known to the `iso_currency` crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Parse an alphabetic ISO 4217 code such as `EUR`. Unknown codes and
    /// codes without a minor unit (such as `XAU`) are refused.
    pub fn from_code(code: &str) -> Result<Self, InvalidValue> {
        let c = iso_currency::Currency::from_code(code)
            .ok_or_else(|| InvalidValue::new("currency", format!("{code:?} is not an ISO 4217 currency code")))?;
        if c.exponent().is_none() {
            return Err(InvalidValue::new("currency", format!("{code} has no minor unit and cannot be invoiced")));
        }
        Ok(Self(c))
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point of the minor unit (EUR 2, JPY 0, BHD 3).
    pub fn minor_unit_digits(&self) -> u32 {
        // `from_code` refuses currencies without an exponent.
        u32::from(self.0.exponent().expect("currency has a minor unit"))
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount and its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Zero, written to the minor unit (0.00 EUR, 0 JPY).
    pub fn zero(currency: Currency) -> Self {
        Self { amount: Decimal::ZERO, currency }.round_to_minor_unit()
    }

    /// A price: not negative and not absurd.
    pub fn price(amount: Decimal, currency: Currency, what: &'static str) -> Result<Self, InvalidValue> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(InvalidValue::new(what, format!("{amount} is negative")));
        }
        if amount > MAX_AMOUNT {
            return Err(InvalidValue::new(what, format!("{amount} is above the limit of {MAX_AMOUNT}")));
        }
        Ok(Self { amount, currency })
    }

    /// THE rounding rule of the ledger: half away from zero, to the minor unit.
    pub fn round_to_minor_unit(self) -> Self {
        let amount = self
            .amount
            .round_dp_with_strategy(self.currency.minor_unit_digits(), RoundingStrategy::MidpointAwayFromZero);
        Self { amount: amount.normalize_to(self.currency.minor_unit_digits()), currency: self.currency }
    }

    /// Add two amounts of the same currency; `None` when the currencies differ.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then(|| Money { amount: self.amount + other.amount, currency: self.currency })
    }
}

/// Give a decimal exactly `digits` places, so that 41 in EUR prints as 41.00.
trait NormalizeTo {
    fn normalize_to(self, digits: u32) -> Self;
}

impl NormalizeTo for Decimal {
    fn normalize_to(self, digits: u32) -> Self {
        let mut d = self;
        if d.scale() < digits {
            d.rescale(digits);
        }
        d
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// A percentage from 0 to 100 inclusive (a tax rate, a discount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(Decimal);

impl Percent {
    pub const ZERO: Percent = Percent(Decimal::ZERO);

    pub fn new(value: Decimal, what: &'static str) -> Result<Self, InvalidValue> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(InvalidValue::new(what, format!("{value}% is negative")));
        }
        if value > Decimal::ONE_HUNDRED {
            return Err(InvalidValue::new(what, format!("{value}% is above 100%")));
        }
        Ok(Self(value))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }

    /// The fraction, 0 to 1.
    pub fn fraction(&self) -> Decimal {
        self.0 / Decimal::ONE_HUNDRED
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn minor_units_come_from_iso_4217() {
        assert_eq!(Currency::from_code("EUR").unwrap().minor_unit_digits(), 2);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_unit_digits(), 0);
        assert_eq!(Currency::from_code("BHD").unwrap().minor_unit_digits(), 3);
    }

    #[test]
    fn unknown_currencies_are_refused() {
        let err = Currency::from_code("EUX").unwrap_err().to_string();
        assert_eq!(err, "currency \"EUX\" is not an ISO 4217 currency code");
        assert!(Currency::from_code("XAU").is_err());
    }

    #[test]
    fn rounding_is_half_away_from_zero_at_the_minor_unit() {
        let eur = Currency::from_code("EUR").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        let bhd = Currency::from_code("BHD").unwrap();
        assert_eq!(Money::new(d("2.345"), eur).round_to_minor_unit().amount.to_string(), "2.35");
        assert_eq!(Money::new(d("-2.345"), eur).round_to_minor_unit().amount.to_string(), "-2.35");
        assert_eq!(Money::new(d("2.344"), eur).round_to_minor_unit().amount.to_string(), "2.34");
        assert_eq!(Money::new(d("41"), eur).round_to_minor_unit().amount.to_string(), "41.00");
        assert_eq!(Money::new(d("1234.5"), jpy).round_to_minor_unit().amount.to_string(), "1235");
        assert_eq!(Money::new(d("1.2345"), bhd).round_to_minor_unit().amount.to_string(), "1.235");
    }

    #[test]
    fn prices_and_percentages_are_bounded() {
        let eur = Currency::from_code("EUR").unwrap();
        assert!(Money::price(d("-0.01"), eur, "selling price").unwrap_err().to_string().contains("negative"));
        assert!(Money::price(d("1000000000.01"), eur, "selling price").is_err());
        assert!(Percent::new(d("100.5"), "discount").is_err());
        assert!(Percent::new(d("-1"), "tax rate").is_err());
        assert_eq!(Percent::new(d("20"), "tax rate").unwrap().fraction(), d("0.2"));
    }
}
