//! The statuses of rows as enums: matches, entries, training runs and chain
//! transactions. Each is stored as its lower-case name (the text the tables'
//! `CHECK` constraints allow), parsed once when a row is read, so code matches on
//! variants instead of comparing strings. Comparing with text (`status == "settled"`)
//! still works, for the web layer and tests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a text is not one of a status's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {what} (expected one of {expected})")]
pub struct ParseStatusError {
    what: &'static str,
    text: String,
    expected: &'static str,
}

macro_rules! status {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every status, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseStatusError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseStatusError {
                        what: $what,
                        text: s.chars().take(40).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
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

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                self.as_str().to_string().encode(buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(String::decode(value)?.parse()?)
            }
        }
    };
}

status!(
    /// Where a match is in its life.
    MatchStatus, "match status" {
        /// Created, entries attached, not yet started.
        Pending => "pending",
        /// Rounds are being played.
        Running => "running",
        /// Paid out.
        Settled => "settled",
        /// Every entry refunded.
        Refunded => "refunded",
        /// Failed (kept for old rows; failures are refunded).
        Failed => "failed",
    }
);

status!(
    /// Where an entry is.
    EntryStatus, "entry status" {
        /// Waiting for a match.
        Queued => "queued",
        /// Seated in a match.
        Matched => "matched",
        /// Its match was paid out.
        Settled => "settled",
        /// Its fee came back.
        Refunded => "refunded",
        /// Its owner left the queue.
        Withdrawn => "withdrawn",
    }
);

status!(
    /// Where a training run is.
    RunStatus, "training run status" {
        /// Training.
        Running => "running",
        /// Produced a new adapter version.
        Succeeded => "succeeded",
        /// Stopped without one.
        Failed => "failed",
    }
);

status!(
    /// Where a chain transaction of the outbox is.
    TxStatus, "chain transaction status" {
        /// Begun, maybe sent, not yet confirmed.
        Pending => "pending",
        /// Mined.
        Confirmed => "confirmed",
        /// Refused; nothing moved.
        Failed => "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_compare_with_text() {
        for s in MatchStatus::ALL {
            assert_eq!(s.as_str().parse::<MatchStatus>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for s in EntryStatus::ALL {
            assert_eq!(s.as_str().parse::<EntryStatus>(), Ok(*s));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        for s in TxStatus::ALL {
            assert_eq!(s.as_str().parse::<TxStatus>(), Ok(*s));
        }
        assert!(MatchStatus::Settled == "settled");
        assert!(EntryStatus::Queued != "matched");
        let err = "done".parse::<TxStatus>().unwrap_err().to_string();
        assert!(err.contains("pending confirmed failed"), "{err}");
    }
}
