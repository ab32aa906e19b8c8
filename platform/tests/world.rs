//! The match world on the instant test policy: matches in every shipped Space play to
//! the end, seats of different matches advance in the same engine step, rounds of
//! different matches are judged in one call (a failing one refunds only its match),
//! and a stalled match is refunded at its deadline.

use std::sync::{Arc, Mutex};

use arena::engine::{Engine, EngineError, EngineOutput, GenRequest, InstantEngine, Ticket};
use arena::events::EventKind;
use arena::judging::{RoundJudge, RoundToJudge, RulesOnlyJudge as RulesOnly};
use arena::types::{MatchSpec, SeatSpec};
use arena::world::MatchWorld;
use judges::ResponseVerdict;
use platform::bus::Bus;
use spaces::Rulebook;

fn rulebooks() -> Vec<Arc<Rulebook>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/spaces");
    spaces::load_dir(dir)
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect()
}

fn seats(n: usize, first_entry: i64) -> Vec<SeatSpec> {
    (0..n)
        .map(|i| SeatSpec {
            entry_id: first_entry + i as i64,
            agent_id: 100 + i as i64,
            agent_version_id: 200 + i as i64,
            system_prompt: format!("You are agent {i}."),
            sampling: agents::SamplingParams::default(),
            adapter_hash: None,
            base_model: String::new(),
            base_model_sha256: None,
        })
        .collect()
}

#[test]
fn matches_in_every_space_play_to_the_end() {
    let bus = Bus::new();
    let mut events = bus.subscribe();
    let mut world = MatchWorld::new(Box::new(InstantEngine::new()), Box::new(RulesOnly), bus);
    let books = rulebooks();
    assert!(books.len() >= 5);
    for (i, book) in books.iter().enumerate() {
        world.add_match(MatchSpec {
            match_id: i as i64 + 1,
            rulebook: book.clone(),
            seed: 42 + i as u64,
            seats: seats(book.players, 10 * i as i64),
            deadline_ms: i64::MAX,
        });
    }
    let mut outcomes = Vec::new();
    for tick in 0..100 {
        outcomes.extend(world.tick(tick));
        if world.live_matches() == 0 {
            break;
        }
    }
    assert_eq!(outcomes.len(), books.len());
    for o in &outcomes {
        let book = &books[(o.match_id - 1) as usize];
        let result = o.result.as_ref().unwrap();
        assert_eq!(result.rounds.len() as u32, book.rounds, "{}", book.slug);
        assert_eq!(result.places.len(), book.players);
        assert!(result.places.contains(&1));
        assert_eq!(result.hash().len(), 64);
    }
    // Every match's stream starts with its creation and has gap-free sequence numbers.
    let mut seen: std::collections::HashMap<i64, Vec<u64>> = Default::default();
    while let Ok(e) = events.try_recv() {
        let seqs = seen.entry(e.match_id).or_default();
        if seqs.is_empty() {
            assert!(matches!(e.kind, EventKind::MatchCreated { .. }));
        }
        seqs.push(e.seq);
    }
    for seqs in seen.values() {
        assert_eq!(*seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn the_same_seed_gives_the_same_result_hash() {
    let play = || {
        let mut world = MatchWorld::new(
            Box::new(InstantEngine::new()),
            Box::new(RulesOnly),
            Bus::new(),
        );
        let book = rulebooks()
            .into_iter()
            .find(|b| b.slug == "debate")
            .unwrap();
        world.add_match(MatchSpec {
            match_id: 1,
            rulebook: book,
            seed: 7,
            seats: seats(2, 0),
            deadline_ms: i64::MAX,
        });
        let mut out = Vec::new();
        for t in 0..50 {
            out.extend(world.tick(t));
        }
        out.remove(0).result.unwrap()
    };
    let (a, b) = (play(), play());
    assert_eq!(a.hash(), b.hash());
    // Debates show each seat the opponent's last answer from round 2 on.
    assert!(a.rounds[1].seats[0].prompt.len() > a.rounds[0].seats[0].prompt.len());
}

/// Counts how many generations each step advances, and can stall.
struct Recording {
    inner: InstantEngine,
    stall: bool,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
}
impl Engine for Recording {
    fn submit(&mut self, r: GenRequest) -> Result<Ticket, EngineError> {
        self.inner.submit(r)
    }
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        self.batch_sizes.lock().unwrap().push(self.inner.live());
        if self.stall {
            return Ok(Vec::new());
        }
        self.inner.step()
    }
    fn cancel(&mut self, t: Ticket) {
        self.inner.cancel(t)
    }
    fn live(&self) -> usize {
        self.inner.live()
    }
}

#[test]
fn seats_of_all_matches_share_one_engine_step() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let engine = Recording {
        inner: InstantEngine::new(),
        stall: false,
        batch_sizes: sizes.clone(),
    };
    let mut world = MatchWorld::new(Box::new(engine), Box::new(RulesOnly), Bus::new());
    let tweet = rulebooks()
        .into_iter()
        .find(|b| b.slug == "tweet-duel")
        .unwrap();
    for m in 0..8 {
        world.add_match(MatchSpec {
            match_id: m,
            rulebook: tweet.clone(),
            seed: m as u64,
            seats: seats(4, 10 * m),
            deadline_ms: i64::MAX,
        });
    }
    let done = world.tick(0);
    assert_eq!(done.len(), 8);
    assert_eq!(
        *sizes.lock().unwrap(),
        vec![32],
        "8 matches x 4 seats in one step"
    );
}

#[test]
fn a_stalled_match_is_refunded_at_its_deadline() {
    let engine = Recording {
        inner: InstantEngine::new(),
        stall: true,
        batch_sizes: Arc::default(),
    };
    let bus = Bus::new();
    let mut world = MatchWorld::new(Box::new(engine), Box::new(RulesOnly), bus);
    let book = rulebooks().remove(0);
    world.add_match(MatchSpec {
        match_id: 9,
        rulebook: book.clone(),
        seed: 1,
        seats: seats(book.players, 0),
        deadline_ms: 1_000,
    });
    assert!(world.tick(500).is_empty());
    let out = world.tick(1_001);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].result, Err("deadline passed".to_string()));
    assert_eq!(out[0].entry_ids.len(), book.players);
    assert_eq!(world.live_matches(), 0);
    assert_eq!(
        world.live_generations(),
        0,
        "the stalled generations were cancelled"
    );
}

