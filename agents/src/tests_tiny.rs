//! Tests of the forward pass, LoRA, batching and adapter files on tiny random-weight
//! models (no model file needed).

use crate::adapter::{adapter_hash, load_adapter, save_adapter};
use crate::batch::{BatchDecoder, GenerationRequest};
use crate::gguf::{Architecture, ModelConfig};
use crate::lora::{LoraAdapter, LoraConfig, Target};
use crate::model::Model;
use crate::sampling::SamplingParams;
use crate::seq::{KvCache, Logits, Segment};
use crate::tokenizer::ChatTokenizer;
use candle_core::{Tensor, Var};
use std::sync::Arc;

fn tiny(arch: Architecture) -> ModelConfig {
    ModelConfig {
        architecture: arch,
        vocab_size: 96,
        hidden_size: 64,
        intermediate_size: 128,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        context_length: 128,
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// An adapter with nonzero random B so it changes the output.
fn random_adapter(cfg: &ModelConfig, seed: u64) -> LoraAdapter {
    let a = LoraAdapter::new(cfg, LoraConfig::all_targets(8, 16.0), seed).unwrap();
    for (i, v) in a.vars().iter().enumerate() {
        if i % 2 == 1 {
            let (o, r) = v.dims2().unwrap();
            let vals: Vec<f32> = (0..o * r)
                .map(|j| {
                    (((j as u64 * 2654435761 + seed * 97 + i as u64) % 1000) as f32 / 1000.0 - 0.5)
                        * 0.2
                })
                .collect();
            v.set(&Tensor::from_vec(vals, (o, r), &candle_core::Device::Cpu).unwrap())
                .unwrap();
        }
    }
    a
}

fn full_logits(model: &Model, tokens: &[u32], adapter: Option<&LoraAdapter>) -> Tensor {
    let mut cache = KvCache::new();
    let mut segs = [Segment {
        tokens,
        cache: &mut cache,
        adapter,
    }];
    model.forward(&mut segs, Logits::All).unwrap().remove(0)
}

#[test]
fn kv_cache_incremental_equals_full_forward() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = Model::random(tiny(arch), 1).unwrap();
        let adapter = random_adapter(model.config(), 5);
        let tokens: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % 96).collect();
        for ad in [None, Some(&adapter)] {
            let full = full_logits(&model, &tokens, ad);
            // Prefill 5 tokens in one pass, then one token at a time.
            let mut cache = KvCache::new();
            let mut rows = Vec::new();
            let mut segs = [Segment {
                tokens: &tokens[..5],
                cache: &mut cache,
                adapter: ad,
            }];
            rows.push(model.forward(&mut segs, Logits::All).unwrap().remove(0));
            for t in 5..tokens.len() {
                let mut segs = [Segment {
                    tokens: &tokens[t..t + 1],
                    cache: &mut cache,
                    adapter: ad,
                }];
                rows.push(model.forward(&mut segs, Logits::Last).unwrap().remove(0));
            }
            assert_eq!(cache.len(), tokens.len());
            let inc = Tensor::cat(&rows, 0).unwrap();
            let d = max_abs_diff(&full, &inc);
            assert!(d <= 1e-4, "{arch:?}: incremental differs from full by {d}");
        }
    }
}

#[test]
fn lora_with_zero_b_leaves_output_unchanged() {
    let model = Model::random(tiny(Architecture::Llama), 2).unwrap();
    let zero = LoraAdapter::new(model.config(), LoraConfig::all_targets(8, 16.0), 9).unwrap();
    let tokens: Vec<u32> = (0..12).map(|i| (i * 5 + 1) % 96).collect();
    let base = full_logits(&model, &tokens, None);
    let with = full_logits(&model, &tokens, Some(&zero));
    assert_eq!(max_abs_diff(&base, &with), 0.0);
    // And a nonzero B does change it, so the adapter path is live.
    let live = random_adapter(model.config(), 3);
    assert!(max_abs_diff(&base, &full_logits(&model, &tokens, Some(&live))) > 1e-3);
}

