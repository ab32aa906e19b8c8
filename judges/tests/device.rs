//! The judges on a chosen device against the CPU runtime, on the real models.
//!
//! The device comes from `RLFC_TEST_JUDGES_DEVICE` (`cpu` by default; `cuda:0` in a
//! build with `--features cuda` on a GPU machine). On `cpu` the LLM judge's device
//! path is candle's quantized llama on the CPU: the same code a GPU runs, checked here
//! against the project's own kernels on every run.
//!
//! `RLFC_TEST_JUDGES_DEVICE=cuda:0 cargo nextest run --features cuda -p judges --test device`

use std::sync::Arc;

use candle_core::Device;
use judges::{DeviceSpec, EmbeddingJudge, Judge, LlmJudge, Round, Task};

fn device() -> (DeviceSpec, Device) {
    let spec: DeviceSpec = std::env::var("RLFC_TEST_JUDGES_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("RLFC_TEST_JUDGES_DEVICE");
    (spec, spec.open().expect("the test device opens"))
}

fn tasks() -> Vec<(Task, [&'static str; 2])> {
    vec![
        (
            Task::new(
                "Write one short tweet (under 280 characters) that convinces students to drink more water.",
                "Persuasive, specific and friendly; one tweet; no hashtag spam.",
            ),
            [
                "Your brain is mostly water. A glass before class keeps you sharp and headache-free. Fill a bottle tonight!",
                "water water water water good drink it drink it",
            ],
        ),
        (
            Task::new(
                "What is 47 + 18? Reply with the number only.",
                "The exact number, nothing else.",
            ),
            ["65", "The answer might be around 60 or so, I think."],
        ),
    ]
}

#[test]
fn llm_judge_on_a_device_agrees_with_the_cpu_runtime() {
    let (spec, device) = device();
    let gguf = models::smollm2_gguf().expect("SmolLM2 (run `rlfc models fetch`)");
    let cpu = LlmJudge::load(&gguf).expect("load SmolLM2");
    let on = cpu
        .clone()
        .on_device(&gguf, &device)
        .expect("on the device");
    assert!(cpu.device().is_none());
    assert!(on.device().is_some());
    let kind = judges::device_kind(&device);
    assert_eq!(on.id().template_version, format!("llm-pointwise-v2+{kind}"));
    assert_eq!(on.id().model_hash, cpu.id().model_hash);

    let tasks = tasks();
    for (task, [good, bad]) in &tasks {
        let want = cpu.rate(task, &[good, bad]).unwrap();
        let got = on.rate(task, &[good, bad]).unwrap();
        for (w, g) in want.iter().zip(&got) {
            assert!(
                (w.0 - g.0).abs() < 0.03,
                "{spec}: pointwise {g:?} vs the runtime's {w:?} on {:?}",
                task.prompt
            );
        }
        // Both passes quantize activations their own way, which moves P("A") by a few
        // hundredths on these long two-response prompts (0.045 seen on the prior).
        let want = cpu.prefer(task, &[(good, bad)]).unwrap();
        let got = on.prefer(task, &[(good, bad)]).unwrap();
        for (w, g) in want.iter().zip(&got) {
            for k in 0..2 {
                assert!(
                    (w.shown_first[k] - g.shown_first[k]).abs() < 0.06,
                    "{spec}: P(A) {g:?} vs the runtime's {w:?}"
                );
            }
            assert!(
                (w.prior - g.prior).abs() < 0.06,
                "{spec}: prior {g:?} vs {w:?}"
            );
        }
    }

    // Scored alone, scored beside another round, scored again: the same bits.
    let rounds: Vec<Round<'_>> = tasks
        .iter()
        .map(|(task, responses)| Round {
            task,
            responses: responses.as_slice(),
        })
        .collect();
    let together = on.rate_many(&rounds);
    for (round, together) in rounds.iter().zip(together) {
        let alone = on.rate(round.task, round.responses).unwrap();
        let again = on.rate(round.task, round.responses).unwrap();
        let bits = |v: &[(f64, f64)]| v.iter().map(|x| x.0.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&together.unwrap()),
            bits(&alone),
            "{spec}: batched vs alone"
        );
        assert_eq!(bits(&again), bits(&alone), "{spec}: run twice");
    }
}

#[test]
fn embedding_judge_on_a_device_matches_the_cpu() {
    let (spec, device) = device();
    let dir = models::minilm_dir().expect("MiniLM (run `rlfc models fetch`)");
    let cpu = EmbeddingJudge::load(&dir, &Device::Cpu).expect("MiniLM on the CPU");
    let on = Arc::new(EmbeddingJudge::load(&dir, &device).expect("MiniLM on the device"));
    let texts = [
        "Recycle your bottles: rinse, drop them in the blue bin.",
        "65",
        "A haiku about rain on a tin roof",
    ];
    let (a, b) = (cpu.embed(&texts).unwrap(), on.embed(&texts).unwrap());
    for (x, y) in a.iter().zip(&b) {
        let cos: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        assert!(
            cos > 0.9999,
            "{spec}: cosine {cos} between CPU and device embeddings"
        );
    }
    let id = on.id();
    if spec.is_cpu() {
        assert_eq!(
            id.template_version,
            judges::embedding::EMBEDDING_TEMPLATE_VERSION
        );
    } else {
        assert!(
            id.template_version.starts_with(&format!(
                "{}+",
                judges::embedding::EMBEDDING_TEMPLATE_VERSION
            )),
            "{id:?}"
        );
    }
    for (task, [good, bad]) in &tasks() {
        let want = cpu.score(task, &[good, bad]).unwrap();
        let got = on.score(task, &[good, bad]).unwrap();
        for (w, g) in want.iter().zip(&got) {
            assert!((w.score - g.score).abs() < 1e-3, "{spec}: {g:?} vs {w:?}");
        }
    }
}
