//! How the world asks for a round to be judged. The verdict it keeps is the panel's
//! own, [`judges::ResponseVerdict`] with its [`judges::Score`]s.

use judges::{JudgeId, ResponseVerdict, Score};

use spaces::Rulebook;

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
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError>;

    /// Judges the rounds of several matches at once (the world's judge system calls
    /// this once per tick with every round due), one result per round, in order. An
    /// implementation may share work across rounds, but each round must get what
    /// [`RoundJudge::judge`] gives it alone (replays judge one match), and a failing
    /// round fails alone. The default judges each round in turn.
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<ResponseVerdict>, judges::JudgeError>> {
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
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
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
    ) -> Vec<Result<Vec<ResponseVerdict>, judges::JudgeError>> {
        let tasks: Vec<judges::Task> = rounds
            .iter()
            .map(|r| {
                let mut task = judges::Task::from_space(r.rulebook, r.task);
                task.history = r.history.to_vec();
                task
            })
            .collect();
        let mut results: Vec<Option<Result<Vec<ResponseVerdict>, judges::JudgeError>>> =
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
            results[i] = Some(judged);
        }
        results
            .into_iter()
            .map(|r| r.expect("every round has a result"))
            .collect()
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
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        Ok(responses
            .iter()
            .zip(hard_failed)
            .map(|(r, &hard)| {
                let score = spaces::pass_rate(&spaces::verify(rulebook, task, r));
                let judge = JudgeId {
                    name: "rules".into(),
                    model_hash: String::new(),
                    template_version: "rules-only-v1".into(),
                };
                let why = format!("{:.0}% of the Space's rules pass", score * 100.0);
                ResponseVerdict::from_scores(score, hard, vec![Score::new(judge, score, why)])
            })
            .collect())
    }
}