fn request(
    prompt: Vec<u32>,
    seed: u64,
    adapter: Option<Arc<LoraAdapter>>,
    max: usize,
) -> GenerationRequest {
    GenerationRequest {
        prompt_tokens: prompt,
        params: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: 20,
            repetition_penalty: 1.1,
            repeat_last_n: 16,
            max_new_tokens: max,
            stop: vec![],
        },
        seed,
        adapter,
    }
}

/// A tokenizer is only needed for stop ids and text; tiny tests use a byte-level vocab.
fn tiny_tokenizer() -> ChatTokenizer {
    ChatTokenizer::for_tests(96)
}

#[test]
fn batched_decoding_equals_each_alone() {
    let model = Model::random(tiny(Architecture::Llama), 4).unwrap();
    let tok = tiny_tokenizer();
    let adapters: Vec<Option<Arc<LoraAdapter>>> = vec![
        Some(Arc::new(random_adapter(model.config(), 11))),
        None,
        Some(Arc::new(random_adapter(model.config(), 12))),
        Some(Arc::new(random_adapter(model.config(), 13))),
    ];
    let prompts: Vec<Vec<u32>> = vec![
        (10..17).collect(),
        (20..23).collect(),
        (30..45).collect(),
        vec![50],
    ];
    let maxes = [12, 7, 15, 10];
    let alone: Vec<Vec<u32>> = (0..4)
        .map(|i| {
            let mut d = BatchDecoder::new(&model, &tok);
            d.add(
                request(
                    prompts[i].clone(),
                    100 + i as u64,
                    adapters[i].clone(),
                    maxes[i],
                ),
                None,
            )
            .unwrap();
            d.run_to_completion().unwrap().remove(0).tokens
        })
        .collect();
    // Together, with sequence 3 joining after two steps (continuous batching).
    let mut d = BatchDecoder::new(&model, &tok);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            d.add(
                request(
                    prompts[i].clone(),
                    100 + i as u64,
                    adapters[i].clone(),
                    maxes[i],
                ),
                None,
            )
            .unwrap(),
        );
    }
    let mut done = d.step().unwrap();
    done.extend(d.step().unwrap());
    ids.push(
        d.add(
            request(prompts[3].clone(), 103, adapters[3].clone(), maxes[3]),
            None,
        )
        .unwrap(),
    );
    done.extend(d.run_to_completion().unwrap());
    done.sort_by_key(|g| g.id);
    assert_eq!(done.len(), 4);
    for (i, g) in done.iter().enumerate() {
        assert_eq!(g.id, ids[i]);
        assert_eq!(g.tokens, alone[i], "sequence {i} differs when batched");
    }
    // Different adapters really give different continuations.
    assert!(alone.iter().any(|t| !t.is_empty()));
}

#[test]
fn streaming_deltas_concatenate_to_the_text() {
    let model = Model::random(tiny(Architecture::Llama), 6).unwrap();
    let tok = tiny_tokenizer();
    let got = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = got.clone();
    let mut d = BatchDecoder::new(&model, &tok);
    d.add(
        request((40..50).collect(), 1, None, 20),
        Some(Box::new(move |s: &str| sink.lock().unwrap().push_str(s))),
    )
    .unwrap();
    let g = d.run_to_completion().unwrap().remove(0);
    assert!(!g.text.is_empty());
    assert_eq!(*got.lock().unwrap(), g.text);
}

#[test]
fn same_seed_same_tokens() {
    let model = Model::random(tiny(Architecture::Qwen2), 8).unwrap();
    let tok = tiny_tokenizer();
    let run = |seed| {
        let mut d = BatchDecoder::new(&model, &tok);
        d.add(request((1..9).collect(), seed, None, 16), None)
            .unwrap();
        d.run_to_completion().unwrap().remove(0).tokens
    };
    assert_eq!(run(42), run(42));
}

