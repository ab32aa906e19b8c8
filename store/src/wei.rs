//! [`Wei`]: an exact amount in the chain's smallest unit, stored as decimal text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of wei. `u128` holds about 3.4e20 ETH, far above the total supply, so
/// every real amount fits; arithmetic is checked.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Wei(pub u128);

impl Wei {
    /// Zero wei.
    pub const ZERO: Wei = Wei(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Wei) -> Option<Wei> {
        self.0.checked_add(other.0).map(Wei)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Wei) -> Option<Wei> {
        self.0.checked_sub(other.0).map(Wei)
    }

    /// The amount in ether, exact and without trailing zeros (`0.1 ETH`, `25 ETH`,
    /// `0.000000000000000001 ETH`): how the UI shows money when fees are in ETH.
    #[cfg(test)]
    pub(crate) fn to_eth(self) -> String {
        Money::eth().show(self)
    }

    /// An amount of ether written as people write it (`0.05`, `1`, `2.5 ETH`, `.5`):
    /// digits with at most one point and at most 18 digits after it, an optional
    /// `ETH` after a space; exact, no floating point.
    #[cfg(test)]
    pub(crate) fn from_eth(text: &str) -> Result<Wei, ParseEthError> {
        Money::eth().parse(text)
    }

    /// The sum of `amounts`, or `None` on overflow.
    pub fn sum<I: IntoIterator<Item = Wei>>(amounts: I) -> Option<Wei> {
        amounts
            .into_iter()
            .try_fold(Wei::ZERO, |acc, w| acc.checked_add(w))
    }
}

impl fmt::Display for Wei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a text is not a canonical wei amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a wei amount ({0}): expected a whole number of wei without sign or leading zeros")]
pub struct ParseWeiError(String);

/// Why a text is not an amount of the fee asset (ETH, or a fee token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an amount of {symbol} ({text}): expected digits with at most {decimals} after the point, like 0.05"
)]
pub struct ParseEthError {
    text: String,
    symbol: String,
    decimals: u8,
}

/// The unit money is shown and typed in: ETH (18 decimals), or the fee token's symbol
/// and decimals (`TUSD`, 18; `USDC`, 6). A [`Wei`] amount is always the asset's
/// smallest unit: wei for ETH, the token's base unit otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// `ETH`, or the token's symbol.
    pub symbol: String,
    /// Digits after the point: 18 for ETH, the token's `decimals()` otherwise (at
    /// most 38, what a `u128` can scale by).
    pub decimals: u8,
}

impl Default for Money {
    fn default() -> Self {
        Money::eth()
    }
}

impl Money {
    /// ETH, 18 decimals.
    pub fn eth() -> Money {
        Money {
            symbol: "ETH".into(),
            decimals: 18,
        }
    }

    /// A token's unit; `decimals` above 38 is capped at 38.
    pub fn token(symbol: impl Into<String>, decimals: u8) -> Money {
        Money {
            symbol: symbol.into(),
            decimals: decimals.min(38),
        }
    }

    /// The name of the smallest unit in hover texts: `wei` for ETH, `base units of
    /// USDC` for a token.
    pub fn base_unit(&self) -> String {
        if self.symbol == "ETH" && self.decimals == 18 {
            "wei".into()
        } else {
            format!("base units of {}", self.symbol)
        }
    }

    /// The decimals used: at most 38, what a `u128` can scale by.
    fn digits(&self) -> u8 {
        self.decimals.min(38)
    }

    fn scale(&self) -> u128 {
        10u128.pow(u32::from(self.digits()))
    }

    /// `amount` in whole units, exact and without trailing zeros (`0.1 ETH`,
    /// `25 USDC`, `0.000001 USDC`).
    pub fn show(&self, amount: Wei) -> String {
        let scale = self.scale();
        let (whole, frac) = (amount.0 / scale, amount.0 % scale);
        if frac == 0 {
            return format!("{whole} {}", self.symbol);
        }
        let digits = format!("{frac:0width$}", width = usize::from(self.digits()));
        format!("{whole}.{} {}", digits.trim_end_matches('0'), self.symbol)
    }

    /// An amount written as people write it (`0.05`, `1`, `2.5 USDC`, `.5`): digits
    /// with at most one point and at most `decimals` digits after it, and optionally
    /// the symbol after a space (any case); exact, no floating point.
    pub fn parse(&self, text: &str) -> Result<Wei, ParseEthError> {
        let shown = || ParseEthError {
            text: text.chars().take(40).collect(),
            symbol: self.symbol.clone(),
            decimals: self.decimals,
        };
        let t = text.trim();
        let t = match t.len().checked_sub(self.symbol.len()) {
            Some(at)
                if !self.symbol.is_empty()
                    && t.is_char_boundary(at)
                    && t[at..].eq_ignore_ascii_case(&self.symbol) =>
            {
                t[..at].trim_end()
            }
            _ => t,
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty())
            || !digits(whole)
            || !digits(frac)
            || frac.len() > usize::from(self.digits())
        {
            return Err(shown());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| shown())?
        };
        let frac: u128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<width$}", width = usize::from(self.digits()))
                .parse()
                .map_err(|_| shown())?
        };
        whole
            .checked_mul(self.scale())
            .and_then(|w| w.checked_add(frac))
            .map(Wei)
            .ok_or_else(shown)
    }
}

