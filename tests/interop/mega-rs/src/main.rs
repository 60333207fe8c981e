//! `mega-rs-driver URL EMAIL PASSWORD list` prints every node the crate `mega` decrypts, one
//! JSON object per line (`name`, `handle`, `parent`, `kind`, `size`);
//! `mega-rs-driver URL EMAIL PASSWORD get HANDLE FILE` downloads a node into FILE;
//! `mega-rs-driver URL EMAIL PASSWORD rename HANDLE NAME` renames a node. Errors go to stderr
//! with a non-zero exit.

use std::process::ExitCode;

async fn run(args: &[String]) -> Result<(), String> {
    let [url, email, password, cmd, rest @ ..] = args else {
        return Err("usage: mega-rs-driver URL EMAIL PASSWORD list|get HANDLE FILE".into());
    };
    let origin = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let mut mega = mega::Client::builder()
        .origin(origin)
        .https(false)
        .build(http)
        .map_err(|e| e.to_string())?;
    mega.login(email, password, None)
        .await
        .map_err(|e| format!("login: {e}"))?;
    let nodes = mega
        .fetch_own_nodes()
        .await
        .map_err(|e| format!("fetch: {e}"))?;
    match (cmd.as_str(), rest) {
        ("list", []) => {
            for n in nodes.iter() {
                let v = serde_json::json!({
                    "name": n.name(), "handle": n.handle(), "parent": n.parent(),
                    "kind": format!("{:?}", n.kind()), "size": n.size(),
                });
                println!("{v}");
            }
            Ok(())
        }
        ("get", [handle, file]) => {
            let node = nodes
                .get_node_by_handle(handle)
                .ok_or_else(|| format!("{handle}: not among the decrypted nodes"))?;
            let out = tokio::fs::File::create(file).await.map_err(|e| e.to_string())?;
            use tokio_util::compat::TokioAsyncWriteCompatExt;
            mega.download_node(node, out.compat_write())
                .await
                .map_err(|e| format!("download: {e}"))
        }
        ("rename", [handle, name]) => {
            let node = nodes
                .get_node_by_handle(handle)
                .ok_or_else(|| format!("{handle}: not among the decrypted nodes"))?;
            mega.rename_node(node, name)
                .await
                .map_err(|e| format!("rename: {e}"))
        }
        _ => Err(format!("unknown command {cmd}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mega-rs-driver: {e}");
            ExitCode::FAILURE
        }
    }
}
