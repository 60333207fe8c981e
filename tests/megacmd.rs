//! The `megacmd` binary against mega-testserver: every command and option, folder-tree round
//! trips, sync, public links, each error case with its exit code, and transfers that survive
//! injected faults. Every invocation has a timeout.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{data, Env, PASSWORD};
use mega_testserver::{FaultConfig, UserOptions};

use common::megacmd::{Cmd, BIN};

async fn account(env: &Env, email: &str) {
    env.user(email, UserOptions::default()).await;
}

fn write(path: &Path, bytes: &[u8], mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime as u64))
        .unwrap();
}

fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A local tree with sizes from 0 B to 20 MiB, nesting and unicode names.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>, i64)> {
    let files = vec![
        ("empty.bin".to_string(), Vec::new(), 1_500_000_001),
        ("one.txt".into(), b"1".to_vec(), 1_500_000_002),
        ("a/b/c/deep.bin".into(), data(131_073, 1), 1_500_000_003),
        (
            "ünïcødé/ファイル.txt".into(),
            "héllo wörld".as_bytes().to_vec(),
            1_500_000_004,
        ),
        ("a/mid.bin".into(), data(1_500_000, 2), 1_500_000_005),
        (
            "big/twenty.bin".into(),
            data(20 * 1024 * 1024, 3),
            1_500_000_006,
        ),
    ];
    for (p, d, m) in &files {
        write(&root.join(p), d, *m);
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_tree_round_trip_with_put_and_get() {
    let env = Env::start().await;
    account(&env, "rt@example.com").await;
    let m = Cmd::new(&env, "rt@example.com");
    let src = env.dir.path().join("src");
    let files = make_tree(&src);
    let o = m
        .ok(&["put", "--recursive", "--json", &s(&src), "mega:/up/"])
        .await;
    assert_eq!(o.json()["files"], serde_json::json!(files.len()));

    let listing = m
        .ok(&["list", "--recursive", "--json", "mega:/up/src"])
        .await
        .json();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for (p, d, mt) in &files {
        let path = format!("mega:/up/src/{p}");
        let e = listing
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path.as_str())
            .unwrap_or_else(|| panic!("{path} not in {names:?}"));
        assert_eq!(e["size"], serde_json::json!(d.len()));
        assert_eq!(e["mtime"], serde_json::json!(mt), "mtime kept for {p}");
    }
    // Text listing: s3cmd-like columns.
    let text = m.ok(&["ls", "mega:/up/src/"]).await.stdout;
    assert!(text.contains("DIR  mega:/up/src/a/"), "{text}");
    assert!(text.contains("1  mega:/up/src/one.txt"), "{text}");

    let out = env.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    m.ok(&["get", "-r", "mega:/up/src", &s(&out)]).await;
    for (p, d, mt) in &files {
        let got = out.join("src").join(p);
        assert!(std::fs::read(&got).unwrap() == *d, "{p} differs");
        assert_eq!(mtime(&got), *mt, "mtime of {p}");
    }
    // No partial files are left anywhere.
    let leftovers: Vec<_> = walk_names(&out)
        .into_iter()
        .filter(|n| n.contains(".megacmd-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_files_globs_cat_tree_mkdir_move_delete() {
    let env = Env::start().await;
    account(&env, "ops@example.com").await;
    let m = Cmd::new(&env, "ops@example.com");
    let dir = env.dir.path().join("w");
    write(&dir.join("hello.txt"), b"hello", 1_234_567_890);
    write(&dir.join("notes.md"), b"# notes", 1_234_567_891);

    m.ok(&["mkdir", "mega:/foo/bar"]).await; // parents too
    m.fails(&["mkdir", "mega:/foo/bar"], 6).await;
    m.ok(&["mkdir", "--force", "mega:/foo/bar"]).await;
    m.ok(&["put", &s(&dir.join("hello.txt")), "mega:/foo/"])
        .await;
    m.ok(&["put", &s(&dir.join("notes.md")), "mega:/foo/renamed.md"])
        .await;
    m.fails(&["put", &s(&dir.join("hello.txt")), "mega:/foo/"], 6)
        .await;
    write(&dir.join("hello.txt"), b"hello again", 1_234_567_999);
    m.ok(&["put", "--force", &s(&dir.join("hello.txt")), "mega:/foo/"])
        .await;
    assert_eq!(
        m.ok(&["cat", "mega:/foo/hello.txt"]).await.stdout,
        "hello again"
    );
    // The replaced content is the file's previous version, not in the Rubbish Bin.
    let rubbish = m.ok(&["ls", "mega://Rubbish/"]).await.stdout;
    assert!(!rubbish.contains("hello.txt"), "{rubbish}");
    let listed = m
        .ok(&["ls", "--versions", "mega:/foo/hello.txt"])
        .await
        .stdout;
    assert!(listed.contains("(version 1)"), "{listed}");

    let tree = m.ok(&["tree", "mega:/foo"]).await.stdout;
    assert!(
        tree.contains("├── bar/") && tree.contains("hello.txt") && tree.contains("└── "),
        "{tree}"
    );

    // get: into a folder (trailing slash), to a name, globs.
    let out = env.dir.path().join("dl");
    std::fs::create_dir_all(&out).unwrap();
    m.ok(&["get", "mega:/foo/hello.txt", &format!("{}/", s(&out))])
        .await;
    assert_eq!(
        std::fs::read(out.join("hello.txt")).unwrap(),
        b"hello again"
    );
    assert_eq!(mtime(&out.join("hello.txt")), 1_234_567_999);
    m.fails(&["get", "mega:/foo/hello.txt", &s(&out)], 6).await;
    m.ok(&["get", "--force", "mega:/foo/hello.txt", &s(&out)])
        .await;
    m.ok(&["get", "mega:/foo/renamed.md", &s(&out.join("x.md"))])
        .await;
    assert_eq!(std::fs::read(out.join("x.md")).unwrap(), b"# notes");
    let globbed = env.dir.path().join("glob");
    std::fs::create_dir_all(&globbed).unwrap();
    m.ok(&["get", "mega:/foo/*.md", &s(&globbed)]).await;
    assert_eq!(walk_names(&globbed), vec!["renamed.md".to_string()]);
    m.fails(&["get", "mega:/foo/*.nothing", &s(&globbed)], 5)
        .await;
    m.fails(&["get", "mega:/foo/bar", &s(&globbed)], 2).await; // a folder needs -r

    // move: rename, into a folder, over an existing file only with --force.
    m.ok(&["mv", "mega:/foo/renamed.md", "mega:/foo/bar/"])
        .await;
    m.ok(&["move", "mega:/foo/bar/renamed.md", "mega:/foo/bar/final.md"])
        .await;
    assert_eq!(
        m.ok(&["cat", "mega:/foo/bar/final.md"]).await.stdout,
        "# notes"
    );
    m.fails(&["mv", "mega:/foo/hello.txt", "mega:/foo/bar/final.md"], 6)
        .await;
    m.ok(&[
        "mv",
        "--force",
        "mega:/foo/hello.txt",
        "mega:/foo/bar/final.md",
    ])
    .await;
    assert_eq!(
        m.ok(&["cat", "mega:/foo/bar/final.md"]).await.stdout,
        "hello again"
    );
    m.fails(&["mv", "mega:/nope", "mega:/foo/"], 5).await;

    // delete: to the Rubbish Bin, then for good; deleting a non-empty folder for good needs -r.
    m.fails(&["rm", "--force", "mega:/foo/bar"], 2).await;
    m.ok(&["rm", "mega:/foo/bar/final.md"]).await;
    assert!(m
        .ok(&["ls", "mega://Rubbish/"])
        .await
        .stdout
        .contains("final.md"));
    m.ok(&["delete", "--recursive", "mega:/foo"]).await;
    m.fails(&["ls", "mega:/foo"], 5).await;
    // Two files called final.md are in the Rubbish Bin now; a glob deletes both for good.
    m.ok(&["rm", "--force", "mega://Rubbish/final*"]).await;
    assert!(!m
        .ok(&["ls", "mega://Rubbish/"])
        .await
        .stdout
        .contains("final.md"));
    m.fails(&["cat", "mega:/missing.txt"], 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_both_ways_twice_delete_and_dry_run() {
    let env = Env::start().await;
    account(&env, "sync@example.com").await;
    let m = Cmd::new(&env, "sync@example.com");
    let local = env.dir.path().join("local");
    write(&local.join("a.txt"), b"aaa", 1_600_000_000);
    write(&local.join("sub/b.bin"), &data(300_000, 1), 1_600_000_001);
    write(&local.join("sub/deeper/c.txt"), b"c", 1_600_000_002);

    let first = m
        .ok(&["sync", "--json", &s(&local), "mega:/backup"])
        .await
        .json();
    assert_eq!(first["files"], serde_json::json!(3), "{first}");
    let second = m
        .ok(&["sync", "--json", &s(&local), "mega:/backup"])
        .await
        .json();
    assert_eq!(
        second["files"],
        serde_json::json!(0),
        "second run transfers nothing: {second}"
    );
    assert_eq!(second["unchanged"], serde_json::json!(3));

    // Remote to local, twice.
    let copy = env.dir.path().join("copy");
    let down = m
        .ok(&["sync", "--json", "mega:/backup/", &s(&copy)])
        .await
        .json();
    assert_eq!(down["files"], serde_json::json!(3));
    assert_eq!(
        std::fs::read(copy.join("sub/b.bin")).unwrap(),
        data(300_000, 1)
    );
    assert_eq!(mtime(&copy.join("sub/deeper/c.txt")), 1_600_000_002);
    let again = m
        .ok(&["sync", "--json", "mega:/backup/", &s(&copy)])
        .await
        .json();
    assert_eq!(again["files"], serde_json::json!(0), "{again}");

    // A change and an extra file.
    write(&local.join("a.txt"), b"AAAA", 1_600_000_100);
    std::fs::remove_file(local.join("sub/deeper/c.txt")).unwrap();
    // Dry run: prints the plan, changes nothing.
    let plan = m
        .ok(&["sync", "--dry-run", "--delete", &s(&local), "mega:/backup"])
        .await
        .stdout;
    assert!(plan.contains("update ") && plan.contains("a.txt"), "{plan}");
    assert!(
        plan.contains("delete mega:/backup/sub/deeper/c.txt"),
        "{plan}"
    );
    assert_eq!(m.ok(&["cat", "mega:/backup/a.txt"]).await.stdout, "aaa");
    // Without --delete the extra remote file stays.
    m.ok(&["sync", &s(&local), "mega:/backup"]).await;
    assert_eq!(m.ok(&["cat", "mega:/backup/a.txt"]).await.stdout, "AAAA");
    m.ok(&["cat", "mega:/backup/sub/deeper/c.txt"]).await;
    let del = m
        .ok(&["sync", "--delete", "--json", &s(&local), "mega:/backup"])
        .await
        .json();
    assert_eq!(del["deleted"], serde_json::json!(1), "{del}");
    m.fails(&["cat", "mega:/backup/sub/deeper/c.txt"], 5).await;

    // --ignore-same-size: same size, different mtime counts as the same.
    write(&local.join("a.txt"), b"BBBB", 1_700_000_000);
    let same = m
        .ok(&[
            "sync",
            "--ignore-same-size",
            "--json",
            &s(&local),
            "mega:/backup",
        ])
        .await
        .json();
    assert_eq!(same["files"], serde_json::json!(0), "{same}");
    // Remote to local with --delete removes local extras.
    write(&copy.join("stray.txt"), b"x", 1);
    m.ok(&["sync", "--delete", "mega:/backup", &s(&copy)]).await;
    assert!(!copy.join("stray.txt").exists());
    assert_eq!(std::fs::read(copy.join("a.txt")).unwrap(), b"AAAA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_session_logout_whoami_df_and_permissions() {
    let env = Env::start().await;
    account(&env, "li@example.com").await;
    let m = Cmd::new(&env, "li@example.com");
    m.ok(&["login"]).await;
    let session = m.home.join("config/megacmd/session.json");
    assert_eq!(
        std::fs::metadata(&session).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read_to_string(&session)
        .unwrap()
        .contains(PASSWORD));
    // Later commands need no password.
    let bare = Cmd {
        email: None,
        password: false,
        ..Cmd::new(&env, "li@example.com")
    };
    let who = bare.ok(&["whoami", "--json"]).await.json();
    assert_eq!(who["email"], "li@example.com");
    let df = bare.ok(&["df", "--json"]).await.json();
    assert!(df["total"].as_u64().unwrap() > 0);
    assert!(
        df["transfer_max"].as_u64().unwrap() > 0,
        "no transfer quota here: {df}"
    );
    assert!(bare.ok(&["quota"]).await.stdout.contains("used "));
    // A session file others can read is refused.
    std::fs::set_permissions(&session, std::fs::Permissions::from_mode(0o644)).unwrap();
    bare.fails(&["whoami"], 10).await;
    std::fs::set_permissions(&session, std::fs::Permissions::from_mode(0o600)).unwrap();
    bare.ok(&["logout"]).await;
    assert!(!session.exists());
    bare.fails(&["whoami"], 3).await;
    // A config file with a password must be private too; --conf points at it.
    let conf = m.home.join("my.toml");
    std::fs::write(
        &conf,
        format!("email = \"li@example.com\"\npassword = \"{PASSWORD}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    bare.fails(&["--conf", &s(&conf), "whoami"], 10).await;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    bare.ok(&["--conf", &s(&conf), "whoami"]).await;
    // Version and per-command help.
    assert!(bare.ok(&["--version"]).await.stdout.contains("megacmd"));
    for c in [
        "list", "get", "put", "delete", "mkdir", "move", "sync", "login", "logout", "whoami", "df",
        "link", "tree", "cat",
    ] {
        assert!(
            bare.ok(&[c, "--help"]).await.stdout.contains("Usage"),
            "{c} --help"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_links_and_error_exit_codes() {
    let env = Env::start().await;
    account(&env, "pl@example.com").await;
    env.user(
        "mfa@example.com",
        UserOptions {
            totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
            ..Default::default()
        },
    )
    .await;
    env.user(
        "small@example.com",
        UserOptions {
            quota: 1000,
            ..Default::default()
        },
    )
    .await;
    let m = Cmd::new(&env, "pl@example.com");
    let f = env.dir.path().join("f.bin");
    write(&f, &data(200_000, 7), 1_555_555_555);
    m.ok(&["put", &s(&f), "mega:/"]).await;
    let link = m
        .ok(&["link", "mega:/f.bin"])
        .await
        .stdout
        .trim()
        .to_string();
    assert!(link.starts_with("https://mega.nz/file/"), "{link}");
    // Anyone can fetch it: no credentials, no session.
    let anon = Cmd {
        email: None,
        password: false,
        ..Cmd::new(&env, "anon")
    };
    let out = env.dir.path().join("pub");
    std::fs::create_dir_all(&out).unwrap();
    anon.ok(&["get", &link, &format!("{}/", s(&out))]).await;
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), data(200_000, 7));
    // Folder links with -r.
    m.ok(&["mkdir", "mega:/shared/inner"]).await;
    m.ok(&["put", &s(&f), "mega:/shared/inner/"]).await;
    let flink = m
        .ok(&["link", "mega:/shared"])
        .await
        .stdout
        .trim()
        .to_string();
    assert!(flink.starts_with("https://mega.nz/folder/"), "{flink}");
    anon.fails(&["get", &flink, &s(&out)], 2).await;
    anon.ok(&["get", "-r", &flink, &s(&out)]).await;
    assert_eq!(
        std::fs::read(out.join("shared/inner/f.bin")).unwrap(),
        data(200_000, 7)
    );

    // Wrong password: 3. Not logged in at all: 3.
    let wrong = Cmd {
        password: false,
        ..Cmd::in_home(&env, "pl@example.com", "home-fresh")
    };
    let mut c = wrong.run(&["whoami"]).await;
    assert_eq!(c.code, 3, "{}", c.stderr);
    let conf = wrong.home.join("bad.toml");
    std::fs::write(&conf, "password = \"nope\"\n").unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    c = wrong.fails(&["--conf", &s(&conf), "whoami"], 3).await;
    assert!(
        c.stderr.contains("wrong e-mail or password"),
        "{}",
        c.stderr
    );
    // A blocked account: 3, with the reason the service gives.
    env.user(
        "blocked@example.com",
        UserOptions {
            blocked: 700,
            ..Default::default()
        },
    )
    .await;
    c = Cmd::new(&env, "blocked@example.com")
        .fails(&["ls", "mega:/"], 3)
        .await;
    assert!(
        c.stderr.contains("blocked") && c.stderr.contains("e-mail address is verified"),
        "{}",
        c.stderr
    );
    // 2FA needed: 4.
    Cmd::new(&env, "mfa@example.com")
        .fails(&["whoami"], 4)
        .await;
    // Quota: 7.
    Cmd::new(&env, "small@example.com")
        .fails(&["put", &s(&f), "mega:/"], 7)
        .await;
    // Usage: 2.
    m.fails(&["get", "/not/remote", "/tmp"], 2).await;
    // Integrity: 9, and nothing under the final name.
    env.server.faults().update(|f| f.corrupt_downloads = true);
    let bad = env.dir.path().join("bad.bin");
    m.fails(&["get", "mega:/f.bin", &s(&bad)], 9).await;
    assert!(!bad.exists());
    assert!(walk_names(env.dir.path())
        .iter()
        .all(|n| !n.contains(".megacmd-")));
    env.server.faults().update(|f| f.corrupt_downloads = false);
    // Network failure after retries: 8 (a small retry budget from the config file).
    let conf = m.home.join("fast.toml");
    std::fs::write(&conf, "max_retries = 1\n").unwrap();
    env.server.faults().set(FaultConfig {
        cs_http503: 1000,
        ..Default::default()
    });
    let o = m.fails(&["--conf", &s(&conf), "ls", "mega:/"], 8).await;
    assert!(o.stderr.contains("giving up"), "{}", o.stderr);
    env.server.faults().set(FaultConfig::default());
}

/// Trust: a file downloaded (and verified) once, then changed on the server, fails the next
/// download with the integrity exit code and nothing under the target name; the first copy is
/// left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_of_a_file_tampered_after_a_first_download_fails() {
    let env = Env::start().await;
    let c = env.account("twice@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(3_000_000, 4);
    c.upload(&root, "f.bin", &mut &body[..], body.len() as u64, 0, None)
        .await
        .unwrap();
    let m = Cmd::new(&env, "twice@example.com");
    let (first, second) = (
        env.dir.path().join("first.bin"),
        env.dir.path().join("second.bin"),
    );
    m.ok(&["get", "mega:/f.bin", &s(&first)]).await;
    assert!(std::fs::read(&first).unwrap() == body);
    env.server.faults().update(|f| f.corrupt_after = 1 << 20);
    let o = m.fails(&["get", "mega:/f.bin", &s(&second)], 9).await;
    assert!(o.stderr.contains("MAC"), "{}", o.stderr);
    assert!(!second.exists());
    assert!(std::fs::read(&first).unwrap() == body);
    // `cat` refuses it too, and writes nothing of it.
    let o = m.fails(&["cat", "mega:/f.bin"], 9).await;
    assert!(o.stdout.is_empty());
    env.server
        .faults()
        .set(mega_testserver::FaultConfig::default());
}

/// Trust: `cat` verifies the whole file before writing any of it, and meanwhile keeps no
/// plaintext on disk: neither its temporary folder nor its cache holds the file's bytes while
/// it runs or afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_keeps_no_plaintext_on_disk() {
    let env = Env::start().await;
    let c = env.account("catp@example.com").await;
    let root = c.root().unwrap().handle;
    let marker = b"CAT-PLAINTEXT-MARKER-7f3a";
    // 40 MB: past what cat keeps in memory.
    let body: Vec<u8> = marker.iter().copied().cycle().take(40 << 20).collect();
    c.upload(&root, "p.txt", &mut &body[..], body.len() as u64, 0, None)
        .await
        .unwrap();
    let m = Cmd::new(&env, "catp@example.com");
    let (tmp, home) = (m.tmp(), m.home.clone());
    // Slow enough to look at its files while it runs.
    env.server.faults().update(|f| f.bandwidth_bps = 20 << 20);
    let mut child = m.command(&["cat", "mega:/p.txt"]);
    child.stdout(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    let out = tokio::spawn(async move { child.wait_with_output().await.unwrap() });
    let mut looks = 0;
    while !out.is_finished() {
        let (t, h) = (tmp.clone(), home.clone());
        let found = tokio::task::spawn_blocking(move || {
            common::file_holding(&t, marker).or_else(|| common::file_holding(&h, marker))
        })
        .await
        .unwrap();
        assert_eq!(found, None, "plaintext on disk while cat runs");
        looks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.server.faults().update(|f| f.bandwidth_bps = 0);
    let out = out.await.unwrap();
    assert!(out.status.success());
    assert!(out.stdout == body, "cat wrote the file");
    assert!(looks >= 3, "looked while it ran ({looks} times)");
    assert_eq!(common::file_holding(&m.home, marker), None);
    assert_eq!(
        std::fs::read_dir(m.tmp()).unwrap().count(),
        0,
        "nothing left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_survive_eagain_and_dropped_connections() {
    let env = Env::start().await;
    account(&env, "ft@example.com").await;
    let m = Cmd::new(&env, "ft@example.com");
    let src = env.dir.path().join("src");
    write(&src.join("x.bin"), &data(3_000_000, 1), 1_600_000_000);
    write(&src.join("y.bin"), &data(10_000, 2), 1_600_000_000);
    m.ok(&["whoami"]).await; // log in before the faults
    env.server.faults().set(FaultConfig {
        cs_eagain: 3,
        ul_drop: 2,
        cs_drop: 1,
        ..Default::default()
    });
    m.ok(&["put", "-r", &s(&src), "mega:/"]).await;
    let left = env.server.faults().get();
    assert_eq!(
        (left.cs_eagain, left.ul_drop, left.cs_drop),
        (0, 0, 0),
        "faults fired: {left:?}"
    );
    env.server.faults().set(FaultConfig {
        cs_eagain: 2,
        dl_drop: 2,
        dl_http503: 1,
        ..Default::default()
    });
    let out = env.dir.path().join("out");
    m.ok(&["get", "-r", "mega:/src", &s(&out)]).await;
    let left = env.server.faults().get();
    assert_eq!(
        (left.cs_eagain, left.dl_drop, left.dl_http503),
        (0, 0, 0),
        "faults fired: {left:?}"
    );
    assert!(std::fs::read(out.join("x.bin")).unwrap() == data(3_000_000, 1));
    // Exactly one copy of each file (nothing ran twice).
    let l = m.ok(&["ls", "--json", "mega:/src"]).await.json();
    assert_eq!(l.as_array().unwrap().len(), 2, "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_parallel_and_two_factor_login() {
    let env = Env::start().await;
    account(&env, "vp@example.com").await;
    let m = Cmd::new(&env, "vp@example.com");
    let src = env.dir.path().join("v");
    for i in 0..5 {
        write(
            &src.join(format!("f{i}.txt")),
            format!("file {i}").as_bytes(),
            1_600_000_000 + i,
        );
    }
    let o = m
        .ok(&[
            "put",
            "-r",
            "--parallel",
            "1",
            "--verbose",
            "1",
            &s(&src),
            "mega:/",
        ])
        .await;
    assert_eq!(
        o.stderr.matches("uploaded ").count(),
        6,
        "5 per-file lines + summary: {}",
        o.stderr
    );
    let quiet = m
        .ok(&[
            "get",
            "-r",
            "--parallel",
            "3",
            "mega:/v",
            &s(&env.dir.path().join("back")),
        ])
        .await;
    assert_eq!(
        quiet.stderr.matches("downloaded ").count(),
        1,
        "summary only at --verbose 0: {}",
        quiet.stderr
    );

    let secret = "JBSWY3DPEHPK3PXP";
    env.user(
        "2fa@example.com",
        UserOptions {
            totp_secret: Some(secret.into()),
            ..Default::default()
        },
    )
    .await;
    let t = Cmd::new(&env, "2fa@example.com");
    t.fails(&["login"], 4).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = mega_testserver::crypto::totp(secret, now).unwrap();
    t.ok(&["login", "--mfa", &code]).await;
    let bare = Cmd {
        email: None,
        password: false,
        ..Cmd::new(&env, "2fa@example.com")
    };
    assert!(bare
        .ok(&["whoami"])
        .await
        .stdout
        .contains("2fa@example.com"));
}

/// Runs megacmd in a pseudo-terminal (Python's pty module); answers a `Password:` prompt with
/// `answer` if one appears. Returns the exit code and everything the terminal showed.
async fn run_in_pty(
    env: &Env,
    home: &Path,
    args: &[&str],
    answer: Option<&str>,
    extra_env: &[(&str, &str)],
) -> (i32, String) {
    let script = r#"
import os, pty, sys, time
args = sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1]] + args)
out = b""
answered = sys.argv[2] == ""
end = time.time() + 90
while time.time() < end:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
    if not answered and b"Password:" in out:
        os.write(fd, sys.argv[2].encode() + b"\n")
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut c = tokio::process::Command::new("python3");
    c.args(["-c", script, BIN, answer.unwrap_or("")])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("MEGA_API_URL", env.server.base_url())
        .envs(extra_env.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `megacmd login` in a real terminal: it prompts for the password, does not echo it, and
/// saves the session. Driven through a pseudo-terminal by Python's pty module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_prompts_for_the_password_without_echo() {
    let env = Env::start().await;
    account(&env, "tty@example.com").await;
    let home = env.dir.path().join("tty-home");
    std::fs::create_dir_all(&home).unwrap();
    let (code, text) = run_in_pty(
        &env,
        &home,
        &["login", "tty@example.com"],
        Some(PASSWORD),
        &[],
    )
    .await;
    assert_eq!(code, 0, "login in a pty failed: {text}");
    assert!(text.contains("Password:"), "{text}");
    assert!(!text.contains(PASSWORD), "the password was echoed: {text}");
    assert!(text.contains("logged in as tty@example.com"), "{text}");
    assert!(home.join("config/megacmd/session.json").exists());

    // On a terminal, transfers show a progress bar with bytes, rate and ETA.
    let m = Cmd::new(&env, "tty@example.com");
    let f = env.dir.path().join("p.bin");
    write(&f, &data(3_000_000, 1), 0);
    m.ok(&["put", &s(&f), "mega:/"]).await;
    env.server.faults().update(|c| c.bandwidth_bps = 2_000_000);
    let out = home.join("p.out");
    let (code, text) = run_in_pty(&env, &home, &["get", "mega:/p.bin", &s(&out)], None, &[]).await;
    env.server.faults().update(|c| c.bandwidth_bps = 0);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ETA") && text.contains("MiB"),
        "no progress bar on a terminal: {text:?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), data(3_000_000, 1));
}

/// Ctrl-C leaves nothing under the real name, only the private partial download, which
/// `transfers` lists and a second `get` resumes; `transfers --cancel` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_download_leaves_only_its_resumable_part() {
    let env = Env::start().await;
    account(&env, "int@example.com").await;
    let m = Cmd::new(&env, "int@example.com");
    let f = env.dir.path().join("big.bin");
    write(&f, &data(4_000_000, 5), 0);
    m.ok(&["put", &s(&f), "mega:/"]).await;
    env.server.faults().update(|c| c.bandwidth_bps = 1_000_000); // ~4 s to download
    let dst_dir = env.dir.path().join("int-out");
    std::fs::create_dir_all(&dst_dir).unwrap();
    let dst = dst_dir.join("big.bin");
    let child = std::process::Command::new(BIN)
        .args(["get", "mega:/big.bin", &s(&dst)])
        .env_clear()
        .env("HOME", &m.home)
        .env("XDG_CONFIG_HOME", m.home.join("config"))
        .env("MEGA_API_URL", env.server.base_url())
        .env("MEGA_EMAIL", "int@example.com")
        .env("MEGA_PASSWORD", PASSWORD)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the partial file exists, then interrupt.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while walk_names(&dst_dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "download never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    env.server.faults().update(|c| c.bandwidth_bps = 0);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(!dst.exists(), "nothing unverified under the real name");
    let part = part_of(&dst_dir, "big.bin").expect("the partial download is kept");
    assert_eq!(
        std::fs::metadata(&part).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let listed = m.ok(&["transfers", "--json"]).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["direction"], "download");
    assert_eq!(listed[0]["state"], "interrupted");
    assert_eq!(listed[0]["local"], s(&dst));
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let text = m.ok(&["transfers"]).await;
    assert!(text.stdout.contains(&id), "{}", text.stdout);
    // Resumed from here.
    m.ok(&["transfers", "--resume", &id]).await;
    assert_eq!(std::fs::read(&dst).unwrap(), data(4_000_000, 5));
    assert!(part_of(&dst_dir, "big.bin").is_none());
    assert_eq!(
        m.ok(&["transfers", "--json"]).await.json(),
        serde_json::json!([])
    );
    // Interrupted again, then cancelled: nothing is left.
    std::fs::remove_file(&dst).unwrap();
    env.server.faults().update(|c| c.bandwidth_bps = 1_000_000);
    let mut child = m
        .command(&["get", "mega:/big.bin", &s(&dst)])
        .spawn()
        .unwrap();
    kill_when(&mut child, "the download started", || {
        part_of(&dst_dir, "big.bin").is_some()
    })
    .await;
    env.server.faults().update(|c| c.bandwidth_bps = 0);
    m.ok(&["transfers", "--cancel", "all"]).await;
    assert!(
        walk_names(&dst_dir).is_empty() && part_of(&dst_dir, "big.bin").is_none(),
        "left behind: {:?}",
        std::fs::read_dir(&dst_dir).unwrap().collect::<Vec<_>>()
    );
    assert_eq!(
        m.ok(&["transfers", "--json"]).await.json(),
        serde_json::json!([])
    );
}

/// `delete` of a folder (as MEGA's own megacmd writes it) moves it to the Rubbish Bin, which
/// can be undone; only deleting a non-empty folder for good needs `-r`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_folder_moves_it_to_the_rubbish_bin_without_r() {
    let env = Env::start().await;
    account(&env, "rmf@example.com").await;
    let m = Cmd::new(&env, "rmf@example.com");
    m.ok(&["mkdir", "mega:/foo/bar"]).await;
    let f = env.dir.path().join("x.txt");
    write(&f, b"x", 1_600_000_000);
    m.ok(&["put", &s(&f), "mega:/foo/bar/"]).await;
    m.ok(&["delete", "mega:/foo/bar"]).await;
    m.fails(&["ls", "mega:/foo/bar"], 5).await;
    let rubbish = m.ok(&["ls", "-r", "mega://Rubbish/"]).await.stdout;
    assert!(rubbish.contains("bar/x.txt"), "{rubbish}");
    // In the Rubbish Bin, deleting is for good: a non-empty folder needs -r.
    let o = m.fails(&["rm", "mega://Rubbish/bar"], 2).await;
    assert!(o.stderr.contains("--recursive"), "{}", o.stderr);
    m.ok(&["rm", "-r", "mega://Rubbish/bar"]).await;
    assert!(!m
        .ok(&["ls", "-r", "mega://Rubbish/"])
        .await
        .stdout
        .contains("x.txt"));
}

/// A remote name of 250 bytes downloads (its temporary name still fits a file name), and one
/// too long for any local file name arrives under a shortened name that still finds it, and
/// goes back to the long name when it is uploaded or synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_remote_names_download() {
    let env = Env::start().await;
    account(&env, "long@example.com").await;
    let c = env.login("long@example.com").await;
    let root = c.root().unwrap().handle;
    let fits = format!("{}.txt", "é".repeat(123)); // 250 bytes
    let too_long = format!("{}.txt", "ß".repeat(150)); // 304 bytes
    for (name, body) in [(&fits, b"fits".as_slice()), (&too_long, b"too long")] {
        c.upload(
            &root,
            name,
            &mut &body[..],
            body.len() as u64,
            1_600_000_000,
            None,
        )
        .await
        .unwrap();
    }
    let m = Cmd::new(&env, "long@example.com");
    let out = env.dir.path().join("long-out");
    std::fs::create_dir_all(&out).unwrap();
    m.ok(&["get", &format!("mega:/{fits}"), &format!("{}/", s(&out))])
        .await;
    assert_eq!(std::fs::read(out.join(&fits)).unwrap(), b"fits");
    m.ok(&[
        "get",
        &format!("mega:/{too_long}"),
        &format!("{}/", s(&out)),
    ])
    .await;
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let short = names
        .iter()
        .find(|n| n.contains("%~"))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(short.len() <= 255 && short.ends_with(".txt"), "{short}");
    assert_eq!(std::fs::read(out.join(short)).unwrap(), b"too long");
    assert!(names.iter().all(|n| !n.ends_with(".part")), "{names:?}");

    // And back: the shortened name stands for the long one, so putting the edited copy into
    // the same folder (--force), or syncing the folder up, updates the node with the long
    // name instead of adding one called by the shortened name.
    std::fs::write(out.join(short), b"edited").unwrap();
    m.ok(&["put", "--force", &s(&out.join(short)), "mega:/"])
        .await;
    std::fs::write(out.join(short), b"edited twice").unwrap();
    m.ok(&["sync", &s(&out), "mega:/"]).await;
    let c = env.login("long@example.com").await;
    let root = c.root().unwrap().handle;
    let names: Vec<String> = c
        .children(&root)
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("%~")),
        "no node got the shortened name: {names:?}"
    );
    let f = c.resolve(&format!("/{too_long}")).unwrap();
    assert_eq!(c.download_to_vec(&f.handle).await.unwrap(), b"edited twice");
}

/// `find` filters by name, size, age and type below a folder; `du` sums every folder below
/// one, with files' previous versions counted apart.
#[tokio::test]
async fn find_and_du() {
    let env = Env::start().await;
    account(&env, "find@example.com").await;
    let c = Cmd::new(&env, "find@example.com");
    let local = env.dir.path().join("find-src");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400;
    write(&local.join("photos/new.jpg"), &data(3000, 1), now - day);
    write(&local.join("photos/old.jpg"), &data(100, 2), now - 30 * day);
    write(
        &local.join("photos/trip/far.jpg"),
        &data(5000, 3),
        now - 2 * day,
    );
    write(&local.join("photos/notes.txt"), &data(10, 4), now - day);
    write(&local.join("docs/a.txt"), &data(7, 5), now);
    c.ok(&[
        "put",
        "-r",
        &s(&local.join("photos")),
        &s(&local.join("docs")),
        "mega:/",
    ])
    .await;
    // A second version of notes.txt: its old 10 bytes count apart.
    write(&local.join("photos/notes.txt"), &data(20, 6), now);
    c.ok(&[
        "put",
        "--force",
        &s(&local.join("photos/notes.txt")),
        "mega:/photos/",
    ])
    .await;

    let lines = |o: &common::megacmd::Out| -> Vec<String> {
        o.stdout.lines().map(str::to_string).collect()
    };
    let o = c.ok(&["find", "mega:/photos", "--name", "*.jpg"]).await;
    assert_eq!(
        lines(&o),
        [
            "mega:/photos/new.jpg",
            "mega:/photos/old.jpg",
            "mega:/photos/trip/far.jpg"
        ]
    );
    let o = c
        .ok(&[
            "find",
            "mega:/photos",
            "--name",
            "*.jpg",
            "--mtime",
            "-7d",
            "--size",
            "+2k",
        ])
        .await;
    assert_eq!(
        lines(&o),
        ["mega:/photos/new.jpg", "mega:/photos/trip/far.jpg"]
    );
    let o = c.ok(&["find", "mega:/", "--type", "d"]).await;
    assert_eq!(
        lines(&o),
        ["mega:/docs/", "mega:/photos/", "mega:/photos/trip/"]
    );
    let o = c.ok(&["find", "mega:/", "--size", "-100", "--json"]).await;
    let listed = o.json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a.txt", "notes.txt"],
        "files under 100 bytes (notes.txt now has 20)"
    );
    c.fails(&["find", "mega:/", "--size", "+1Q"], 2).await;
    c.fails(&["find", "mega:/nothing"], 5).await;

    let o = c.ok(&["du", "mega:/photos", "--json"]).await;
    let rows = o.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["path"], "mega:/photos/trip");
    assert_eq!(rows[0]["bytes"], 5000);
    assert_eq!(rows[1]["path"], "mega:/photos");
    assert_eq!(rows[1]["bytes"], 3000 + 100 + 5000 + 20);
    assert_eq!(rows[1]["files"], 4);
    assert_eq!(rows[1]["folders"], 1);
    assert_eq!(rows[1]["version_bytes"], 10);
    assert_eq!(rows[1]["versions"], 1);
    let o = c.ok(&["du", "mega:/", "--max-depth", "0"]).await;
    assert_eq!(o.stdout.lines().count(), 1);
    assert!(
        o.stdout.contains("5 files") && o.stdout.contains("1 versions"),
        "{}",
        o.stdout
    );
    c.fails(&["du", "mega:/docs/a.txt"], 2).await;
}

/// `copy` copies on the server: no upload, the copies read back the same (their MACs
/// verify), folders need -r and come whole, an existing file is only replaced with --force
/// (then kept as a previous version), and a folder cannot go into itself.
#[tokio::test]
async fn copy_on_the_server() {
    let env = Env::start().await;
    account(&env, "cp@example.com").await;
    let c = Cmd::new(&env, "cp@example.com");
    let local = env.dir.path().join("cp-src");
    let tree = make_tree(&local.join("src"));
    write(&local.join("one.bin"), &data(300_000, 9), 1_600_000_000);
    c.ok(&[
        "put",
        "-r",
        &s(&local.join("src")),
        &s(&local.join("one.bin")),
        "mega:/",
    ])
    .await;
    let uploads = env.server.stats().commands("u");

    c.ok(&["cp", "mega:/one.bin", "mega:/two.bin"]).await;
    c.ok(&["mkdir", "mega:/dest"]).await;
    c.ok(&["copy", "mega:/one.bin", "mega:/dest/"]).await;
    c.fails(&["cp", "mega:/src", "mega:/dest/"], 2).await;
    c.ok(&["cp", "-r", "mega:/src", "mega:/dest/"]).await;
    let o = c
        .ok(&["cp", "-r", "--json", "mega:/src", "mega:/copy-of-src"])
        .await;
    assert_eq!(o.json()[0]["source"], "mega:/src");
    assert_eq!(o.json()[0]["copy"], "mega:/copy-of-src");
    assert_eq!(
        env.server.stats().commands("u"),
        uploads,
        "nothing uploaded"
    );

    let out = env.dir.path().join("cp-out");
    std::fs::create_dir_all(&out).unwrap();
    c.ok(&["get", "mega:/two.bin", &s(&out.join("two.bin"))])
        .await;
    assert_eq!(
        std::fs::read(out.join("two.bin")).unwrap(),
        data(300_000, 9)
    );
    assert_eq!(
        mtime(&out.join("two.bin")),
        1_600_000_000,
        "attributes kept"
    );
    for top in ["mega:/dest/src", "mega:/copy-of-src"] {
        let dir = out.join(top.replace("mega:/", "").replace('/', "_"));
        c.ok(&["get", "-r", top, &s(&dir)]).await;
        for (rel, bytes, _) in &tree {
            let got = std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{top}/{rel}: {e}"));
            assert_eq!(&got, bytes, "{top}/{rel}");
        }
    }
    // The copy is independent: deleting the original leaves it.
    c.ok(&["rm", "-r", "--force", "mega:/src"]).await;
    c.ok(&["get", "-r", "mega:/copy-of-src", &s(&out.join("again"))])
        .await;

    // An existing file: only with --force, and the old one is its previous version.
    write(&local.join("other.bin"), b"other", 1_600_000_100);
    c.ok(&["put", &s(&local.join("other.bin")), "mega:/"]).await;
    c.fails(&["cp", "mega:/one.bin", "mega:/other.bin"], 6)
        .await;
    c.ok(&["cp", "--force", "mega:/one.bin", "mega:/other.bin"])
        .await;
    let o = c
        .ok(&["list", "--versions", "--json", "mega:/other.bin"])
        .await;
    let v = o.json();
    assert_eq!(v[0]["size"], 300_000);
    assert_eq!(v[0]["versions"][0]["size"], 5);
    // Not into itself; not a root.
    c.fails(&["cp", "-r", "mega:/dest", "mega:/dest/src/"], 2)
        .await;
    c.fails(&["cp", "-r", "mega:/", "mega:/dest/"], 2).await;
}

/// `import` brings a public file or folder link of another account into this one, on the
/// server (nothing uploaded), readable and verified afterwards; a name taken needs --force
/// (files only).
#[tokio::test]
async fn import_public_links() {
    let env = Env::start().await;
    account(&env, "owner@example.com").await;
    account(&env, "taker@example.com").await;
    let owner = Cmd::new(&env, "owner@example.com");
    let taker = Cmd::new(&env, "taker@example.com");
    let local = env.dir.path().join("import-src");
    let tree = make_tree(&local.join("album"));
    write(&local.join("song.bin"), &data(200_000, 7), 1_600_000_000);
    owner
        .ok(&[
            "put",
            "-r",
            &s(&local.join("album")),
            &s(&local.join("song.bin")),
            "mega:/",
        ])
        .await;
    let file_link = owner
        .ok(&["link", "mega:/song.bin"])
        .await
        .stdout
        .trim()
        .to_string();
    let folder_link = owner
        .ok(&["link", "mega:/album"])
        .await
        .stdout
        .trim()
        .to_string();
    let uploads = env.server.stats().commands("u");

    taker.ok(&["import", &file_link]).await;
    taker.ok(&["mkdir", "mega:/in"]).await;
    taker.ok(&["import", &folder_link, "mega:/in/"]).await;
    let o = taker
        .ok(&["import", "--json", &folder_link, "mega:/again"])
        .await;
    assert_eq!(o.json()["imported"], "mega:/again");
    assert_eq!(
        env.server.stats().commands("u"),
        uploads,
        "nothing uploaded"
    );
    taker.fails(&["import", &file_link], 6).await;
    taker.ok(&["import", "--force", &file_link]).await;
    taker.fails(&["import", &folder_link, "mega:/in/"], 6).await;
    taker
        .fails(&["import", "https://mega.nz/file/nothing"], 2)
        .await;

    // The owner deletes everything: the imports are the taker's own.
    owner
        .ok(&["rm", "-r", "--force", "mega:/album", "mega:/song.bin"])
        .await;
    let out = env.dir.path().join("import-out");
    std::fs::create_dir_all(&out).unwrap();
    taker
        .ok(&["get", "mega:/song.bin", &s(&out.join("song.bin"))])
        .await;
    assert_eq!(
        std::fs::read(out.join("song.bin")).unwrap(),
        data(200_000, 7)
    );
    assert_eq!(mtime(&out.join("song.bin")), 1_600_000_000);
    for top in ["mega:/in/album", "mega:/again"] {
        let dir = out.join(top.replace("mega:/", "").replace('/', "_"));
        taker.ok(&["get", "-r", top, &s(&dir)]).await;
        for (rel, bytes, _) in &tree {
            let got = std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{top}/{rel}: {e}"));
            assert_eq!(&got, bytes, "{top}/{rel}");
        }
    }
    let o = taker
        .ok(&["list", "--versions", "--json", "mega:/song.bin"])
        .await;
    assert_eq!(
        o.json()[0]["versions"].as_array().unwrap().len(),
        1,
        "--force kept a version"
    );
}

/// Runs megacmd with `input` on its stdin.
async fn run_with_stdin(c: &Cmd<'_>, args: &[&str], input: &str) -> common::megacmd::Out {
    use tokio::io::AsyncWriteExt;
    let mut cmd = c.command(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("megacmd timed out")
        .unwrap();
    common::megacmd::Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Password-protected links (`#P!`) are made and opened on the client (the server never
/// sees the password); a wrong password is refused (exit 3). `link --delete` removes a
/// link: the old one stops working, and a folder exported again gets a working new one.
#[tokio::test]
async fn password_protected_links_and_deleting_links() {
    let env = Env::start().await;
    account(&env, "pl@example.com").await;
    let c = Cmd::new(&env, "pl@example.com");
    let local = env.dir.path().join("pl-src");
    write(&local.join("secret.bin"), &data(70_000, 3), 1_600_000_000);
    write(&local.join("dir/inner.txt"), b"inside", 1_600_000_000);
    c.ok(&[
        "put",
        "-r",
        &s(&local.join("secret.bin")),
        &s(&local.join("dir")),
        "mega:/",
    ])
    .await;
    let o = run_with_stdin(&c, &["link", "--password", "mega:/secret.bin"], "hunter2\n").await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let protected = o.stdout.trim().to_string();
    assert!(protected.starts_with("https://mega.nz/#P!"), "{protected}");
    assert!(!protected.contains("hunter2"));
    let out = env.dir.path().join("pl-out");
    std::fs::create_dir_all(&out).unwrap();
    let got = out.join("secret.bin");
    let o = run_with_stdin(&c, &["get", &protected, &s(&got)], "hunter2\n").await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(std::fs::read(&got).unwrap(), data(70_000, 3));
    let o = run_with_stdin(&c, &["get", &protected, &s(&out.join("no"))], "wrong\n").await;
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stderr.contains("wrong password"), "{}", o.stderr);
    assert!(!out.join("no").exists());
    // A protected folder link imports too.
    let o = run_with_stdin(&c, &["link", "--password", "mega:/dir"], "pw\n").await;
    let pdir = o.stdout.trim().to_string();
    let o = run_with_stdin(&c, &["import", &pdir, "mega:/copied"], "pw\n").await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    c.ok(&["get", "mega:/copied/inner.txt", &s(&out.join("inner.txt"))])
        .await;
    assert_eq!(std::fs::read(out.join("inner.txt")).unwrap(), b"inside");

    // Deleting links.
    let file_link = c
        .ok(&["link", "mega:/secret.bin"])
        .await
        .stdout
        .trim()
        .to_string();
    let folder_link = c.ok(&["link", "mega:/dir"]).await.stdout.trim().to_string();
    c.ok(&["link", "--delete", "mega:/secret.bin"]).await;
    c.ok(&["link", "--delete", "mega:/dir"]).await;
    let o = c.run(&["get", &file_link, &s(&out.join("gone.bin"))]).await;
    assert_ne!(o.code, 0, "a deleted file link still works");
    let o = c
        .run(&["get", "-r", &folder_link, &s(&out.join("gone-dir"))])
        .await;
    assert_ne!(o.code, 0, "a deleted folder link still works");
    let again = c.ok(&["link", "mega:/dir"]).await.stdout.trim().to_string();
    assert_ne!(again, folder_link, "a new public handle");
    c.ok(&["get", "-r", &again, &s(&out.join("again"))]).await;
    assert_eq!(
        std::fs::read(out.join("again/inner.txt")).unwrap(),
        b"inside"
    );
}

/// `link --expire` takes a date or a time from now; one in the past is a usage error.
#[tokio::test]
async fn links_with_an_expiry() {
    let env = Env::start().await;
    account(&env, "le@example.com").await;
    let c = Cmd::new(&env, "le@example.com");
    let local = env.dir.path().join("le.txt");
    write(&local, b"x", 1_600_000_000);
    c.ok(&["put", &s(&local), "mega:/"]).await;
    let link = c
        .ok(&["link", "--expire", "30d", "mega:/le.txt"])
        .await
        .stdout;
    let out = env.dir.path().join("le-out.txt");
    c.ok(&["get", link.trim(), &s(&out)]).await;
    c.fails(&["link", "--expire", "2001-01-01", "mega:/le.txt"], 2)
        .await;
    c.fails(&["link", "--expire", "soon", "mega:/le.txt"], 2)
        .await;
    // A writable folder link: LINK:WRITE-KEY, readable like the plain one; files have none.
    c.ok(&["mkdir", "mega:/drop"]).await;
    c.ok(&["put", &s(&local), "mega:/drop/"]).await;
    let o = c
        .ok(&["link", "--json", "--expire", "1w", "mega:/drop"])
        .await;
    assert_eq!(o.json()["path"], "mega:/drop");
    assert!(o.json()["link"]
        .as_str()
        .unwrap()
        .starts_with("https://mega.nz/folder/"));
    assert!(o.json()["expires"].as_i64().is_some());
    let w = c.ok(&["link", "--writable", "mega:/drop"]).await.stdout;
    let (plain, key) = w.trim().rsplit_once(':').unwrap();
    assert!(
        plain.starts_with("https://mega.nz/folder/") && key.len() == 22,
        "{w}"
    );
    c.ok(&["get", "-r", w.trim(), &s(&env.dir.path().join("drop-out"))])
        .await;
    assert_eq!(
        std::fs::read(env.dir.path().join("drop-out/le.txt")).unwrap(),
        b"x"
    );
    c.fails(&["link", "--writable", "mega:/le.txt"], 1).await;
}

/// Contact requests through megacmd: invite (with a message), the invitee sees it and
/// accepts (both are contacts), decline and cancel end requests, remove ends a contact;
/// requests survive a warm start (the tree cache) and follow packets from the other side.
#[tokio::test]
async fn contact_requests() {
    let env = Env::start().await;
    for u in ["ann@example.com", "ben@example.com", "cat@example.com"] {
        account(&env, u).await;
    }
    let ann = Cmd::new(&env, "ann@example.com");
    let ben = Cmd::new(&env, "ben@example.com");
    let cat = Cmd::new(&env, "cat@example.com");
    // Warm caches first, so that the requests below arrive as packets on warm starts.
    for c in [&ann, &ben, &cat] {
        c.ok(&["ls"]).await;
    }
    ann.ok(&[
        "contacts",
        "invite",
        "ben@example.com",
        "--message",
        "hi ben",
    ])
    .await;
    ann.ok(&["contacts", "invite", "cat@example.com"]).await;
    ann.fails(&["contacts", "invite", "ben@example.com"], 6)
        .await;
    let kinds = |c: &serde_json::Value, kind: &str| -> Vec<String> {
        c.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| r["email"].as_str().unwrap().to_string())
            .collect()
    };
    let mine = ann.ok(&["contacts", "--json"]).await.json();
    assert_eq!(
        kinds(&mine, "outgoing"),
        ["ben@example.com", "cat@example.com"]
    );
    let theirs = ben.ok(&["contacts", "--json"]).await.json();
    assert_eq!(kinds(&theirs, "incoming"), ["ann@example.com"]);
    let text = ben.ok(&["contacts"]).await.stdout;
    assert!(
        text.contains("ann@example.com") && text.contains("hi ben"),
        "{text}"
    );

    ben.ok(&["contacts", "accept", "ann@example.com"]).await;
    ben.fails(&["contacts", "accept", "ann@example.com"], 5)
        .await;
    cat.ok(&["contacts", "decline", "ann@example.com"]).await;
    let mine = ann.ok(&["contacts", "--json"]).await.json();
    assert!(kinds(&mine, "outgoing").is_empty(), "{mine}");
    assert_eq!(kinds(&mine, "contact"), ["ben@example.com"]);
    let theirs = ben.ok(&["contacts", "--json"]).await.json();
    assert_eq!(kinds(&theirs, "contact"), ["ann@example.com"]);
    assert!(kinds(&theirs, "incoming").is_empty());

    // Cancel an invitation; remove a contact.
    ann.ok(&["contacts", "invite", "cat@example.com"]).await;
    ann.ok(&["contacts", "cancel", "cat@example.com"]).await;
    assert!(kinds(&cat.ok(&["contacts", "--json"]).await.json(), "incoming").is_empty());
    ann.ok(&["contacts", "remove", "ben@example.com"]).await;
    assert!(kinds(&ann.ok(&["contacts", "--json"]).await.json(), "contact").is_empty());
    assert!(kinds(&ben.ok(&["contacts", "--json"]).await.json(), "contact").is_empty());
    ann.fails(&["contacts", "remove", "ben@example.com"], 5)
        .await;
}

/// `megacmd backup` from the command line: created once then brought up to date, listed
/// with its device, state and status (text and JSON), reachable as `mega://Backups/`,
/// read-only to other commands, paused and resumed by id, removed with its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_from_the_command_line() {
    let env = Env::start().await;
    account(&env, "cli-backup@example.com").await;
    let c = Cmd::new(&env, "cli-backup@example.com");
    let local = env.dir.path().join("Projects");
    write(&local.join("plan.txt"), b"plan", 1_700_000_000);
    let o = c.ok(&["backup", &s(&local)]).await;
    assert!(
        o.stderr.contains("backup \"Projects\" created"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("1 uploaded"), "{}", o.stderr);
    let o = c.ok(&["backup", &s(&local)]).await;
    assert!(
        o.stderr.contains("0 uploaded") && !o.stderr.contains("\"Projects\" created"),
        "{}",
        o.stderr
    );
    // Twice under another name is refused: it is the same folder of this device.
    c.fails(&["backup", "--name", "Again", &s(&local)], 6).await;

    let o = c.ok(&["backup", "--list"]).await;
    let canonical = s(&local.canonicalize().unwrap());
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains(&canonical))
        .expect("listed");
    assert!(
        line.contains("backup") && line.contains("active") && line.contains("up-to-date"),
        "{line}"
    );
    assert!(line.contains("(this device)"), "{line}");
    let o = c.ok(&["--json", "backup", "--list"]).await;
    let list: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["kind"], "backup");
    assert_eq!(list[0]["local"], canonical.as_str());

    let device = mega_mount::client::backups::device_id().unwrap();
    let o = c.ok(&["ls", "-r", "mega://Backups/"]).await;
    assert!(
        o.stdout.contains(&device) && o.stdout.contains("plan.txt"),
        "{}",
        o.stdout
    );
    let o = c
        .ok(&["cat", &format!("mega://Backups/{device}/Projects/plan.txt")])
        .await;
    assert_eq!(o.stdout, "plan");
    // Read-only to everything but the backup: the server refuses.
    let denied = c
        .run(&["rm", &format!("mega://Backups/{device}/Projects/plan.txt")])
        .await;
    assert_ne!(denied.code, 0, "{}", denied.stderr);
    assert!(
        denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );

    c.ok(&["backup", "--pause", &id]).await;
    write(&local.join("more.txt"), b"more", 1_700_000_000);
    let o = c.ok(&["backup", &s(&local)]).await;
    assert!(
        o.stderr.contains("paused from another device"),
        "{}",
        o.stderr
    );
    c.ok(&["backup", "--resume", &id]).await;
    let o = c.ok(&["backup", &s(&local)]).await;
    assert!(o.stderr.contains("1 uploaded"), "{}", o.stderr);

    c.ok(&["backup", "--remove", &s(&local), "--delete-remote"])
        .await;
    let o = c.ok(&["--json", "backup", "--list"]).await;
    assert_eq!(o.stdout.trim(), "[]");
    let o = c.ok(&["ls", "-r", "mega://Rubbish/SyncDebris/"]).await;
    assert!(o.stdout.contains("Projects"), "{}", o.stdout);
    c.fails(&["backup", "--remove", &s(&local)], 5).await;

    // Or moved out of the Vault into the Cloud Drive, where it can be changed again.
    let other = env.dir.path().join("Other");
    write(&other.join("x.txt"), b"x", 1_700_000_000);
    c.ok(&["backup", &s(&other)]).await;
    c.ok(&[
        "backup",
        "--remove",
        &s(&other),
        "--move-remote",
        "mega:/Restored",
    ])
    .await;
    let o = c.ok(&["cat", "mega:/Restored/Other/x.txt"]).await;
    assert_eq!(o.stdout, "x");
    c.ok(&["rm", "mega:/Restored/Other/x.txt"]).await;
}

/// `check` proves local files equal to remote ones by their MACs, downloading nothing:
/// differences (same size, other bytes) and files on one side only are reported with exit
/// 13, equal ones are not; `-r` goes into subfolders; `--adopt` writes the local fingerprint
/// onto a remote file proved equal that has none, and onto no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_equality_without_downloading() {
    use mega_mount::api::commands::SetAttributes;
    use mega_mount::crypto::{attr, b64};
    let env = Env::start().await;
    account(&env, "check@example.com").await;
    let c = Cmd::new(&env, "check@example.com");
    let local = env.dir.path().join("photos");
    write(&local.join("a.jpg"), &data(300_000, 1), 1_700_000_000);
    write(&local.join("b.jpg"), &data(5000, 2), 1_700_000_000);
    write(&local.join("sub/c.jpg"), &data(2_000_000, 3), 1_700_000_000);
    c.ok(&["put", "-r", &s(&local), "mega:/"]).await;
    write(
        &env.dir.path().join("other.jpg"),
        b"remote only",
        1_700_000_000,
    );
    c.ok(&[
        "put",
        &s(&env.dir.path().join("other.jpg")),
        "mega:/photos/",
    ])
    .await;
    // Same size, other content; and a file only here.
    let mut b = data(5000, 2);
    b[4000] ^= 0xff;
    write(&local.join("b.jpg"), &b, 1_700_000_000);
    write(&local.join("new.jpg"), b"only local", 1_700_000_000);
    write(&local.join("sub/d.jpg"), b"deep", 1_700_000_000);

    let downloads = env.server.stats().commands("g");
    let o = c
        .fails(&["check", &s(&local), "mega:/photos", "-r"], 13)
        .await;
    assert_eq!(
        o.stdout.lines().collect::<Vec<_>>(),
        [
            "different    b.jpg",
            "only-local   new.jpg",
            "only-remote  other.jpg",
            "only-local   sub/d.jpg"
        ],
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("2 equal"), "{}", o.stderr);
    assert_eq!(
        env.server.stats().commands("g"),
        downloads,
        "nothing downloaded"
    );
    // Without -r, the top level only; as JSON.
    let o = c
        .fails(&["--json", "check", &s(&local), "mega:/photos"], 13)
        .await;
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        (v["equal"].as_u64(), v["different"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(!o.stdout.contains("sub/"), "{}", o.stdout);
    // One file against one node.
    c.ok(&["check", &s(&local.join("a.jpg")), "mega:/photos/a.jpg"])
        .await;
    c.fails(
        &["check", &s(&local.join("b.jpg")), "mega:/photos/b.jpg"],
        13,
    )
    .await;

    // A remote file without a fingerprint (as some clients upload): --adopt writes ours.
    let client = env.login("check@example.com").await;
    let a = client.resolve("/photos/a.jpg").unwrap();
    let b_node = client.resolve("/photos/b.jpg").unwrap();
    let strip = |n: &mega_mount::tree::Node| {
        let key = n.key.clone().unwrap();
        let plain = serde_json::json!({"n": n.name});
        b64::encode(&attr::encrypt(&key.attr_key(), plain.as_object().unwrap()))
    };
    for n in [&a, &b_node] {
        let at = strip(n);
        client
            .api()
            .run(&SetAttributes {
                n: &n.handle.0,
                at: &at,
                i: "check-test",
                vw: None,
            })
            .await
            .unwrap();
    }
    let o = c
        .fails(&["check", &s(&local), "mega:/photos", "--adopt"], 13)
        .await;
    assert!(
        o.stderr.contains("fingerprints written to 1"),
        "{}",
        o.stderr
    );
    client.fetch().await.unwrap();
    let fp = client
        .resolve("/photos/a.jpg")
        .unwrap()
        .fingerprint
        .unwrap();
    assert_eq!(fp.mtime, 1_700_000_000);
    let want = mega_mount::crypto::fingerprint::Fingerprint::of_bytes(&data(300_000, 1), 0);
    assert_eq!(fp.crc, want.crc);
    assert!(
        client
            .resolve("/photos/b.jpg")
            .unwrap()
            .fingerprint
            .is_none(),
        "never onto a file that differs"
    );
}

/// What MEGA's apps let a person set (label, favourite, sensitive, description, tags):
/// `attr` sets and shows it, `list -l`/`--json` show it, a new version (`put --force`)
/// keeps it as MEGA's SDK carries it over, and a label or favourite change reaches the
/// previous versions too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_set_in_megas_apps_survive_new_versions() {
    use mega_mount::client::marks::Marks;
    let env = Env::start().await;
    account(&env, "marks@example.com").await;
    let c = Cmd::new(&env, "marks@example.com");
    let f = env.dir.path().join("trip.txt");
    write(&f, b"first", 1_700_000_000);
    c.ok(&["put", &s(&f), "mega:/"]).await;
    c.ok(&[
        "attr",
        "mega:/trip.txt",
        "--label",
        "red",
        "--favourite",
        "--tag",
        "holiday",
        "--tag",
        "x",
        "--description",
        "Rome, day 1",
    ])
    .await;
    let o = c.ok(&["list", "-l", "mega:/"]).await;
    assert!(
        o.stdout.contains("[red] ★ #holiday #x \"Rome, day 1\""),
        "{}",
        o.stdout
    );
    c.fails(&["attr", "mega:/trip.txt", "--label", "pink"], 2)
        .await;
    c.fails(&["attr", "mega:/trip.txt", "--tag", "a,b"], 2)
        .await;

    // A new version through put --force keeps them.
    write(&f, b"second", 1_700_000_100);
    c.ok(&["put", "--force", &s(&f), "mega:/"]).await;
    let o = c.ok(&["--json", "list", "mega:/"]).await;
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let row = &v[0];
    assert_eq!(row["size"], 6, "the new version");
    assert_eq!(
        (
            &row["label"],
            &row["favourite"],
            &row["tags"],
            &row["description"]
        ),
        (
            &serde_json::json!("red"),
            &serde_json::json!(true),
            &serde_json::json!(["holiday", "x"]),
            &serde_json::json!("Rome, day 1")
        )
    );

    // Unmarking reaches the previous version too (label, favourite).
    c.ok(&[
        "attr",
        "mega:/trip.txt",
        "--favourite=false",
        "--label",
        "none",
        "--untag",
        "x",
    ])
    .await;
    let client = env.login("marks@example.com").await;
    let cur = client.resolve("/trip.txt").unwrap();
    let marks = Marks::of(&cur.attrs().unwrap());
    assert_eq!((marks.label, marks.favourite), (None, false));
    assert_eq!(marks.tags, ["holiday"]);
    let old = client.read_tree().versions(&cur.handle)[0].clone();
    let old_marks = Marks::of(&old.attrs().unwrap());
    assert_eq!(
        (old_marks.label, old_marks.favourite),
        (None, false),
        "{old_marks:?}"
    );
    let o = c.ok(&["attr", "mega:/trip.txt"]).await;
    assert!(o.stdout.contains("tags [holiday]"), "{}", o.stdout);
    // A rename keeps every attribute.
    c.ok(&["mv", "mega:/trip.txt", "mega:/rome.txt"]).await;
    let o = c.ok(&["list", "-l", "mega:/"]).await;
    assert!(
        o.stdout.contains("rome.txt  #holiday \"Rome, day 1\""),
        "{}",
        o.stdout
    );
}

/// The test server's transfer quota, as MEGA's answers it: over it, `g` gives no URL but
/// `e: -17` and the seconds left, and a storage server answers 509 with `X-MEGA-Time-Left`
/// mid-download; megacmd says so with the time it resets (exit 7) and keeps uploading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_quota_stops_downloads_not_uploads() {
    let env = Env::start_with(|cfg| cfg.limits.transfer_quota = 3 << 20).await;
    account(&env, "xfer@example.com").await;
    let c = Cmd::new(&env, "xfer@example.com");
    let src = env.dir.path().join("xfer-src");
    write(&src.join("small.bin"), &data(1 << 20, 1), 1_700_000_000);
    write(&src.join("big.bin"), &data(8 << 20, 2), 1_700_000_000);
    c.ok(&[
        "put",
        &s(&src.join("small.bin")),
        &s(&src.join("big.bin")),
        "mega:/",
    ])
    .await;
    let dst = env.dir.path().join("xfer-dst");
    std::fs::create_dir_all(&dst).unwrap();
    // Within the quota.
    c.ok(&["get", "mega:/small.bin", &s(&dst)]).await;
    // The big one starts (the quota is not used up when it asks) and meets the 509.
    let o = c
        .fails(&["get", "--no-wait", "mega:/big.bin", &s(&dst)], 7)
        .await;
    assert!(o.stderr.contains("transfer quota exceeded"), "{}", o.stderr);
    assert!(
        o.stderr.contains("UTC)"),
        "the time it resets: {}",
        o.stderr
    );
    assert!(
        !dst.join("big.bin").exists(),
        "nothing half-written is left"
    );
    // Now `g` itself refuses.
    let o = c
        .fails(
            &[
                "get",
                "--no-wait",
                "mega:/small.bin",
                &s(&dst.join("again.bin")),
            ],
            7,
        )
        .await;
    assert!(o.stderr.contains("transfer quota exceeded"), "{}", o.stderr);
    // Uploads go on.
    write(&src.join("later.bin"), &data(1 << 20, 3), 1_700_000_000);
    c.ok(&["put", &s(&src.join("later.bin")), "mega:/"]).await;
    // df shows what this address downloaded in the window (the free quota has no maximum
    // to show: MEGA does not publish it).
    let df = c.ok(&["df", "--json"]).await.json();
    assert!(df["transfer_used"].as_u64().unwrap() >= 3 << 20, "{df}");
    assert_eq!(
        (df["transfer_max"].is_null(), df["transfer_hours"].as_u64()),
        (true, Some(6))
    );
    let o = c.ok(&["df"]).await;
    assert!(
        o.stdout
            .contains("downloaded from this address in the last 6 h"),
        "{}",
        o.stdout
    );
}

/// Kills (SIGKILL) `child` once `ready` says so; fails if it ended first.
async fn kill_when(child: &mut tokio::process::Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if ready() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("megacmd ended ({st}) before {what}");
        }
        assert!(std::time::Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bytes the test server received on its upload URLs.
fn received(env: &Env) -> i64 {
    env.server
        .uploads()
        .unwrap()
        .iter()
        .map(|u| u.received)
        .sum()
}

/// Issue 21 §2: `put` killed (-9) at about half resumes at the next run from the chunks the
/// server acknowledged: the same upload URL, only the remainder sent, and the file verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_put_sends_only_the_remainder() {
    const SIZE: usize = 200 << 20;
    let env = Env::start().await;
    account(&env, "resume-put@example.com").await;
    let c = Cmd::new(&env, "resume-put@example.com");
    let src = env.dir.path().join("resume-put/big.bin");
    let content = data(SIZE, 21);
    write(&src, &content, 1_700_000_000);
    // Slow enough to be caught in the middle.
    env.server.faults().update(|f| f.latency_ms = 100);
    let mut child = c.command(&["put", &s(&src), "mega:/"]).spawn().unwrap();
    kill_when(&mut child, "half was sent", || {
        received(&env) >= (SIZE / 2) as i64
    })
    .await;
    env.server.faults().update(|f| f.latency_ms = 0);
    let at_kill = received(&env);
    assert!(at_kill < SIZE as i64, "killed before the end");
    let journals = std::fs::read_dir(c.home.join(".local/state/megacmd/transfers"))
        .unwrap()
        .count();
    assert_eq!(journals, 1, "the interrupted upload is recorded");

    c.ok(&["put", &s(&src), "mega:/"]).await;
    let ups = env.server.uploads().unwrap();
    assert_eq!(
        ups.len(),
        1,
        "the second run used the first one's URL: {ups:?}"
    );
    let second = ups[0].received - at_kill;
    eprintln!("put: {at_kill} bytes before the kill, {second} after, of {SIZE}");
    // What was acknowledged is not sent again; pieces in flight at the kill may be (four of
    // 4 MiB at most).
    assert!(
        second <= SIZE as i64 - at_kill + (16 << 20),
        "the second run sent {second} bytes after {at_kill} of {SIZE}"
    );
    let dst = env.dir.path().join("resume-put/back.bin");
    c.ok(&["get", "mega:/big.bin", &s(&dst)]).await;
    assert!(std::fs::read(&dst).unwrap() == content, "the file verifies");
    let journals = std::fs::read_dir(c.home.join(".local/state/megacmd/transfers"))
        .unwrap()
        .count();
    assert_eq!(journals, 0, "nothing is left to resume");
}

/// Issue 21 §2: a file that changed since its upload was interrupted is not resumed (the
/// earlier key must not encrypt other bytes): it is uploaded afresh, under a new URL and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_uploaded_afresh_not_resumed() {
    const SIZE: usize = 48 << 20;
    let env = Env::start().await;
    account(&env, "resume-changed@example.com").await;
    let c = Cmd::new(&env, "resume-changed@example.com");
    let src = env.dir.path().join("resume-changed/f.bin");
    let mut content = data(SIZE, 22);
    write(&src, &content, 1_700_000_000);
    env.server.faults().update(|f| f.latency_ms = 100);
    let mut child = c.command(&["put", &s(&src), "mega:/"]).spawn().unwrap();
    kill_when(&mut child, "some was sent", || received(&env) >= (8 << 20)).await;
    env.server.faults().update(|f| f.latency_ms = 0);
    // A change inside what was sent, the size and mtime kept.
    content[1 << 20] ^= 0xff;
    write(&src, &content, 1_700_000_000);
    c.ok(&["put", &s(&src), "mega:/"]).await;
    let ups = env.server.uploads().unwrap();
    assert_eq!(ups.len(), 2, "a new upload URL: {ups:?}");
    assert!(ups[1].received >= SIZE as i64, "all of it sent again");
    let dst = env.dir.path().join("resume-changed/back.bin");
    c.ok(&["get", "mega:/f.bin", &s(&dst)]).await;
    assert!(std::fs::read(&dst).unwrap() == content, "the new content");
    // (`Env`'s drop checks that no two uploads share a key and nonce.)
}

/// The partial download megacmd keeps beside `dir/name`, if any.
fn part_of(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!(".{name}.megacmd-")) && n.ends_with(".part")
        })
}

