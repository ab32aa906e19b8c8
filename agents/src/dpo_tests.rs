//! Tests of the DPO trainer on tiny random-weight models: the packed training forward
//! against the plain candle forward, determinism, learning, and config checks.

use crate::adapter::adapter_hash;
use crate::dpo::{DpoConfig, DpoPair, StepMetrics, train_dpo};
use crate::dpo_forward::{PackedBatch, TrainBase};
use crate::gguf::{Architecture, ModelConfig};
use crate::lora::{LoraAdapter, LoraConfig, Target};
use crate::model::Model;
use crate::seq::{KvCache, Logits, Segment};
use crate::sgemm::{Path, force};
use crate::tokenizer::ChatTokenizer;
use candle_core::{D, Device, Tensor};

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

/// An adapter whose B is nonzero, so it changes the output.
fn live_adapter(cfg: &ModelConfig, seed: u64) -> LoraAdapter {
    let a = LoraAdapter::new(cfg, LoraConfig::all_targets(4, 8.0), seed).unwrap();
    for (i, v) in a.vars().iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let (o, r) = v.dims2().unwrap();
        let vals: Vec<f32> = (0..o * r)
            .map(|j| ((j * 37 + i * 11 + seed as usize) % 101) as f32 / 101.0 - 0.5)
            .map(|x| x * 0.2)
            .collect();
        v.set(&Tensor::from_vec(vals, (o, r), &Device::Cpu).unwrap())
            .unwrap();
    }
    a
}

