//! Per-core throughput of the content crypto: download (CTR decrypt + chunk CBC-MAC, fused),
//! upload (chunk MAC + CTR encrypt), CTR alone, the condensed MAC, and re-keying a staging
//! file (what each commit after a handle's first costs locally). Compare with
//! `openssl speed -evp aes-128-cbc` (scripts/bench.sh prints both).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mega_mount::crypto::aes::{cipher, ctr_apply};
use mega_mount::crypto::mac;

const MIB: usize = 1024 * 1024;

fn content_crypto(c: &mut Criterion) {
    let key = [7u8; 16];
    let nonce = [3u8; 8];
    let aes = cipher(&key);
    let size = 8 * MIB;
    let mut data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut g = c.benchmark_group("content");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(20);
    g.bench_function("download_decrypt_and_mac_8MiB", |b| {
        b.iter(|| {
            let macs = mac::decrypt_piece(&aes, &nonce, 0, &mut data);
            black_box(mac::condense(&aes, &macs))
        })
    });
    g.bench_function("upload_mac_and_encrypt_8MiB", |b| {
        b.iter(|| {
            let macs = mac::encrypt_piece(&aes, &nonce, 0, &mut data);
            black_box(mac::condense(&aes, &macs))
        })
    });
    // One chunk per call: a single MAC chain at a time, as a whole-file serial MAC would run.
    g.bench_function("download_one_chunk_at_a_time_8MiB", |b| {
        b.iter(|| {
            let mut macs = Vec::new();
            for (start, len) in mac::chunks(size as u64) {
                let (s, e) = (start as usize, (start + len) as usize);
                macs.extend(mac::decrypt_piece(&aes, &nonce, start, &mut data[s..e]));
            }
            black_box(mac::condense(&aes, &macs))
        })
    });
    g.bench_function("ctr_only_8MiB", |b| {
        b.iter(|| ctr_apply(&aes, &nonce, 0, black_box(&mut data)))
    });
    g.finish();
}

/// Re-keying a staging file (a commit after a handle's first: the content copied under a
/// fresh key, every chunk MAC computed on the way, synced).
#[allow(clippy::unwrap_used)]
fn staging_rekey(c: &mut Criterion) {
    use mega_mount::crypto::{Key128, MasterKey};
    use mega_mount::transfer::StagedFile;
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey(Key128([9; 16]));
    let size = 64 * MIB;
    let mut staged = StagedFile::create(&dir.path().join("s"), &master, "/bench").unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    staged.write_at(0, &data).unwrap();
    let mut g = c.benchmark_group("staging");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.bench_function("rekey_64MiB", |b| {
        b.iter(|| {
            staged = staged.rekey(&master).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, content_crypto, staging_rekey);
criterion_main!(benches);
