//! RLFC Arena agent runtime: loads llama/qwen2 GGUF chat models with their own
//! tokenizer, runs the project's forward pass over quantized weights with per-sequence
//! LoRA adapters, samples reproducibly, and batches the decoding of many agents.

pub mod adapter;
pub mod batch;
mod blocks;
mod device;
pub mod dpo;
mod dpo_forward;
mod dpo_ops;
mod error;
mod gguf;
mod infer;
mod kernels;
mod linear;
mod lora;
mod model;
mod sampling;
mod seq;
mod sgemm;
mod tiles;
mod tokenizer;

pub use adapter::{adapter_hash, is_hash, load_adapter, save_adapter};
pub use batch::{
    BatchDecoder, ChatRequest, DeltaCallback, FinishReason, Generation, GenerationRequest, SeqId,
    generate,
};
pub use device::{DeviceLm, DeviceSpec};
pub use dpo::{DPO_ALGORITHM, DpoConfig, DpoOutcome, DpoPair, StepMetrics, train_dpo};
pub use error::{AgentError, Result};
pub use gguf::{Architecture, ModelConfig};
pub use kernels::kernel_name;
pub use lora::{LoraAdapter, LoraConfig, Target};
pub use model::Model;
pub use sampling::{OutOfRange, SamplingParams};
pub use seq::{KvCache, Logits, Segment};
pub use sgemm::{product, product_kernel_name, product_kernels};
pub use tokenizer::ChatTokenizer;

#[cfg(test)]
mod dpo_tests;
#[cfg(test)]
mod tests_tiny;