/// Completion log-prob sums through the model's plain candle forward pass.
fn plain_logprobs(
    model: &Model,
    seqs: &[(Vec<u32>, Vec<u32>)],
    adapter: Option<&LoraAdapter>,
) -> Tensor {
    let sums: Vec<Tensor> = seqs
        .iter()
        .map(|(p, c)| {
            let tokens: Vec<u32> = p.iter().chain(c).copied().collect();
            let mut cache = KvCache::new();
            let mut segs = [Segment {
                tokens: &tokens,
                cache: &mut cache,
                adapter,
            }];
            let logits = model
                .forward_train(&mut segs, Logits::All)
                .unwrap()
                .remove(0);
            let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
            let rows = lsm.narrow(0, p.len() - 1, c.len()).unwrap();
            let ids = Tensor::new(c.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(1)
                .unwrap();
            rows.gather(&ids, 1)
                .unwrap()
                .sum_all()
                .unwrap()
                .reshape(1)
                .unwrap()
        })
        .collect();
    Tensor::cat(&sums, 0).unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn packed_training_forward_matches_plain_forward_and_gradients() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = Model::random(tiny(arch), 3).unwrap();
        let adapter = live_adapter(model.config(), 9);
        // Two completions share the first prompt; the second prompt is one token long.
        let p1: Vec<u32> = (1..12).collect();
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = vec![
            (p1.clone(), (40..47).collect()),
            (p1.clone(), (2..15).collect()),
            (vec![5], (60..63).collect()),
        ];
        let mut batch = PackedBatch::default();
        batch.push(&p1, &[&seqs[0].1, &seqs[1].1]);
        batch.push(&seqs[2].0, &[&seqs[2].1]);
        let base = TrainBase::new(&model).unwrap();
        let packed = base.completion_logprobs(&batch, Some(&adapter)).unwrap();
        let plain = plain_logprobs(&model, &seqs, Some(&adapter));
        for (a, b) in packed.iter().zip(to_vec(&plain)) {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{arch:?}: {a} vs {b}"
            );
        }
        // The taped forward gives the same log-probs, bit for bit.
        let (taped, tape) = base.logprobs_with_tape(&batch, &adapter).unwrap();
        assert_eq!(taped, packed);
        // Gradients of a weighted sum reach every var and agree with candle's autograd.
        let weights = [1.0f32, -0.5, 0.25];
        let mut g1 = base.backward(tape, &weights).unwrap();
        let w = Tensor::new(&weights, &Device::Cpu).unwrap();
        let g2 = (plain * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let mut checked = 0;
        for l in 0..adapter.num_layers() {
            for t in Target::ALL {
                let Some(pair) = adapter.pair(l, t) else {
                    continue;
                };
                let (ga, gb) = g1.remove(&(l, t)).expect("packed grad");
                for (a, v) in [(ga, &pair.a), (gb, &pair.b)] {
                    let b = to_vec(g2.get(v.as_tensor()).expect("plain grad"));
                    assert_eq!(a.len(), b.len());
                    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
                    let diff = a
                        .iter()
                        .zip(&b)
                        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                    assert!(
                        diff <= 2e-3 * scale,
                        "{arch:?} layer {l} {t:?}: gradient differs by {diff} (scale {scale})"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, adapter.vars().len());
        assert!(g1.is_empty(), "gradients for matrices the adapter lacks");
        // A weight per completion, no more and no fewer.
        let (_, tape) = base.logprobs_with_tape(&batch, &adapter).unwrap();
        assert!(base.backward(tape, &weights[..2]).is_err());
        // With no adapter the pass is the bare base model.
        let bare = base.completion_logprobs(&batch, None).unwrap();
        let plain_bare = plain_logprobs(&model, &seqs, None);
        for (a, b) in bare.iter().zip(to_vec(&plain_bare)) {
            assert!(
                (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                "{arch:?}: {a} vs {b}"
            );
        }
    }
}

fn pairs() -> Vec<DpoPair> {
    let q = [
        ("2+2=", "4", "5"),
        ("3+3=", "6", "9"),
        ("say yes:", "yes", "no"),
        ("colour of sky:", "blue", "green"),
        ("1+1=", "2", "11"),
        ("opposite of up:", "down", "up up"),
    ];
    q.iter()
        .map(|(p, c, r)| DpoPair {
            prompt: format!("Q: {p} A:"),
            chosen: format!(" {c}."),
            rejected: format!(" {r}."),
            ..DpoPair::default()
        })
        .collect()
}

fn quick_cfg() -> DpoConfig {
    DpoConfig {
        learning_rate: 1e-2,
        beta: 0.5,
        max_steps: 3,
        batch_size: 3,
        grad_accumulation: 2,
        max_length: 64,
        lora_rank: 4,
        lora_alpha: 8.0,
        seed: 7,
        ..DpoConfig::default()
    }
}

fn run(model: &Model, pairs: &[DpoPair], cfg: &DpoConfig) -> (String, Vec<StepMetrics>) {
    let tok = ChatTokenizer::for_tests(96);
    let out = train_dpo(model, &tok, None, pairs, cfg, |_| {}).unwrap();
    assert_eq!(
        out.adapter_hash,
        adapter_hash(&out.adapter, model.config()).unwrap()
    );
    (out.adapter_hash, out.steps)
}

#[test]
fn same_inputs_give_the_same_adapter_hash() {
    let model = Model::random(tiny(Architecture::Llama), 11).unwrap();
    let cfg = quick_cfg();
    let ps = pairs();
    let (h1, m1) = run(&model, &ps, &cfg);
    let (h2, m2) = run(&model, &ps, &cfg);
    assert_eq!(h1, h2, "two runs from the same inputs differ");
    assert_eq!(m1, m2);
    // A different seed, pair order or setting gives a different adapter.
    let (h3, _) = run(
        &model,
        &ps,
        &DpoConfig {
            seed: 8,
            ..cfg.clone()
        },
    );
    assert_ne!(h1, h3, "seed is ignored");
    let mut swapped = ps.clone();
    swapped.swap(0, 4);
    let (h4, _) = run(&model, &swapped, &cfg);
    assert_ne!(h1, h4, "pair order is ignored");
    let (h5, _) = run(
        &model,
        &ps,
        &DpoConfig {
            beta: 0.4,
            ..cfg.clone()
        },
    );
    assert_ne!(h1, h5, "beta is ignored");
}

/// The products' AVX-512, AVX2 and scalar paths (those this CPU runs) train the same
/// adapter, bit for bit, on both architectures: what lets a proof-of-learning re-run on
/// another CPU reproduce it.
#[test]
fn every_product_path_trains_the_same_adapter() {
    let (cfg, ps) = (quick_cfg(), pairs());
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let model = Model::random(tiny(arch), 11).unwrap();
        let mut hashes = Vec::new();
        for path in Path::available() {
            force(Some(path));
            hashes.push((path, run(&model, &ps, &cfg)));
        }
        force(None);
        let (first, (hash, steps)) = &hashes[0];
        for (path, (h, m)) in &hashes[1..] {
            assert_eq!(
                h, hash,
                "{arch:?}: {path:?} and {first:?} train different adapters"
            );
            assert_eq!(
                m, steps,
                "{arch:?}: {path:?} and {first:?} report different steps"
            );
        }
        eprintln!("{arch:?}: {} paths, adapter {hash}", hashes.len());
    }
}

#[test]
fn training_moves_the_policy_towards_chosen_answers() {
    let model = Model::random(tiny(Architecture::Qwen2), 12).unwrap();
    let tok = ChatTokenizer::for_tests(96);
    let cfg = DpoConfig {
        learning_rate: 2e-2,
        beta: 0.5,
        max_steps: 12,
        batch_size: 6,
        lora_rank: 4,
        lora_alpha: 8.0,
        max_length: 64,
        ..DpoConfig::default()
    };
    let mut seen = Vec::new();
    let out = train_dpo(&model, &tok, None, &pairs(), &cfg, |m| seen.push(m.clone())).unwrap();
    assert_eq!(seen, out.steps);
    let first = &out.steps[0];
    let last = out.steps.last().unwrap();
    // Step 1 runs with the policy equal to the reference (B starts at zero).
    assert!(
        (first.loss - std::f64::consts::LN_2).abs() < 1e-9,
        "{first:?}"
    );
    assert_eq!(first.reward_accuracy, 0.0);
    assert!(last.loss < 0.5 * std::f64::consts::LN_2, "{last:?}");
    assert!(last.reward_accuracy > first.reward_accuracy, "{last:?}");
    assert!(last.reward_margin > 0.0);
    assert!(last.tokens > 0 && last.pairs == 6);
}

#[test]
fn a_parent_adapter_is_the_frozen_reference() {
    let model = Model::random(tiny(Architecture::Llama), 13).unwrap();
    let tok = ChatTokenizer::for_tests(96);
    let parent = live_adapter(model.config(), 4);
    let before = adapter_hash(&parent, model.config()).unwrap();
    let cfg = DpoConfig {
        max_steps: 2,
        learning_rate: 1e-2,
        ..quick_cfg()
    };
    let out = train_dpo(&model, &tok, Some(&parent), &pairs(), &cfg, |_| {}).unwrap();
    // Policy starts equal to the reference, so the first loss is exactly ln 2.
    assert!((out.steps[0].loss - std::f64::consts::LN_2).abs() < 1e-9);
    assert_eq!(adapter_hash(&parent, model.config()).unwrap(), before);
    assert_ne!(out.adapter_hash, before);
    // A parent with another rank is refused, naming the setting.
    let err = train_dpo(
        &model,
        &tok,
        Some(&parent),
        &pairs(),
        &DpoConfig {
            lora_rank: 8,
            ..cfg
        },
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lora_rank") && err.contains("parent"), "{err}");
}

#[test]
fn config_is_validated_and_hashed_canonically() {
    let cfg = DpoConfig::default();
    cfg.validate().unwrap();
    let bad = |c: DpoConfig| c.validate().unwrap_err().to_string();
    let e = bad(DpoConfig {
        beta: -1.0,
        ..cfg.clone()
    });
    assert!(
        e.contains("`beta`") && e.contains("(0, 1000]") && e.contains("-1"),
        "{e}"
    );
    let e = bad(DpoConfig {
        batch_size: 0,
        ..cfg.clone()
    });
    assert!(e.contains("`batch_size`") && e.contains("[1, 1024]"), "{e}");
    let e = bad(DpoConfig {
        adam_beta2: 1.0,
        ..cfg.clone()
    });
    assert!(e.contains("`adam_beta2`") && e.contains("[0, 1)"), "{e}");
    let e = bad(DpoConfig {
        learning_rate: f64::NAN,
        ..cfg.clone()
    });
    assert!(e.contains("`learning_rate`"), "{e}");

    let h = cfg.hyperparameters_hash();
    assert_eq!(h.len(), 64);
    assert_eq!(h, cfg.clone().hyperparameters_hash());
    assert_ne!(
        h,
        DpoConfig {
            seed: 1,
            ..cfg.clone()
        }
        .hyperparameters_hash()
    );
    let json = cfg.canonical_json();
    assert!(json.starts_with("{\"adam_beta1\":0.9,"), "{json}");
    assert!(
        json.contains("\"algorithm\":\"rlfc-dpo-sigmoid/2\""),
        "{json}"
    );
    // A record hashed by the previous training code is recognised as such.
    let old = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        json.replace("rlfc-dpo-sigmoid/2", "rlfc-dpo-sigmoid/1")
            .as_bytes(),
    ));
    assert_eq!(cfg.earlier_algorithm_for(&old), Some("rlfc-dpo-sigmoid/1"));
    assert_eq!(
        cfg.earlier_algorithm_for(&format!("0x{old}")),
        Some("rlfc-dpo-sigmoid/1")
    );
    assert_eq!(cfg.earlier_algorithm_for(&h), None);
    // Serde round trip keeps the hash; unknown fields are refused.
    let back: DpoConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back.hyperparameters_hash(), h);
    let partial: DpoConfig = serde_json::from_str("{\"beta\":0.2}").unwrap();
    assert_eq!(partial.beta, 0.2);
    assert!(serde_json::from_str::<DpoConfig>("{\"betta\":0.2}").is_err());
}

#[test]
fn unusable_inputs_are_refused_with_a_reason() {
    let model = Model::random(tiny(Architecture::Llama), 14).unwrap();
    let tok = ChatTokenizer::for_tests(96);
    let cfg = quick_cfg();
    let err = train_dpo(&model, &tok, None, &[], &cfg, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("no preference pairs"), "{err}");
    let mut ps = pairs();
    ps[2].chosen = String::new();
    let err = train_dpo(&model, &tok, None, &ps, &cfg, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("pair 2") && err.contains("no tokens"), "{err}");
    let err = train_dpo(
        &model,
        &tok,
        None,
        &pairs(),
        &DpoConfig {
            max_length: 500,
            ..cfg
        },
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("max_length") && err.contains("128"), "{err}");
}

#[test]
fn long_pairs_are_truncated_to_max_length() {
    let model = Model::random(tiny(Architecture::Llama), 15).unwrap();
    let tok = ChatTokenizer::for_tests(96);
    let long = DpoPair {
        prompt: "x".repeat(100),
        chosen: "a".repeat(80),
        rejected: "b".repeat(10),
        ..DpoPair::default()
    };
    let cfg = DpoConfig {
        max_length: 40,
        max_steps: 1,
        batch_size: 1,
        grad_accumulation: 1,
        ..quick_cfg()
    };
    let out = train_dpo(&model, &tok, None, &[long], &cfg, |_| {}).unwrap();
    // Prompt keeps 20 tokens (computed once for both answers); chosen is cut to 20 and
    // rejected keeps its 10.
    assert_eq!(out.steps[0].tokens, 20 + 20 + 10);
}

#[test]
fn a_cut_off_answer_trains_without_the_end_of_turn_token() {
    let model = Model::random(tiny(Architecture::Llama), 15).unwrap();
    // The last byte id stands in for the end-of-turn token.
    let tok = ChatTokenizer::for_tests(96).with_stop_id(95);
    let pair = DpoPair {
        prompt: "Q: name a colour A:".into(),
        chosen: " red".into(),
        rejected: " the colour I would name is".into(),
        ..DpoPair::default()
    };
    let cfg = DpoConfig {
        max_steps: 1,
        batch_size: 1,
        grad_accumulation: 1,
        ..quick_cfg()
    };
    let run =
        |p: &DpoPair| train_dpo(&model, &tok, None, std::slice::from_ref(p), &cfg, |_| {}).unwrap();
    let finished = run(&pair);
    let cut = run(&DpoPair {
        rejected_truncated: true,
        ..pair.clone()
    });
    // One token fewer: the cut-off answer has no end-of-turn token to learn from.
    assert_eq!(cut.steps[0].tokens + 1, finished.steps[0].tokens);
    assert_ne!(cut.adapter_hash, finished.adapter_hash);
}

#[test]
fn validation_and_early_stop_are_hashed_only_when_set() {
    let legacy = DpoConfig::default();
    let json = legacy.canonical_json();
    assert!(
        !json.contains("validation_share") && !json.contains("patience"),
        "{json}"
    );
    // The hash of every run recorded before these settings existed.
    let pinned = DpoConfig {
        validation_share: 0.25,
        patience: 2,
        ..legacy.clone()
    };
    assert_ne!(pinned.hyperparameters_hash(), legacy.hyperparameters_hash());
    let e = DpoConfig {
        validation_share: 0.9,
        ..legacy.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`validation_share`") && e.contains("[0, 0.5]"),
        "{e}"
    );
    assert_eq!(pinned.validation_pairs(8), 2);
    assert_eq!(pinned.validation_pairs(2), 1);
    assert_eq!(pinned.validation_pairs(1), 0);
    assert_eq!(legacy.validation_pairs(8), 0);
}

#[test]
fn the_base_model_hash_enters_the_hyperparameter_hash_only_when_set() {
    let legacy = DpoConfig::default();
    assert!(!legacy.canonical_json().contains("base_model_sha256"));
    let bound = DpoConfig {
        base_model_sha256: "ab".repeat(32),
        ..legacy.clone()
    };
    bound.validate().unwrap();
    assert!(bound.canonical_json().contains(&"ab".repeat(32)));
    assert_ne!(bound.hyperparameters_hash(), legacy.hyperparameters_hash());
    // Another base model, another hash.
    let other = DpoConfig {
        base_model_sha256: "cd".repeat(32),
        ..legacy.clone()
    };
    assert_ne!(bound.hyperparameters_hash(), other.hyperparameters_hash());
    let e = DpoConfig {
        base_model_sha256: "XYZ".into(),
        ..legacy
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`base_model_sha256`") && e.contains("64 lower-case hex"),
        "{e}"
    );
}

#[test]
fn held_out_pairs_measure_validation_loss_and_the_best_adapter_is_kept() {
    let model = Model::random(tiny(Architecture::Llama), 21).unwrap();
    let tok = ChatTokenizer::for_tests(96);
    let cfg = DpoConfig {
        learning_rate: 5e-2,
        max_steps: 40,
        batch_size: 2,
        grad_accumulation: 1,
        validation_share: 0.34,
        patience: 2,
        ..quick_cfg()
    };
    let data = pairs();
    let out = train_dpo(&model, &tok, None, &data, &cfg, |_| {}).unwrap();
    // Six pairs: two held out, four trained on, two steps per pass; a check ends
    // each pass.
    let checks: Vec<(usize, f64)> = out
        .steps
        .iter()
        .filter_map(|s| s.validation_loss.map(|v| (s.step, v)))
        .collect();
    assert!(checks.iter().all(|(step, _)| step % 2 == 0), "{checks:?}");
    assert!(out.steps.iter().all(|s| s.pairs == 2));
    let (best_step, best) = checks
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(out.best_step, best_step);
    assert_eq!(out.validation_loss, Some(best));
    // It stopped two checks after the best one, or ran to the end.
    let last = out.steps.last().unwrap().step;
    assert!(out.stopped_early == (last < cfg.max_steps));
    if out.stopped_early {
        assert_eq!(last, best_step + 2 * 2);
    }
    // The kept adapter is the best step's: training only that far gives it.
    let again = train_dpo(
        &model,
        &tok,
        None,
        &data,
        &DpoConfig {
            max_steps: best_step,
            patience: 0,
            ..cfg.clone()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(again.adapter_hash, out.adapter_hash);
    assert_eq!(again.best_step, best_step);
}

#[test]
fn label_smoothing_bounds_how_far_a_run_can_fit_its_pairs() {
    let model = Model::random(tiny(Architecture::Qwen2), 12).unwrap();
    let tok = ChatTokenizer::for_tests(96);
    let plain = DpoConfig {
        learning_rate: 5e-2,
        beta: 0.5,
        max_steps: 30,
        batch_size: 6,
        lora_rank: 4,
        lora_alpha: 8.0,
        max_length: 64,
        ..DpoConfig::default()
    };
    let eps = 0.1;
    let smoothed = DpoConfig {
        label_smoothing: eps,
        ..plain.clone()
    };
    // The smallest the smoothed loss can be: the binary entropy of ε, reached at the
    // margin ln((1 − ε)/ε).
    let floor = -(1.0 - eps) * (1.0f64 - eps).ln() - eps * eps.ln();
    let fit = train_dpo(&model, &tok, None, &pairs(), &plain, |_| {}).unwrap();
    let held = train_dpo(&model, &tok, None, &pairs(), &smoothed, |_| {}).unwrap();
    // Both start at ln 2 (policy = reference) and both learn.
    for out in [&fit, &held] {
        assert!((out.steps[0].loss - std::f64::consts::LN_2).abs() < 1e-9);
        let last = out.steps.last().unwrap();
        assert!(last.loss < std::f64::consts::LN_2, "{last:?}");
        assert!(last.reward_margin > 0.0, "{last:?}");
    }
    // Plain DPO memorises six pairs: its loss falls below the smoothed floor.
    let plain_last = fit.steps.last().unwrap();
    assert!(plain_last.loss < floor, "{plain_last:?} vs floor {floor}");
    // The smoothed run's margin stays below plain DPO's (its loss cannot go below the
    // floor at all: see the next test).
    let held_last = held.steps.last().unwrap();
    assert!(
        held_last.reward_margin < plain_last.reward_margin,
        "{held_last:?} vs {plain_last:?}"
    );
    assert_ne!(held.adapter_hash, fit.adapter_hash);
    // Hashed only when set, and refused at 0.5 or more, naming the field.
    assert!(!plain.canonical_json().contains("label_smoothing"));
    assert!(
        smoothed
            .canonical_json()
            .contains("\"label_smoothing\":0.1")
    );
    assert_ne!(
        smoothed.hyperparameters_hash(),
        plain.hyperparameters_hash()
    );
    let e = DpoConfig {
        label_smoothing: 0.5,
        ..plain
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`label_smoothing`") && e.contains("[0, 0.5)"),
        "{e}"
    );
}

#[test]
fn the_smoothed_loss_has_its_gradient_and_its_optimum_where_stated() {
    use crate::dpo::pair_loss;
    for eps in [0.0, 0.05, 0.1, 0.3] {
        for z in [-6.0, -1.0, -0.1, 0.0, 0.3, 2.0, 7.5] {
            let (loss, grad) = pair_loss(z, eps);
            let h = 1e-6;
            let numeric = (pair_loss(z + h, eps).0 - pair_loss(z - h, eps).0) / (2.0 * h);
            assert!(
                (grad - numeric).abs() < 1e-6,
                "eps {eps} z {z}: {grad} vs {numeric}"
            );
            if eps == 0.0 {
                // Plain sigmoid DPO, as before the setting existed.
                assert!((loss - (1.0 + (-z).exp()).ln()).abs() < 1e-12);
            }
        }
        assert!((pair_loss(0.0, eps).0 - std::f64::consts::LN_2).abs() < 1e-12);
        if eps > 0.0 {
            // The optimum: zero slope, and the loss there is the binary entropy of ε.
            let best = ((1.0 - eps) / eps).ln();
            let (loss, grad) = pair_loss(best, eps);
            assert!(grad.abs() < 1e-12, "eps {eps}: slope {grad} at the optimum");
            let entropy = -(1.0 - eps) * (1.0 - eps).ln() - eps * eps.ln();
            assert!((loss - entropy).abs() < 1e-12);
            // Past it the loss rises again: a larger margin is penalised.
            assert!(pair_loss(best + 2.0, eps).0 > loss);
        }
    }
}