impl FromStr for Wei {
    type Err = ParseWeiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return Err(ParseWeiError(s.chars().take(40).collect()));
        }
        s.parse::<u128>()
            .map(Wei)
            .map_err(|_| ParseWeiError(s.chars().take(40).collect()))
    }
}

impl From<Wei> for String {
    fn from(w: Wei) -> String {
        w.0.to_string()
    }
}

impl TryFrom<String> for Wei {
    type Error = ParseWeiError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

// In the database a wei amount is its canonical decimal text, on both engines.
impl<DB: sqlx::Database> sqlx::Type<DB> for Wei
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Wei
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        self.0.to_string().encode(buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Wei
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(String::decode(value)?.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_decimals() {
        assert_eq!("0".parse::<Wei>(), Ok(Wei(0)));
        assert_eq!(
            "1000000000000000000".parse::<Wei>(),
            Ok(Wei(1_000_000_000_000_000_000))
        );
        for bad in [
            "",
            "-1",
            "01",
            "1.5",
            "1e18",
            " 1",
            "340282366920938463463374607431768211456",
        ] {
            assert!(bad.parse::<Wei>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Wei(1).checked_sub(Wei(2)), None);
        assert_eq!(Wei(u128::MAX).checked_add(Wei(1)), None);
        assert_eq!(Wei::sum([Wei(1), Wei(2), Wei(3)]), Some(Wei(6)));
    }

    #[test]
    fn serializes_as_string() {
        let json = serde_json::to_string(&Wei(12)).unwrap();
        assert_eq!(json, "\"12\"");
        assert_eq!(serde_json::from_str::<Wei>(&json).unwrap(), Wei(12));
    }

    #[test]
    fn ether_parses_exactly() {
        let eth = 10u128.pow(18);
        assert_eq!(Wei::from_eth("1"), Ok(Wei(eth)));
        assert_eq!(Wei::from_eth("0.05"), Ok(Wei(5 * 10u128.pow(16))));
        assert_eq!(Wei::from_eth(" 2.5 ETH "), Ok(Wei(25 * 10u128.pow(17))));
        assert_eq!(Wei::from_eth(".5"), Ok(Wei(eth / 2)));
        assert_eq!(Wei::from_eth("0.000000000000000001"), Ok(Wei(1)));
        assert_eq!(Wei::from_eth("3."), Ok(Wei(3 * eth)));
        for w in [Wei(1), Wei(10u128.pow(17)), Wei(1_500_000_000_000_000_001)] {
            let shown = w.to_eth();
            assert_eq!(Wei::from_eth(&shown), Ok(w), "{shown} round-trips");
        }
        for bad in [
            "",
            ".",
            "-1",
            "1e18",
            "1,5",
            "0.0000000000000000001",
            "1.2.3",
            "ETH",
            "400000000000000000000",
        ] {
            assert!(Wei::from_eth(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_six_decimal_token_shows_and_parses_exactly() {
        let usdc = Money::token("USDC", 6);
        assert_eq!(usdc.show(Wei(0)), "0 USDC");
        assert_eq!(usdc.show(Wei(1)), "0.000001 USDC");
        assert_eq!(usdc.show(Wei(2_500_000)), "2.5 USDC");
        assert_eq!(usdc.show(Wei(1_000_000_000)), "1000 USDC");
        assert_eq!(usdc.parse("2.5"), Ok(Wei(2_500_000)));
        assert_eq!(usdc.parse(" 0.000001 usdc "), Ok(Wei(1)));
        assert_eq!(usdc.parse("7 USDC"), Ok(Wei(7_000_000)));
        for w in [Wei(1), Wei(123_456_789), Wei(10u128.pow(20))] {
            assert_eq!(usdc.parse(&usdc.show(w)), Ok(w));
        }
        let err = usdc.parse("0.0000001").unwrap_err().to_string();
        assert!(err.contains("USDC") && err.contains("at most 6"), "{err}");
        assert!(usdc.parse("1 ETH").is_err());
        assert_eq!(usdc.base_unit(), "base units of USDC");
        assert_eq!(Money::eth().base_unit(), "wei");
        // No decimals at all: whole units only.
        let points = Money::token("PTS", 0);
        assert_eq!(points.show(Wei(12)), "12 PTS");
        assert_eq!(points.parse("12"), Ok(Wei(12)));
        assert!(points.parse("1.5").is_err());
    }

    #[test]
    fn ether_is_exact_and_trimmed() {
        assert_eq!(Wei(0).to_eth(), "0 ETH");
        assert_eq!(Wei(25 * 10u128.pow(18)).to_eth(), "25 ETH");
        assert_eq!(Wei(10u128.pow(17)).to_eth(), "0.1 ETH");
        assert_eq!(Wei(1).to_eth(), "0.000000000000000001 ETH");
        assert_eq!(
            Wei(1_500_000_000_000_000_001).to_eth(),
            "1.500000000000000001 ETH"
        );
    }
}
