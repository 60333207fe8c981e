//! The planner's decision table, row by row, and moves on both sides.

use super::*;

fn lf(path: &str, size: u64, mtime: i64, inode: u64) -> Local {
    Local {
        path: path.into(),
        dir: false,
        size,
        mtime,
        inode,
        settled: true,
        crc: None,
    }
}

fn ld(path: &str, inode: u64) -> Local {
    Local {
        dir: true,
        ..lf(path, 0, 0, inode)
    }
}

fn rf(path: &str, size: u64, mtime: i64, handle: &str) -> Remote {
    Remote {
        path: path.into(),
        dir: false,
        size,
        mtime,
        handle: handle.into(),
        crc: None,
    }
}

fn rd(path: &str, handle: &str) -> Remote {
    Remote {
        dir: true,
        ..rf(path, 0, 0, handle)
    }
}

fn sf(path: &str, size: u64, mtime: i64, handle: &str, inode: u64) -> Shadow {
    Shadow {
        path: path.into(),
        dir: false,
        size,
        mtime,
        rmtime: mtime,
        handle: handle.into(),
        inode,
        crc: None,
    }
}

fn sd(path: &str, handle: &str, inode: u64) -> Shadow {
    Shadow {
        dir: true,
        ..sf(path, 0, 0, handle, inode)
    }
}

fn with_crc<T>(mut e: T, set: fn(&mut T, Option<String>), crc: &str) -> T {
    set(&mut e, Some(crc.into()));
    e
}

fn lcrc(e: Local, crc: &str) -> Local {
    with_crc(e, |e, c| e.crc = c, crc)
}

fn rcrc(e: Remote, crc: &str) -> Remote {
    with_crc(e, |e, c| e.crc = c, crc)
}