/// An engine whose forward pass fails.
struct Broken(u64);
impl Engine for Broken {
    fn submit(&mut self, _: GenRequest) -> Result<Ticket, EngineError> {
        self.0 += 1;
        Ok(self.0)
    }
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        Err(EngineError("out of memory".into()))
    }
    fn cancel(&mut self, _: Ticket) {
        self.0 = self.0.saturating_sub(1);
    }
    fn live(&self) -> usize {
        self.0 as usize
    }
}

#[test]
fn an_engine_failure_fails_the_waiting_matches_at_once() {
    let mut world = MatchWorld::new(Box::new(Broken(0)), Box::new(RulesOnly), Bus::new());
    let books = rulebooks();
    for (i, book) in books.iter().take(2).enumerate() {
        world.add_match(MatchSpec {
            match_id: i as i64 + 1,
            rulebook: book.clone(),
            seed: 1,
            seats: seats(book.players, 10 * i as i64),
            deadline_ms: i64::MAX,
        });
    }
    let mut out = world.tick(0);
    out.sort_by_key(|o| o.match_id);
    assert_eq!(out.len(), 2, "both matches fail in the tick that failed");
    for o in &out {
        assert_eq!(
            o.result,
            Err("generation failed: engine: out of memory".to_string())
        );
    }
    assert_eq!(world.live_matches(), 0);
    assert_eq!(world.live_generations(), 0);
    assert!(world.tick(1).is_empty(), "no second outcome");
}

