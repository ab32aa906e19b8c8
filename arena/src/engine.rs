//! The text engine the match world drives. In production it is the agent runtime's
//! batched decoder (one forward pass per tick over every waiting seat of every match);
//! [`InstantEngine`] is the orchestration test policy, which answers at once so the
//! world's own cost can be measured and tested without a model.

/// Identifies one generation inside an engine.
pub type Ticket = u64;

/// One generation to run for a seat.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    /// The agent's system prompt (meta-prompt).
    pub system: String,
    /// The round's task text as this seat sees it.
    pub user: String,
    /// The seat's sampling settings, parsed and checked when its seats were loaded.
    pub sampling: agents::SamplingParams,
    /// Seed derived from the match seed, round and seat.
    pub seed: u64,
    /// sha256 of the adapter to apply, or `None` for the bare base model.
    pub adapter_hash: Option<String>,
    /// The Space's cap on answer length in tokens; the agent's own setting is capped
    /// by it.
    pub max_new_tokens: usize,
}

/// What one engine step produced.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineOutput {
    /// New text for a live generation.
    Delta {
        /// The generation.
        ticket: Ticket,
        /// The new text.
        text: String,
    },
    /// A generation finished.
    Done {
        /// The generation.
        ticket: Ticket,
        /// The whole text.
        text: String,
        /// Generated tokens.
        tokens: u32,
        /// Why it stopped.
        finish: String,
        /// The exact prompt the policy saw, chat template applied.
        prompt: String,
    },
}

/// An engine failure; the matches it touches are refunded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("engine: {0}")]
pub struct EngineError(pub String);

/// A batched text generator.
pub trait Engine: Send + Sync + 'static {
    /// Queues a generation; it joins the batch at the next step.
    fn submit(&mut self, request: GenRequest) -> Result<Ticket, EngineError>;
    /// Advances every live generation by one step (one token for a model).
    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError>;
    /// Drops a live generation (its match was refunded).
    fn cancel(&mut self, ticket: Ticket);
    /// Number of live generations.
    fn live(&self) -> usize;
}

/// The orchestration test policy: a short answer derived from the task and the seed.
/// By default every generation finishes on the step after it was submitted;
/// [`InstantEngine::paced`] streams it one word per step and sleeps a fixed time per
/// step instead, standing in for a model's decode time. It is for measuring and
/// testing the platform itself, never for real matches.
#[derive(Debug, Default)]
pub struct InstantEngine {
    next: Ticket,
    queued: Vec<Generation>,
    pace: Option<std::time::Duration>,
}

#[derive(Debug)]
struct Generation {
    ticket: Ticket,
    request: GenRequest,
    answer: Vec<String>,
    sent: usize,
}

impl InstantEngine {
    /// A new instant engine.
    pub fn new() -> InstantEngine {
        InstantEngine::default()
    }

    /// An engine that emits one word per step and spends `step` of wall time on each
    /// step that has work (as a model's batched decode step would).
    pub fn paced(step: std::time::Duration) -> InstantEngine {
        InstantEngine {
            pace: Some(step),
            ..InstantEngine::default()
        }
    }

    fn answer(request: &GenRequest) -> String {
        // Echo a seed-chosen slice of the task's words: deterministic, on topic,
        // and different between seats.
        let words: Vec<&str> = request.user.split_whitespace().collect();
        if words.is_empty() {
            return String::from("ok");
        }
        let n = 3 + (request.seed % 7) as usize;
        let start = (request.seed / 7) as usize % words.len();
        (0..n)
            .map(|i| words[(start + i) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Engine for InstantEngine {
    fn submit(&mut self, request: GenRequest) -> Result<Ticket, EngineError> {
        let ticket = self.next;
        self.next += 1;
        let text = InstantEngine::answer(&request);
        let answer = match self.pace {
            None => vec![text],
            Some(_) => text
                .split_whitespace()
                .enumerate()
                .map(|(i, w)| {
                    if i == 0 {
                        w.to_string()
                    } else {
                        format!(" {w}")
                    }
                })
                .collect(),
        };
        self.queued.push(Generation {
            ticket,
            request,
            answer,
            sent: 0,
        });
        Ok(ticket)
    }

    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        if let Some(pace) = self.pace
            && !self.queued.is_empty()
        {
            std::thread::sleep(pace);
        }
        let mut out = Vec::new();
        for g in &mut self.queued {
            out.push(EngineOutput::Delta {
                ticket: g.ticket,
                text: g.answer[g.sent].clone(),
            });
            g.sent += 1;
            if g.sent == g.answer.len() {
                let text = g.answer.concat();
                out.push(EngineOutput::Done {
                    ticket: g.ticket,
                    tokens: text.split_whitespace().count() as u32,
                    text,
                    finish: "end_of_turn".into(),
                    prompt: format!("{}\n{}", g.request.system, g.request.user),
                });
            }
        }
        self.queued.retain(|g| g.sent < g.answer.len());
        Ok(out)
    }

    fn cancel(&mut self, ticket: Ticket) {
        self.queued.retain(|g| g.ticket != ticket);
    }

    fn live(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(seed: u64) -> GenRequest {
        GenRequest {
            system: "Be brief.".into(),
            user: "alpha beta gamma delta epsilon zeta eta theta".into(),
            sampling: agents::SamplingParams::default(),
            seed,
            adapter_hash: None,
            max_new_tokens: 16,
        }
    }

    fn run(mut engine: InstantEngine) -> (usize, Vec<String>) {
        engine.submit(request(3)).unwrap();
        engine.submit(request(12)).unwrap();
        let (mut steps, mut done) = (0, Vec::new());
        while engine.live() > 0 {
            steps += 1;
            for o in engine.step().unwrap() {
                if let EngineOutput::Done { text, .. } = o {
                    done.push(text);
                }
            }
        }
        (steps, done)
    }

    #[test]
    fn paced_streams_the_same_answers_one_word_per_step() {
        let (instant_steps, instant) = run(InstantEngine::new());
        let (paced_steps, mut paced) = run(InstantEngine::paced(std::time::Duration::ZERO));
        assert_eq!(instant_steps, 1);
        // Seeds 3 and 12 give 6 and 8 words: the longer one takes 8 steps.
        assert_eq!(paced_steps, 8);
        paced.sort_by_key(|t| t.len());
        let mut instant = instant;
        instant.sort_by_key(|t| t.len());
        assert_eq!(paced, instant);
    }
}
