//! Tests on the real SmolLM2-135M-Instruct Q4_1 file: tokenizer, generation, errors.

mod support;

use agents::{
    AgentError, BatchDecoder, ChatRequest, FinishReason, LoraAdapter, LoraConfig, Model,
    SamplingParams, generate, load_adapter, save_adapter,
};
use std::sync::Arc;
use support::{smollm2, smollm2_path};

#[test]
fn tokenizer_round_trips_text() {
    let (_, tok) = smollm2();
    let samples = [
        "Hello, world! This is RLFC Arena.",
        "Numbers 12345 and 3.14159, dates 2026-11-22.",
        "  leading spaces, tabs\tand\nnew lines\n\n",
        "Unicode: café, naïve, 日本語, emoji 🦀.",
        "fn main() { println!(\"{}\", 1 + 2); }",
    ];
    for s in samples {
        let ids = tok.encode(s).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(tok.decode(&ids).unwrap(), s, "round trip of {s:?}");
    }
    // SmolLM2 splits every digit, and special tokens are single ids.
    let ids = tok.encode("12345").unwrap();
    assert_eq!(ids.len(), 5);
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert!(tok.stop_ids().contains(&2));
    // Common words are single tokens, as in the reference tokenizer.
    assert_eq!(tok.encode("Hello world").unwrap().len(), 2);
}

fn englishness(text: &str) -> (f32, usize) {
    let letters = text
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == ' ')
        .count();
    let ratio = letters as f32 / text.chars().count().max(1) as f32;
    let common = [
        "the", "a", "an", "is", "are", "of", "and", "to", "in", "it", "that", "for", "on", "with",
        "as", "be", "this", "can", "you", "or", "by", "its", "has", "have",
    ];
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let mut hits: Vec<&str> = common
        .iter()
        .copied()
        .filter(|c| words.iter().any(|w| w == c))
        .collect();
    hits.dedup();
    (ratio, hits.len())
}

#[test]
fn fixed_prompt_and_seed_give_stable_coherent_english() {
    let (model, tok) = smollm2();
    let req = ChatRequest {
        system: "You are a helpful assistant. Answer in plain English.".into(),
        user: "Explain in two sentences why the sky is blue.".into(),
        params: SamplingParams {
            temperature: 0.7,
            max_new_tokens: 60,
            ..Default::default()
        },
        seed: 42,
        adapter: None,
    };
    let a = generate(model, tok, &req, None).unwrap();
    let b = generate(model, tok, &req, None).unwrap();
    println!("generated: {:?}", a.text);
    assert_eq!(a.text, b.text, "same seed must give the same text");
    assert_eq!(a.tokens, b.tokens);
    assert!(a.tokens.len() >= 10, "too short: {:?}", a.text);
    let (ratio, common) = englishness(&a.text);
    assert!(ratio > 0.85, "not English-like ({ratio}): {:?}", a.text);
    assert!(
        common >= 4,
        "too few common English words ({common}): {:?}",
        a.text
    );
    let lower = a.text.to_lowercase();
    assert!(
        [
            "light",
            "sun",
            "scatter",
            "blue",
            "atmosphere",
            "wavelength"
        ]
        .iter()
        .any(|w| lower.contains(w)),
        "off topic: {:?}",
        a.text
    );
    // A different seed gives a different sample.
    let c = generate(
        model,
        tok,
        &ChatRequest {
            seed: 7,
            ..req.clone()
        },
        None,
    )
    .unwrap();
    assert_ne!(a.text, c.text);
}