/// Issue 21 §2: `get` killed (-9) at about half resumes from the chunks of its `.part` file
/// that still match the MACs recorded with it: a chunk damaged on disk since is fetched
/// again, with everything after it; the file is renamed into place only once whole and
/// verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_get_resumes_from_its_verified_part() {
    const SIZE: usize = 200 << 20;
    let env = Env::start().await;
    account(&env, "resume-get@example.com").await;
    let c = Cmd::new(&env, "resume-get@example.com");
    let src = env.dir.path().join("resume-get/src.bin");
    let content = data(SIZE, 23);
    write(&src, &content, 1_700_000_000);
    c.ok(&["put", &s(&src), "mega:/big.bin"]).await;
    let dir = env.dir.path().join("resume-get/dst");
    std::fs::create_dir_all(&dir).unwrap();
    let dst = dir.join("big.bin");
    // Slow enough to be caught in the middle (per response; four run at once).
    env.server.faults().update(|f| f.bandwidth_bps = 10 << 20);
    let mut child = c
        .command(&["get", "mega:/big.bin", &s(&dst)])
        .spawn()
        .unwrap();
    kill_when(&mut child, "half was written", || {
        part_of(&dir, "big.bin")
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() >= (SIZE / 2) as u64)
    })
    .await;
    env.server.faults().update(|f| f.bandwidth_bps = 0);
    assert!(!dst.exists(), "nothing unverified under the real name");
    let part = part_of(&dir, "big.bin").expect("the part is kept");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert_eq!(
        std::fs::metadata(&part).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Damage it at 40 MiB: from that chunk on it must be fetched again.
    let damaged = 40u64 << 20;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
        f.write_all_at(&[content[damaged as usize] ^ 1], damaged)
            .unwrap();
    }
    let before = env.server.stats().download_bytes();
    c.ok(&["get", "mega:/big.bin", &s(&dst)]).await;
    let second = env.server.stats().download_bytes() - before;
    eprintln!("get: part of {kept} bytes at the kill, damaged at {damaged}, {second} fetched after, of {SIZE}");
    assert!(std::fs::read(&dst).unwrap() == content, "the file verifies");
    assert!(
        second <= SIZE as u64 - damaged + (1 << 20),
        "the second run fetched {second} bytes (part of {kept}, damaged at {damaged})"
    );
    assert!(
        second >= SIZE as u64 - damaged - (1 << 20),
        "the damaged chunk was fetched again: {second}"
    );
    assert!(part_of(&dir, "big.bin").is_none(), "the part is gone");
}

