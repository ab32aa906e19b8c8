//! The embedding judge on the real all-MiniLM-L6-v2 weights.

use judges::{EmbeddingJudge, Judge, Task};

fn judge() -> EmbeddingJudge {
    let dir = models::minilm_dir().expect("MiniLM weights (run `rlfc models fetch`)");
    EmbeddingJudge::load(&dir, &candle_core::Device::Cpu).expect("load MiniLM")
}

fn task() -> Task {
    Task::new(
        "Write a short tweet persuading people to drink more water.",
        "Persuasive, on topic, under 280 characters.",
    )
}

#[test]
fn embeddings_are_unit_length_and_relevance_orders_answers() {
    let j = judge();
    let emb = j
        .embed(&["hello world", "a much longer sentence about something else"])
        .unwrap();
    for e in &emb {
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let on_topic =
        "Stay sharp and energized: a glass of water every hour keeps your body happy. #hydrate";
    let off_topic = "My favourite football team won the league again this season.";
    let s = j.score(&task(), &[on_topic, off_topic]).unwrap();
    assert!(s[0].score > s[1].score + 0.2, "{s:?}");
    assert_eq!(s[0].judge.template_version, "embedding-v1");
    assert_eq!(s[0].judge.model_hash.len(), 64);
}

#[test]
fn copying_the_task_or_a_rival_is_penalised() {
    let j = judge();
    let honest = "Water fuels your brain and body. Drink a glass now and feel the difference!";
    let parrot = "Write a short tweet persuading people to drink more water.";
    let copycat = "Water fuels your brain and body. Drink a glass now and feel the difference!!";
    let s = j.score(&task(), &[honest, parrot]).unwrap();
    assert!(s[1].score < s[0].score, "{s:?}");
    assert!(s[1].rationale.contains("task text"), "{}", s[1].rationale);
    let s = j.score(&task(), &[honest, copycat]).unwrap();
    assert!(s[1].rationale.contains("copies"), "{}", s[1].rationale);
    // Same inputs, same scores, bit for bit.
    let again = j.score(&task(), &[honest, copycat]).unwrap();
    assert_eq!(s, again);
}
