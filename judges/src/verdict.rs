//! The one verdict type: what the panel says about one response, which the match
//! world keeps, the ranking rule orders and pairs by, and result hashes commit to.

use crate::Score;
use crate::injection::InjectionSignal;

/// The panel's verdict on one response: the one verdict type the match world keeps,
/// the book ranks and pairs by, and result hashes commit to. Its JSON (what a result
/// hash covers) is `combined`, `hard_failed` and `scores`; the panel's working notes
/// are left out of it, and `grade` is written only for an answer that broke a hard
/// rule (so the layout of every other verdict is what it always was).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResponseVerdict {
    /// Weighted, length-controlled, injection-screened score in [0, 1].
    pub combined: f64,
    /// The length factor applied (1 within the target).
    #[serde(skip)]
    pub length_factor: f64,
    /// Whether a hard rule failed (ranks last).
    pub hard_failed: bool,
    /// For an answer that broke a hard rule: how close it came to keeping them, in
    /// [0, 1) (`spaces::hard_grade`), which ranks it among the others that broke them.
    /// `None` when the rules were kept, or when no rules graded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<f64>,
    /// What the injection screen found (empty for a clean response).
    #[serde(skip)]
    pub injection: Vec<InjectionSignal>,
    /// A short account of the combined score.
    #[serde(skip)]
    pub rationale: String,
    /// Every judge's own score, in panel order.
    pub scores: Vec<Score>,
}

impl ResponseVerdict {
    /// A verdict from scores alone (no length control, no injection found): what a
    /// judge outside the panel (the rules-only test policy, a test judge) returns.
    pub fn from_scores(combined: f64, hard_failed: bool, scores: Vec<Score>) -> ResponseVerdict {
        ResponseVerdict {
            combined,
            length_factor: 1.0,
            hard_failed,
            grade: None,
            injection: Vec::new(),
            rationale: String::new(),
            scores,
        }
    }
}