/// Issue 21 §1: a download that meets the transfer quota says so once, waits with a
/// countdown until MEGA allows more, and resumes where it stopped (here the buckets are a
/// second long, so the wait is a few seconds); `--json` reports it as an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_waits_out_the_transfer_quota_and_resumes() {
    let env = Env::start_with(|cfg| {
        cfg.limits.transfer_quota = 3 << 20;
        cfg.limits.transfer_bucket = Duration::from_secs(1);
    })
    .await;
    account(&env, "wait@example.com").await;
    let c = Cmd::new(&env, "wait@example.com");
    let src = env.dir.path().join("wait/src.bin");
    let content = data(8 << 20, 24);
    write(&src, &content, 1_700_000_000);
    c.ok(&["put", &s(&src), "mega:/big.bin"]).await;
    let dst = env.dir.path().join("wait/big.bin");
    let before = env.server.stats().download_bytes();
    // One request at a time: concurrent ones racing for the last of the quota fetch pieces
    // that are then dropped, which this count is not about.
    let o = c
        .ok(&[
            "get",
            "--json",
            "--parallel",
            "1",
            "--connections",
            "1",
            "mega:/big.bin",
            &s(&dst),
        ])
        .await;
    assert!(std::fs::read(&dst).unwrap() == content, "the file verifies");
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let waits: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "transfer_quota")
        .collect();
    assert!(!waits.is_empty(), "a quota event: {}", o.stdout);
    let secs = waits[0]["wait_seconds"].as_u64().unwrap();
    assert!((1..=6).contains(&secs), "{}", o.stdout);
    assert_eq!(lines.last().unwrap()["operation"], "downloaded");
    let fetched = env.server.stats().download_bytes() - before;
    assert!(
        fetched < 12 << 20,
        "resumed, not started over: {fetched} bytes for 8 MiB"
    );
    // Without --json, the wait is said on stderr.
    let dst2 = env.dir.path().join("wait/again.bin");
    let o = c.ok(&["get", "mega:/big.bin", &s(&dst2)]).await;
    assert!(
        o.stderr.contains("transfer quota exceeded") && o.stderr.contains("waiting"),
        "{}",
        o.stderr
    );
}

