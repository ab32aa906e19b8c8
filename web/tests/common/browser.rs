//! Headless Chromium for the browser tests: chromedriver (Debian's `chromium` and
//! `chromium-driver`) driven with fantoccini, screenshots under the target's test temp
//! folder, bounded waits for text. Without chromedriver a test is skipped with a
//! message, except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};

/// chromedriver, killed when dropped.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The folder screenshots go to (`$CARGO_TARGET_TMPDIR/browser-screenshots`).
pub fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot of the window as `{name}.png`.
pub async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits (bounded by attempts, not time) until `css` holds text containing `needle`.
pub async fn wait_for_text(client: &Client, css: &str, needle: &str) -> String {
    for _ in 0..600 {
        if let Ok(el) = client.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
            && text.contains(needle)
        {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let html = client.source().await.unwrap_or_default();
    panic!("{css} never showed {needle:?}; page:\n{html}");
}

/// Starts chromedriver on a free port; `None` (with a message) when it is missing
/// outside CI.
pub async fn start_driver() -> Option<(Driver, String)> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        if testkit::in_ci() {
            panic!(
                "CI=true and chromedriver is missing: apt-get install -y chromium chromium-driver"
            );
        }
        eprintln!("chromedriver not found; skipping the browser test");
        return None;
    }
    let port = testkit::ports::port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((driver, format!("http://127.0.0.1:{port}")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("chromedriver did not start listening");
}

/// A headless Chromium session `width` pixels wide.
pub async fn chromium(driver_url: &str, width: u32) -> Client {
    let caps = serde_json::json!({
        "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", format!("--window-size={width},1600")]},
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    ClientBuilder::native()
        .capabilities(caps.as_object().unwrap().clone())
        .connect(driver_url)
        .await
        .expect("connect to chromedriver")
}

/// A Chrome DevTools command on the session, through chromedriver.
pub async fn cdp(driver_url: &str, client: &Client, cmd: &str, params: serde_json::Value) {
    let session = client.session_id().await.unwrap().expect("a session");
    let res = reqwest::Client::new()
        .post(format!("{driver_url}/session/{session}/goog/cdp/execute"))
        .json(&serde_json::json!({"cmd": cmd, "params": params}))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "{cmd}: {}",
        res.text().await.unwrap()
    );
}

/// A headless Chromium session whose viewport is exactly `width` CSS pixels, as a
/// phone of that width shows pages (`mobile` below 600 px).
pub async fn chromium_at(driver_url: &str, width: u32) -> Client {
    let client = chromium(driver_url, width.max(500)).await;
    cdp(
        driver_url,
        &client,
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": width, "height": 1200, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    client
}