#[test]
fn batch_of_agents_with_adapters_matches_single_runs_on_real_model() {
    let (model, tok) = smollm2();
    let cfg = model.config();
    let adapters: Vec<Arc<LoraAdapter>> = (0..3)
        .map(|i| {
            let a = LoraAdapter::new(cfg, LoraConfig::all_targets(8, 16.0), 50 + i).unwrap();
            // Give B a small nonzero value so each adapter changes the model.
            for (j, v) in a.vars().iter().enumerate().filter(|(j, _)| j % 2 == 1) {
                let t = (v.as_tensor().ones_like().unwrap()
                    * (0.002 * (i as f64 + 1.0) * if j % 4 == 1 { 1.0 } else { -1.0 }))
                .unwrap();
                v.set(&t).unwrap();
            }
            Arc::new(a)
        })
        .collect();
    let users = [
        "Name three fruits.",
        "What is 2 + 2?",
        "Say hello in French.",
    ];
    let reqs: Vec<ChatRequest> = (0..3)
        .map(|i| ChatRequest {
            system: "You are concise.".into(),
            user: users[i].into(),
            params: SamplingParams {
                max_new_tokens: 12,
                ..Default::default()
            },
            seed: i as u64,
            adapter: Some(adapters[i].clone()),
        })
        .collect();
    let alone: Vec<_> = reqs
        .iter()
        .map(|r| generate(model, tok, r, None).unwrap())
        .collect();
    let mut dec = BatchDecoder::new(model, tok);
    for r in &reqs {
        dec.add(r.to_generation_request(tok).unwrap(), None)
            .unwrap();
    }
    let together = dec.run_to_completion().unwrap();
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a.tokens, t.tokens);
        assert_eq!(a.text, t.text);
    }
}

#[test]
fn stop_sequence_cuts_the_text() {
    let (model, tok) = smollm2();
    let req = ChatRequest {
        system: String::new(),
        user: "Count from 1 to 20, separated by commas.".into(),
        params: SamplingParams {
            temperature: 0.0,
            max_new_tokens: 80,
            stop: vec!["5".into()],
            ..Default::default()
        },
        seed: 0,
        adapter: None,
    };
    let g = generate(model, tok, &req, None).unwrap();
    assert_eq!(g.finish, FinishReason::StopSequence, "{:?}", g.text);
    assert!(!g.text.contains('5'));
}

#[test]
fn missing_model_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.gguf");
    let err = Model::load(&path).unwrap_err();
    assert!(matches!(err, AgentError::ModelNotFound { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("nope.gguf") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn truncated_model_file_is_named() {
    let bytes = std::fs::read(smollm2_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Cut inside the tensor data, and cut inside the header.
    for (name, len) in [("half.gguf", bytes.len() / 2), ("head.gguf", 4096)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = Model::load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, AgentError::TruncatedModel { .. }),
            "{name}: {msg}"
        );
        assert!(msg.contains(name) && msg.contains("truncated"), "{msg}");
    }
}

#[test]
fn unsupported_architecture_is_named() {
    use candle_core::quantized::gguf_file::{Value, write};
    use candle_core::quantized::{GgmlDType, QTensor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let t = QTensor::quantize(
        &candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let arch = Value::String("gpt2".into());
    let mut f = std::fs::File::create(&path).unwrap();
    write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &t)],
    )
    .unwrap();
    drop(f);
    let msg = Model::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("gpt2.gguf") && msg.contains("unsupported architecture `gpt2`"),
        "{msg}"
    );
}

#[test]
fn mismatched_adapter_is_named() {
    let (model, _) = smollm2();
    let mut other = model.config().clone();
    other.hidden_size = 64;
    other.intermediate_size = 128;
    other.num_layers = 2;
    let adapter = LoraAdapter::new(&other, LoraConfig::all_targets(8, 16.0), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&adapter, &other, dir.path(), None).unwrap();
    let msg = load_adapter(dir.path(), model.config())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("adapter_model.safetensors") && msg.contains("does not match the base model"),
        "{msg}"
    );
    assert!(
        msg.contains("[8, 64]") || msg.contains("no weights"),
        "{msg}"
    );
}

