//! POSIX behaviour of the mount measured by a standard suite: pjdfstest (the Rust rewrite,
//! crate `pjdfstest`) run against a real `mega-mount` mount for the groups a cloud filesystem
//! should pass — open, mkdir, rmdir, unlink, rename, truncate, ftruncate, utimensat, chmod,
//! symlink — and the name-length cases of every syscall.
//!
//! Each case is checked against `tests/pjdfstest/expected-failures.txt`, which lists the cases
//! that fail by design, grouped by reason (the same reasons are in `doc/SEMANTICS.md`): a case
//! that fails and is not listed fails this test, so a regression cannot hide; a listed case
//! that passes is reported, so the list can shrink.
//!
//! `scripts/test.sh` installs the suite (`cargo install pjdfstest`, which needs `libacl1-dev`)
//! under `target/tools` and sets `MEGA_REQUIRE_PJDFSTEST=1`, so in CI a missing suite fails
//! this test instead of skipping it. The suite must run as root (it switches users).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::Mount;
use common::Env;
use mega_testserver::UserOptions;

/// The groups run (pjdfstest matches a case when its name contains a pattern).
const PATTERNS: &[&str] = &[
    "open::",
    "mkdir::",
    "rmdir::",
    "unlink::",
    "rename::",
    "truncate::",
    "ftruncate::",
    "utimensat::",
    "chmod::",
    "symlink::",
    "enametoolong",
];

/// The whole run may take this long (about 60 s on the project machine).
const TIMEOUT: Duration = Duration::from_secs(600);

fn suite_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PJDFSTEST") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/pjdfstest");
    p.exists().then_some(p)
}

/// The suite's output without its colour codes.
fn plain(out: &str) -> String {
    let mut plain = String::with_capacity(out.len());
    let mut chars = out.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Case name → "ok" / "FAILED" / "skipped", from the suite's output.
fn results(out: &str) -> BTreeMap<String, String> {
    plain(out)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let verdict = words.next_back()?;
            (name.contains("::") && ["ok", "FAILED", "skipped"].contains(&verdict))
                .then(|| (name.to_string(), verdict.to_string()))
        })
        .collect()
}

fn expected_failures() -> BTreeSet<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest/expected-failures.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjdfstest_groups_pass_but_for_the_listed_cases() {
    suite_on_a_mount("pjd@example.com", &[]).await;
}

/// The same with `-o writeback`: closes, `chmod` and `mkdir` return before MEGA has them, and
/// every case sees the same answers (the same list of expected failures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjdfstest_groups_pass_with_write_back_too() {
    suite_on_a_mount("pjdwb@example.com", &["-o", "writeback"]).await;
}

/// Runs the groups against a mount of a new account `email` made with `options`.
async fn suite_on_a_mount(email: &str, options: &[&str]) {
    let Some(suite) = suite_binary() else {
        assert!(
            std::env::var_os("MEGA_REQUIRE_PJDFSTEST").is_none(),
            "pjdfstest is not installed (scripts/test.sh installs it under target/tools)"
        );
        eprintln!("pjdfstest not installed: skipped (scripts/test.sh installs it)");
        return;
    };
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("MEGA_REQUIRE_PJDFSTEST").is_none(),
            "pjdfstest must run as root"
        );
        eprintln!("pjdfstest needs root: skipped");
        return;
    }
    let env = Env::start().await;
    env.user(email, UserOptions::default()).await;
    let m = Mount::start(&env, email, options, true);
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest/pjdfstest.toml");
    let log = env.dir.path().join("pjdfstest.out");
    let mut child = Command::new(&suite)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&m.dir)
        .args(PATTERNS)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pjdfstest did not finish in {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = plain(&std::fs::read_to_string(&log).unwrap());
    let results = results(&out);
    let expected = expected_failures();
    let count = |v: &str| results.values().filter(|r| *r == v).count();
    let regressions: Vec<&String> = results
        .iter()
        .filter(|(name, r)| *r == "FAILED" && !expected.contains(*name))
        .map(|(name, _)| name)
        .collect();
    let now_passing: Vec<&String> = results
        .iter()
        .filter(|(name, r)| *r == "ok" && expected.contains(*name))
        .map(|(name, _)| name)
        .collect();
    eprintln!(
        "pjdfstest: {} passed, {} failed ({} of them listed as expected), {} skipped, {} cases, in {:.0?} (exit {status})",
        count("ok"),
        count("FAILED"),
        count("FAILED") - regressions.len(),
        count("skipped"),
        results.len(),
        started.elapsed()
    );
    if !now_passing.is_empty() {
        eprintln!("listed as expected failures but passed now: {now_passing:?}");
    }
    assert!(results.len() > 200, "the suite ran too few cases:\n{out}");
    // What the suite said about each regression: its line and the two after it.
    let lines: Vec<&str> = out.lines().collect();
    let detail: Vec<String> = regressions
        .iter()
        .filter_map(|name| {
            let at = lines
                .iter()
                .position(|l| l.split_whitespace().next() == Some(name.as_str()))?;
            Some(lines[at..lines.len().min(at + 3)].join("\n"))
        })
        .collect();
    assert!(
        regressions.is_empty(),
        "pjdfstest cases failed that are not expected to: {regressions:?}\n{}",
        detail.join("\n")
    );
    drop(m);
}