/// Issue 21 §2: the test server keeps a partial upload across its own restart, as MEGA's
/// storage servers keep one for 48 hours: the next `put` resumes on the same URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_upload_survives_a_server_restart() {
    const SIZE: usize = 48 << 20;
    let mut env = Env::start().await;
    account(&env, "resume-restart@example.com").await;
    let src = env.dir.path().join("resume-restart/f.bin");
    let content = data(SIZE, 25);
    write(&src, &content, 1_700_000_000);
    {
        let c = Cmd::new(&env, "resume-restart@example.com");
        env.server.faults().update(|f| f.latency_ms = 100);
        let mut child = c.command(&["put", &s(&src), "mega:/"]).spawn().unwrap();
        kill_when(&mut child, "some was sent", || received(&env) >= (16 << 20)).await;
    }
    env.server.restart().await.unwrap();
    let at_restart = received(&env);
    assert!(at_restart >= 16 << 20, "kept across the restart");
    let c = Cmd::new(&env, "resume-restart@example.com");
    c.ok(&["put", &s(&src), "mega:/"]).await;
    let ups = env.server.uploads().unwrap();
    assert_eq!(ups.len(), 1, "the same URL after the restart: {ups:?}");
    assert!(ups[0].received - at_restart <= SIZE as i64 - at_restart + (16 << 20));
    let dst = env.dir.path().join("resume-restart/back.bin");
    c.ok(&["get", "mega:/f.bin", &s(&dst)]).await;
    assert!(std::fs::read(&dst).unwrap() == content);
}

