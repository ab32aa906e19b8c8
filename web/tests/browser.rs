//! The whole product in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven with fantoccini signs in with the dev login, funds the
//! account, creates an agent (seeing an inline validation error first), enters it in
//! a Space, watches a match stream to its end over the websocket, and downloads the
//! dataset. Screenshots of each step are kept under the target's test temp folder.
//!
//! Without `chromedriver` on the PATH the test is skipped with a message, except under
//! `CI=true`, where it fails.

mod common;

use arena::events::{EventKind, SeatInfo};
use common::browser::{chromium, screenshots_dir, shot, start_driver, wait_for_text};
use fantoccini::Locator;
use store::{
    MatchRecord, Payout, RatingUpdate, ResponseRecord, RoundRecordIn, ScoreRecord, Settlement, Wei,
};
use testkit::db::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_create_enter_watch_and_download() {
    let Some((_driver, driver_url)) = start_driver().await else {
        return;
    };
    let app = common::TestApp::new(TestDb::sqlite().await).await;
    web::sync_spaces(app.store(), &common::rulebooks())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(web::serve(listener, app.state.clone(), async move {
        let _ = stop_rx.await;
    }));

    let client = chromium(&driver_url, 1280).await;

    // Sign in with the dev login.
    client.goto(&format!("{base}/")).await.unwrap();
    shot(&client, "01-home").await;
    client
        .find(Locator::Id("dev-login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "header nav", "Sign out").await;

    // Fund the account.
    client.goto(&format!("{base}/account")).await.unwrap();
    let form = client.form(Locator::Id("deposit-form")).await.unwrap();
    form.set_by_name("amount_eth", "100").await.unwrap();
    form.submit().await.unwrap();
    wait_for_text(&client, "#available", "100 ETH").await;
    shot(&client, "02-account").await;

    // Create an agent: first with a bad temperature, then fixed.
    client.goto(&format!("{base}/agents/new")).await.unwrap();
    let form = client.form(Locator::Id("agent-form")).await.unwrap();
    form.set_by_name("name", "Browser Bard").await.unwrap();
    form.set_by_name("system_prompt", "Answer in one vivid line.")
        .await
        .unwrap();
    // Bypass the browser's own number check to reach the server's.
    client
        .execute(
            "document.getElementById('agent-form').noValidate = true; return null;",
            vec![],
        )
        .await
        .unwrap();
    form.set_by_name("sampling.temperature", "2.5")
        .await
        .unwrap();
    form.submit().await.unwrap();
    wait_for_text(&client, "[data-error-for='sampling.temperature']", "[0, 2]").await;
    shot(&client, "03-studio-error").await;
    let form = client.form(Locator::Id("agent-form")).await.unwrap();
    form.set_by_name("sampling.temperature", "0.8")
        .await
        .unwrap();
    form.submit().await.unwrap();
    wait_for_text(&client, "h1", "Browser Bard").await;
    shot(&client, "04-studio").await;

    // Enter it in Tweet Duel.
    client
        .goto(&format!("{base}/spaces/tweet-duel"))
        .await
        .unwrap();
    client
        .form(Locator::Id("enter-form"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    wait_for_text(&client, "main", "queued").await;
    shot(&client, "05-entered").await;

    // A rival enters too, and the match is made (the arena's matchmaker would do this).
    let store = app.store().clone();
    let mine = store
        .matches_with_status(store::MatchStatus::Pending)
        .await
        .unwrap();
    assert!(mine.is_empty());
    let space = store.space_by_slug("tweet-duel").await.unwrap();
    let my_entry = {
        let users = store
            .upsert_user(&format!("{:#x}", chain::dev::dev_accounts(2)[1]))
            .await
            .unwrap();
        store.entries_by_user(users.id, 1).await.unwrap().remove(0)
    };
    let rival = store
        .upsert_user(&format!("0x{}", "ab".repeat(20)))
        .await
        .unwrap();
    store
        .deposit(rival.id, Wei(10u128.pow(20)), "rival")
        .await
        .unwrap();
    let (rival_agent, rival_version) = store
        .create_agent(
            rival.id,
            "Rival",
            "smollm2-135m",
            &store::NewAgentVersion {
                system_prompt: "Be terse.".into(),
                sampling: serde_json::json!({}),
                training: serde_json::json!({}),
                adapter_hash: None,
            },
        )
        .await
        .unwrap();
    let rival_entry = store
        .enter(rival.id, rival_version.id, my_entry.fee_tier_id)
        .await
        .unwrap();
    let m = store
        .create_match(
            space.id,
            my_entry.fee_tier_id,
            42,
            space.version_hash.as_str(),
            &[my_entry.id, rival_entry.id],
        )
        .await
        .unwrap();
    store.start_match(m.id).await.unwrap();
    let bus = app.state.bus().clone();
    bus.publish(
        m.id,
        EventKind::MatchCreated {
            space: "tweet-duel".into(),
            seats: vec![
                SeatInfo {
                    entry_id: my_entry.id,
                    agent_id: my_entry.agent_id,
                    agent_version_id: my_entry.agent_version_id,
                },
                SeatInfo {
                    entry_id: rival_entry.id,
                    agent_id: rival_agent.id,
                    agent_version_id: rival_version.id,
                },
            ],
            seed: 42,
        },
    );

    // Watch it stream.
    client
        .goto(&format!("{base}/matches/{}", m.id))
        .await
        .unwrap();
    bus.publish(
        m.id,
        EventKind::RoundStarted {
            round: 0,
            task: "Tweet about tea.".into(),
        },
    );
    for word in ["Steam ", "rises, ", "leaves ", "unfurl."] {
        bus.publish(
            m.id,
            EventKind::TokenDelta {
                round: 0,
                entry_id: my_entry.id,
                text: word.into(),
            },
        );
    }
    bus.publish(
        m.id,
        EventKind::TokenDelta {
            round: 0,
            entry_id: rival_entry.id,
            text: "Tea.".into(),
        },
    );
    wait_for_text(
        &client,
        &format!("#stream-{}", my_entry.id),
        "Steam rises, leaves unfurl.",
    )
    .await;
    wait_for_text(&client, &format!("#stream-{}", rival_entry.id), "Tea.").await;
    shot(&client, "06-match-live").await;

    // The match ends: the result is recorded, then the final events go out.
    let response = |entry_id: i64, text: &str, score: f64| ResponseRecord {
        entry_id,
        prompt: "<|im_start|>user\nTweet about tea.<|im_end|>\n<|im_start|>assistant\n".into(),
        task_prompt: "Tweet about tea.".into(),
        text: text.into(),
        tokens: 4,
        finish_reason: "stop".into(),
        scores: vec![ScoreRecord {
            judge: "llm".into(),
            model_hash: "m".into(),
            template_version: "1".into(),
            score,
            rationale: format!("scored {score}"),
        }],
    };
    let pot = my_entry.fee_wei.0 * 2;
    store
        .record_match(&MatchRecord {
            space_id: space.id,
            rounds: vec![RoundRecordIn {
                round_index: 0,
                task: "Tweet about tea.".into(),
                responses: vec![
                    response(my_entry.id, "Steam rises, leaves unfurl.", 0.9),
                    response(rival_entry.id, "Tea.", 0.2),
                ],
                pairs: vec![store::PairRecord {
                    chosen: 0,
                    rejected: 1,
                    margin: 0.7,
                    judge_agreement: 1.0,
                }],
            }],
            settlement: Settlement {
                match_id: m.id,
                payouts: vec![
                    Payout {
                        entry_id: my_entry.id,
                        place: 1,
                        amount: Wei(pot),
                    },
                    Payout {
                        entry_id: rival_entry.id,
                        place: 2,
                        amount: Wei::ZERO,
                    },
                ],
                treasury: Wei::ZERO,
                result_root: "0x01".into(),
                result_hash: "browser".into(),
                chain_tx_id: None,
            },
            ratings: vec![
                RatingUpdate::absolute(my_entry.agent_id, 27.0, 7.5),
                RatingUpdate::absolute(rival_agent.id, 23.0, 7.5),
            ],
            base_models: Vec::new(),
        })
        .await
        .unwrap();
    bus.publish(
        m.id,
        EventKind::Scores {
            round: 0,
            entry_id: my_entry.id,
            combined: 0.9,
            hard_failed: false,
            judges: vec![judges::Score::new(
                judges::JudgeId {
                    name: "llm".into(),
                    model_hash: String::new(),
                    template_version: String::new(),
                },
                0.9,
                "vivid",
            )],
        },
    );
    // The live view: the round in play, the judges' scores with their rationales as
    // they arrive, and the scoreboard's running total.
    wait_for_text(&client, "#round-progress", "Round 1").await;
    wait_for_text(&client, &format!("#judges-{}", my_entry.id), "vivid").await;
    wait_for_text(&client, &format!("#total-{}", my_entry.id), "0.900").await;
    wait_for_text(&client, "#scoreboard", "Browser Bard").await;
    shot(&client, "06b-match-scored").await;
    bus.publish(
        m.id,
        EventKind::MatchSettled {
            result_hash: "browser".into(),
        },
    );
    // The page reloads itself on the final event and shows the outcome, best place
    // first, and the transcript under the agents' names, rounds counted from 1.
    let outcome = wait_for_text(&client, "#outcome", "Payout").await;
    let first_row = outcome
        .lines()
        .skip_while(|l| !l.starts_with("Place"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first_row.starts_with("1st") && first_row.contains("Browser Bard"),
        "{outcome}"
    );
    let transcript = wait_for_text(&client, "#transcript", "scored 0.9").await;
    assert!(
        transcript.contains("Round 1")
            && transcript.contains("Browser Bard")
            && !transcript.contains("Entry "),
        "{transcript}"
    );
    shot(&client, "07-match-settled").await;

    // Download the dataset.
    client
        .goto(&format!("{base}/datasets?space=tweet-duel"))
        .await
        .unwrap();
    wait_for_text(&client, "table.preview", "Steam rises").await;
    shot(&client, "08-datasets").await;
    let href = client
        .find(Locator::Id("download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("download link");
    let downloaded = client
        .execute_async(
            "const [url, done] = arguments; fetch(url).then(r => r.text()).then(done);",
            vec![serde_json::json!(href)],
        )
        .await
        .unwrap();
    let text = downloaded.as_str().unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["chosen"], "Steam rises, leaves unfurl.");
    assert_eq!(rows[0]["rejected"], "Tea.");

    client.close().await.unwrap();
    let _ = stop_tx.send(());
    eprintln!("screenshots in {}", screenshots_dir().display());
}
