//! The `sqreen-server` binary: flags, environment, the generated admin key
//! and `app create`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` with `args`; returns the process and its stdout lines up
/// to and including the `listening on` line.
fn serve(args: &[&str], env: &[(&str, &str)]) -> (Killed, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqreen-server"));
    cmd.arg("serve")
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("listening on ");
            lines.push(line);
            if done {
                let _ = tx.send(lines.clone());
            }
        }
    });
    let lines = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server starts");
    (Killed(child), lines)
}

fn url_of(lines: &[String]) -> String {
    lines
        .last()
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned()
}

/// Without `--admin-key`, a key is generated, printed once, and works
/// across restarts; with one, that key is the only one accepted.
#[test]
fn admin_key_generated_once() {
    let db = sqlite_url();
    let (first, lines) = serve(&["--database", &db], &[]);
    let key = lines
        .iter()
        .find_map(|l| l.split("stored): ").nth(1))
        .expect("the generated key is printed")
        .to_owned();
    assert!(key.starts_with("sqk_"));
    let http = client();
    let apps = |url: &str, key: &str| {
        http.get(format!("{url}/api/apps"))
            .bearer_auth(key)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(apps(&url_of(&lines), &key), 200);
    drop(first);

    let (_second, lines) = serve(&["--database", &db], &[]);
    assert_eq!(lines.len(), 1, "no key printed the second time: {lines:?}");
    assert_eq!(apps(&url_of(&lines), &key), 200);
    assert_eq!(apps(&url_of(&lines), "sqk_wrong"), 401);

    let from_env = "from-env-0123456789abcdefghijklmnop";
    let (_third, lines) = serve(
        &["--database", &db],
        &[("SQREEN_SERVER_ADMIN_KEY", from_env)],
    );
    assert_eq!(apps(&url_of(&lines), from_env), 200);
    assert_eq!(apps(&url_of(&lines), &key), 401);

    let file = std::env::temp_dir().join(format!("admin-key-{}", std::process::id()));
    let from_file = "from-file-0123456789abcdefghijklmnop";
    std::fs::write(&file, format!("{from_file}\n")).unwrap();
    let (_fourth, lines) = serve(
        &[
            "--database",
            &db,
            "--admin-key-file",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(apps(&url_of(&lines), from_file), 200);
    assert_eq!(apps(&url_of(&lines), from_env), 401);
    let _ = std::fs::remove_file(file);
}

/// An admin key shorter than 32 characters is refused at start, with a
/// message that says why; the database file and the session key file
/// beside it are created readable by their owner only.
#[test]
fn short_admin_keys_are_refused_and_files_are_private() {
    let db = sqlite_url();
    let out = Command::new(env!("CARGO_BIN_EXE_sqreen-server"))
        .args(["serve", "--addr", "127.0.0.1:0", "--database", &db])
        .env("SQREEN_SERVER_ADMIN_KEY", "short-key")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32 characters"), "{stderr}");

    let (_server, _) = serve(&["--database", &db], &[]);
    let path = db.strip_prefix("sqlite://").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [path.to_owned(), format!("{path}.session-key")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }
}

/// `app create` prints the token as its last line; that token logs in,
/// and the login answer carries `--heartbeat-delay`.
#[test]
fn app_create_prints_a_working_token() {
    let db = sqlite_url();
    let out = Command::new(env!("CARGO_BIN_EXE_sqreen-server"))
        .args(["app", "create", "cli-app", "--database", &db])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let again = Command::new(env!("CARGO_BIN_EXE_sqreen-server"))
        .args(["app", "create", "cli-app"])
        .env("SQREEN_SERVER_DATABASE", &db)
        .output()
        .unwrap();
    assert!(!again.status.success(), "names are unique");

    let (_server, lines) = serve(&["--database", &db, "--heartbeat-delay", "7"], &[]);
    let (_agent, answer) = FakeAgent::login(&url_of(&lines), &token);
    assert_eq!(answer["features"]["heartbeat_delay"], 7);
}

/// Bad flags are refused before anything starts.
#[test]
fn bad_flags_are_refused() {
    for args in [
        vec!["serve", "--heartbeat-delay", "0"],
        vec![
            "serve",
            "--database",
            "mysql://x/y",
            "--addr",
            "127.0.0.1:0",
        ],
        vec!["serve", "--addr", "not-an-address"],
        vec!["app", "create"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sqreen-server"))
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
    }
}

/// Runs `sqreen-server ARGS`; returns whether it succeeded and its stdout.
fn run(args: &[&str]) -> (bool, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqreen-server"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.success(), lines)
}

fn login_status(url: &str, token: &str) -> u16 {
    client()
        .post(format!("{url}/sqreen/v1/app-login"))
        .header("X-Api-Key", token)
        .json(&serde_json::json!({"agent_type": "rust"}))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// `app rotate-token` prints a new token as its last line: the old one and
/// its sessions stop working in the running server; `app delete` (by name
/// or id) ends the new one too; unknown apps are errors.
#[test]
fn app_rotate_token_and_delete() {
    let db = sqlite_url();
    let (ok, lines) = run(&["app", "create", "cli-app", "--database", &db]);
    assert!(ok);
    let old = lines.last().unwrap().clone();
    let (ok, lines) = run(&["app", "create", "kept", "--database", &db]);
    assert!(ok);
    let kept = lines.last().unwrap().clone();
    let (_server, lines) = serve(
        &["--database", &db],
        &[("SQREEN_SERVER_ADMIN_KEY", ADMIN_KEY)],
    );
    let url = url_of(&lines);
    let (agent, _) = FakeAgent::login(&url, &old);

    let (ok, lines) = run(&["app", "rotate-token", "cli-app", "--database", &db]);
    assert!(ok, "{lines:?}");
    let new = lines.last().unwrap().clone();
    assert!(new.starts_with("sqa_") && new != old, "{lines:?}");
    assert_eq!(login_status(&url, &old), 401);
    assert_eq!(agent.post_raw("/sqreen/v1/app-beat", "{}").status(), 401);
    assert_eq!(login_status(&url, &new), 200);

    let http = client();
    let id = http
        .get(format!("{url}/api/apps"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap()["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "cli-app")
        .unwrap()["id"]
        .to_string();
    let (new_agent, _) = FakeAgent::login(&url, &new);
    let (ok, lines) = run(&["app", "delete", &id, "--database", &db]);
    assert!(ok, "{lines:?}");
    assert!(
        lines.last().unwrap().starts_with("deleted app \"cli-app\""),
        "{lines:?}"
    );
    assert_eq!(login_status(&url, &new), 401);
    assert_eq!(
        new_agent.post_raw("/sqreen/v1/app-beat", "{}").status(),
        401
    );
    assert_eq!(login_status(&url, &kept), 200, "other apps are kept");

    for args in [
        ["app", "delete", "cli-app"],
        ["app", "rotate-token", "cli-app"],
        ["app", "delete", "no-such-app"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--database", db.as_str()]);
        let (ok, _) = run(&args);
        assert!(!ok, "{args:?}");
    }
    let (ok, _) = run(&["app", "delete", "kept", "--database", &db]);
    assert!(ok, "by name");
    assert_eq!(login_status(&url, &kept), 401);
}
