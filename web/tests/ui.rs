//! The web UI as a new player meets it, in headless Chromium at desktop (1400 px) and
//! phone (390 px) widths: the home page's explanation and guided first run (sign in,
//! an agent from a template, a free Space, the first match), the Space's leaderboard
//! with its explained rating and rank ranges, a finished match sorted by place, the
//! datasets page (counts, dataset card, snippets, a download that follows the filters
//! without Preview), the account page, a blind vote on someone else's round (names
//! revealed after it, counted in the votes dataset and the panel's agreement), and the
//! studio's auto-entry and archiving. On every page: no horizontal scrolling, no
//! console error, and axe-core (npm, pinned in `web/tests/axe`) finds no serious or
//! critical accessibility violation; the keyboard reaches a skip link first.
//! Screenshots go under `$CARGO_TARGET_TMPDIR/browser-screenshots/ui-*`.
//!
//! Without chromedriver, or without npm to install axe-core, the test is skipped with
//! a message, except under `CI=true`, where it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::browser::{chromium_at, shot, start_driver, wait_for_text};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use testkit::db::TestDb;

/// axe-core's browser build, installed by `npm ci` in `web/tests/axe` when missing.
fn axe_source() -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/axe");
    let file = dir.join("node_modules/axe-core/axe.min.js");
    if !file.exists() {
        let npm = std::env::var_os("RLFC_NPM").unwrap_or_else(|| "npm".into());
        let ran = Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status();
        if !matches!(ran, Ok(s) if s.success()) {
            if testkit::in_ci() {
                panic!("CI=true and `npm ci` in {} failed: {ran:?}", dir.display());
            }
            eprintln!("no axe-core (npm ci failed: {ran:?}); skipping the UI test");
            return None;
        }
    }
    Some(std::fs::read_to_string(file).expect("read axe.min.js"))
}

/// Severe browser console entries since the last call (chromedriver's log endpoint).
async fn console_errors(driver_url: &str, client: &Client) -> Vec<String> {
    let session = client.session_id().await.unwrap().expect("a session");
    let res: Value = reqwest::Client::new()
        .post(format!("{driver_url}/session/{session}/se/log"))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["value"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every check a page must pass, then its screenshot.
async fn check_page(client: &Client, driver_url: &str, axe: &str, width: u32, name: &str) {
    shot(client, &format!("ui-{width}-{name}")).await;
    let sizes = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, inner) = (sizes[0].as_i64().unwrap(), sizes[1].as_i64().unwrap());
    let wide = if scroll > inner {
        client
            .execute(
                "return [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1
                     && e.parentElement.getBoundingClientRect().right <= window.innerWidth + 1)
                   .slice(0, 8).map((e) => `${e.tagName}.${e.className}#${e.id} ${Math.round(e.getBoundingClientRect().right)}`);",
                vec![],
            )
            .await
            .unwrap()
    } else {
        Value::Null
    };
    assert!(
        scroll <= inner,
        "{name} at {width} px scrolls sideways: {scroll} px of content in {inner} px: {wide}"
    );
    client
        .execute(&format!("{axe}\nreturn null;"), vec![])
        .await
        .unwrap();
    let found = client
        .execute_async(
            "const done = arguments[0];
             axe.run(document, {resultTypes: ['violations']}).then((r) => done(
               r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
                 .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)));",
            vec![],
        )
        .await
        .unwrap();
    let found: Vec<String> = serde_json::from_value(found).unwrap();
    assert!(
        found.is_empty(),
        "{name} at {width} px: axe-core found\n{}",
        found.join("\n")
    );
    let errors = console_errors(driver_url, client).await;
    assert!(
        errors.is_empty(),
        "{name} at {width} px logged errors: {errors:?}"
    );
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn has_class(client: &Client, css: &str, class: &str) -> bool {
    let el = client.find(Locator::Css(css)).await.unwrap();
    el.attr("class")
        .await
        .unwrap()
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == class)
}