#[test]
fn prompt_longer_than_context_is_named() {
    let (model, tok) = smollm2();
    let req = ChatRequest {
        system: String::new(),
        user: "word ".repeat(9000),
        params: SamplingParams::default(),
        seed: 0,
        adapter: None,
    };
    let err = generate(model, tok, &req, None).unwrap_err();
    assert!(matches!(err, AgentError::PromptTooLong { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("longer than the model context of 8192 tokens"),
        "{msg}"
    );
}

#[test]
fn smollm2_r8_adapter_file_is_peft_shaped_and_under_10_mb() {
    let (model, _) = smollm2();
    let cfg = model.config();
    let adapter = LoraAdapter::new(cfg, LoraConfig::all_targets(8, 16.0), 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hash = save_adapter(
        &adapter,
        cfg,
        dir.path(),
        Some("HuggingFaceTB/SmolLM2-135M-Instruct"),
    )
    .unwrap();
    let size = std::fs::metadata(dir.path().join("adapter_model.safetensors"))
        .unwrap()
        .len();
    assert!(size < 10_000_000, "adapter file is {size} bytes");
    let loaded = load_adapter(dir.path(), cfg).unwrap();
    assert_eq!(agents::adapter_hash(&loaded, cfg).unwrap(), hash);
    let raw = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
    let k = st
        .tensor("base_model.model.model.layers.29.self_attn.k_proj.lora_B.weight")
        .unwrap();
    assert_eq!(k.shape(), &[192, 8]);
    assert_eq!(st.len(), 30 * 7 * 2);
}

/// The device path (candle's quantized llama on a chosen device) run on the CPU:
/// its next-token distribution matches the project's own forward pass, a prefix fed
/// once serves many continuations, and the same inputs give the same bits.
#[test]
fn device_lm_on_cpu_matches_the_runtime() {
    use agents::{DeviceLm, KvCache, Logits, Segment};
    let (model, tok) = smollm2();
    let prompt = tok.chat_prompt(
        "You are a strict judge. Rate the answer from 1 to 9.",
        "Task: What is 12 + 30?\nAnswer: 42\nRating:",
    );
    let ids = tok.encode(&prompt).unwrap();
    let split = ids.len() / 2;
    let mut cache = KvCache::new();
    let reference = model
        .forward(
            &mut [Segment {
                tokens: &ids,
                cache: &mut cache,
                adapter: None,
            }],
            Logits::Last,
        )
        .unwrap()
        .remove(0)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();

    let base = DeviceLm::load(&smollm2_path(), &candle_core::Device::Cpu).unwrap();
    assert!(base.is_empty());
    let mut prefix = base.clone();
    prefix.feed(&ids[..split]).unwrap();
    assert_eq!(prefix.len(), split);
    let mut a = prefix.clone();
    let split_logits = a.feed(&ids[split..]).unwrap();
    let mut b = prefix.clone();
    assert_eq!(
        b.feed(&ids[split..]).unwrap(),
        split_logits,
        "the same continuation of the same prefix is bit-identical"
    );
    let whole = base.clone().feed(&ids).unwrap();

    let softmax = |l: &[f32]| -> Vec<f64> {
        let m = l.iter().copied().fold(f32::MIN, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect()
    };
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .unwrap()
            .0
    };
    let p_ref = softmax(&reference);
    for (name, logits) in [("split prefix", &split_logits), ("whole prompt", &whole)] {
        assert_eq!(logits.len(), reference.len(), "{name}: vocabulary");
        assert_eq!(argmax(logits), argmax(&reference), "{name}: top token");
        let p = softmax(logits);
        let tv: f64 = p
            .iter()
            .zip(&p_ref)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / 2.0;
        assert!(tv < 0.05, "{name}: total variation {tv} from the runtime");
    }
    // The rating digits' probabilities, which the pointwise judge reads.
    let digits: Vec<usize> = (1..=9)
        .map(|d| tok.inner().token_to_id(&d.to_string()).unwrap() as usize)
        .collect();
    let p = softmax(&split_logits);
    for &d in &digits {
        assert!(
            (p[d] - p_ref[d]).abs() < 0.02,
            "digit token {d}: {} vs {}",
            p[d],
            p_ref[d]
        );
    }

    let mut full = base.clone();
    let err = full.feed(&vec![ids[1]; base.context() + 1]).unwrap_err();
    assert!(
        matches!(err, AgentError::PromptTooLong { .. }),
        "over the context: {err}"
    );
    assert!(base.clone().feed(&[]).is_err(), "an empty feed is refused");
}
