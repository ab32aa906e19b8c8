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

/// One match's round that is due for judging.
#[derive(Debug, Clone, Copy)]
pub struct RoundToJudge<'a> {
    /// The match's rulebook.
    pub rulebook: &'a Rulebook,
    /// The round's task.
    pub task: &'a spaces::Task,
    /// The answers, in seat order.
    pub responses: &'a [&'a str],
    /// Which answers broke a hard rule (from the Space's rule verifiers).
    pub hard_failed: &'a [bool],
    /// The earlier answers the seats were shown this round (empty in round one and in
    /// Spaces without history), so judges can tell a reply from a copy.
    pub history: &'a [String],
}

/// Judges the rounds of matches.
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

    /// Judges the rounds of several matches at once (the world's judge system calls
    /// this once per tick with every round due), one result per round, in order. An
    /// implementation may share work across rounds, but each round must get what
    /// [`RoundJudge::judge`] gives it alone (replays judge one match), and a failing
    /// round fails alone. The default judges each round in turn.
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<RoundVerdict>, judges::JudgeError>> {
        rounds
            .iter()
            .map(|r| self.judge(r.rulebook, r.task, r.responses, r.hard_failed))
            .collect()
    }
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
        // Alone is a batch of one: a replay judges through the same code as a tick.
        self.judge_many(&[RoundToJudge {
            rulebook,
            task,
            responses,
            hard_failed,
            history: &[],
        }])
        .pop()
        .expect("one round in, one out")
    }

    /// Every round goes to [`judges::Panel::judge_many`] together, so the LLM judge
    /// shared by the Spaces' panels scores every answer of every round in one batch.
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<RoundVerdict>, judges::JudgeError>> {
        let tasks: Vec<judges::Task> = rounds
            .iter()
            .map(|r| {
                let mut task = judges::Task::from_space(r.rulebook, r.task);
                task.history = r.history.to_vec();
                task
            })
            .collect();
        let mut results: Vec<Option<Result<Vec<RoundVerdict>, judges::JudgeError>>> =
            Vec::with_capacity(rounds.len());
        let mut asked = Vec::new();
        let mut at = Vec::new();
        for (i, (r, task)) in rounds.iter().zip(&tasks).enumerate() {
            match self.panels.get(&r.rulebook.slug) {
                Some(panel) => {
                    asked.push(judges::PanelRound {
                        panel,
                        task,
                        responses: r.responses,
                        hard_failed: r.hard_failed,
                    });
                    at.push(i);
                    results.push(None);
                }
                None => results.push(Some(Err(judges::JudgeError::Model {
                    path: r.rulebook.slug.clone(),
                    reason: "no judge panel was built for this Space".into(),
                }))),
            }
        }
        for (i, judged) in at.into_iter().zip(judges::Panel::judge_many(&asked)) {
            results[i] = Some(judged.map(|v| v.into_iter().map(round_verdict).collect()));
        }
        results
            .into_iter()
            .map(|r| r.expect("every round has a result"))
            .collect()
    }
}

/// What the world keeps of the panel's verdict on one answer.
fn round_verdict(v: judges::ResponseVerdict) -> RoundVerdict {
    RoundVerdict {
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
