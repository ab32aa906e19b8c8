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
    assert_eq!(
        s[0].judge.template_version,
        judges::embedding::EMBEDDING_TEMPLATE_VERSION
    );
    assert_eq!(s[0].judge.model_hash.len(), 64);
}

/// Past the point where an answer is plainly on the subject, repeating the task's
/// words earns no more relevance than a real answer that uses its own images.
#[test]
fn repeating_the_subject_does_not_outscore_an_answer_on_topic() {
    let j = judge();
    let task = Task::new(
        "Write a haiku about snow. Use three short lines and nothing else.",
        "Vivid images, three lines.",
    );
    let real = "Snow on the dark fields\na fox steps where no road is\nnight holds its breath in";
    let parrot = "snow snow snow\nsnow is cold\nso much snow";
    let off = "Interest rates rose again\nthe bank sent a letter\nmy loan costs more";
    let s = j.score(&task, &[real, parrot, off]).unwrap();
    assert!(s[0].score >= s[1].score, "{s:?}");
    assert!(s[0].score > s[2].score + 0.3, "{s:?}");
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

/// In a debate, an answer that repeats the opponent's last turn (shown to the seats
/// as history) is not a reply: it loses what it copied, while a real rebuttal that
/// quotes a few words does not.
#[test]
fn copying_an_earlier_answer_the_seats_were_shown_is_penalised() {
    let j = judge();
    let mut task = Task::new(
        "Motion: Zoos should be closed. Give your argument in three to five sentences.",
        "Argue your side; answer the opponent's last points.",
    );
    let opponent = "Zoos keep wild animals in small cages far from their homes. Many animals \
                    pace and suffer. We can protect species in the wild instead.";
    let copy = "Zoos keep wild animals in small cages far from their homes. Many animals \
                pace and suffer. We can protect species in the wild instead.";
    let rebuttal = "My opponent says animals suffer in small cages, but modern zoos build \
                    large habitats. Breeding programmes saved the Arabian oryx from \
                    extinction. Wild protection alone cannot stop poachers everywhere.";
    let before = j.score(&task, &[copy, rebuttal]).unwrap();
    task.history = vec![opponent.to_string()];
    let after = j.score(&task, &[copy, rebuttal]).unwrap();
    assert!(after[0].score < 0.05, "{after:?}");
    assert!(
        after[0].rationale.contains("earlier answer"),
        "{}",
        after[0].rationale
    );
    assert!(before[0].score > 0.5, "{before:?}");
    assert_eq!(
        after[1].score, before[1].score,
        "a rebuttal keeps its score"
    );
}
