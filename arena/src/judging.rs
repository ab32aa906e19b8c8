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

/// A [`RoundJudge`] that builds each Space's judge panel and runs it.
pub struct PanelJudge {
    build: Box<dyn Fn(&Rulebook) -> judges::Panel + Send + Sync>,
}

impl PanelJudge {
    /// Judges with the panel `build` makes for each rulebook (share loaded models
    /// through `Arc` inside it; building is then cheap).
    pub fn new(build: impl Fn(&Rulebook) -> judges::Panel + Send + Sync + 'static) -> PanelJudge {
        PanelJudge {
            build: Box::new(build),
        }
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
        let panel = (self.build)(rulebook);
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