/// Issue 21 §3: `--bwlimit UP:DOWN` paces uploads and downloads (here a lower bound only:
/// the precision over 30 s is measured by `scripts/bench.sh`), `--connections` is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwlimit_paces_each_direction() {
    let env = Env::start().await;
    account(&env, "bw@example.com").await;
    let c = Cmd::new(&env, "bw@example.com");
    let src = env.dir.path().join("bw/f.bin");
    let content = data(3 << 20, 26);
    write(&src, &content, 1_700_000_000);
    let t = std::time::Instant::now();
    c.ok(&[
        "put",
        "--bwlimit",
        "1M:off",
        "--connections",
        "2",
        &s(&src),
        "mega:/",
    ])
    .await;
    let up = t.elapsed();
    assert!(
        up >= Duration::from_millis(2900),
        "3 MiB at 1 MiB/s took {up:?}"
    );
    let dst = env.dir.path().join("bw/back.bin");
    let t = std::time::Instant::now();
    c.ok(&["get", "--bwlimit", "off:1M", "mega:/f.bin", &s(&dst)])
        .await;
    let down = t.elapsed();
    assert!(
        down >= Duration::from_millis(2900),
        "3 MiB at 1 MiB/s took {down:?}"
    );
    assert!(std::fs::read(&dst).unwrap() == content);
    // Unlimited the other way round: well under the limit's time.
    let t = std::time::Instant::now();
    c.ok(&[
        "get",
        "--bwlimit",
        "1M:off",
        "mega:/f.bin",
        &s(&dst.with_extension("2")),
    ])
    .await;
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    c.fails(&["ls", "--bwlimit", "fast"], 2).await;
}

