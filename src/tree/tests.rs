//! Tree tests on hand-built encrypted node objects.

use serde_json::{json, Value};

use super::node::raw_from_value;
use super::*;
use crate::api::commands::FetchReply;
use crate::crypto::{attr, b64, FileKey, FolderKey, Key128, MasterKey, NodeKey};

const ME: &str = "AAAAAAAAAAA";

fn keys() -> KeyRing {
    KeyRing::new(MasterKey(Key128([7; 16])), ME.into(), None)
}

fn enc_attrs(key: &NodeKey, attrs: Value) -> String {
    b64::encode(&attr::encrypt(&key.attr_key(), attrs.as_object().unwrap()))
}

fn folder(h: &str, p: &str, name: &str) -> Value {
    let key = NodeKey::Folder(FolderKey(Key128([h.as_bytes()[0]; 16])));
    let wrapped = b64::encode(&Key128([7; 16]).wrap(&key.raw()));
    json!({"h": h, "p": p, "u": ME, "t": 1, "a": enc_attrs(&key, json!({"n": name})),
           "k": format!("{ME}:{wrapped}"), "ts": 100})
}

fn file(h: &str, p: &str, name: &str, c: Option<&str>) -> Value {
    let fk = FileKey {
        aes: [h.as_bytes()[0]; 16],
        nonce: [1; 8],
        meta_mac: [2; 8],
    };
    let key = NodeKey::File(fk);
    let wrapped = b64::encode(&Key128([7; 16]).wrap(&key.raw()));
    let mut a = json!({"n": name});
    if let Some(c) = c {
        a["c"] = json!(c);
    }
    json!({"h": h, "p": p, "u": ME, "t": 0, "a": enc_attrs(&key, a), "s": 5,
           "k": format!("{ME}:{wrapped}"), "ts": 200})
}

/// A fetch reply as the server would send it, decoded as the client decodes it.
fn typed(v: Value) -> FetchReply {
    serde_json::from_value(v).expect("a fetch reply")
}

fn raw(v: Value) -> Result<crate::api::commands::RawNode, TreeError> {
    raw_from_value(v)
}

fn fetch_reply() -> Value {
    json!({"f": [
        {"h": "ROOT0000", "p": "", "u": ME, "t": 2, "a": "", "ts": 1},
        {"h": "INBX0000", "p": "", "u": ME, "t": 3, "a": "", "ts": 1},
        {"h": "RUBB0000", "p": "", "u": ME, "t": 4, "a": "", "ts": 1},
        folder("DIRA0000", "ROOT0000", "docs"),
        file("FILE0001", "DIRA0000", "a.txt", Some("2IDUDIExcicOatw3dZqBIQQA8VNl")),
        file("FILE0002", "ROOT0000", "b.txt", None),
        {"h": "BADK0000", "p": "ROOT0000", "u": ME, "t": 0, "a": "AAAA", "k": "zzzzzzzzzzz:AAAA", "s": 1, "ts": 5},
    ], "ok": [], "sn": "AAAAAAAAAAE"})
}

#[test]
fn fetch_builds_tree_with_names_roots_and_mtimes() {
    let (tree, sn) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    assert_eq!(sn.as_deref(), Some("AAAAAAAAAAE"));
    assert_eq!(tree.root().unwrap().name, "Cloud Drive");
    assert_eq!(tree.rubbish().unwrap().name, "Rubbish Bin");
    assert_eq!(tree.inbox().unwrap().name, "Inbox");
    let a = tree.resolve("/docs/a.txt").unwrap();
    assert_eq!(a.handle.0, "FILE0001");
    assert_eq!(a.mtime, 1_700_000_000, "mtime comes from the fingerprint");
    let b = tree.resolve("b.txt").unwrap();
    assert_eq!(b.mtime, 200, "no fingerprint: node timestamp");
    assert_eq!(tree.path_of(&a.handle), "/docs/a.txt");
    assert_eq!(tree.resolve("/docs/../b.txt").unwrap().handle.0, "FILE0002");
    assert!(matches!(tree.resolve("/nope"), Err(TreeError::NotFound(_))));
    assert!(matches!(
        tree.resolve("/b.txt/x"),
        Err(TreeError::NotAFolder(_))
    ));
}

#[test]
fn undecryptable_nodes_are_kept_and_reported() {
    let (tree, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let bad: Vec<_> = tree.undecryptable().collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].name, "[undecryptable BADK0000]");
    assert!(tree
        .children(&"ROOT0000".into())
        .iter()
        .any(|n| n.handle.0 == "BADK0000"));
}

