//! Loads every rulebook shipped in `assets/spaces/` and checks that each Space has the
//! shape the arena expects and that its verifiers accept good answers and reject bad
//! ones.

use std::path::PathBuf;

use spaces::{
    Check, History, LengthUnit, PayoutRule, Rulebook, hard_failed, load_dir, pass_rate, verify,
};

fn spaces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/spaces")
}

fn shipped() -> Vec<Rulebook> {
    load_dir(spaces_dir()).expect("every shipped rulebook loads")
}

fn space(slug: &str) -> Rulebook {
    shipped()
        .into_iter()
        .find(|b| b.slug == slug)
        .unwrap_or_else(|| panic!("no Space {slug}"))
}

#[test]
fn every_file_loads_and_the_five_shapes_are_there() {
    let books = shipped();
    let files = std::fs::read_dir(spaces_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert_eq!(books.len(), files);
    let slugs: Vec<&str> = books.iter().map(|b| b.slug.as_str()).collect();
    for want in [
        "tweet-duel",
        "haiku",
        "math-sprint",
        "debate",
        "json-extract",
    ] {
        assert!(slugs.contains(&want), "missing {want} in {slugs:?}");
    }
    for book in &books {
        assert!(
            book.fees.iter().any(|f| f.wei == 0),
            "{} has no free tier",
            book.slug
        );
        assert_eq!(book.version_hash().len(), 64);
    }
    let mut hashes: Vec<&str> = books.iter().map(|b| b.version_hash()).collect();
    hashes.dedup();
    assert_eq!(hashes.len(), books.len());
}

#[test]
fn shapes_match_the_issue() {
    let tweet = space("tweet-duel");
    assert_eq!((tweet.players, tweet.rounds), (4, 1));
    assert!(matches!(tweet.payout.rule, PayoutRule::TopK { .. }));

    let haiku = space("haiku");
    assert!(haiku.rules.iter().any(|r| r.hard
        && matches!(
            r.check,
            Check::Length {
                unit: LengthUnit::Lines,
                min: Some(3),
                max: Some(3)
            }
        )));

    let math = space("math-sprint");
    assert!(
        math.rules
            .iter()
            .any(|r| r.hard && matches!(r.check, Check::ExactAnswer(_)))
    );
    assert_eq!(math.payout.rule, PayoutRule::Proportional);
    assert!(
        math.fees
            .iter()
            .any(|f| f.wei == 25_000_000_000_000_000_000)
    );

    let debate = space("debate");
    assert_eq!(
        (debate.players, debate.rounds, debate.history),
        (2, 3, History::OpponentLast)
    );
    assert_eq!(debate.roles.len(), 2);

    let json = space("json-extract");
    assert!(
        json.rules
            .iter()
            .any(|r| r.hard && matches!(r.check, Check::JsonSchema(_)))
    );
}

#[test]
fn tasks_are_deterministic_short_and_varied() {
    for book in shipped() {
        let mut prompts = std::collections::BTreeSet::new();
        for seed in 0..300u64 {
            let task = book.task(seed, 0);
            assert_eq!(task, book.task(seed, 0));
            assert!(
                !task.prompt.contains('{') || book.slug == "json-extract",
                "{}: unfilled {}",
                book.slug,
                task.prompt
            );
            // Short enough for a 135M model's context with room to answer.
            assert!(
                task.prompt.split_whitespace().count() <= 45,
                "{}: {}",
                book.slug,
                task.prompt
            );
            prompts.insert(task.prompt);
        }
        assert!(
            prompts.len() >= 10,
            "{} draws only {} distinct tasks",
            book.slug,
            prompts.len()
        );
    }
}

#[test]
fn rounds_follow_the_history_setting() {
    let debate = space("debate");
    assert_eq!(
        debate.task(9, 0),
        debate.task(9, 2),
        "a debate keeps its motion"
    );
    let math = space("math-sprint");
    let rounds: Vec<_> = (0..3).map(|r| math.task(9, r).prompt).collect();
    assert!(
        rounds[0] != rounds[1] || rounds[1] != rounds[2],
        "math rounds draw new tasks"
    );
    let task = debate.task(1, 1);
    let text = debate.round_task_text(
        &task,
        1,
        1,
        &[vec!["Cats are calm.".into(), "Dogs are loyal.".into()]],
    );
    assert!(text.starts_with("You argue AGAINST"));
    assert!(
        text.contains(&task.prompt)
            && text.contains("Cats are calm.")
            && !text.contains("Dogs are loyal.")
    );
}

#[test]
fn math_answers_are_computed_and_verified() {
    let math = space("math-sprint");
    let number = regex::Regex::new(r"\d+").unwrap();
    for seed in 0..200 {
        let task = math.task(seed, 0);
        let answer = task.answer.clone().expect("every math task has an answer");
        let nums: Vec<i64> = number
            .find_iter(&task.prompt)
            .map(|m| m.as_str().parse().unwrap())
            .collect();
        let want = if task.prompt.contains("times") || task.prompt.contains("boxes") {
            nums[0] * nums[1]
        } else if task.prompt.contains(" - ") || task.prompt.contains("gives away") {
            nums[0] - nums[1]
        } else {
            nums[0] + nums[1]
        };
        assert_eq!(answer, want.to_string(), "{}", task.prompt);
        assert!(want > 0);
        let good = verify(&math, &task, &format!("The answer is {answer}."));
        assert!(!hard_failed(&good) && pass_rate(&good) == 1.0, "{good:?}");
        let wrong = verify(&math, &task, &format!("{}", want + 1));
        assert!(hard_failed(&wrong));
    }
}

#[test]
fn json_extract_answers_pass_schema_and_values() {
    let json = space("json-extract");
    for seed in 0..100 {
        let task = json.task(seed, 0);
        let answer = task.answer.clone().unwrap();
        let outcomes = verify(&json, &task, &format!("```json\n{answer}\n```"));
        assert_eq!(pass_rate(&outcomes), 1.0, "{outcomes:?}");
        let prose = verify(&json, &task, &format!("Sure! {answer}"));
        assert!(hard_failed(&prose));
        let wrong_type = answer.replace(
            &format!("\"age\": {}", task.vars["age"]),
            &format!("\"age\": \"{}\"", task.vars["age"]),
        );
        assert!(hard_failed(&verify(&json, &task, &wrong_type)));
    }
}

#[test]
fn haiku_and_tweet_rules_judge_form() {
    let haiku = space("haiku");
    let task = (0..100)
        .map(|s| haiku.task(s, 0))
        .find(|t| t.vars["subject"] == "rain")
        .unwrap();
    let good = "Soft rain on the roof\nthe kettle hums in the dark\none lamp still awake";
    let outcomes = verify(&haiku, &task, good);
    assert_eq!(pass_rate(&outcomes), 1.0, "{outcomes:?}");
    assert!(hard_failed(&verify(
        &haiku,
        &task,
        "Soft rain on the roof, the kettle hums in the dark."
    )));
    let off_topic = verify(
        &haiku,
        &task,
        "Old pond in the sun\na frog jumps into water\nsplash, then quiet",
    );
    assert!(!hard_failed(&off_topic) && pass_rate(&off_topic) < 1.0);

    let tweet = space("tweet-duel");
    let task = tweet.task(3, 0);
    let ok = verify(
        &tweet,
        &task,
        "Ten minutes of walking a day lifts your mood and your heart. Start tonight after dinner!",
    );
    assert_eq!(pass_rate(&ok), 1.0, "{ok:?}");
    assert!(hard_failed(&verify(
        &tweet,
        &task,
        &"Walk more. ".repeat(40)
    )));
    let link = verify(
        &tweet,
        &task,
        "Walking is great, read why: https://example.com/walk",
    );
    assert!(!hard_failed(&link) && pass_rate(&link) < 1.0);
}

#[test]
fn payouts_through_the_rulebook_sum_to_the_pot() {
    for book in shipped() {
        for tier in &book.fees {
            let pot = tier.wei * book.players as u128;
            let scores: Vec<f64> = (0..book.players).map(|i| i as f64 / 10.0).collect();
            let split = book.payouts(pot, &scores);
            assert_eq!(split.total(), pot, "{} {}", book.slug, tier.name);
        }
    }
}
