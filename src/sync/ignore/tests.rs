//! The worked examples of MEGA's `.megaignore` semantics, each a table of paths and verdicts,
//! plus inheritance, the `.megaignore` itself, the default file and errors.

use super::*;

/// A sync root holding the given `.megaignore` files (`(folder, text)`, "" = the root).
fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Exclusions) {
    let dir = tempfile::tempdir().unwrap();
    for (folder, text) in files {
        let d = dir.path().join(folder);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(IGNORE_FILE), text).unwrap();
    }
    let ex = Exclusions::open(dir.path(), false).unwrap();
    (dir, ex)
}

use Kind::{File as F, Folder as D, Symlink as S};

/// `(path, kind, size, excluded)` rows against one set of files.
fn check(files: &[(&str, &str)], rows: &[(&str, Kind, Option<u64>, bool)]) {
    let (_dir, ex) = root_with(files);
    for &(path, kind, size, want) in rows {
        assert_eq!(
            ex.excluded(path, kind, size).unwrap(),
            want,
            "{path} ({kind:?}, {size:?}) with {files:?}"
        );
    }
}

#[test]
fn worked_examples() {
    // 1. Any depth, files and folders, case-insensitive.
    check(
        &[("", "-:*.tmp")],
        &[
            ("a.tmp", F, None, true),
            ("x/B.TMP", F, None, true),
            ("x/c.tmp", D, None, true),
            ("a.tmp.bak", F, None, false),
        ],
    );
    // 2. Files only.
    check(
        &[("", "-f:*.log")],
        &[
            ("app.log", F, None, true),
            ("x/y.log", F, None, true),
            ("old.log", D, None, false),
            ("old.log/a", F, None, false),
        ],
    );
    // 3. Folders only, with their subtrees.
    check(
        &[("", "-d:node_modules")],
        &[
            ("node_modules", D, None, true),
            ("a/node_modules", D, None, true),
            ("a/node_modules/b/c.js", F, None, true),
            ("node_modules", F, None, false),
        ],
    );
    // 4. N: this folder only.
    check(
        &[("", "-N:build")],
        &[("build", D, None, true), ("src/build", D, None, false)],
    );
    // 5. A / makes a path rule, relative to the folder of the file.
    check(
        &[("", "-:docs/drafts")],
        &[
            ("docs/drafts", D, None, true),
            ("docs/drafts/a.txt", F, None, true),
            ("x/docs/drafts", D, None, false),
            ("docs", D, None, false),
        ],
    );
    check(
        &[("x", "-:docs/drafts")],
        &[
            ("x/docs/drafts", D, None, true),
            ("docs/drafts", D, None, false),
        ],
    );
    // 6. * crosses /: the folder stays, everything under it goes.
    check(
        &[("", "-p:build/*")],
        &[
            ("build", D, None, false),
            ("build/a.o", F, None, true),
            ("build/sub", D, None, true),
        ],
    );
    // 7. Full-match regex, case-insensitive.
    check(
        &[("", "-nr:.*foo.*")],
        &[
            ("Foo.txt", F, None, true),
            ("d/xfoo", F, None, true),
            ("fo.txt", F, None, false),
        ],
    );
    // 8. Case-sensitive glob.
    check(
        &[("", "-G:*.JPG")],
        &[("IMG.JPG", F, None, true), ("img.jpg", F, None, false)],
    );
    // 9. The last match wins.
    check(
        &[("", "-:*.txt\n+:keep*.txt")],
        &[("keep1.txt", F, None, false), ("a.txt", F, None, true)],
    );
    check(
        &[("", "+:keep*.txt\n-:*.txt")],
        &[("keep1.txt", F, None, true)],
    );
    // 10. The nearest folder decides.
    check(
        &[("", "-:*.psd"), ("art", "+:*.psd")],
        &[
            ("y.psd", F, None, true),
            ("art/x.psd", F, None, false),
            ("art/sub/z.psd", F, None, false),
        ],
    );
    // 11. Nothing rescues an item of an excluded folder.
    check(
        &[("", "-d:cache\n+:important.db")],
        &[
            ("cache/important.db", F, None, true),
            ("important.db", F, None, false),
        ],
    );
    // 12. Size filters: files only, limits kept.
    check(
        &[("", "exclude-larger:100M\nexclude-smaller:1k")],
        &[
            ("a", F, Some(104_857_600), false),
            ("a", F, Some(104_857_601), true),
            ("a", F, Some(1023), true),
            ("a", F, Some(1024), false),
            ("d", D, None, false),
            ("unknown", F, None, false),
        ],
    );
    // 13. Symbolic links.
    check(
        &[("", "-s:*")],
        &[
            ("l", S, None, true),
            ("f", F, None, false),
            ("d", D, None, false),
        ],
    );
    // 14. A file in an excluded folder, whatever its own name.
    check(
        &[("", "-:*.n*\n+:*.ni")],
        &[("d.n/f.ni", F, None, true), ("f.ni", F, None, false)],
    );
}

