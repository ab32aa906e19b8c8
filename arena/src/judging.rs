//! How the world asks for a round to be judged, and what it keeps of the answer.

use serde::Serialize;
use spaces::Rulebook;

/// One judge's score, as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreLine {
    /// The judge's name.
    pub judge: String,
    /// sha256 of its model.
    pub model_hash: String,
    /// Its template version.
    pub template_version: String,
    /// Score in [0, 1].
    pub score: f64,
    /// Its rationale.
    pub rationale: String,
}

/// The panel's verdict on one seat's answer in one round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundVerdict {
    /// Weighted, length-controlled score in [0, 1].
    pub combined: f64,
    /// Whether a hard rule failed.
    pub hard_failed: bool,
    /// Every judge's own score.
    pub scores: Vec<ScoreLine>,
}

/// Judges one round of one match.
pub trait RoundJudge: Send + Sync + 'static {
    /// One verdict per response, in seat order. `hard_failed` comes from the Space's
    /// rule verifiers.
    fn judge(
        &self,
        rulebook: &Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<RoundVerdict>, judges::JudgeError>;
}

/// A [`RoundJudge`] that runs each Space's judge panel, built once per Space.
pub struct PanelJudge {
    panels: std::collections::HashMap<String, judges::Panel>,
}

impl PanelJudge {
    /// Builds the panel of every rulebook over the loaded judge models (shared
    /// through `Arc`, so each model is loaded once).
    pub fn new(
        rulebooks: &[std::sync::Arc<Rulebook>],
        loaded: &judges::LoadedJudges,
    ) -> Result<PanelJudge, judges::JudgeError> {
        let mut panels = std::collections::HashMap::new();
        for book in rulebooks {
            panels.insert(
                book.slug.clone(),
                judges::Panel::from_rulebook(book.clone(), loaded)?,
            );
        }
        Ok(PanelJudge { panels })
    }
}

impl RoundJudge for PanelJudge {
    fn judge(
        &self,
        rulebook: &Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<RoundVerdict>, judges::JudgeError> {
        let panel = self
            .panels
            .get(&rulebook.slug)
            .ok_or_else(|| judges::JudgeError::Model {
                path: rulebook.slug.clone(),
                reason: "no judge panel was built for this Space".into(),
            })?;
        let judged = panel.judge(
            &judges::Task::from_space(rulebook, task),
            responses,
            hard_failed,
        )?;
        Ok(judged
            .into_iter()
            .map(|v| RoundVerdict {
                combined: v.combined,
                hard_failed: v.hard_failed,
                scores: v
                    .scores
                    .into_iter()
                    .map(|s| ScoreLine {
                        judge: s.judge.name,
                        model_hash: s.judge.model_hash,
                        template_version: s.judge.template_version,
                        score: s.score,
                        rationale: s.rationale,
                    })
                    .collect(),
            })
            .collect())
    }
}

/// The orchestration test policy's judge: each answer scores its pass rate over the
/// Space's own rule verifiers. No model runs, so the world's own cost can be measured
/// and tested; real matches use [`PanelJudge`].
pub struct RulesOnlyJudge;

impl RoundJudge for RulesOnlyJudge {
    fn judge(
        &self,
        rulebook: &Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<RoundVerdict>, judges::JudgeError> {
        Ok(responses
            .iter()
            .zip(hard_failed)
            .map(|(r, &hard)| {
                let score = spaces::pass_rate(&spaces::verify(rulebook, task, r));
                RoundVerdict {
                    combined: score,
                    hard_failed: hard,
                    scores: vec![ScoreLine {
                        judge: "rules".into(),
                        model_hash: String::new(),
                        template_version: "rules-only-v1".into(),
                        score,
                        rationale: format!("{:.0}% of the Space's rules pass", score * 100.0),
                    }],
                }
            })
            .collect())
    }
}
