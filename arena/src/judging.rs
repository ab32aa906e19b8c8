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

/// The orchestration test policy's judge: each answer scores its pass rate over the
/// Space's own rule verifiers. No model runs, so the world's own cost can be measured
/// and tested; real matches use the Spaces' judge panels (`platform::runtime::PanelJudge`).
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