#[test]
fn malformed_nodes_are_errors_not_panics() {
    let mut k = keys();
    assert!(raw(json!({"t": 0}))
        .and_then(|r| parse_node(&r, &mut k))
        .is_err());
    assert!(raw(json!({"h": "x", "t": 9}))
        .and_then(|r| parse_node(&r, &mut k))
        .is_err());
    // Garbage everywhere else is only "undecryptable".
    let n = parse_node(
        &raw(json!({"h": "x", "t": 0, "k": 5, "a": [], "s": "big"})).unwrap(),
        &mut k,
    )
    .unwrap();
    assert!(n.undecryptable.is_some());
    // A size no file can have is a protocol error, not an allocation.
    let huge = raw(json!({"h": "x", "t": 0, "s": u64::MAX})).unwrap();
    assert!(matches!(
        parse_node(&huge, &mut k),
        Err(TreeError::Malformed(_))
    ));
    assert!(typed_fetch_with(json!({"h": "x", "t": 0, "s": 1u64 << 60})).is_err());
}

fn typed_fetch_with(node: Value) -> Result<(NodeTree, Option<String>), TreeError> {
    let mut reply = fetch_reply();
    reply["f"].as_array_mut().unwrap().push(node);
    NodeTree::from_fetch(&typed(reply), keys())
}

#[test]
fn duplicate_names_resolve_deterministically() {
    let mut reply = fetch_reply();
    let mut dup = file("FILE0003", "ROOT0000", "b.txt", None);
    dup["ts"] = json!(50); // older than FILE0002
    reply["f"].as_array_mut().unwrap().push(dup);
    let (tree, _) = NodeTree::from_fetch(&typed(reply), keys()).unwrap();
    assert_eq!(tree.resolve("/b.txt").unwrap().handle.0, "FILE0003");
}

#[test]
fn share_keys_from_ok_are_verified_with_ha() {
    let mk = Key128([7; 16]);
    let share = Key128([9; 16]);
    let ok: Vec<crate::api::commands::ShareKey> = serde_json::from_value(json!([
        {"h": "SHAR0000", "ha": b64::encode(&mk.wrap(b"SHAR0000SHAR0000")), "k": b64::encode(&mk.wrap(&share.0))},
        {"h": "EVIL0000", "ha": b64::encode(&[0u8; 16]), "k": b64::encode(&mk.wrap(&[1; 16]))},
    ]))
    .unwrap();
    let mut k = keys();
    k.learn_outgoing(&ok);
    assert_eq!(k.share_keys.get("SHAR0000"), Some(&share));
    assert!(!k.share_keys.contains_key("EVIL0000"));
    // A node keyed only under the share key decrypts.
    let fk = NodeKey::Folder(FolderKey(Key128([4; 16])));
    let node = json!({"h": "SUBF0000", "p": "SHAR0000", "u": "BBBBBBBBBBB", "t": 1,
        "a": enc_attrs(&fk, json!({"n": "shared"})),
        "k": format!("SHAR0000:{}", b64::encode(&share.wrap(&fk.raw())))});
    assert_eq!(
        parse_node(&raw(node).unwrap(), &mut k).unwrap().name,
        "shared"
    );
}

