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
    /// Sampling settings as stored on the agent version (JSON).
    pub sampling: serde_json::Value,
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

/// The orchestration test policy: every generation finishes on the step after it
/// was submitted, with a short answer derived from the task and the seed. It is
/// for measuring and testing the world itself, never for real matches.
#[derive(Debug, Default)]
pub struct InstantEngine {
    next: Ticket,
    queued: Vec<(Ticket, GenRequest)>,
}

impl InstantEngine {
    /// A new instant engine.
    pub fn new() -> InstantEngine {
        InstantEngine::default()
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
        self.queued.push((ticket, request));
        Ok(ticket)
    }

    fn step(&mut self) -> Result<Vec<EngineOutput>, EngineError> {
        let mut out = Vec::new();
        for (ticket, request) in self.queued.drain(..) {
            let text = InstantEngine::answer(&request);
            out.push(EngineOutput::Delta {
                ticket,
                text: text.clone(),
            });
            out.push(EngineOutput::Done {
                ticket,
                tokens: text.split_whitespace().count() as u32,
                text,
                finish: "end_of_turn".into(),
                prompt: format!("{}\n{}", request.system, request.user),
            });
        }
        Ok(out)
    }

    fn cancel(&mut self, ticket: Ticket) {
        self.queued.retain(|(t, _)| *t != ticket);
    }

    fn live(&self) -> usize {
        self.queued.len()
    }
}