async fn first_run_at(driver_url: &str, axe: &str, width: u32) {
    let app = common::TestApp::new(TestDb::sqlite().await).await;
    web::sync_spaces(app.store(), &common::rulebooks())
        .await
        .unwrap();
    let played = testkit::fixtures::played_match(app.store(), 3).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(web::serve(listener, app.state.clone(), async move {
        let _ = stop_rx.await;
    }));
    let client = chromium_at(driver_url, width).await;

    // A visitor: what this is, and the first step.
    client.goto(&format!("{base}/")).await.unwrap();
    let intro = wait_for_text(&client, ".intro", "compete").await;
    assert!(
        intro.contains("judges") && intro.contains("train"),
        "{intro}"
    );
    assert!(!has_class(&client, "#step-signin", "done").await);
    check_page(&client, driver_url, axe, width, "home-visitor").await;
    // The keyboard's first stop is the skip link, which lands in the content.
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = client
        .execute("return document.activeElement.className;", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "skip");

    // Step 1: sign in (the dev login of the demo).
    click(&client, "#dev-login").await;
    wait_for_text(&client, "header nav", "Sign out").await;
    assert!(has_class(&client, "#step-signin", "done").await);
    // Step 2: an agent from a template.
    click(&client, "#step-agent a.button").await;
    wait_for_text(&client, "#templates-title", "template").await;
    let name = client
        .find(Locator::Css("#agent-form input[name=name]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(name, "Quiet Poet", "the template fills in the name");
    let prompt = client
        .find(Locator::Css("#agent-form textarea[name=system_prompt]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(prompt.starts_with("You are a poet."), "{prompt}");
    check_page(&client, driver_url, axe, width, "agent-new").await;
    client
        .form(Locator::Id("agent-form"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    wait_for_text(&client, "h1", "Quiet Poet").await;
    check_page(&client, driver_url, axe, width, "agent").await;
    // Step 3: a free Space.
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(has_class(&client, "#step-agent", "done").await);
    click(&client, "#step-enter a.button").await;
    wait_for_text(&client, "#enter", "Enter").await;
    client
        .form(Locator::Id("enter-form"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    wait_for_text(&client, "main", "queued").await;
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(has_class(&client, "#step-enter", "done").await);
    wait_for_text(&client, "#step-watch", "Waiting for rivals").await;
    check_page(&client, driver_url, axe, width, "home-entered").await;

    // The leaderboard of the Space the fixture match was played in.
    client
        .goto(&format!("{base}/spaces/tweet-duel"))
        .await
        .unwrap();
    let board = wait_for_text(&client, "main", "Likely rank").await;
    assert!(board.contains("How to read this"), "{board}");
    check_page(&client, driver_url, axe, width, "space").await;

    // A finished match: places best first, named seats, rounds from 1.
    client
        .goto(&format!("{base}/matches/{}", played.match_id))
        .await
        .unwrap();
    let outcome = wait_for_text(&client, "#outcome", "Payout").await;
    let places: Vec<&str> = outcome
        .lines()
        .skip_while(|l| !l.starts_with("Place"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .take(3)
        .collect();
    assert_eq!(places, ["1st", "2nd", "3rd"], "{outcome}");
    check_page(&client, driver_url, axe, width, "match").await;
    // The replay plays the stored transcript back: answers typed out, then scores.
    click(&client, "#replay").await;
    wait_for_text(&client, "#replay-progress", "Replay finished").await;
    let replayed = wait_for_text(&client, "#replay-seats", "Tea, take 0.").await;
    assert!(
        replayed.contains("agent 2") && replayed.contains("llm"),
        "{replayed}"
    );
    shot(&client, &format!("ui-{width}-match-replayed")).await;

    // Datasets: counts, the card, snippets, and a download that follows the filters.
    client.goto(&format!("{base}/datasets")).await.unwrap();
    let counts = wait_for_text(&client, "#counts", "tweet-duel").await;
    let pairs = played.pair_ids.len();
    assert!(counts.contains(&format!("tweet-duel {pairs}")), "{counts}");
    wait_for_text(&client, "#dataset-card", "judge_agreement").await;
    wait_for_text(&client, "#snippet-python", "load_dataset(\"json\"").await;
    check_page(&client, driver_url, axe, width, "datasets").await;
    client
        .execute(
            "const f = document.getElementById('dataset-form');
             f.querySelector('select[name=space]').value = 'tweet-duel';
             f.querySelector('input[name=complete_only]').checked = true;
             f.dispatchEvent(new Event('change'));
             return null;",
            vec![],
        )
        .await
        .unwrap();
    let link = client.find(Locator::Id("download")).await.unwrap();
    let href = link.attr("href").await.unwrap().unwrap_or_default();
    let file = link.attr("download").await.unwrap().unwrap_or_default();
    assert!(
        href.contains("space=tweet-duel") && href.contains("complete_only=true"),
        "{href}"
    );
    assert_eq!(file, "rlfc-preferences-tweet-duel-complete-trl.jsonl");
    let curl = wait_for_text(&client, "#snippet-curl", "space=tweet-duel").await;
    assert!(curl.contains(&file), "{curl}");
    let body = client
        .execute_async(
            "const [url, done] = arguments; fetch(url).then(async (r) => done([r.headers.get('content-disposition'), await r.text()]));",
            vec![json!(href)],
        )
        .await
        .unwrap();
    assert_eq!(
        body[0],
        format!("attachment; filename=\"{file}\""),
        "the server names the file the same way"
    );
    assert_eq!(body[1].as_str().unwrap().lines().count(), pairs);

    client.goto(&format!("{base}/account")).await.unwrap();
    wait_for_text(&client, "#available", "ETH").await;
    check_page(&client, driver_url, axe, width, "account").await;

    // A blind vote on someone else's match: no names until the vote.
    client.goto(&format!("{base}/vote")).await.unwrap();
    let offer = wait_for_text(&client, "#vote-offer", "is better").await;
    assert!(offer.contains("Write a tweet about tea."), "{offer}");
    assert!(
        !offer.contains("agent 0") && !offer.contains("agent 1"),
        "{offer}"
    );
    check_page(&client, driver_url, axe, width, "vote").await;
    client
        .form(Locator::Id("answer-1"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    let result = wait_for_text(&client, "#vote-result", "You preferred").await;
    assert!(
        result.contains("agent "),
        "names revealed after the vote: {result}"
    );
    assert!(
        result.contains("agreed") || result.contains("chose the other"),
        "{result}"
    );
    check_page(&client, driver_url, axe, width, "vote-result").await;
    client.goto(&format!("{base}/vote")).await.unwrap();
    wait_for_text(&client, "#vote-none", "Nothing left").await;
    client.goto(&format!("{base}/datasets")).await.unwrap();
    wait_for_text(&client, "#vote-agreement", "tweet-duel 1").await;
    let votes = client
        .execute_async(
            "const done = arguments[0]; fetch('/api/v1/datasets/human-votes').then((r) => r.text()).then(done);",
            vec![],
        )
        .await
        .unwrap();
    let lines: Vec<Value> = votes
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["prompt"], "Write a tweet about tea.");

    // The studio: auto-entry per tier with its cap and spending, then archiving,
    // which asks first and leaves the page read-only.
    let agent_url = {
        client.goto(&format!("{base}/account")).await.unwrap();
        let link = client
            .find(Locator::LinkText("Quiet Poet"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        format!("{base}{link}")
    };
    client.goto(&agent_url).await.unwrap();
    let paid_row = "#auto-entry-table tr:nth-child(2) form";
    let row = client.form(Locator::Css(paid_row)).await.unwrap();
    row.set_by_name("cap_eth", "0.05").await.unwrap();
    client
        .execute(
            &format!("document.querySelector('{paid_row} input[name=enabled]').checked = true; return null;"),
            vec![],
        )
        .await
        .unwrap();
    row.submit().await.unwrap();
    let table = wait_for_text(&client, "#auto-entry-table", "0.05 ETH").await;
    assert!(table.contains("0 ETH of 0.05 ETH"), "{table}");
    check_page(&client, driver_url, axe, width, "studio-auto-entry").await;
    // The page asks before archiving: answering no keeps the agent, yes archives it.
    client
        .execute(
            "window.asked = null; window.confirm = (m) => { window.asked = m; return false; }; return null;",
            vec![],
        )
        .await
        .unwrap();
    click(&client, "#archive-form button").await;
    // (A tap on a phone reaches the page a moment after the driver returns.)
    let mut asked = Value::Null;
    for _ in 0..40 {
        asked = client
            .execute("return window.asked;", vec![])
            .await
            .unwrap();
        if !asked.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        asked
            .as_str()
            .is_some_and(|m| m.contains("cannot be undone")),
        "{asked:?}"
    );
    assert!(client.find(Locator::Id("agent-form")).await.is_ok());
    client
        .execute("window.confirm = () => true; return null;", vec![])
        .await
        .unwrap();
    click(&client, "#archive-form button").await;
    wait_for_text(&client, "#archived-note", "archived").await;
    assert!(client.find(Locator::Id("agent-form")).await.is_err());

    client.close().await.unwrap();
    let _ = stop_tx.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_player_s_first_run_at_desktop_and_phone_widths() {
    let Some((_driver, driver_url)) = start_driver().await else {
        return;
    };
    let Some(axe) = axe_source() else {
        return;
    };
    for width in [1400, 390] {
        first_run_at(&driver_url, &axe, width).await;
    }
}