#[test]
fn adapter_round_trip_keeps_hash_and_outputs() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = Model::random(tiny(arch), 3).unwrap();
        let cfg = model.config().clone();
        let adapter = random_adapter(&cfg, 21);
        // Nonzero, non-symmetric B rows make the q/k row permutation observable.
        let dir = tempfile::tempdir().unwrap();
        let h1 = save_adapter(&adapter, &cfg, dir.path(), Some("tiny")).unwrap();
        assert_eq!(h1, adapter_hash(&adapter, &cfg).unwrap());
        let loaded = load_adapter(dir.path(), &cfg).unwrap();
        assert_eq!(adapter_hash(&loaded, &cfg).unwrap(), h1);
        let tokens: Vec<u32> = (0..10).collect();
        let a = full_logits(&model, &tokens, Some(&adapter));
        let b = full_logits(&model, &tokens, Some(&loaded));
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        // PEFT layout on disk.
        let raw = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
        let qa = st
            .tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
            .unwrap();
        assert_eq!(qa.shape(), &[8, 64]);
        let db = st
            .tensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
            .unwrap();
        assert_eq!(db.shape(), &[64, 8]);
        let conf: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(conf["r"], 8);
        assert_eq!(conf["peft_type"], "LORA");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A changed weight changes the hash.
        let v = &adapter.vars()[1];
        v.set(&(v.as_tensor() + 1.0).unwrap()).unwrap();
        assert_ne!(adapter_hash(&adapter, &cfg).unwrap(), h1);
    }
}

#[test]
fn adapter_for_another_model_is_rejected() {
    let cfg = tiny(Architecture::Llama);
    let adapter = LoraAdapter::new(&cfg, LoraConfig::all_targets(4, 8.0), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&adapter, &cfg, dir.path(), None).unwrap();
    let mut wider = cfg.clone();
    wider.hidden_size = 96;
    let err = load_adapter(dir.path(), &wider).unwrap_err().to_string();
    assert!(err.contains("does not match the base model"), "{err}");
    assert!(err.contains("adapter_model.safetensors"), "{err}");
    let mut deeper = cfg.clone();
    deeper.num_layers = 3;
    let err = load_adapter(dir.path(), &deeper).unwrap_err().to_string();
    assert!(err.contains("layer 2"), "{err}");
    // An unknown target module is named.
    let conf_path = dir.path().join("adapter_config.json");
    let conf = std::fs::read_to_string(&conf_path)
        .unwrap()
        .replace("\"o_proj\"", "\"lm_head\"");
    std::fs::write(&conf_path, conf).unwrap();
    let err = load_adapter(dir.path(), &cfg).unwrap_err().to_string();
    assert!(
        err.contains("lm_head") && err.contains("adapter_config.json"),
        "{err}"
    );
}

#[test]
fn dequantized_train_path_matches_and_has_gradients() {
    let model = Model::random(tiny(Architecture::Llama), 5).unwrap();
    let adapter = random_adapter(model.config(), 7);
    let tokens: Vec<u32> = (3..15).collect();
    let fast = full_logits(&model, &tokens, Some(&adapter));
    let mut cache = KvCache::new();
    let mut segs = [Segment {
        tokens: &tokens,
        cache: &mut cache,
        adapter: Some(&adapter),
    }];
    let train = model
        .forward_train(&mut segs, Logits::All)
        .unwrap()
        .remove(0);
    // Same weights; only the activation quantization of the fast path differs.
    let d = max_abs_diff(&fast, &train);
    let scale = fast
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        d < 0.03 * scale,
        "train path differs by {d} (logits up to {scale})"
    );
    let loss = train.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let vars: Vec<Var> = adapter.vars();
    let with_grad = vars
        .iter()
        .filter(|v| grads.get(v.as_tensor()).is_some())
        .count();
    assert_eq!(with_grad, vars.len(), "every LoRA var gets a gradient");
    let q_b = adapter.pair(0, Target::Q).unwrap().b.as_tensor();
    let g = grads
        .get(q_b)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(g > 0.0);
}

#[test]
fn prompt_longer_than_context_is_an_error() {
    let model = Model::random(tiny(Architecture::Llama), 1).unwrap();
    let tok = tiny_tokenizer();
    let mut d = BatchDecoder::new(&model, &tok);
    let err = d
        .add(request(vec![1; 200], 0, None, 4), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("200 tokens") && err.contains("context of 128"),
        "{err}"
    );
}
