//! The engine demo: starts a local mega-testserver with a demo account, then uses the
//! protocol engine the way the front-ends will — log in, upload, list, download with MAC
//! verification, rename/move, export and fetch a public link, and watch a change made by a
//! second session arrive over the event channel.
//!
//! `cargo run --example demo [-- --serve]`: with `--serve` the server keeps running afterwards
//! so other MEGA clients (megajs, rclone with X_MEGA_API_URL) can connect to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mega_mount::api::{ApiClient, ApiConfig};
use mega_mount::client::{download_public, TreeEvent};
use mega_mount::transfer::TransferConfig;
use mega_mount::Client;
use mega_testserver::{Config, TestServer, UserOptions};

const EMAIL: &str = "demo@example.com";
const PASSWORD: &str = "demo password";

fn step(t: Instant, what: &str) {
    println!("[{:>6.2}s] {what}", t.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let t = Instant::now();
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(Config::new(dir.path())).await?;
    server
        .add_user(
            EMAIL,
            PASSWORD,
            UserOptions {
                name: "Demo User".into(),
                ..Default::default()
            },
        )
        .await?;
    step(
        t,
        &format!(
            "mega-testserver on {} with account {EMAIL}",
            server.base_url()
        ),
    );

    let cfg = ApiConfig::with_base_url(server.base_url());
    let client = Arc::new(Client::login(cfg.clone(), EMAIL, PASSWORD, None).await?);
    step(
        t,
        "logged in (v2 account: PBKDF2-SHA512, RSA-decrypted session id)",
    );

    let root = client.root()?.handle;
    let docs = client.mkdir(&root, "Documents").await?;
    let readme = b"Hello from mega-mount. Everything here is encrypted on the client.\n";
    client
        .upload(
            &docs.handle,
            "hello.txt",
            &mut &readme[..],
            readme.len() as u64,
            1_700_000_000,
            None,
        )
        .await?;
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let up = Instant::now();
    let photo = client
        .upload(
            &root,
            "big.bin",
            &mut &big[..],
            big.len() as u64,
            1_650_000_000,
            None,
        )
        .await?;
    step(
        t,
        &format!(
            "uploaded hello.txt and big.bin (5 MB in {:.0} ms)",
            up.elapsed().as_millis()
        ),
    );

    println!("\n  Cloud Drive:");
    for n in client.children(&root)? {
        println!("    {:<12} {:>9} bytes  mtime {}", n.name, n.size, n.mtime);
        for c in client.children(&n.handle)? {
            println!(
                "      {:<10} {:>9} bytes  mtime {}",
                c.name, c.size, c.mtime
            );
        }
    }
    println!();

    let down = Instant::now();
    let back = client.download_to_vec(&photo.handle).await?;
    assert!(back == big);
    step(
        t,
        &format!(
            "downloaded big.bin, MAC verified, bytes equal ({:.0} ms)",
            down.elapsed().as_millis()
        ),
    );

    let mut watcher = client.watch()?;
    let other = Client::login(cfg.clone(), EMAIL, PASSWORD, None).await?;
    let hello = other.resolve("/Documents/hello.txt")?;
    other.rename(&hello.handle, "hello-renamed.txt").await?;
    let seen = tokio::time::timeout(Duration::from_secs(5), watcher.events.recv()).await?;
    if let Some(TreeEvent::Changed(changes)) = seen {
        step(
            t,
            &format!("a second session renamed a file; the first saw it: {changes:?}"),
        );
    }
    assert!(client.resolve("/Documents/hello-renamed.txt").is_ok());

    let link = client.export(&photo.handle).await?;
    let anon = ApiClient::new(cfg.clone())?;
    let mut fetched = Vec::new();
    download_public(&anon, &link, &mut fetched, &TransferConfig::default(), None).await?;
    assert!(fetched == big);
    step(t, &format!("public link {link} downloads without login"));

    let q = client.quota().await?;
    step(t, &format!("quota: {} of {} bytes used", q.used, q.total));

    if serve {
        println!(
            "\nServing until Ctrl-C. Connect other MEGA clients to {}",
            server.base_url()
        );
        println!("  account: {EMAIL} / {PASSWORD:?}");
        println!(
            "  megajs:  new Storage({{ gateway: '{}', email, password }})",
            server.base_url()
        );
        println!(
            "  rclone:  X_MEGA_API_URL={} rclone ...",
            server.base_url().trim_end_matches('/')
        );
        tokio::signal::ctrl_c().await?;
    }
    server.shutdown().await;
    Ok(())
}