#[test]
fn packets_add_update_delete_and_move() {
    let (mut tree, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let new = file("FILE0009", "DIRA0000", "new.txt", None);
    let ch = tree.apply(
        &[ActionPacket::parse(&json!({"a": "t", "t": {"f": [new]}})).unwrap()],
        None,
    );
    assert_eq!(ch, vec![Change::Added("FILE0009".into())]);
    assert!(tree.resolve("/docs/new.txt").is_ok());

    // Rename via `u`.
    let key = tree.get(&"FILE0009".into()).unwrap().key.clone().unwrap();
    let at = enc_attrs(&key, json!({"n": "renamed.txt", "lbl": 3}));
    let ch = tree.apply(
        &[
            ActionPacket::parse(&json!({"a": "u", "n": "FILE0009", "at": at, "u": ME, "ts": 1}))
                .unwrap(),
        ],
        None,
    );
    assert_eq!(ch, vec![Change::Updated("FILE0009".into())]);
    assert!(tree.resolve("/docs/renamed.txt").is_ok());
    // The full attribute set stays available (kept encrypted, decrypted on demand).
    let attrs = tree.get(&"FILE0009".into()).unwrap().attrs().unwrap();
    assert_eq!(attrs["lbl"], json!(3));
    assert_eq!(attrs["n"], json!("renamed.txt"));

    // Move the folder (d m:1 + t with the subtree) to the root of the Rubbish Bin.
    let mut moved_dir = folder("DIRA0000", "RUBB0000", "docs");
    moved_dir["p"] = json!("RUBB0000");
    let sub = [
        file("FILE0001", "DIRA0000", "a.txt", None),
        file("FILE0009", "DIRA0000", "renamed.txt", None),
    ];
    let packets: Vec<_> = [
        json!({"a": "d", "i": "x", "n": "DIRA0000", "m": 1}),
        json!({"a": "t", "i": "x", "t": {"f": [moved_dir, sub[0].clone(), sub[1].clone()]}}),
    ]
    .iter()
    .map(|p| ActionPacket::parse(p).unwrap())
    .collect();
    let ch = tree.apply(&packets, None);
    assert_eq!(
        ch,
        vec![Change::Moved {
            handle: "DIRA0000".into(),
            from: Some("ROOT0000".into()),
            to: Some("RUBB0000".into())
        }]
    );
    assert!(tree.resolve("/docs").is_err());
    assert_eq!(tree.path_of(&"FILE0001".into()), "//Rubbish Bin/docs/a.txt");

    // Own echoes are skipped.
    let own = ActionPacket::parse(&json!({"a": "d", "i": "me", "n": "FILE0002"})).unwrap();
    assert!(tree
        .apply(std::slice::from_ref(&own), Some("me"))
        .is_empty());
    assert!(tree.get(&"FILE0002".into()).is_some());
    // Another client's delete applies.
    let ch = tree.apply(
        &[ActionPacket::parse(&json!({"a": "d", "i": "other", "n": "FILE0002"})).unwrap()],
        Some("me"),
    );
    assert_eq!(
        ch,
        vec![Change::Removed {
            handle: "FILE0002".into(),
            parent: Some("ROOT0000".into())
        }]
    );
    assert!(tree.get(&"FILE0002".into()).is_none());
}

#[test]
fn generation_moves_on_every_change_and_across_replacement() {
    let (mut tree, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let g0 = tree.generation();
    tree.reparent(&"FILE0002".into(), &"DIRA0000".into());
    let g1 = tree.generation();
    assert!(g1 > g0);
    let key = tree.get(&"FILE0002".into()).unwrap().key.clone().unwrap();
    tree.set_encrypted_attrs(&"FILE0002".into(), &enc_attrs(&key, json!({"n": "z"})));
    assert!(tree.generation() > g1);
    let g2 = tree.generation();
    tree.remove_subtree(&"DIRA0000".into());
    assert!(tree.generation() > g2);
    // A freshly fetched tree replacing this one is newer, even with fewer changes behind it.
    let (mut fresh, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    fresh.succeed(&tree);
    assert_eq!(fresh.epoch(), tree.epoch() + 1);
    assert!(fresh.generation() > tree.generation());
}

/// A folder's listing stamp moves when a child is added, renamed, moved in or out or removed,
/// and only then: a change in another folder (or of a child's content) leaves it alone.
#[test]
fn listing_generation_moves_only_with_the_folders_listing() {
    let (mut tree, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let (root, a) = (NodeHandle::from("ROOT0000"), NodeHandle::from("DIRA0000"));
    let stamps = |t: &NodeTree| (t.listing_generation(&root), t.listing_generation(&a));
    let s0 = stamps(&tree);
    // Into A: A's listing changes, and the root's (it left the root).
    tree.reparent(&"FILE0002".into(), &a);
    let s1 = stamps(&tree);
    assert!(s1.0 > s0.0 && s1.1 > s0.1, "{s0:?} {s1:?}");
    // Renamed in A: A only.
    let key = tree.get(&"FILE0002".into()).unwrap().key.clone().unwrap();
    tree.set_encrypted_attrs(&"FILE0002".into(), &enc_attrs(&key, json!({"n": "z"})));
    let s2 = stamps(&tree);
    assert!(s2.0 == s1.0 && s2.1 > s1.1, "{s1:?} {s2:?}");
    // A new node in the root: the root only.
    let mut n = tree.get(&"FILE0002".into()).unwrap().clone();
    n.handle = "NEWF0000".into();
    n.parent = Some(root.clone());
    tree.insert(n);
    let s3 = stamps(&tree);
    assert!(s3.0 > s2.0 && s3.1 == s2.1, "{s2:?} {s3:?}");
    // Removing A: both (A's own listing is gone).
    tree.remove_subtree(&a);
    let s4 = stamps(&tree);
    assert!(s4.0 > s3.0 && s4.1 > s3.1, "{s3:?} {s4:?}");
    // A tree replacing this one: every listing counts as changed.
    let (mut fresh, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    fresh.succeed(&tree);
    assert!(fresh.listing_generation(&root) > tree.listing_generation(&root));
}

/// Every node reachable from the Cloud Drive as (path, file?, name), sorted, walked through
/// `children` (the way the mount and `megacmd ls` see a tree).
fn walk_listing(tree: &NodeTree) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    // No unwrap: inside a deferred read (`TreeStore::view`) the root may not be read yet.
    let Some(root) = tree.root() else {
        return out;
    };
    let mut stack = vec![root.handle.clone()];
    while let Some(h) = stack.pop() {
        for c in tree.children(&h) {
            out.push((tree.path_of(&c.handle), c.is_file()));
            stack.push(c.handle.clone());
        }
    }
    out.sort();
    out
}

/// `tree` written to a cache file in `dir` and opened again, served from the file.
fn served_from_cache(tree: &mut NodeTree, dir: &std::path::Path) -> (cache::TreeCache, NodeTree) {
    let path = dir.join("tree.db");
    let (rows, meta) = cache::snapshot(tree).unwrap();
    cache::TreeCache::create(&path, "u/", &keys(), &rows, &meta, "sn1").unwrap();
    let (c, opened) = cache::TreeCache::open(&path, "u/", &keys())
        .unwrap()
        .unwrap();
    let backing = c.backing(std::sync::Arc::default());
    (c, NodeTree::backed(keys(), backing, opened))
}

fn commit(c: &mut cache::TreeCache, tree: &mut NodeTree, sn: &str) {
    let ch = cache::changes(tree);
    c.commit(&ch, sn).unwrap();
    tree.committed(ch.marks());
}

/// A tree served from the cache reads only what it is asked for, and answers every question
/// as the same tree in memory does, through changes, commits and trims: a node removed or
/// moved since the last commit never comes back from the file's older copy.
#[test]
fn a_tree_served_from_the_cache_matches_the_tree_in_memory() {
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut lazy) = served_from_cache(&mut mem, dir.path());
    assert_eq!(lazy.resident(), 0, "opening read nodes");
    assert_eq!(lazy.len(), mem.len());
    assert_eq!(lazy.resolve("/docs/a.txt").unwrap().handle.0, "FILE0001");
    // The root, the three nodes in it (names are encrypted: finding one reads them all) and
    // the one in /docs; not the Inbox or the Rubbish Bin.
    assert_eq!(lazy.resident(), 5, "a path read more than its folders");
    assert_eq!(walk_listing(&lazy), walk_listing(&mem));

    let steps: Vec<Vec<ActionPacket>> = vec![
        // New folder with a file, into a folder the lazy tree has not read since a trim.
        vec![ActionPacket::NewNodes {
            nodes: vec![
                folder("DIRB0000", "DIRA0000", "new"),
                file("FILE0003", "DIRB0000", "c.txt", None),
            ],
            users: vec![],
            echo: None,
        }],
        // A move: `d` marked as a move, then `t` under the new parent.
        vec![
            ActionPacket::Delete {
                handle: "DIRA0000".into(),
                is_move: true,
                echo: None,
            },
            ActionPacket::NewNodes {
                nodes: vec![
                    folder("DIRA0000", "RUBB0000", "docs"),
                    file("FILE0001", "DIRA0000", "a.txt", None),
                    folder("DIRB0000", "DIRA0000", "new"),
                    file("FILE0003", "DIRB0000", "c.txt", None),
                ],
                users: vec![],
                echo: None,
            },
        ],
        vec![ActionPacket::Delete {
            handle: "FILE0002".into(),
            is_move: false,
            echo: None,
        }],
    ];
    for (i, packets) in steps.iter().enumerate() {
        lazy.trim(0);
        let a = mem.apply(packets, None);
        let b = lazy.apply(packets, None);
        assert_eq!(a, b, "step {i}: changes");
        // Before the commit, with everything unchanged dropped: still the same tree.
        lazy.trim(0);
        assert_eq!(walk_listing(&lazy), walk_listing(&mem), "step {i}");
        assert_eq!(lazy.len(), mem.len(), "step {i}: count");
        commit(&mut c, &mut lazy, &format!("sn{}", i + 2));
        lazy.trim(0);
        assert_eq!(lazy.resident(), 0, "step {i}: a committed tree kept nodes");
        assert_eq!(
            walk_listing(&lazy),
            walk_listing(&mem),
            "step {i}: after commit"
        );
    }
    assert!(lazy.get(&"FILE0002".into()).is_none());
    assert_eq!(
        lazy.path_of(&"FILE0003".into()),
        "//Rubbish Bin/docs/new/c.txt"
    );
    // Reopened from the file: the committed state.
    drop(lazy);
    drop(c);
    let path = dir.path().join("tree.db");
    let (_c, opened) = cache::TreeCache::open(&path, "u/", &keys())
        .unwrap()
        .unwrap();
    assert_eq!(opened.count, mem.len());
    let backing = _c.backing(std::sync::Arc::default());
    let again = NodeTree::backed(keys(), backing, opened);
    assert_eq!(walk_listing(&again), walk_listing(&mem));
    let mut all: Vec<_> = again.iter().map(|n| n.handle.0.clone()).collect();
    let mut want: Vec<_> = mem.iter().map(|n| n.handle.0.clone()).collect();
    all.sort();
    want.sort();
    assert_eq!(all, want);
}

/// Nodes changed since the last commit stay in memory through a trim; a removed one is not
/// read back from the file, nor are its children.
#[test]
fn uncommitted_changes_survive_a_trim() {
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_c, mut lazy) = served_from_cache(&mut mem, dir.path());
    let key = lazy.get(&"FILE0002".into()).unwrap().key.clone().unwrap();
    lazy.set_encrypted_attrs(
        &"FILE0002".into(),
        &enc_attrs(&key, json!({"n": "renamed"})),
    );
    lazy.remove_subtree(&"DIRA0000".into());
    lazy.trim(0);
    assert_eq!(lazy.get(&"FILE0002".into()).unwrap().name, "renamed");
    assert!(lazy.get(&"DIRA0000".into()).is_none());
    assert!(lazy.get(&"FILE0001".into()).is_none());
    assert!(lazy.resolve("/docs").is_err());
    assert!(lazy.children(&"DIRA0000".into()).is_empty());
    assert_eq!(lazy.len(), mem.len() - 2);
}

/// A row that does not match its checksum is never served: the tree says it is damaged and
/// the waiting party is told.
#[test]
fn a_damaged_row_marks_the_tree_damaged() {
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.db");
    let (rows, meta) = cache::snapshot(&mut mem).unwrap();
    cache::TreeCache::create(&path, "u/", &keys(), &rows, &meta, "sn1").unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE nodes SET s = 99 WHERE h = 'FILE0001'", [])
        .unwrap();
    drop(conn);
    let (c, opened) = cache::TreeCache::open(&path, "u/", &keys())
        .unwrap()
        .unwrap();
    let told = std::sync::Arc::new(cache::Damage::default());
    let lazy = NodeTree::backed(keys(), c.backing(told.clone()), opened);
    assert!(lazy.resolve("/docs").is_ok());
    assert!(!lazy.damaged());
    assert!(
        lazy.resolve("/docs/a.txt").is_err(),
        "a damaged row was served"
    );
    assert!(lazy.damaged());
    assert_eq!(told.count(), 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), told.found())
            .await
            .expect("not told");
    });
}