/// Issue 21 §3: an HTTP proxy from the environment (`http_proxy`) carries the API and the
/// transfers (a local relay here, counting what passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_through_an_http_proxy_from_the_environment() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let env = Env::start().await;
    account(&env, "proxy@example.com").await;
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let server = env.server.addr();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = relay.accept().await else {
                break;
            };
            seen2.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                // An HTTP/1.1 server takes the absolute-form target a proxy is sent.
                if let Ok(mut out) = tokio::net::TcpStream::connect(server).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    let c = Cmd::new(&env, "proxy@example.com");
    let src = env.dir.path().join("proxy/f.bin");
    let content = data(1 << 20, 27);
    write(&src, &content, 1_700_000_000);
    let run = |args: Vec<String>| {
        let mut cmd = c.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("http_proxy", format!("http://{relay_addr}"));
        async move {
            let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                .await
                .unwrap()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    run(vec!["put".into(), s(&src), "mega:/".into()]).await;
    let after_put = seen.load(Ordering::Relaxed);
    assert!(after_put > 0, "the proxy carried the upload's requests");
    let dst = env.dir.path().join("proxy/back.bin");
    run(vec!["get".into(), "mega:/f.bin".into(), s(&dst)]).await;
    assert!(seen.load(Ordering::Relaxed) > after_put);
    assert!(std::fs::read(&dst).unwrap() == content);
    task.abort();
}

/// Issue 21 §3: `put --queue` returns at once; queued transfers run one after another in the
/// background, `transfers` lists the waiting ones, and `--cancel` takes one out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_transfers_run_in_turn_and_can_be_cancelled() {
    let env = Env::start().await;
    account(&env, "queue@example.com").await;
    let c = Cmd::new(&env, "queue@example.com");
    let dir = env.dir.path().join("queue");
    for (name, seed) in [("a.bin", 1u8), ("b.bin", 2), ("c.bin", 3)] {
        write(&dir.join(name), &data(1 << 20, seed), 1_700_000_000);
    }
    // Uploads are held: the first queued transfer runs and waits, the others queue.
    env.server.faults().update(|f| f.ul_hold = true);
    let t = std::time::Instant::now();
    for name in ["a.bin", "b.bin", "c.bin"] {
        let o = c
            .ok(&["put", "--queue", &s(&dir.join(name)), "mega:/"])
            .await;
        assert!(o.stderr.contains("queued as q-"), "{}", o.stderr);
    }
    assert!(t.elapsed() < Duration::from_secs(30), "returned at once");
    let mut queued = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queued.len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "never two waiting: {queued:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        queued = c
            .ok(&["transfers", "--json"])
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "queued")
            .cloned()
            .collect::<Vec<_>>();
    }
    // The last one is taken out.
    let last = queued
        .iter()
        .find(|q| q["command"].to_string().contains("c.bin"))
        .expect("c.bin waits");
    c.ok(&["transfers", "--cancel", last["id"].as_str().unwrap()])
        .await;
    env.server.faults().update(|f| f.ul_hold = false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<String> = c
            .ok(&["ls", "--json", "mega:/"])
            .await
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str().map(String::from))
            .collect();
        if names.contains(&"a.bin".to_string()) && names.contains(&"b.bin".to_string()) {
            assert!(
                !names.contains(&"c.bin".to_string()),
                "cancelled: {names:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never ran: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing is left waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !c
        .ok(&["transfers", "--json"])
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "transfers left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 21 §1: an account with its own transfer allowance (as a paid plan has,
/// `useradd --transfer-quota`) is limited by it, not by its address; `df` shows the allowance
/// and its use, and another account at the same address downloads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_allowance_limits_that_account_only() {
    let env = Env::start().await;
    env.user(
        "pro@example.com",
        UserOptions {
            transfer_quota: 3 << 20,
            ..Default::default()
        },
    )
    .await;
    account(&env, "free@example.com").await;
    let pro = Cmd::new(&env, "pro@example.com");
    let free = Cmd::new(&env, "free@example.com");
    let dir = env.dir.path().join("allowance");
    write(&dir.join("f.bin"), &data(8 << 20, 28), 1_700_000_000);
    pro.ok(&["put", &s(&dir.join("f.bin")), "mega:/"]).await;
    free.ok(&["put", &s(&dir.join("f.bin")), "mega:/"]).await;
    let o = pro
        .fails(
            &["get", "--no-wait", "mega:/f.bin", &s(&dir.join("pro.bin"))],
            7,
        )
        .await;
    assert!(o.stderr.contains("transfer quota exceeded"), "{}", o.stderr);
    let df = pro.ok(&["df", "--json"]).await.json();
    assert_eq!(df["transfer_max"].as_u64(), Some(3 << 20), "{df}");
    assert!(df["transfer_used"].as_u64().unwrap() >= 3 << 20, "{df}");
    // The same address, another account: not limited by it.
    free.ok(&["get", "mega:/f.bin", &s(&dir.join("free.bin"))])
        .await;
    assert!(std::fs::read(dir.join("free.bin")).unwrap() == data(8 << 20, 28));
}

/// Issue 21 §1: a one-way sync from MEGA waits out the transfer quota (said once) and
/// finishes; with `--no-wait` it stops the downloads (exit 7) and says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_sync_waits_out_the_transfer_quota() {
    let env = Env::start_with(|cfg| {
        cfg.limits.transfer_quota = 3 << 20;
        cfg.limits.transfer_bucket = Duration::from_secs(1);
    })
    .await;
    account(&env, "onewayq@example.com").await;
    let c = Cmd::new(&env, "onewayq@example.com");
    let src = env.dir.path().join("onewayq/src");
    write(&src.join("one.bin"), &data(4 << 20, 31), 1_700_000_000);
    write(&src.join("two.bin"), &data(4 << 20, 32), 1_700_000_000);
    c.ok(&["put", "-r", &s(&src), "mega:/"]).await;
    let dst = env.dir.path().join("onewayq/dst");
    let o = c
        .ok(&["sync", "--parallel", "1", "mega:/src/", &s(&dst)])
        .await;
    assert!(o.stderr.contains("transfer quota"), "{}", o.stderr);
    assert!(std::fs::read(dst.join("one.bin")).unwrap() == data(4 << 20, 31));
    assert!(std::fs::read(dst.join("two.bin")).unwrap() == data(4 << 20, 32));
    let dst2 = env.dir.path().join("onewayq/dst2");
    let o = c
        .run(&[
            "sync",
            "--no-wait",
            "--parallel",
            "1",
            "mega:/src/",
            &s(&dst2),
        ])
        .await;
    assert_eq!(o.code, 7, "{}{}", o.stdout, o.stderr);
}

