//! Shared helpers for the tests that need the real SmolLM2 model file.

use agents::{ChatTokenizer, Model};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The verified SmolLM2 file in the default model cache, fetched first if it is
/// missing or damaged. The one place tests locate the real model.
pub fn smollm2_path() -> PathBuf {
    models::smollm2_gguf().expect("SmolLM2 weights (`rlfc models fetch` fetches them)")
}

/// The real model and its tokenizer, loaded once per test binary.
pub fn smollm2() -> &'static (Model, ChatTokenizer) {
    static MODEL: OnceLock<(Model, ChatTokenizer)> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&smollm2_path()).expect("SmolLM2 loads"))
}
