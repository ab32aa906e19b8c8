//! Continuous batching: many sequences, each with its own prompt, length, sampler and
//! LoRA adapter, advance one token per step in one forward pass over the shared base
//! weights. Sequences join and leave between steps; each may stream its text deltas.

use crate::error::{AgentError, Result};
use crate::lora::LoraAdapter;
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};
use crate::seq::{KvCache, Logits, Segment};
use crate::tokenizer::ChatTokenizer;
use std::sync::Arc;

/// Receives each new piece of a sequence's text as it is generated.
pub type DeltaCallback = Box<dyn FnMut(&str) + Send>;

/// Identifies a sequence inside one [`BatchDecoder`].
pub type SeqId = u64;

/// One generation to run: the tokenized prompt, settings, seed and adapter.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The prompt, already templated and tokenized.
    pub prompt_tokens: Vec<u32>,
    /// Sampling and stopping settings.
    pub params: SamplingParams,
    /// Seed of the sampler's random stream.
    pub seed: u64,
    /// The agent's adapter, or `None` for the bare base model.
    pub adapter: Option<Arc<LoraAdapter>>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted an end-of-turn token.
    EndOfTurn,
    /// The text reached a stop sequence.
    StopSequence,
    /// `max_new_tokens` were generated.
    Length,
    /// The context window is full.
    ContextFull,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Generation {
    /// The sequence's id in its decoder.
    pub id: SeqId,
    /// The generated text (stop sequence and end token excluded).
    pub text: String,
    /// The generated token ids (end token excluded).
    pub tokens: Vec<u32>,
    /// Number of prompt tokens.
    pub prompt_tokens: usize,
    /// Why it stopped.
    pub finish: FinishReason,
}

struct Active {
    id: SeqId,
    history: Vec<u32>,
    prompt_len: usize,
    pending: Vec<u32>,
    cache: KvCache,
    sampler: Sampler,
    adapter: Option<Arc<LoraAdapter>>,
    callback: Option<DeltaCallback>,
    text: String,
    emitted: usize,
}

/// A borrowed or shared handle, so a decoder can live on a stack frame (borrowing) or
/// inside a long-lived service (sharing the model through an `Arc`).
enum Handle<'m, T> {
    Borrowed(&'m T),
    Shared(Arc<T>),
}

impl<T> std::ops::Deref for Handle<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Handle::Borrowed(t) => t,
            Handle::Shared(t) => t,
        }
    }
}

/// A set of live sequences stepped together.
pub struct BatchDecoder<'m> {
    model: Handle<'m, Model>,
    tokenizer: Handle<'m, ChatTokenizer>,
    active: Vec<Active>,
    next_id: SeqId,
}

impl BatchDecoder<'static> {
    /// An empty batch over a shared model, for a decoder owned by a long-lived service.
    pub fn shared(model: Arc<Model>, tokenizer: Arc<ChatTokenizer>) -> Self {
        Self {
            model: Handle::Shared(model),
            tokenizer: Handle::Shared(tokenizer),
            active: Vec::new(),
            next_id: 0,
        }
    }
}

impl<'m> BatchDecoder<'m> {
    /// An empty batch over `model`.
    pub fn new(model: &'m Model, tokenizer: &'m ChatTokenizer) -> Self {
        Self {
            model: Handle::Borrowed(model),
            tokenizer: Handle::Borrowed(tokenizer),
            active: Vec::new(),
            next_id: 0,
        }
    }

    /// The model this decoder runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer this decoder uses.
    pub fn tokenizer(&self) -> &ChatTokenizer {
        &self.tokenizer
    }

    /// Adds a sequence; its prompt is prefilled during the next [`BatchDecoder::step`].
    pub fn add(
        &mut self,
        request: GenerationRequest,
        callback: Option<DeltaCallback>,
    ) -> Result<SeqId> {
        let ctx = self.model.config().context_length;
        let n = request.prompt_tokens.len();
        if n == 0 {
            return Err(AgentError::Encoding("empty prompt".into()));
        }
        if n >= ctx {
            return Err(AgentError::PromptTooLong {
                prompt_tokens: n,
                context: ctx,
            });
        }
        if let Some(a) = &request.adapter
            && a.num_layers() != self.model.config().num_layers
        {
            return Err(AgentError::AdapterMismatch {
                path: "<in memory>".into(),
                detail: format!(
                    "adapter has {} layers, model has {}",
                    a.num_layers(),
                    self.model.config().num_layers
                ),
            });
        }
        let sampler = Sampler::new(request.params, request.seed)?;
        let id = self.next_id;
        self.next_id += 1;
        self.active.push(Active {
            id,
            history: request.prompt_tokens.clone(),
            prompt_len: n,
            pending: request.prompt_tokens,
            cache: KvCache::new(),
            sampler,
            adapter: request.adapter,
            callback,
            text: String::new(),
            emitted: 0,
        });
        Ok(id)
    }

    /// Number of live sequences.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether no sequence is live.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Removes a live sequence without finishing it; returns whether it was there.
    pub fn cancel(&mut self, id: SeqId) -> bool {
        let before = self.active.len();
        self.active.retain(|a| a.id != id);
        before != self.active.len()
    }

