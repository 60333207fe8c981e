//! Every injected fault: transient ones must not stop an operation (and must really have
//! fired), a corrupted download must be reported as a MAC failure, and a request whose reply
//! was lost must not run twice.

#![allow(clippy::unwrap_used)]

mod common;

use common::{data, Env};
use mega_mount::Error;
use mega_testserver::FaultConfig;

/// Runs a mkdir + upload + download under `fault`, and checks the fault was consumed.
async fn survives(fault: FaultConfig, check: impl Fn(&FaultConfig) -> bool) {
    let env = Env::start().await;
    let c = env.account("f@example.com").await;
    let root = c.root().unwrap().handle;
    let body = data(1_500_000, 4);
    env.server.faults().set(fault.clone());
    let dir = c.mkdir(&root, "d").await.unwrap();
    let f = c
        .upload(
            &dir.handle,
            "f.bin",
            &mut &body[..],
            body.len() as u64,
            5,
            None,
        )
        .await
        .unwrap();
    let back = c.download_to_vec(&f.handle).await.unwrap();
    assert!(back == body, "content differs under {fault:?}");
    let left = env.server.faults().get();
    assert!(check(&left), "fault did not fire: {fault:?} left {left:?}");
    // Nothing ran twice: a fresh session sees exactly one folder and one file.
    env.server.faults().set(FaultConfig::default());
    let fresh = env.login("f@example.com").await;
    let root = fresh.root().unwrap().handle;
    assert_eq!(
        fresh.children(&root).unwrap().len(),
        1,
        "duplicate nodes under {fault:?}"
    );
    assert_eq!(fresh.children(&dir.handle).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_eagain_and_rate_limit() {
    survives(
        FaultConfig {
            cs_eagain: 3,
            ..Default::default()
        },
        |l| l.cs_eagain == 0,
    )
    .await;
    survives(
        FaultConfig {
            cs_ratelimit: 3,
            ..Default::default()
        },
        |l| l.cs_ratelimit == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_http_500_and_503() {
    survives(
        FaultConfig {
            cs_http500: 3,
            ..Default::default()
        },
        |l| l.cs_http500 == 0,
    )
    .await;
    survives(
        FaultConfig {
            cs_http503: 3,
            ..Default::default()
        },
        |l| l.cs_http503 == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_dropped_replies_are_retried_without_running_twice() {
    survives(
        FaultConfig {
            cs_drop: 4,
            ..Default::default()
        },
        |l| l.cs_drop == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashcash_challenge_is_answered() {
    survives(
        FaultConfig {
            hashcash: 2,
            hashcash_easiness: 255,
            ..Default::default()
        },
        |l| l.hashcash == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_faults() {
    survives(
        FaultConfig {
            dl_http500: 2,
            ..Default::default()
        },
        |l| l.dl_http500 == 0,
    )
    .await;
    survives(
        FaultConfig {
            dl_http503: 2,
            ..Default::default()
        },
        |l| l.dl_http503 == 0,
    )
    .await;
    survives(
        FaultConfig {
            dl_drop: 2,
            ..Default::default()
        },
        |l| l.dl_drop == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_faults() {
    survives(
        FaultConfig {
            ul_http500: 2,
            ..Default::default()
        },
        |l| l.ul_http500 == 0,
    )
    .await;
    survives(
        FaultConfig {
            ul_http503: 2,
            ..Default::default()
        },
        |l| l.ul_http503 == 0,
    )
    .await;
    survives(
        FaultConfig {
            ul_drop: 2,
            ..Default::default()
        },
        |l| l.ul_drop == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_bandwidth_cap() {
    let start = std::time::Instant::now();
    // 1.5 MB at 4 MB/s with 20 ms per request: slower, still correct.
    survives(
        FaultConfig {
            latency_ms: 20,
            bandwidth_bps: 4_000_000,
            ..Default::default()
        },
        |l| l.latency_ms == 20,
    )
    .await;
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(300),
        "cap had no effect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_download_is_a_mac_failure() {
    let env = Env::start().await;
    let c = env.account("c@example.com").await;
    let root = c.root().unwrap().handle;
    for size in [1usize, 70_000, 1_500_000] {
        let body = data(size, 1);
        let f = c
            .upload(
                &root,
                &format!("f{size}"),
                &mut &body[..],
                size as u64,
                0,
                None,
            )
            .await
            .unwrap();
        env.server.faults().update(|f| f.corrupt_downloads = true);
        let r = c.download_to_vec(&f.handle).await;
        assert!(
            matches!(r, Err(Error::Integrity { .. })),
            "size {size}: {r:?}"
        );
        env.server.faults().update(|f| f.corrupt_downloads = false);
        assert_eq!(c.download_to_vec(&f.handle).await.unwrap(), body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failure_gives_up_with_a_clear_error() {
    let env = Env::start().await;
    let c = env.account("g@example.com").await;
    let root = c.root().unwrap().handle;
    env.server.faults().set(FaultConfig {
        cs_http503: 1000,
        ..Default::default()
    });
    let r = c.mkdir(&root, "never").await;
    let e = r.unwrap_err();
    assert!(e.to_string().contains("giving up after"), "{e}");
}
