//! Headless Chromium for the dashboard tests, through chromedriver: start
//! both, run a scenario, take screenshots.
//!
//! The tests need Debian's `chromium` and `chromium-driver` (`.ci/run`
//! installs them); without them they fail and say so, unless
//! `SQREEN_SKIP_BROWSER=1` is set. `SQREEN_CHROMEDRIVER` and
//! `SQREEN_CHROMIUM` override the binaries' paths, and
//! `SQREEN_DASHBOARD_SCREENSHOTS=DIR` saves screenshots there.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{Value, json};

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// chromedriver, stopped (by its own handle) when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_driver(path: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = super::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("{}/status", driver.url))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"] == true);
        if ready {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.display().to_string(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--no-proxy-server", "--window-size=1400,1000",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromedriver session")
}

/// Waits until the browser is on `path` (a path, possibly with a query).
pub async fn wait_path(b: &Browser, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = b.current_url().await.unwrap();
        let here = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if here == path {
            return;
        }
        assert!(Instant::now() < deadline, "on {here}, expected {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// Saves a screenshot as `DIR/name.png` when `SQREEN_DASHBOARD_SCREENSHOTS=DIR`
/// is set, to look at the pages.
pub async fn snap(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("SQREEN_DASHBOARD_SCREENSHOTS") {
        let png = b.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

pub async fn fill(b: &Browser, css: &str, text: &str) {
    let e = b.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Saves a screenshot as `DIR/name.png`, `DIR` being
/// `SQREEN_DASHBOARD_SCREENSHOTS` or else `screenshots` in the target's
/// test directory; returns the file.
pub async fn snap_always(b: &Browser, name: &str) -> PathBuf {
    let dir = screenshot_dir();
    let png = b.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// Where [`snap_always`] writes.
pub fn screenshot_dir() -> PathBuf {
    std::env::var("SQREEN_DASHBOARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
}

/// Runs `scenario` in a fresh headless Chromium and closes it, even when the
/// scenario panics (the panic is then resumed). Without Chromium, fails the
/// test `test` unless `SQREEN_SKIP_BROWSER=1` (then skips it).
pub fn run_in_browser<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce(Browser) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let driver_path = find_binary("SQREEN_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let chromium = find_binary(
        "SQREEN_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let (Some(driver_path), Some(chromium)) = (driver_path, chromium) else {
        if std::env::var("SQREEN_SKIP_BROWSER").as_deref() == Ok("1") {
            super::skip(
                test,
                "chromedriver/chromium not installed (apt-get install -y chromium chromium-driver)",
            );
            return;
        }
        panic!(
            "the dashboard browser tests need Debian's `chromium` and `chromium-driver` packages \
             (apt-get install -y chromium chromium-driver; .ci/run installs them), \
             or set SQREEN_SKIP_BROWSER=1 to skip them"
        );
    };
    let driver = start_driver(&driver_path);
    let profile = std::env::temp_dir().join(format!("sqreen-dashboard-chromium-{}", free_port()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let browser = connect(&driver, &chromium, &profile).await;
        // The scenario runs on its own task so that a failed assertion
        // still lets us close the browser.
        let b = browser.clone();
        let result = tokio::spawn(scenario(b)).await;
        let _ = browser.close().await;
        result
    });
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
