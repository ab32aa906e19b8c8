//! `store`'s export queries on both engines.

use store::PairFilter;
use store::Store;
use testkit::db::TestDb;
use testkit::fixtures::played_match;

async fn pages_filter_and_resume(store: &Store) {
    let played = played_match(store, 3).await;
    let all = store
        .export_pairs_page(&PairFilter::default(), 0, 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), played.pair_ids.len());
    let counts = store
        .export_pair_counts(&PairFilter::default())
        .await
        .unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].space, "tweet-duel");
    assert_eq!(counts[0].pairs, all.len() as i64);
    let mean = all.iter().map(|p| p.judge_agreement).sum::<f64>() / all.len() as f64;
    assert!((counts[0].mean_agreement - mean).abs() < 1e-9, "{counts:?}");
    let none = store
        .export_pair_counts(&PairFilter {
            min_margin: Some(1e9),
            ..PairFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all[0].space, "tweet-duel");

    let mut resumed = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .export_pairs_page(&PairFilter::default(), after, 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        resumed.extend(page);
    }
    assert_eq!(resumed, all, "paging by cursor yields every row once");

    let agent = played.agent_ids[2];
    let of_agent = store
        .export_pairs_page(
            &PairFilter {
                agent_id: Some(agent),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    assert!(!of_agent.is_empty());
    assert!(
        of_agent
            .iter()
            .all(|p| p.chosen_agent_id == agent || p.rejected_agent_id == agent)
    );
    let strong = store
        .export_pairs_page(
            &PairFilter {
                min_margin: Some(0.5),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    assert!(strong.iter().all(|p| p.margin >= 0.5));
    assert!(strong.len() < all.len());
    let agreed = store
        .export_pairs_page(
            &PairFilter {
                min_agreement: Some(1.0),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    assert!(agreed.iter().all(|p| p.judge_agreement >= 1.0));
    let none = store
        .export_pairs_page(
            &PairFilter {
                space_id: Some(played.space_id + 1000),
                until_ms: Some(0),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    let since = store
        .export_pairs_page(
            &PairFilter {
                since_ms: Some(0),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(since.len(), all.len());
    assert!(
        all.iter()
            .all(|p| p.match_result_root.as_deref() == Some("0xroot")
                && p.training_position.is_none())
    );

    // A training run's pairs, in an order of their own: only they come back, each
    // with its position.
    let chosen: Vec<i64> = played.pair_ids.iter().rev().take(2).copied().collect();
    let run = store
        .create_training_run(&store::NewTrainingRun {
            agent_id: played.agent_ids[0],
            parent_version_id: played.version_ids[0],
            hyperparams: &serde_json::json!({}),
            hyperparams_hash: "0xhyper",
            pairs_root: "0xpairs",
            results_root: "0xresults",
            pair_ids: &chosen,
        })
        .await
        .unwrap();
    let of_run = store
        .export_pairs_page(
            &PairFilter {
                training_run_id: Some(run.id),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    let mut by_position: Vec<(i64, i64)> = of_run
        .iter()
        .map(|p| (p.training_position.unwrap(), p.id))
        .collect();
    by_position.sort();
    assert_eq!(by_position, vec![(0, chosen[0]), (1, chosen[1])]);
    let other_run = store
        .export_pairs_page(
            &PairFilter {
                training_run_id: Some(run.id + 1000),
                ..Default::default()
            },
            0,
            1000,
        )
        .await
        .unwrap();
    assert!(other_run.is_empty());
}

/// A pair trains under the training agent's own prompt, whichever side it wrote;
/// a run's export shows that prompt; a run made before leaf layout 3 still reads
/// back under the chosen answer's prompt, as it trained.
async fn training_pairs_sit_under_the_agents_own_prompt(store: &Store) {
    let played = played_match(store, 3).await;
    // Seat 2 loses both its pairs; its answer was cut off at the token limit.
    store
        .execute_admin(&format!(
            "UPDATE responses SET finish_reason = 'length', task_prompt = 'Tea, as seat 2 sees it.'
             WHERE entry_id = {}",
            played.entry_ids[2]
        ))
        .await
        .unwrap();
    let own = |seat: usize| format!("You are agent {seat}.");
    for seat in 0..3 {
        let pairs = store
            .training_pairs_for_agent(played.agent_ids[seat], 0, 100)
            .await
            .unwrap();
        assert_eq!(pairs.len(), 2, "seat {seat}");
        for p in &pairs {
            assert!(p.prompt.contains(&own(seat)), "seat {seat}: {}", p.prompt);
            assert_eq!(p.leaf, store::PAIR_LEAF);
            assert_eq!(
                store::is_truncated(&p.rejected_finish),
                seat == 2 || p.rejected_agent_version_id == played.version_ids[2]
            );
            assert!(!store::is_truncated(&p.chosen_finish));
        }
    }
    let loser = store
        .training_pairs_for_agent(played.agent_ids[2], 0, 100)
        .await
        .unwrap();
    let run = store
        .create_training_run(&store::NewTrainingRun {
            agent_id: played.agent_ids[2],
            parent_version_id: played.version_ids[2],
            hyperparams: &serde_json::json!({}),
            hyperparams_hash: "0xhyper",
            pairs_root: "0xpairs",
            results_root: "0xresults",
            pair_ids: &loser.iter().map(|p| p.id).collect::<Vec<_>>(),
        })
        .await
        .unwrap();
    assert_eq!(
        store.training_run_training_pairs(run.id).await.unwrap(),
        loser
    );
    let exported = store
        .export_pairs_page(
            &PairFilter {
                training_run_id: Some(run.id),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(exported.len(), 2);
    for p in &exported {
        assert!(p.exact_prompt.contains(&own(2)), "{}", p.exact_prompt);
        assert_eq!(p.prompt, "Tea, as seat 2 sees it.");
        assert_eq!(p.rejected_finish, "length");
    }
    // Outside a run, the export keeps the chosen side's view.
    let all = store
        .export_pairs_page(&PairFilter::default(), 0, 100)
        .await
        .unwrap();
    assert!(all.iter().all(|p| !p.exact_prompt.contains(&own(2))));
    // A run recorded under layout 2 trained under the chosen answer's prompt.
    store
        .execute_admin(&format!(
            "UPDATE training_runs SET pair_leaf = 2 WHERE id = {}",
            run.id
        ))
        .await
        .unwrap();
    let legacy = store.training_run_training_pairs(run.id).await.unwrap();
    assert!(
        legacy
            .iter()
            .all(|p| p.leaf == 2 && !p.prompt.contains(&own(2)))
    );
    let exported = store
        .export_pairs_page(
            &PairFilter {
                training_run_id: Some(run.id),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert!(exported.iter().all(|p| !p.exact_prompt.contains(&own(2))));
}

#[tokio::test]
async fn export_sqlite() {
    let db = TestDb::sqlite().await;
    pages_filter_and_resume(&db.store).await;
    training_pairs_sit_under_the_agents_own_prompt(&db.store).await;
}

#[tokio::test]
async fn export_postgres() {
    if let Some(db) = TestDb::postgres().await {
        pages_filter_and_resume(&db.store).await;
        training_pairs_sit_under_the_agents_own_prompt(&db.store).await;
    }
}