/// Over its budget, a tree served from the cache lets go of what was read longest ago: the
/// folder listed last is still in memory after a trim (listing it again reads nothing),
/// the one listed before it is read again.
#[test]
fn a_trim_keeps_the_most_recently_read_nodes() {
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let mut nodes = vec![
        folder("DIRX0000", "ROOT0000", "x"),
        folder("DIRY0000", "ROOT0000", "y"),
    ];
    for i in 0..20 {
        nodes.push(file(
            &format!("FILX{i:04}"),
            "DIRX0000",
            &format!("{i}"),
            None,
        ));
        nodes.push(file(
            &format!("FILY{i:04}"),
            "DIRY0000",
            &format!("{i}"),
            None,
        ));
    }
    mem.apply(
        &[ActionPacket::NewNodes {
            nodes,
            users: vec![],
            echo: None,
        }],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let (_c, mut lazy) = served_from_cache(&mut mem, dir.path());
    assert_eq!(lazy.children(&"DIRX0000".into()).len(), 20);
    lazy.tick();
    assert_eq!(lazy.children(&"DIRY0000".into()).len(), 20);
    // Each folder and its files.
    assert_eq!(lazy.resident(), 42);
    // Down to 3/4 of 30: the 19 least recently read go, all of them x or x's files.
    lazy.trim(30);
    assert_eq!(lazy.resident(), 23);
    assert_eq!(lazy.children(&"DIRY0000".into()).len(), 20);
    assert_eq!(lazy.resident(), 23, "y's files were read again");
    assert_eq!(lazy.children(&"DIRX0000".into()).len(), 20);
    assert_eq!(lazy.resident(), 42);
    // Within budget: nothing goes.
    lazy.trim(42);
    assert_eq!(lazy.resident(), 42);
}

/// A tree served from `path` (written from `tree`), its file reads running `hook`.
fn served_with_hook(
    tree: &mut NodeTree,
    path: &std::path::Path,
    hook: std::sync::Arc<dyn Fn() + Send + Sync>,
) -> (cache::TreeCache, NodeTree) {
    let (rows, meta) = cache::snapshot(tree).unwrap();
    cache::TreeCache::create(path, "u/", &keys(), &rows, &meta, "sn1").unwrap();
    let (c, opened) = cache::TreeCache::open(path, "u/", &keys())
        .unwrap()
        .unwrap();
    let backing = c.backing(std::sync::Arc::default()).with_read_hook(hook);
    (c, NodeTree::backed(keys(), backing, opened))
}

/// A reader that needs nodes from the cache file reads them with the tree's lock let go:
/// stopped in the middle of a file read, a writer (applying events) can take the lock.
/// (Read in place under the read lock, as before the store, the writer waited for it.)
#[test]
fn a_reader_reading_the_cache_file_holds_no_lock_of_the_tree() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (go, go_rx) = mpsc::channel::<()>();
    let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
    let first = AtomicBool::new(true);
    let hook: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if first.swap(false, Ordering::SeqCst) {
            let _ = entered_tx.lock().unwrap().send(());
            let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
        }
    });
    let (_c, lazy) = served_with_hook(&mut mem, &dir.path().join("tree.db"), hook);
    let store = Arc::new(store::TreeStore::new(keys(), None, "u/".into(), 1000));
    store.put(lazy);
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || store.view(walk_listing))
    };
    entered
        .recv_timeout(Duration::from_secs(20))
        .expect("the reader reads the file");
    let writable = store.writable_now();
    go.send(()).unwrap();
    let listing = reader.join().unwrap();
    assert!(writable, "a file read held the tree's lock");
    assert_eq!(listing, walk_listing(&mem), "the deferred reads got it all");
}

