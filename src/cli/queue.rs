//! `put --queue` / `get --queue`: the transfer is handed to a background megacmd and the
//! command returns at once. Queued transfers run one after another (each takes the queue's
//! lock, `flock` on `queue.lock` in the transfers directory, before it starts); each writes
//! what it says to its own log there. `transfers` lists the ones still waiting (from their
//! entry files) beside the running and interrupted ones, and `--cancel` stops a waiting one.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::exit::{self, CliError};
use super::resolve::io_err;
use super::Ctx;

/// The environment variable that tells a background megacmd which queue entry it is.
pub(super) const ENTRY_VAR: &str = "MEGACMD_QUEUE_ENTRY";

/// A transfer waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Queued {
    pub id: String,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub pid: u32,
    pub queued: i64,
}

fn entries_dir(transfers: &Path) -> PathBuf {
    transfers.join("queue")
}

/// Hands this command (its arguments, without `--queue`) to a background megacmd.
pub(super) fn enqueue(ctx: &Ctx) -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let dir = entries_dir(&ctx.cfg.transfers_dir);
    crate::client::resume::TransferState::open(&ctx.cfg.transfers_dir)
        .and_then(|_| std::fs::create_dir_all(&dir))
        .map_err(|e| io_err(&dir, e))?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--queue")
        .collect();
    let id = format!("q-{:016x}", rand::random::<u64>());
    let log = dir.join(format!("{id}.log"));
    let entry = dir.join(format!("{id}.json"));
    let out = crate::local::names::create_private(&log).map_err(|e| io_err(&log, e))?;
    let err = out.try_clone().map_err(|e| io_err(&log, e))?;
    let exe = std::env::current_exe().map_err(|e| io_err(Path::new("megacmd"), e))?;
    // The entry is written before the child starts: it removes it once its turn comes.
    let mut record =
        json!({"args": args, "log": log, "queued": crate::local::time::now(), "pid": 0});
    std::fs::write(&entry, record.to_string()).map_err(|e| io_err(&entry, e))?;
    let child = std::process::Command::new(exe)
        .args(&args)
        .env(ENTRY_VAR, &entry)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: the terminal's Ctrl-C is not for it.
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&entry);
            return Err(io_err(Path::new("megacmd"), e));
        }
    };
    record["pid"] = json!(child.id());
    // Only if it is still waiting (else it already took its turn and removed the entry).
    if entry.exists() {
        let _ = std::fs::write(&entry, record.to_string());
    }
    if ctx.cli.json {
        println!("{}", json!({"queued": id, "log": log}));
    } else {
        eprintln!(
            "queued as {id}; it runs in the background (log: {}); see megacmd transfers",
            log.display()
        );
    }
    Ok(())
}

/// In a background megacmd: waits for the queue's turn, then leaves the waiting list.
pub(super) async fn take_turn(transfers: &Path, entry: &Path) -> Result<(), CliError> {
    let lock = transfers.join("queue.lock");
    let file = crate::local::names::open_private(&lock).map_err(|e| io_err(&lock, e))?;
    // Held until this process ends: the next queued transfer waits for it.
    let file = tokio::task::spawn_blocking(move || {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
    })
    .await
    .map_err(|e| CliError::new(exit::OTHER, e.to_string()))?
    .map_err(|e| io_err(&lock, e.into()))?;
    std::mem::forget(file);
    let _ = std::fs::remove_file(entry);
    Ok(())
}

/// The transfers waiting in the queue, oldest first.
pub(super) fn waiting(transfers: &Path) -> Vec<Queued> {
    let Ok(rd) = std::fs::read_dir(entries_dir(transfers)) else {
        return Vec::new();
    };
    let mut out: Vec<Queued> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let id = p.file_stem()?.to_string_lossy().into_owned();
            if p.extension()? != "json" {
                return None;
            }
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
            Some(Queued {
                id,
                args: v["args"]
                    .as_array()?
                    .iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect(),
                log: PathBuf::from(v["log"].as_str()?),
                pid: v["pid"].as_u64().unwrap_or(0) as u32,
                queued: v["queued"].as_i64().unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|q| (q.queued, q.id.clone()));
    out
}

/// Takes a waiting transfer out of the queue (its background megacmd is stopped).
pub(super) fn cancel(transfers: &Path, q: &Queued) -> std::io::Result<()> {
    let entry = entries_dir(transfers).join(format!("{}.json", q.id));
    if q.pid > 0 {
        if let Some(pid) = rustix::process::Pid::from_raw(q.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    std::fs::remove_file(entry)
}
