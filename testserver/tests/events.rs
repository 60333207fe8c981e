//! The event channel's cursor, server side: the log keeps a bounded number of packets per
//! account; a cursor before the oldest kept one, or one never handed out, is answered `-6`
//! ("too many pending updates": fetch the tree again), and a valid one continues exactly.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mega_testserver::Limits;

#[tokio::test]
async fn a_cursor_outside_the_kept_log_is_answered_too_many() {
    let env = start(Limits {
        event_log: 5,
        ..Limits::default()
    })
    .await;
    let sid = env.account("a@x.example", 1 << 30).await;
    let root = env.root(&sid).await;
    let sn0 = env.fetch(&sid).await["sn"].as_str().unwrap().to_string();
    // Within the log: two folders, two packets, continued exactly.
    env.mkdir(&sid, &root).await;
    env.mkdir(&sid, &root).await;
    let (packets, sn2) = env.packets_after(&sid, &sn0).await;
    assert_eq!(packets.len(), 2, "{packets:?}");
    // Ten more: the first cursor now points before the five packets kept.
    for _ in 0..10 {
        env.mkdir(&sid, &root).await;
    }
    assert_eq!(env.sc_text(&sid, &sn0).await, "-6");
    assert_eq!(env.sc_text(&sid, &sn2).await, "-6");
    // A fresh fetch gives a cursor that works again.
    let sn = env.fetch(&sid).await["sn"].as_str().unwrap().to_string();
    let r: serde_json::Value = serde_json::from_str(&env.sc_text(&sid, &sn).await).unwrap();
    assert!(r.get("w").is_some(), "{r}");
    // The cursor just before the oldest kept packet still continues (no gap).
    let seq = |sn: &str| {
        let b = mega_testserver::crypto::b64d(sn).unwrap();
        u64::from_be_bytes(b.try_into().unwrap())
    };
    let back = mega_testserver::crypto::b64e(&(seq(&sn) - 5).to_be_bytes());
    let (packets, after) = env.packets_after(&sid, &back).await;
    assert_eq!((packets.len(), after), (5, sn.clone()));
    let too_far = mega_testserver::crypto::b64e(&(seq(&sn) - 6).to_be_bytes());
    assert_eq!(env.sc_text(&sid, &too_far).await, "-6");
    // A cursor past the newest packet was never handed out (another server, a reset store).
    let future = mega_testserver::crypto::b64e(&(seq(&sn) + 1).to_be_bytes());
    assert_eq!(env.sc_text(&sid, &future).await, "-6");
    // The server counts what it was asked: the `f`s above (one by `root`), and the polls.
    assert_eq!(env.server.stats().commands("f"), 3);
    assert!(env.server.stats().commands("sc") >= 7);
}