/// Deferred reads: inside `deferring` a missing node or child list is noted, not read.
#[test]
fn inside_deferring_misses_are_noted_and_not_read() {
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    let hook = std::sync::Arc::new(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let (_c, lazy) = served_with_hook(&mut mem, &dir.path().join("tree.db"), hook);
    let root = NodeHandle::from("ROOT0000");
    let (listed, misses) = deferring(|| lazy.children(&root).len());
    assert_eq!(listed, 0);
    assert_eq!(
        misses,
        vec![Miss::Node(root.clone()), Miss::Kids(root.clone())]
    );
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Nested scopes: the outer one gets the inner one's misses too.
    let ((_, inner), outer) = deferring(|| deferring(|| lazy.get(&"FILE0002".into()).is_some()));
    assert_eq!(inner, vec![Miss::Node("FILE0002".into())]);
    assert_eq!(outer, inner);
    // Outside a scope, a read in place.
    assert_eq!(lazy.children(&root).len(), 3);
    assert!(reads.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

/// The listing a model of the tree gives, as [`walk_listing`] gives it of a tree.
fn model_listing(
    model: &std::collections::BTreeMap<String, (String, String, bool)>,
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![("ROOT0000".to_string(), String::new())];
    while let Some((h, path)) = stack.pop() {
        for (c, (p, name, folder)) in model {
            if *p == h {
                let cp = format!("{path}/{name}");
                out.push((cp.clone(), !folder));
                stack.push((c.clone(), cp));
            }
        }
    }
    out.sort();
    out
}

/// A folder or a file as the server sends it.
fn node_json(h: &str, p: &str, name: &str, is_folder: bool) -> Value {
    if is_folder {
        folder(h, p, name)
    } else {
        file(h, p, name, None)
    }
}

/// A fetch reply holding the model's nodes (and the three roots), at cursor `sn`.
fn model_reply(
    model: &std::collections::BTreeMap<String, (String, String, bool)>,
    sn: &str,
) -> Value {
    let mut f = vec![
        json!({"h": "ROOT0000", "p": "", "u": ME, "t": 2, "a": "", "ts": 1}),
        json!({"h": "INBX0000", "p": "", "u": ME, "t": 3, "a": "", "ts": 1}),
        json!({"h": "RUBB0000", "p": "", "u": ME, "t": 4, "a": "", "ts": 1}),
    ];
    for (h, (p, name, folder_)) in model {
        f.push(node_json(h, p, name, *folder_));
    }
    json!({"f": f, "ok": [], "sn": sn})
}

/// Seeded stress: fetches (a new tree put in place, its file written in the background),
/// commits, adoptions, trims and remote changes interleave on a multi-threaded runtime
/// while two threads list the tree; every listing is consistent, the tree always equals the
/// model after each step, and the file finally holds exactly the model at the last cursor.
/// A tiny memory budget makes nearly every read go to the file.
#[test]
fn fetches_commits_adoptions_and_changes_interleave_safely() {
    for seed in [1u64, 7, 42, 1234] {
        let (done_tx, done) = std::sync::mpsc::channel();
        let run = std::thread::spawn(move || {
            interleave(seed);
            let _ = done_tx.send(());
        });
        if done
            .recv_timeout(std::time::Duration::from_secs(120))
            .is_err()
        {
            panic!("seed {seed}: no progress in 120 s (a deadlock?)");
        }
        run.join().unwrap();
    }
}

fn interleave(seed: u64) {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.db");
    // Readers pause between reading the file and putting what they read in the tree (a
    // seeded 0-5 ms), so that changes and commits land in that window if they can.
    let pauses = std::sync::atomic::AtomicU64::new(seed);
    let pause: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let n = pauses.fetch_add(0x9E37_79B9, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_micros((n >> 7) % 5000));
    });
    let store = Arc::new(
        store::TreeStore::new(keys(), Some(path.clone()), "u/".into(), 4).with_load_hook(pause),
    );
    // handle → (parent, name, folder?)
    let mut model: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
    model.insert("DIRA0000".into(), ("ROOT0000".into(), "docs".into(), true));
    let mut serial = 0u64;
    let mut sn = 1u64;
    let sn_of = |n: u64| format!("sn{n:08}");
    let fetched = |model: &BTreeMap<String, (String, String, bool)>, sn: &str| {
        let (mut tree, _) = NodeTree::from_fetch(&typed(model_reply(model, sn)), keys()).unwrap();
        let snap = cache::snapshot(&mut tree);
        (tree, snap)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Consistent within one view: every path listed resolves to a node.
                    let bad = store.view(|t| {
                        walk_listing(t)
                            .into_iter()
                            .filter(|(p, _)| t.resolve(p).is_err())
                            .count()
                    });
                    assert_eq!(bad, 0, "a listing named paths that do not resolve");
                    n += 1;
                }
                n
            })
        })
        .collect();
    rt.block_on(async {
        let (tree, snap) = fetched(&model, &sn_of(sn));
        store.install(tree, snap).await;
        for step in 0..150 {
            // A remote change: packets for the store, the same change on the model.
            let mut change = |model: &mut BTreeMap<String, (String, String, bool)>| {
                let folders: Vec<String> = std::iter::once("ROOT0000".to_string())
                    .chain(model.iter().filter(|(_, v)| v.2).map(|(k, _)| k.clone()))
                    .collect();
                let pick = |i: u64, v: &Vec<String>| v[(i as usize) % v.len()].clone();
                let kind = next(4);
                let others: Vec<String> = model.keys().cloned().collect();
                if kind == 0 || others.len() < 3 {
                    serial += 1;
                    let h = format!("N{serial:07}");
                    let p = pick(next(1000), &folders);
                    let is_folder = next(3) == 0;
                    let name = format!("n{serial}");
                    let v = node_json(&h, &p, &name, is_folder);
                    model.insert(h, (p, name, is_folder));
                    return vec![json!({"a": "t", "t": {"f": [v]}})];
                }
                let h = pick(next(1000), &others);
                let (p, name, is_folder) = model[&h].clone();
                match kind {
                    1 => {
                        // Renamed (the node sent again with new attributes).
                        let name = format!("{name}r");
                        let v = node_json(&h, &p, &name, is_folder);
                        model.insert(h, (p, name, is_folder));
                        vec![json!({"a": "t", "t": {"f": [v]}})]
                    }
                    2 if !is_folder => {
                        // A file moved: `d` with `m` then `t`.
                        let to = pick(next(1000), &folders);
                        let v = file(&h, &to, &name, None);
                        model.insert(h.clone(), (to, name, false));
                        vec![
                            json!({"a": "d", "n": h, "m": 1}),
                            json!({"a": "t", "t": {"f": [v]}}),
                        ]
                    }
                    _ => {
                        // Deleted, with everything below.
                        let mut gone = vec![h.clone()];
                        let mut i = 0;
                        while i < gone.len() {
                            let below: Vec<String> = model
                                .iter()
                                .filter(|(_, v)| v.0 == gone[i])
                                .map(|(k, _)| k.clone())
                                .collect();
                            gone.extend(below);
                            i += 1;
                        }
                        for g in &gone {
                            model.remove(g);
                        }
                        vec![json!({"a": "d", "n": h})]
                    }
                }
            };
            let packets: Vec<ActionPacket> = change(&mut model)
                .iter()
                .map(|v| ActionPacket::parse(v).unwrap())
                .collect();
            sn += 1;
            let op = next(6);
            match op {
                // Fetch while committing: a new tree goes in while a commit runs.
                0 => {
                    store.apply(&packets, None, &sn_of(sn));
                    let (tree, snap) = fetched(&model, &sn_of(sn));
                    let (s1, s2) = (store.clone(), store.clone());
                    let c = tokio::spawn(async move { s1.commit().await });
                    let i = tokio::spawn(async move { s2.install(tree, snap).await });
                    c.await.unwrap();
                    i.await.unwrap();
                }
                // Adopt while changing: the file written after a fetch is adopted while
                // changes arrive.
                1 => {
                    let s = store.clone();
                    let t = tokio::spawn(async move { s.tend().await });
                    store.apply(&packets, None, &sn_of(sn));
                    t.await.unwrap();
                }
                // A change while a commit runs.
                2 => {
                    let s = store.clone();
                    let c = tokio::spawn(async move { s.commit().await });
                    store.apply(&packets, None, &sn_of(sn));
                    c.await.unwrap();
                }
                _ => {
                    store.apply(&packets, None, &sn_of(sn));
                    if op >= 3 {
                        store.commit().await;
                    }
                }
            }
            let listed = store.view(walk_listing);
            assert_eq!(
                listed,
                model_listing(&model),
                "seed {seed}, step {step}: the tree left the model"
            );
        }
        store.finish().await;
        assert_eq!(
            store.phase(),
            "serving",
            "seed {seed}: the file ends in use"
        );
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    drop(rt);
    // What the file holds is the model, at the last cursor (read as another process would).
    let (c, reply) = cache::TreeCache::load(&path, "u/", &keys())
        .unwrap()
        .unwrap();
    assert_eq!(c.sn(), sn_of(sn), "seed {seed}");
    let (from_file, _) = NodeTree::from_fetch_owned(reply, keys()).unwrap();
    assert_eq!(
        walk_listing(&from_file),
        model_listing(&model),
        "seed {seed}: the file left the model"
    );
}

/// Applying a batch through the store reads the cache file only outside the tree's lock,
/// also when later packets act on what earlier ones made: a folder created, a file created
/// in it, then the folder removed; a folder moved in, then removed with what it holds.
#[test]
fn applying_a_batch_reads_the_file_only_outside_the_lock() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock, Weak};
    let (mut mem, _) = NodeTree::from_fetch(&typed(fetch_reply()), keys()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let me: Arc<OnceLock<Weak<store::TreeStore>>> = Arc::default();
    let (under_lock, reads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let hook = {
        let (me, under_lock, reads) = (me.clone(), under_lock.clone(), reads.clone());
        Arc::new(move || {
            reads.fetch_add(1, Ordering::SeqCst);
            // This thread is the only one: a lock it cannot take is one it holds.
            if let Some(store) = me.get().and_then(Weak::upgrade) {
                if !store.writable_now() {
                    under_lock.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let (_c, lazy) = served_with_hook(&mut mem, &dir.path().join("tree.db"), hook);
    let store = Arc::new(store::TreeStore::new(keys(), None, "u/".into(), 1000));
    store.put(lazy);
    me.set(Arc::downgrade(&store)).unwrap();
    let packets: Vec<ActionPacket> = [
        json!({"a": "t", "t": {"f": [folder("NEWF0000", "ROOT0000", "new")]}}),
        json!({"a": "t", "t": {"f": [file("NEWG0000", "NEWF0000", "g.txt", None)]}}),
        json!({"a": "d", "n": "NEWF0000"}),
        json!({"a": "d", "n": "DIRA0000", "m": 1}),
        json!({"a": "t", "t": {"f": [folder("DIRA0000", "FILE0002", "docs")]}}),
        json!({"a": "t", "t": {"f": [folder("MOVE0000", "ROOT0000", "m")]}}),
        json!({"a": "d", "n": "DIRA0000", "m": 1}),
        json!({"a": "t", "t": {"f": [folder("DIRA0000", "MOVE0000", "docs"), file("FILE0001", "DIRA0000", "a.txt", None)]}}),
        json!({"a": "d", "n": "MOVE0000"}),
    ]
    .iter()
    .map(|v| ActionPacket::parse(v).unwrap())
    .collect();
    store.apply(&packets, None, "sn2");
    assert!(reads.load(Ordering::SeqCst) > 0, "the file was read");
    assert_eq!(
        under_lock.load(Ordering::SeqCst),
        0,
        "read under the tree's lock"
    );
    mem.apply(&packets, None);
    assert_eq!(store.view(walk_listing), walk_listing(&mem));
}