/// An engine that refuses every generation.
struct Refusing;
impl Engine for Refusing {
    fn submit(&mut self, request: GenRequest) -> Result<Ticket, EngineError> {
        Err(EngineError(format!(
            "adapter {} not found",
            request.adapter_hash.unwrap_or_default()
        )))
    }
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        Ok(Vec::new())
    }
    fn cancel(&mut self, _: Ticket) {}
    fn live(&self) -> usize {
        0
    }
}

#[test]
fn a_refused_seat_fails_its_match_at_once() {
    let mut world = MatchWorld::new(Box::new(Refusing), Box::new(RulesOnly), Bus::new());
    let book = rulebooks().remove(0);
    world.add_match(MatchSpec {
        match_id: 5,
        rulebook: book.clone(),
        seed: 1,
        seats: seats(book.players, 0),
        deadline_ms: i64::MAX,
    });
    let out = world.tick(0);
    assert_eq!(out.len(), 1);
    let reason = out[0].result.clone().unwrap_err();
    assert!(
        reason.contains("seat 0 refused") && reason.contains("not found"),
        "{reason}"
    );
    assert_eq!(world.live_matches(), 0);
    assert!(world.tick(1).is_empty(), "no second outcome");
}

/// Scores like the rules-only judge, records how many rounds each `judge_many` call
/// brings, and fails every round of the Space named `failing`.
struct CountingJudge {
    calls: Arc<Mutex<Vec<usize>>>,
    failing: &'static str,
}
impl RoundJudge for CountingJudge {
    fn judge(
        &self,
        rulebook: &Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        if rulebook.slug == self.failing {
            return Err(judges::JudgeError::MissingJudge("llm"));
        }
        RulesOnly.judge(rulebook, task, responses, hard_failed)
    }
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<ResponseVerdict>, judges::JudgeError>> {
        self.calls.lock().unwrap().push(rounds.len());
        rounds
            .iter()
            .map(|r| self.judge(r.rulebook, r.task, r.responses, r.hard_failed))
            .collect()
    }
}

fn space(slug: &str) -> Arc<Rulebook> {
    rulebooks().into_iter().find(|b| b.slug == slug).unwrap()
}

#[test]
fn rounds_of_all_matches_are_judged_in_one_call_per_tick() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let judge = CountingJudge {
        calls: calls.clone(),
        failing: "",
    };
    let mut world = MatchWorld::new(Box::new(InstantEngine::new()), Box::new(judge), Bus::new());
    // Eight matches in two Spaces of different shapes: one-round Tweet Duels and
    // three-round Math Sprints.
    for m in 0..8 {
        let book = space(if m % 2 == 0 {
            "tweet-duel"
        } else {
            "math-sprint"
        });
        world.add_match(MatchSpec {
            match_id: m,
            rulebook: book.clone(),
            seed: m as u64,
            seats: seats(book.players, 10 * m),
            deadline_ms: i64::MAX,
        });
    }
    let mut done = Vec::new();
    for t in 0..10 {
        done.extend(world.tick(t));
    }
    assert_eq!(done.len(), 8);
    assert!(done.iter().all(|o| o.result.is_ok()));
    assert_eq!(
        *calls.lock().unwrap(),
        vec![8, 4, 4],
        "every round due in a tick is judged in one call"
    );
}

#[test]
fn a_round_that_fails_judging_refunds_only_its_match() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let judge = CountingJudge {
        calls: calls.clone(),
        failing: "haiku",
    };
    let mut world = MatchWorld::new(Box::new(InstantEngine::new()), Box::new(judge), Bus::new());
    for (m, slug) in ["tweet-duel", "haiku", "debate", "tweet-duel"]
        .into_iter()
        .enumerate()
    {
        let book = space(slug);
        world.add_match(MatchSpec {
            match_id: m as i64,
            rulebook: book.clone(),
            seed: 3,
            seats: seats(book.players, 10 * m as i64),
            deadline_ms: i64::MAX,
        });
    }
    let mut done = Vec::new();
    for t in 0..10 {
        done.extend(world.tick(t));
    }
    done.sort_by_key(|o| o.match_id);
    assert_eq!(done.len(), 4, "one outcome per match, none twice");
    assert_eq!(calls.lock().unwrap()[0], 4, "all four judged together");
    assert_eq!(
        done[1].result,
        Err("judging failed: the Space weighs the llm judge but it was not loaded".to_string())
    );
    assert_eq!(done[1].entry_ids, vec![10, 11, 12]);
    for i in [0, 2, 3] {
        assert!(done[i].result.is_ok(), "{:?}", done[i]);
    }
    assert_eq!(world.live_matches(), 0);
}