#[test]
fn unchanged_on_both_sides_does_nothing() {
    let p = plan(
        &[lf("a", 1, 10, 7)],
        &[rf("a", 1, 10, "H1")],
        &[sf("a", 1, 10, "H1", 7)],
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn local_change_uploads_over_the_remote_version() {
    let p = plan(
        &[lf("a", 2, 20, 7)],
        &[rf("a", 1, 10, "H1")],
        &[sf("a", 1, 10, "H1", 7)],
    );
    assert_eq!(
        p,
        vec![Action::Upload {
            path: "a".into(),
            replace: Some("H1".into())
        }]
    );
}

#[test]
fn new_local_file_uploads() {
    let p = plan(&[lf("n", 2, 20, 9)], &[], &[]);
    assert_eq!(
        p,
        vec![Action::Upload {
            path: "n".into(),
            replace: None
        }]
    );
}

#[test]
fn remote_change_downloads() {
    let p = plan(
        &[lf("a", 1, 10, 7)],
        &[rf("a", 5, 30, "H2")],
        &[sf("a", 1, 10, "H1", 7)],
    );
    assert_eq!(
        p,
        vec![Action::Download {
            path: "a".into(),
            handle: "H2".into()
        }]
    );
}

#[test]
fn new_remote_file_and_folder_download() {
    let p = plan(&[], &[rd("d", "D1"), rf("d/x", 3, 3, "X1")], &[]);
    assert_eq!(
        p,
        vec![
            Action::MkdirLocal { path: "d".into() },
            Action::Download {
                path: "d/x".into(),
                handle: "X1".into()
            }
        ]
    );
}

#[test]
fn local_deletion_deletes_remote() {
    let p = plan(&[], &[rf("a", 1, 10, "H1")], &[sf("a", 1, 10, "H1", 7)]);
    assert_eq!(
        p,
        vec![Action::DeleteRemote {
            path: "a".into(),
            handle: "H1".into(),
            dir: false
        }]
    );
}

#[test]
fn remote_deletion_deletes_local() {
    let p = plan(&[lf("a", 1, 10, 7)], &[], &[sf("a", 1, 10, "H1", 7)]);
    assert_eq!(
        p,
        vec![Action::DeleteLocal {
            path: "a".into(),
            dir: false
        }]
    );
}

#[test]
fn gone_on_both_sides_is_forgotten() {
    let p = plan(&[], &[], &[sf("a", 1, 10, "H1", 7)]);
    assert_eq!(p, vec![Action::Forget { path: "a".into() }]);
}

#[test]
fn both_changed_differently_is_a_conflict() {
    let p = plan(
        &[lcrc(lf("a", 2, 20, 7), "L")],
        &[rcrc(rf("a", 2, 30, "H2"), "R")],
        &[sf("a", 1, 10, "H1", 7)],
    );
    assert_eq!(
        p,
        vec![Action::Conflict {
            path: "a".into(),
            handle: "H2".into()
        }]
    );
}

#[test]
fn both_changed_the_same_way_is_recorded() {
    let p = plan(
        &[lcrc(lf("a", 2, 20, 7), "C")],
        &[rcrc(rf("a", 2, 20, "H2"), "C")],
        &[sf("a", 1, 10, "H1", 7)],
    );
    assert_eq!(p, vec![Action::Record { path: "a".into() }]);
}

#[test]
fn present_on_both_sides_without_shadow_same_content_is_recorded() {
    // Different mtimes, same size and checksum: the same content.
    let p = plan(
        &[lcrc(lf("a", 4, 100, 7), "C")],
        &[rcrc(rf("a", 4, 50, "H"), "C")],
        &[],
    );
    assert_eq!(p, vec![Action::Record { path: "a".into() }]);
}

#[test]
fn present_on_both_sides_without_shadow_different_content_is_a_conflict() {
    let p = plan(
        &[lcrc(lf("a", 4, 100, 7), "C")],
        &[rcrc(rf("a", 4, 50, "H"), "D")],
        &[],
    );
    assert!(matches!(p[..], [Action::Conflict { .. }]), "{p:?}");
    let p = plan(&[lf("a", 5, 100, 7)], &[rf("a", 4, 50, "H")], &[]);
    assert!(matches!(p[..], [Action::Conflict { .. }]), "{p:?}");
}

#[test]
fn local_edit_wins_over_remote_delete_and_remote_edit_over_local_delete() {
    let p = plan(&[lf("a", 2, 20, 7)], &[], &[sf("a", 1, 10, "H1", 7)]);
    assert_eq!(
        p,
        vec![Action::Upload {
            path: "a".into(),
            replace: None
        }]
    );
    let p = plan(&[], &[rf("a", 2, 20, "H2")], &[sf("a", 1, 10, "H1", 7)]);
    assert_eq!(
        p,
        vec![Action::Download {
            path: "a".into(),
            handle: "H2".into()
        }]
    );
}

#[test]
fn unsettled_local_files_wait() {
    let mut l = lf("a", 2, 20, 7);
    l.settled = false;
    let p = plan(&[l], &[], &[]);
    assert_eq!(p, vec![Action::Defer { path: "a".into() }]);
}

#[test]
fn fingerprints_are_needed_only_where_content_decides() {
    let local = [
        lf("new-both", 4, 1, 1),
        lf("both-changed", 4, 9, 2),
        lf("only-local-changed", 4, 9, 3),
        lf("size-differs", 5, 1, 4),
    ];
    let remote = [
        rf("new-both", 4, 2, "A"),
        rf("both-changed", 4, 8, "B2"),
        rf("only-local-changed", 4, 1, "C"),
        rf("size-differs", 4, 1, "D"),
    ];
    let shadow = [
        sf("both-changed", 3, 1, "B", 2),
        sf("only-local-changed", 4, 1, "C", 3),
    ];
    assert_eq!(
        needs_fingerprint(&local, &remote, &shadow),
        vec!["new-both".to_string(), "both-changed".to_string()]
    );
}

#[test]
fn remote_rename_and_folder_move_are_applied_locally_as_moves() {
    let shadow = [
        sd("d", "D", 1),
        sf("d/x", 1, 1, "X", 2),
        sf("a", 1, 1, "A", 3),
    ];
    let local = [ld("d", 1), lf("d/x", 1, 1, 2), lf("a", 1, 1, 3)];
    let remote = [rd("e", "D"), rf("e/x", 1, 1, "X"), rf("b", 1, 1, "A")];
    let p = plan(&local, &remote, &shadow);
    assert_eq!(
        p,
        vec![
            Action::MoveLocal {
                from: "a".into(),
                to: "b".into()
            },
            Action::MoveLocal {
                from: "d".into(),
                to: "e".into()
            },
        ]
    );
}

#[test]
fn local_rename_and_folder_move_are_applied_remotely_as_moves() {
    let shadow = [
        sd("d", "D", 1),
        sf("d/x", 1, 1, "X", 2),
        sf("a", 1, 1, "A", 3),
    ];
    let local = [ld("e", 1), lf("e/x", 1, 1, 2), lf("b", 1, 1, 3)];
    let remote = [rd("d", "D"), rf("d/x", 1, 1, "X"), rf("a", 1, 1, "A")];
    let p = plan(&local, &remote, &shadow);
    assert_eq!(
        p,
        vec![
            Action::MoveRemote {
                from: "a".into(),
                to: "b".into(),
                handle: "A".into()
            },
            Action::MoveRemote {
                from: "d".into(),
                to: "e".into(),
                handle: "D".into()
            },
        ]
    );
}

#[test]
fn a_moved_and_edited_remote_file_moves_then_downloads() {
    let p = plan(
        &[lf("a", 1, 1, 3)],
        &[rf("b", 2, 2, "A")],
        &[sf("a", 1, 1, "A", 3)],
    );
    assert_eq!(
        p,
        vec![
            Action::MoveLocal {
                from: "a".into(),
                to: "b".into()
            },
            Action::Download {
                path: "b".into(),
                handle: "A".into()
            },
        ]
    );
}

#[test]
fn a_reused_inode_with_other_content_is_not_a_move() {
    // "a" deleted, and a new file "n" that happens to get its inode, with other content.
    let p = plan(
        &[lf("n", 9, 9, 3)],
        &[rf("a", 1, 1, "A")],
        &[sf("a", 1, 1, "A", 3)],
    );
    assert!(p.contains(&Action::Upload {
        path: "n".into(),
        replace: None
    }));
    assert!(p.contains(&Action::DeleteRemote {
        path: "a".into(),
        handle: "A".into(),
        dir: false
    }));
}

#[test]
fn a_deleted_folder_is_one_action_unless_something_below_changed() {
    let shadow = [
        sd("d", "D", 1),
        sf("d/x", 1, 1, "X", 2),
        sf("d/y", 1, 1, "Y", 4),
    ];
    // Deleted locally, unchanged remotely: one remote delete for the folder.
    let p = plan(
        &[],
        &[rd("d", "D"), rf("d/x", 1, 1, "X"), rf("d/y", 1, 1, "Y")],
        &shadow,
    );
    assert_eq!(
        p,
        vec![Action::DeleteRemote {
            path: "d".into(),
            handle: "D".into(),
            dir: true
        }]
    );
    // ... but a file in it changed remotely: the folder comes back with that file; the
    // unchanged one is deleted.
    let p = plan(
        &[],
        &[rd("d", "D"), rf("d/x", 2, 2, "X2"), rf("d/y", 1, 1, "Y")],
        &shadow,
    );
    assert_eq!(
        p,
        vec![
            Action::MkdirLocal { path: "d".into() },
            Action::Download {
                path: "d/x".into(),
                handle: "X2".into()
            },
            Action::DeleteRemote {
                path: "d/y".into(),
                handle: "Y".into(),
                dir: false
            },
        ]
    );
    // Deleted remotely, unchanged locally: into debris as one folder.
    let p = plan(
        &[ld("d", 1), lf("d/x", 1, 1, 2), lf("d/y", 1, 1, 4)],
        &[],
        &shadow,
    );
    assert_eq!(
        p,
        vec![Action::DeleteLocal {
            path: "d".into(),
            dir: true
        }]
    );
}

#[test]
fn actions_come_in_an_order_that_works() {
    let p = plan(
        &[ld("n", 5), lf("n/f", 1, 1, 6), lf("gone-remote", 1, 1, 8)],
        &[rd("m", "M"), rf("m/g", 1, 1, "G")],
        &[sf("gone-remote", 1, 1, "GR", 8)],
    );
    let pos = |want: &Action| p.iter().position(|a| a == want).unwrap();
    assert!(
        pos(&Action::MkdirRemote { path: "n".into() })
            < pos(&Action::Upload {
                path: "n/f".into(),
                replace: None
            })
    );
    assert!(
        pos(&Action::MkdirLocal { path: "m".into() })
            < pos(&Action::Download {
                path: "m/g".into(),
                handle: "G".into()
            })
    );
    assert_eq!(
        p.last(),
        Some(&Action::DeleteLocal {
            path: "gone-remote".into(),
            dir: false
        })
    );
}

#[test]
fn moved_to_different_places_on_both_sides_keeps_both() {
    let p = plan(
        &[lf("local-place", 1, 1, 3)],
        &[rf("remote-place", 1, 1, "A")],
        &[sf("a", 1, 1, "A", 3)],
    );
    assert_eq!(
        p,
        vec![
            Action::Upload {
                path: "local-place".into(),
                replace: None
            },
            Action::Download {
                path: "remote-place".into(),
                handle: "A".into()
            },
            Action::Forget { path: "a".into() },
        ]
    );
}
