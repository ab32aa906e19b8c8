//! A sequence's part in a forward pass: its KV cache, its segment of a batched pass
//! (new tokens, cache, adapter), and which logits the pass returns. Shared by the
//! inference pass (`infer`) and the training pass (`model`).

use crate::lora::LoraAdapter;

/// The keys and values one sequence has seen so far, per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per layer: keys and values, `[position][kv_heads * head_dim]`.
    pub(crate) layers: Vec<(Vec<f32>, Vec<f32>)>,
    pub(crate) len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
    /// Tokens cached so far (the position of the next token).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached yet.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One sequence's share of a forward pass: new tokens, its cache and its adapter.
pub struct Segment<'a> {
    /// Tokens to feed (the whole prompt for prefill, one token when decoding).
    pub tokens: &'a [u32],
    /// The sequence's cache; it grows by `tokens.len()`.
    pub cache: &'a mut KvCache,
    /// The sequence's LoRA adapter, if any.
    pub adapter: Option<&'a LoraAdapter>,
}

/// Which logits a forward pass returns per segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (generation).
    Last,
    /// Every position (scoring, training, tests).
    All,
}
