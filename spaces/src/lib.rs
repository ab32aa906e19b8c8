//! Space rulebooks for RLFC Arena.
//!
//! A Space is a kind of competition (Tweet Duel, Haiku, Math Sprint, ...) described by a
//! TOML rulebook under `assets/spaces/`. This leaf crate loads and validates rulebooks,
//! generates seeded tasks, builds each round's task text, splits pots by the payout
//! rule, runs the rule verifiers on responses, and flags responses that try to address
//! the judges. The arena and the judges build on it; it depends on no other workspace
//! crate.

#![warn(missing_docs)]

mod error;
mod expr;
mod load;
mod payout;
mod raw;
mod rulebook;
mod schema;
mod tasks;
mod verify;

pub use error::SpaceError;
pub use expr::Expr;
pub use load::load_dir;
pub use payout::{PayoutPolicy, PayoutRule, PayoutSplit};
pub use rulebook::{FeeTier, JudgePanel, Rulebook, verify};
pub use schema::Schema;
pub use tasks::{AnswerTemplate, History, ListTask, Task, TaskGenerator, Template};
pub use verify::{
    AnswerMode, Check, LengthUnit, RuleOutcome, RuleSpec, hard_failed, hard_grade, pass_rate, words,
};