/// The judging of a match's round does not depend on the other matches in the tick:
/// the same match played alone and beside seven others gives the same result hash.
#[test]
fn a_match_judged_beside_others_hashes_as_alone() {
    let play = |others: i64| {
        let mut world = MatchWorld::new(
            Box::new(InstantEngine::new()),
            Box::new(RulesOnly),
            Bus::new(),
        );
        for m in 0..=others {
            let book = space(if m % 2 == 0 { "math-sprint" } else { "debate" });
            world.add_match(MatchSpec {
                match_id: m,
                rulebook: book.clone(),
                seed: 11 + m as u64,
                seats: seats(book.players, 10 * m),
                deadline_ms: i64::MAX,
            });
        }
        let mut done = Vec::new();
        for t in 0..10 {
            done.extend(world.tick(t));
        }
        done.into_iter()
            .find(|o| o.match_id == 0)
            .unwrap()
            .result
            .unwrap()
            .hash()
    };
    assert_eq!(play(0), play(7));
}

/// Records the history each round of a match is judged with.
struct HistoryJudge(Arc<Mutex<Vec<Vec<String>>>>);
impl RoundJudge for HistoryJudge {
    fn judge(
        &self,
        rulebook: &Rulebook,
        task: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        RulesOnly.judge(rulebook, task, responses, hard_failed)
    }
    fn judge_many(
        &self,
        rounds: &[RoundToJudge<'_>],
    ) -> Vec<Result<Vec<ResponseVerdict>, judges::JudgeError>> {
        rounds
            .iter()
            .map(|r| {
                self.0.lock().unwrap().push(r.history.to_vec());
                self.judge(r.rulebook, r.task, r.responses, r.hard_failed)
            })
            .collect()
    }
}

/// A Debate shows each round the opponent's last answer, so the judges get the same
/// earlier answers (to tell a reply from a copy); a Space without history gets none.
#[test]
fn judges_see_the_earlier_answers_each_round_showed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut world = MatchWorld::new(
        Box::new(InstantEngine::new()),
        Box::new(HistoryJudge(seen.clone())),
        Bus::new(),
    );
    let debate = space("debate");
    world.add_match(MatchSpec {
        match_id: 1,
        rulebook: debate.clone(),
        seed: 7,
        seats: seats(debate.players, 10),
        deadline_ms: i64::MAX,
    });
    let mut done = Vec::new();
    for t in 0..20 {
        done.extend(world.tick(t));
    }
    let result = done.pop().unwrap().result.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "three rounds judged");
    assert!(seen[0].is_empty(), "round one shows nothing earlier");
    for (round, shown) in seen.iter().enumerate().skip(1) {
        let before: Vec<String> = result.rounds[round - 1]
            .seats
            .iter()
            .map(|s| s.text.clone())
            .collect();
        assert_eq!(*shown, before, "round {} sees round {round}", round + 1);
    }
}

/// Answers each seat with a fixed text chosen by its system prompt.
struct Scripted {
    answers: Vec<(String, String)>,
    queued: Vec<(Ticket, String, String)>,
    next: Ticket,
}
impl Engine for Scripted {
    fn submit(&mut self, r: GenRequest) -> Result<Ticket, EngineError> {
        let text = self
            .answers
            .iter()
            .find(|(system, _)| *system == r.system)
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        self.next += 1;
        self.queued
            .push((self.next, text, format!("{}\n{}", r.system, r.user)));
        Ok(self.next)
    }
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        Ok(self
            .queued
            .drain(..)
            .map(|(ticket, text, prompt)| EngineOutput::Done {
                ticket,
                tokens: text.split_whitespace().count() as u32,
                text,
                finish: "end_of_turn".into(),
                prompt,
            })
            .collect())
    }
    fn cancel(&mut self, t: Ticket) {
        self.queued.retain(|q| q.0 != t);
    }
    fn live(&self) -> usize {
        self.queued.len()
    }
}