#[test]
fn inheritance_and_size_override() {
    // A subfolder's N rule acts in that folder only; a path rule of the root sees the path
    // from the root, one of a subfolder the path from there.
    check(
        &[("", "-p:a/b/c.txt"), ("a", "-N:x\n-p:b/d.txt")],
        &[
            ("a/x", F, None, true),
            ("a/b/x", F, None, false),
            ("a/b/c.txt", F, None, true),
            ("a/b/d.txt", F, None, true),
            ("b/d.txt", F, None, false),
        ],
    );
    // The nearest size filter replaces the root's.
    check(
        &[("", "exclude-larger:10"), ("big", "exclude-larger:1k")],
        &[
            ("a", F, Some(11), true),
            ("big/a", F, Some(11), false),
            ("big/sub/a", F, Some(1025), true),
        ],
    );
    // A subfolder's rules do not reach its siblings.
    check(
        &[("a", "-:*")],
        &[("a/x", F, None, true), ("b/x", F, None, false)],
    );
}

#[test]
fn the_megaignore_itself() {
    check(
        &[("", "-:*"), ("sub", "+sync:.megaignore")],
        &[
            (".megaignore", F, None, true),
            ("sub", D, None, true),
            ("sub/.megaignore", F, None, true),
        ],
    );
    check(
        &[("", "-:.*\n+sync:.megaignore"), ("sub", "-:x")],
        &[
            (".megaignore", F, None, false),
            ("sub/.megaignore", F, None, true),
            // A folder without one: one in the cloud may come down.
            ("other/.megaignore", F, None, false),
            // A folder named .megaignore is an ordinary folder.
            ("d/.megaignore", D, None, true),
        ],
    );
}

#[test]
fn builtins_and_the_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Exclusions::open(dir.path(), false).unwrap();
    assert!(
        !dir.path().join(IGNORE_FILE).exists(),
        "nothing written unless asked"
    );
    for (path, kind, want) in [
        ("Thumbs.db", F, true),
        ("x/~lock.doc", F, true),
        (".hidden", F, true),
        ("a/.git", D, true),
        ("doc.txt~.bak", F, true),
        ("x.crdownload", F, true),
        ("a.sb-12345678-abcdef", F, true),
        ("a.tmp", F, true),
        ("notes.txt", F, false),
        ("Photos", D, false),
        (".megaignore", F, true),
        (".debris", D, true),
        ("x/.debris", D, true),
        ("x/desktop.ini", F, true),
        ("Icon\r", F, true),
        ("d/.a.megasync-0011aabb.part", F, true),
    ] {
        assert_eq!(ex.excluded(path, kind, None).unwrap(), want, "{path:?}");
    }
    // Without the defaults, only the built-ins.
    let (_d, ex) = root_with(&[("", "# nothing")]);
    assert!(!ex.excluded(".hidden", F, None).unwrap());
    assert!(!ex.excluded("a/.debris", D, None).unwrap());
    assert!(ex.excluded(".debris", D, None).unwrap());
    assert!(ex.excluded("x/.DS_Store", F, None).unwrap());

    // Asked to, the default is written as MEGA's apps write it, and never over a file.
    Exclusions::open(dir.path(), true).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join(IGNORE_FILE)).unwrap(),
        DEFAULT_FILE.as_bytes()
    );
    assert!(DEFAULT_FILE
        .as_bytes()
        .starts_with(b"\xEF\xBB\xBF-:Thumbs.db\n"));
    std::fs::write(dir.path().join(IGNORE_FILE), "-:only").unwrap();
    let ex = Exclusions::open(dir.path(), true).unwrap();
    assert!(!ex.excluded(".hidden", F, None).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.path().join(IGNORE_FILE)).unwrap(),
        "-:only"
    );
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(IGNORE_FILE), "-:ok\n*.tmp\n").unwrap();
    let e = Exclusions::open(dir.path(), true)
        .err()
        .expect("a bad root file fails");
    let msg = e.to_string();
    assert!(
        msg.contains(".megaignore, line 2:") && msg.contains("*.tmp"),
        "{msg}"
    );

    // A bad file in a subfolder fails when that folder is reached.
    std::fs::write(dir.path().join(IGNORE_FILE), "-:ok\n").unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(
        dir.path().join("a/b").join(IGNORE_FILE),
        "exclude-larger:big",
    )
    .unwrap();
    let ex = Exclusions::open(dir.path(), true).unwrap();
    assert!(!ex.excluded("a/x", F, None).unwrap());
    let msg = ex.excluded("a/b/x", F, None).unwrap_err().to_string();
    assert!(msg.contains("a/b/.megaignore, line 1"), "{msg}");
    // Not read below an excluded folder: its file does not matter.
    std::fs::write(dir.path().join(IGNORE_FILE), "-:b").unwrap();
    let ex = Exclusions::open(dir.path(), true).unwrap();
    assert!(ex.excluded("a/b/x", F, None).unwrap());

    // A folder named .megaignore where the file should be.
    std::fs::remove_file(dir.path().join(IGNORE_FILE)).unwrap();
    std::fs::create_dir(dir.path().join(IGNORE_FILE)).unwrap();
    let msg = Exclusions::open(dir.path(), true)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn a_file_where_the_remote_has_a_folder() {
    let (dir, ex) = root_with(&[("", "-:nothing")]);
    std::fs::write(dir.path().join("f"), "x").unwrap();
    // The remote side's folder `f` holds `g`: no rules there, nothing to read, no error.
    assert!(!ex.excluded("f/g", F, None).unwrap());
}

#[test]
fn rules_match_cloud_names() {
    // A remote name with a / is escaped locally; the rules see the cloud name.
    check(
        &[("", "-n:a/b")],
        &[("a%2Fb", F, None, true), ("a", D, None, false)],
    );
    check(&[("", "-n:a%2Fb")], &[("a%2Fb", F, None, false)]);
}