    /// Runs one forward pass over every live sequence, samples one token each, and
    /// returns the sequences that finished in this step.
    pub fn step(&mut self) -> Result<Vec<Generation>> {
        if self.active.is_empty() {
            return Ok(Vec::new());
        }
        let logits = {
            let mut segs: Vec<Segment<'_>> = self
                .active
                .iter_mut()
                .map(|a| Segment {
                    tokens: &a.pending,
                    cache: &mut a.cache,
                    adapter: a.adapter.as_deref(),
                })
                .collect();
            self.model.forward(&mut segs, Logits::Last)?
        };
        let ctx = self.model.config().context_length;
        let stop_ids = self.tokenizer.stop_ids();
        let mut finished = Vec::new();
        let mut keep = Vec::with_capacity(self.active.len());
        for (mut a, row) in self.active.drain(..).zip(logits) {
            let row: Vec<f32> = row.flatten_all()?.to_vec1()?;
            let token = a.sampler.sample(&row, &a.history);
            let mut finish = None;
            if stop_ids.contains(&token) {
                finish = Some(FinishReason::EndOfTurn);
            } else {
                a.history.push(token);
                a.pending.clear();
                a.pending.push(token);
                let generated = &a.history[a.prompt_len..];
                a.text = self.tokenizer.decode(generated)?;
                if let Some(cut) = find_stop(&a.text, &a.sampler.params().stop) {
                    a.text.truncate(cut);
                    finish = Some(FinishReason::StopSequence);
                } else if generated.len() >= a.sampler.params().max_new_tokens {
                    finish = Some(FinishReason::Length);
                } else if a.cache.len() + 1 > ctx {
                    finish = Some(FinishReason::ContextFull);
                }
            }
            let safe = if finish.is_some() {
                a.text.len()
            } else {
                safe_prefix(&a.text, &a.sampler.params().stop)
            };
            if safe > a.emitted {
                if let Some(cb) = a.callback.as_mut() {
                    cb(&a.text[a.emitted..safe]);
                }
                a.emitted = safe;
            }
            match finish {
                Some(reason) => finished.push(Generation {
                    id: a.id,
                    text: std::mem::take(&mut a.text),
                    tokens: a.history[a.prompt_len..].to_vec(),
                    prompt_tokens: a.prompt_len,
                    finish: reason,
                }),
                None => keep.push(a),
            }
        }
        self.active = keep;
        Ok(finished)
    }

    /// Steps until every live sequence has finished; results are ordered by id.
    pub fn run_to_completion(&mut self) -> Result<Vec<Generation>> {
        let mut all = Vec::new();
        while !self.is_empty() {
            all.extend(self.step()?);
        }
        all.sort_by_key(|g| g.id);
        Ok(all)
    }
}

/// Byte offset where the first stop sequence starts, if any occurs.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// How much of `text` can be shown now: not a trailing partial UTF-8 character
/// (decoded as U+FFFD) and not a tail that might still grow into a stop sequence.
fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut end = text.len();
    while text[..end].ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    let mut cut = end;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if text[..end].ends_with(&s[..i]) {
                cut = cut.min(end - i);
            }
        }
    }
    cut
}

/// One chat turn to answer: system prompt, task, settings, seed and adapter.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The agent's system prompt (meta-prompt).
    pub system: String,
    /// The task text.
    pub user: String,
    /// Sampling and stopping settings.
    pub params: SamplingParams,
    /// Seed of the sampler's random stream.
    pub seed: u64,
    /// The agent's adapter, if any.
    pub adapter: Option<Arc<LoraAdapter>>,
}

impl ChatRequest {
    /// Applies the chat template and tokenizes, giving a request for a [`BatchDecoder`].
    pub fn to_generation_request(&self, tokenizer: &ChatTokenizer) -> Result<GenerationRequest> {
        let prompt = tokenizer.chat_prompt(&self.system, &self.user);
        Ok(GenerationRequest {
            prompt_tokens: tokenizer.encode(&prompt)?,
            params: self.params.clone(),
            seed: self.seed,
            adapter: self.adapter.clone(),
        })
    }
}

/// Generates one answer to `request` with the chat template, streaming deltas.
pub fn generate(
    model: &Model,
    tokenizer: &ChatTokenizer,
    request: &ChatRequest,
    callback: Option<DeltaCallback>,
) -> Result<Generation> {
    let mut dec = BatchDecoder::new(model, tokenizer);
    dec.add(request.to_generation_request(tokenizer)?, callback)?;
    let mut out = dec.run_to_completion()?;
    Ok(out.pop().expect("one sequence was added"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_safe_prefix() {
        let stops = vec!["END".to_string()];
        assert_eq!(find_stop("abcENDx", &stops), Some(3));
        assert_eq!(safe_prefix("abcEN", &stops), 3);
        assert_eq!(safe_prefix("abc\u{FFFD}", &stops), 3);
        assert_eq!(safe_prefix("abc", &stops), 3);
    }
}
