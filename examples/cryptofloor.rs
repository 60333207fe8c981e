//! The crypto floor for `scripts/bench.sh compare`: what AES-CTR and the chunk MACs alone cost
//! per GiB on this machine, measured the way the mount does them (whole pieces of 8 MiB, in
//! place, the MACs of a piece's chunks in parallel lanes) on one thread. Prints two lines,
//! `decrypt CPU_SECONDS_PER_GIB` and `encrypt CPU_SECONDS_PER_GIB`, CPU time of the thread
//! (from `/proc/thread-self/schedstat`, so other load on the machine does not count).
//!
//! `cargo run --release --example cryptofloor -- [MIB]` (default 512 MiB per direction).

use mega_mount::crypto::{aes::cipher, mac};

/// The piece size the mount reads and uploads in.
const PIECE: usize = 8 * 1024 * 1024;

/// CPU nanoseconds this thread has run so far.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let total = (mib * 1024 * 1024).max(PIECE);
    let key = [7u8; 16];
    let nonce = [3u8; 8];
    let c = cipher(&key);
    let mut piece = vec![0x5au8; PIECE];
    let gib = total as f64 / (1u64 << 30) as f64;
    for (label, decrypt) in [("decrypt", true), ("encrypt", false)] {
        let t0 = thread_cpu_ns();
        // Pieces start on chunk boundaries: past the growing chunks every MiB is one.
        let mut start = 36 * mac::SEGMENT;
        let mut sink = 0u8;
        while ((start - 36 * mac::SEGMENT) as usize) < total {
            let macs = if decrypt {
                mac::decrypt_piece(&c, &nonce, start, &mut piece)
            } else {
                mac::encrypt_piece(&c, &nonce, start, &mut piece)
            };
            sink ^= macs.last().map_or(0, |m| m[0]);
            start += PIECE as u64;
        }
        let secs = (thread_cpu_ns() - t0) as f64 / 1e9;
        println!("{label} {:.3}", secs / gib);
        std::hint::black_box(sink);
    }
}