/// POSIX metadata through `put -r` and `get -r` (issue 20 §3): modes of files and folders,
/// and symbolic links (to a file, to a folder, dangling) stored as links, not followed; `check`
/// finds the tree equal, links included, and a changed link target different.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_recursive_keep_modes_and_symbolic_links() {
    let env = Env::start().await;
    account(&env, "pm@example.com").await;
    let m = Cmd::new(&env, "pm@example.com");
    let src = env.dir.path().join("tree");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    write(&src.join("run.sh"), b"#!/bin/sh\necho hi\n", 1_600_000_000);
    mode(&src.join("run.sh"), 0o755).unwrap();
    write(&src.join("secret/key.txt"), b"k", 1_600_000_000);
    mode(&src.join("secret/key.txt"), 0o600).unwrap();
    mode(&src.join("secret"), 0o700).unwrap();
    std::os::unix::fs::symlink("run.sh", src.join("to-file")).unwrap();
    std::os::unix::fs::symlink("secret", src.join("to-dir")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    m.ok(&["put", "-r", &s(&src), "mega:/"]).await;

    let out = env.dir.path().join("back");
    m.ok(&["get", "-r", "mega:/tree", &s(&out)]).await;
    let perm = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(perm("run.sh"), 0o755);
    assert_eq!(perm("secret/key.txt"), 0o600);
    assert_eq!(perm("secret"), 0o700);
    for (link, to) in [
        ("to-file", "run.sh"),
        ("to-dir", "secret"),
        ("dangling", "/nowhere/at/all"),
    ] {
        let l = out.join(link);
        assert!(
            std::fs::symlink_metadata(&l).unwrap().is_symlink(),
            "{link}"
        );
        assert_eq!(std::fs::read_link(&l).unwrap(), Path::new(to), "{link}");
    }
    // The link to a folder was not followed: it is one small node, not a second folder.
    let l = m.ok(&["ls", "-r", "--json", "mega:/tree"]).await.json();
    assert_eq!(l.as_array().unwrap().len(), 6, "{l}");
    let entry = |name: &str| {
        l.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            entry("to-dir")["type"].as_str(),
            entry("to-dir")["mode"].as_str()
        ),
        (Some("link"), Some("0777"))
    );
    assert_eq!(entry("run.sh")["mode"], "0755");
    assert_eq!(entry("secret")["mode"], "0700");
    let long = m.ok(&["ls", "-l", "mega:/tree"]).await.stdout;
    assert!(
        long.lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("run.sh")),
        "{long}"
    );
    m.ok(&["check", "-r", &s(&src), "mega:/tree"]).await;
    std::fs::remove_file(src.join("to-file")).unwrap();
    std::os::unix::fs::symlink("run.sx", src.join("to-file")).unwrap();
    let c = m.fails(&["check", "-r", &s(&src), "mega:/tree"], 13).await;
    assert!(c.stdout.contains("to-file"), "{}", c.stdout);
}

/// `get -r` never writes through a symbolic link already in the target folder (downloads make
/// links now): a remote file below a path that is a local link fails with a clear error, and
/// nothing lands where the link points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_recursive_does_not_write_through_a_local_link() {
    let env = Env::start().await;
    account(&env, "gl@example.com").await;
    let m = Cmd::new(&env, "gl@example.com");
    let src = env.dir.path().join("tree");
    write(&src.join("docs/inside.txt"), b"remote", 1_600_000_000);
    m.ok(&["put", "-r", &s(&src), "mega:/"]).await;
    let out = env.dir.path().join("out");
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(out.join("tree")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("tree/docs")).unwrap();
    let r = m
        .run(&["get", "-r", "--force", "mega:/tree", &s(&out)])
        .await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
}
