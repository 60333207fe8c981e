//! Cold client-side processing of a large account, after the `f` reply has arrived: decoding
//! the reply's bytes and building the decrypted tree (keys unwrapped, names decrypted, on all
//! cores), per node; and what the first start with the tree cache adds: the tree's stored
//! rows made and written to a new cache file. The reply is synthetic but
//! shaped like the test server's (folders of folders and files, every node its own key, names
//! and fingerprints encrypted as a client would).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mega_mount::api::commands::FetchReply;
use mega_mount::crypto::{attr, b64, Key128, MasterKey};
use mega_mount::tree::cache::{self, TreeCache};
use mega_mount::tree::{KeyRing, NodeTree};
use serde_json::{json, Map, Value};

const NODES: usize = 100_000;
const USER: &str = "bench-user1";

/// An `f` reply of `n` nodes: the three roots, then folders 30 wide, each with files.
fn reply(master: &Key128, n: usize) -> Vec<u8> {
    let mut f = vec![
        json!({"h": "ROOT0000", "p": "", "u": USER, "t": 2, "a": "", "k": "", "ts": 1}),
        json!({"h": "INBOX000", "p": "", "u": USER, "t": 3, "a": "", "k": "", "ts": 1}),
        json!({"h": "RUBBISH0", "p": "", "u": USER, "t": 4, "a": "", "k": "", "ts": 1}),
    ];
    let handle = |i: usize| b64::encode(&(i as u64).to_be_bytes()[2..]);
    let mut folders = vec!["ROOT0000".to_string()];
    for i in 0..n {
        let folder = i % 10 == 0;
        let parent = folders[(i / 30) % folders.len()].clone();
        let h = handle(i);
        let key: Vec<u8> = (0..if folder { 16 } else { 32 })
            .map(|j| (i * 31 + j) as u8)
            .collect();
        let aes: [u8; 16] = if folder {
            key[..16].try_into().unwrap_or_default()
        } else {
            let mut a = [0u8; 16];
            for j in 0..16 {
                a[j] = key[j] ^ key[j + 16];
            }
            a
        };
        let mut attrs = Map::new();
        attrs.insert("n".into(), Value::from(format!("name number {i}.txt")));
        if !folder {
            let mut fp = vec![7u8; 16];
            fp.push(4);
            fp.extend_from_slice(&(1_600_000_000u32 + i as u32).to_le_bytes());
            attrs.insert("c".into(), Value::from(b64::encode(&fp)));
        }
        let a = b64::encode(&attr::encrypt(&aes, &attrs));
        let k = format!("{USER}:{}", b64::encode(&master.wrap(&key)));
        f.push(
            json!({"h": h, "p": parent, "u": USER, "t": if folder { 1 } else { 0 },
                      "a": a, "k": k, "s": if folder { 0 } else { 1000 + i }, "ts": 1_700_000_000}),
        );
        if folder {
            folders.push(h);
        }
    }
    serde_json::to_vec(&json!({"f": f, "ok": [], "s": [], "u": [], "sn": "AAAAAAAAAAE"}))
        .unwrap_or_default()
}

fn cold_tree(c: &mut Criterion) {
    let master = Key128([9; 16]);
    let keys = KeyRing::new(MasterKey(master.clone()), USER.into(), None);
    let bytes = reply(&master, NODES);
    let mut g = c.benchmark_group("tree");
    g.throughput(Throughput::Elements(NODES as u64));
    g.sample_size(10);
    g.bench_function("decode_f_reply_100k_nodes", |b| {
        b.iter(|| black_box(serde_json::from_slice::<FetchReply>(&bytes).ok()))
    });
    g.bench_function("decode_and_build_tree_100k_nodes", |b| {
        b.iter(|| {
            let r: Option<FetchReply> = serde_json::from_slice(&bytes).ok();
            black_box(r.and_then(|r| NodeTree::from_fetch_owned(r, keys.clone()).ok()))
        })
    });
    let built: Option<FetchReply> = serde_json::from_slice(&bytes).ok();
    let mut tree = built
        .and_then(|r| NodeTree::from_fetch_owned(r, keys.clone()).ok())
        .map(|(t, _)| t);
    let dir = tempfile::tempdir().ok();
    g.bench_function("write_tree_cache_100k_nodes", |b| {
        b.iter(|| {
            let (Some(tree), Some(dir)) = (tree.as_mut(), dir.as_ref()) else {
                return;
            };
            if let Some((rows, meta)) = cache::snapshot(tree) {
                let path = dir.path().join("tree.db");
                black_box(TreeCache::create(&path, "http://bench", &keys, &rows, &meta, "sn").ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, cold_tree);
criterion_main!(benches);