/// Gives every answer the same score: only the rules can tell them apart.
struct Flat;
impl RoundJudge for Flat {
    fn judge(
        &self,
        _: &Rulebook,
        _: &spaces::Task,
        responses: &[&str],
        hard_failed: &[bool],
    ) -> Result<Vec<ResponseVerdict>, judges::JudgeError> {
        Ok(hard_failed
            .iter()
            .take(responses.len())
            .map(|&hard| ResponseVerdict::from_scores(0.8, hard, Vec::new()))
            .collect())
    }
}

#[test]
fn a_match_where_every_answer_breaks_a_hard_rule_still_ranks_and_pairs() {
    let book = space("haiku");
    let seats = seats(3, 0);
    // Haiku's hard rules: exactly three lines, 5 to 25 words. Each answer breaks one,
    // by a different distance.
    let answers = [
        "cold rain\non tin roofs\nnight comes\nslowly",
        "cold\nrain\non\ntin\nroofs\ntonight",
        "cold rain drums on the tin roofs all night long while the tired town sleeps \
         and dreams of the warm dry summer that it lost so long ago in the hills",
    ];
    let engine = Scripted {
        answers: seats
            .iter()
            .zip(answers)
            .map(|(s, a)| (s.system_prompt.clone(), a.to_string()))
            .collect(),
        queued: Vec::new(),
        next: 0,
    };
    let mut world = MatchWorld::new(Box::new(engine), Box::new(Flat), Bus::new());
    world.add_match(MatchSpec {
        match_id: 1,
        rulebook: book.clone(),
        seed: 3,
        seats: seats.clone(),
        deadline_ms: i64::MAX,
    });
    let mut outcomes = Vec::new();
    for t in 0..20 {
        outcomes.extend(world.tick(t));
    }
    let result = outcomes.remove(0).result.unwrap();
    let verdicts: Vec<ResponseVerdict> = result.rounds[0]
        .seats
        .iter()
        .map(|s| s.verdict.clone())
        .collect();
    assert!(verdicts.iter().all(|v| v.hard_failed));
    let grades: Vec<f64> = verdicts.iter().map(|v| v.grade.unwrap()).collect();
    // Four lines (0.75) with the words in bounds; six lines (0.5); one line of 31
    // words (1/3 and 25/31).
    assert!((grades[0] - 0.875).abs() < 1e-9, "{grades:?}");
    assert!((grades[1] - 0.75).abs() < 1e-9, "{grades:?}");
    assert!(
        (grades[2] - (1.0 / 3.0 + 25.0 / 31.0) / 2.0).abs() < 1e-9,
        "{grades:?}"
    );
    assert_eq!(result.places, vec![1, 2, 3]);
    assert!(result.totals[0] > result.totals[1] && result.totals[1] > result.totals[2]);
    // The near miss takes the winner-takes-all pot, and the round yields pairs at the
    // Space's margin.
    let facts: Vec<arena::record::SeatFacts> = seats
        .iter()
        .map(|s| arena::record::SeatFacts {
            entry_id: s.entry_id,
            agent_id: s.agent_id,
            fee: 1_000,
            skill: arena::ratings::Skill::default(),
        })
        .collect();
    let booked = arena::record::book_match(1, 1, &book, &facts, &result);
    assert!(booked.amounts[0] > 0 && booked.amounts[1] == 0 && booked.amounts[2] == 0);
    let pairs = &booked.record.rounds[0].pairs;
    assert!(!pairs.is_empty());
    assert!(pairs.iter().all(|p| p.margin >= book.pair_margin));
    assert_eq!((pairs[0].chosen, pairs[0].rejected), (0, 2));
}
