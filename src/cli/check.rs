//! `megacmd check LOCAL mega:/REMOTE [-r] [--adopt]`: proves local files equal remote ones
//! without downloading anything — each local file is read once and its chunk MACs, under the
//! node's own key, are condensed and compared with the MAC in the key (as MEGA's SDK compares
//! a local file with a node). Reports equal / different / only on one side; exits 0 only if
//! everything is equal.
//!
//! `--adopt` then writes the fingerprint (content checksum and the local mtime) onto remote
//! files proved equal whose fingerprint is missing or different (another client uploaded them
//! without one, or an SDK build with the 32-bit sparse-CRC bug wrote a wrong one), so later
//! syncs see them as equal. Never onto a file that was not proved equal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;

use super::exit::{self, CliError};
use super::path::{self, Location};
use super::progress::Transfers;
use super::resolve::{io_err, resolve};
use super::Ctx;
use crate::crypto::fingerprint::{self, Fingerprint};
use crate::crypto::keys::{FileKey, NodeKey};
use crate::local::files::{mtime_of, walk, Entry};
use crate::sync::oneway::remote_listing;
use crate::transfer::Progress;
use crate::tree::NodeHandle;

/// What a path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Verdict {
    Equal,
    Different,
    OnlyLocal,
    OnlyRemote,
    /// The node's key is not available (undecryptable): nothing can be proved.
    Unknown,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Equal => "equal",
            Verdict::Different => "different",
            Verdict::OnlyLocal => "only-local",
            Verdict::OnlyRemote => "only-remote",
            Verdict::Unknown => "unknown",
        }
    }
}

/// A file on both sides, to be compared.
struct Pair {
    path: String,
    local: PathBuf,
    size: u64,
    handle: NodeHandle,
    key: Option<FileKey>,
}

/// A reader that reports what it read (the progress bar).
struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Whether the local file is the node's content (its MAC under the node's key).
async fn proves_equal(p: &Pair, progress: Progress) -> Result<Verdict, CliError> {
    let Some(key) = p.key.clone() else {
        return Ok(Verdict::Unknown);
    };
    let (path, size) = (p.local.clone(), p.size);
    let same = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        // A symbolic link's content is its target (as stored, see `client::posix`).
        let inner: Box<dyn std::io::Read> = if std::fs::symlink_metadata(&path)?.is_symlink() {
            Box::new(std::io::Cursor::new(crate::local::files::link_target(
                &path,
            )?))
        } else {
            Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(&path)?,
            ))
        };
        let mut r = Counted { inner, progress };
        crate::crypto::mac::content_matches(&mut r, size, &key)
    })
    .await
    .map_err(|e| CliError::new(exit::OTHER, format!("check task: {e}")))?
    .map_err(|e| io_err(&p.local, e))?;
    Ok(if same {
        Verdict::Equal
    } else {
        Verdict::Different
    })
}

/// Writes the local fingerprint onto a node proved equal, if its own differs. True if written.
async fn adopt(client: &crate::Client, p: &Pair) -> Result<bool, CliError> {
    if client.view(|t| t.get(&p.handle).is_some_and(crate::tree::Node::is_symlink)) {
        return Ok(false); // a link's fingerprint is made when it is stored
    }
    let (path, size) = (p.local.clone(), p.size);
    let local = tokio::task::spawn_blocking(move || -> std::io::Result<Fingerprint> {
        let mut f = std::fs::File::open(&path)?;
        let mtime = mtime_of(&f.metadata()?);
        Ok(Fingerprint {
            crc: fingerprint::crc(&mut f, size)?,
            mtime,
        })
    })
    .await
    .map_err(|e| CliError::new(exit::OTHER, format!("check task: {e}")))?
    .map_err(|e| io_err(&p.local, e))?;
    let remote = client.view(|t| t.get(&p.handle).and_then(|n| n.fingerprint));
    if remote == Some(local) {
        return Ok(false);
    }
    client.set_fingerprint(&p.handle, local).await?;
    Ok(true)
}

pub(super) async fn check(
    ctx: &Ctx,
    local: &str,
    remote: &str,
    adopt_fp: bool,
) -> Result<(), CliError> {
    let (local, rp) = match (path::parse(local)?, path::parse(remote)?) {
        (Location::Local(l), Location::Remote(r)) => (l, r),
        _ => {
            return Err(CliError::new(
                exit::USAGE,
                "check needs a local path, then a mega:/ path",
            ))
        }
    };
    let client = ctx.client().await?;
    let top = resolve(&client, &rp)?;
    let meta = std::fs::metadata(&local).map_err(|e| io_err(&local, e))?;
    let key_of = |h: &NodeHandle| {
        client.view(|t| match t.get(h).and_then(|n| n.key.clone()) {
            Some(NodeKey::File(k)) => Some(k),
            _ => None,
        })
    };
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut pairs = Vec::new();
    match (meta.is_dir(), top.kind.is_container()) {
        (false, false) => {
            let name = local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if meta.len() != top.size {
                verdicts.insert(name, Verdict::Different);
            } else {
                pairs.push(Pair {
                    path: name,
                    local: local.clone(),
                    size: top.size,
                    key: key_of(&top.handle),
                    handle: top.handle.clone(),
                });
            }
        }
        (true, true) => {
            let keep = |e: &Entry| ctx.cli.recursive || !e.path.contains('/');
            let mut locals: BTreeMap<String, Entry> = walk(&local)
                .map_err(|e| io_err(&local, e))?
                .into_iter()
                .filter(|e| keep(e))
                .map(|e| (e.path.clone(), e))
                .collect();
            let listing = remote_listing(&client, &top.handle)?;
            for r in listing.entries.into_iter().filter(|e| keep(e)) {
                match locals.remove(&r.path) {
                    None if r.dir => {}
                    None => {
                        verdicts.insert(r.path, Verdict::OnlyRemote);
                    }
                    Some(l) if l.dir && r.dir => {}
                    Some(l) if l.dir != r.dir || l.link != r.link || l.size != r.size => {
                        verdicts.insert(r.path, Verdict::Different);
                    }
                    Some(_) => {
                        let Some(h) = listing.handles.get(&r.path).cloned() else {
                            continue;
                        };
                        pairs.push(Pair {
                            local: local.join(&r.path),
                            size: r.size,
                            key: key_of(&h),
                            handle: h,
                            path: r.path,
                        });
                    }
                }
            }
            for (path, l) in locals {
                if !l.dir {
                    verdicts.insert(path, Verdict::OnlyLocal);
                }
            }
        }
        _ => {
            return Err(CliError::new(
                exit::USAGE,
                format!(
                    "{} and {}: a file and a folder (check compares files with files, folders with folders)",
                    local.display(),
                    rp.display()
                ),
            ))
        }
    }
    let total: u64 = pairs.iter().map(|p| p.size).sum();
    let t = Transfers::new(ctx, total);
    let progress = t.progress();
    let results: Vec<(usize, Result<Verdict, CliError>)> =
        futures::stream::iter(pairs.iter().enumerate().map(|(i, p)| {
            let progress = progress.clone();
            async move { (i, proves_equal(p, progress).await) }
        }))
        .buffer_unordered(ctx.parallel())
        .collect()
        .await;
    let mut adopted = 0usize;
    for (i, r) in results {
        let v = r?;
        let p = &pairs[i];
        if v == Verdict::Equal && adopt_fp && adopt(&client, p).await? {
            adopted += 1;
        }
        verdicts.insert(p.path.clone(), v);
    }
    let summary = report(ctx, &verdicts, adopted, &t);
    if verdicts.values().any(|v| *v != Verdict::Equal) {
        return Err(CliError::new(exit::DIFFERENT, summary));
    }
    if !ctx.cli.json {
        eprintln!("{summary}");
    }
    Ok(())
}

/// Prints the verdicts (every path as JSON; the ones not equal, or all with `-v`, as lines)
/// and answers the summary line.
fn report(
    ctx: &Ctx,
    verdicts: &BTreeMap<String, Verdict>,
    adopted: usize,
    t: &Arc<Transfers>,
) -> String {
    let count = |v: Verdict| verdicts.values().filter(|x| **x == v).count();
    if ctx.cli.json {
        let list: Vec<_> = verdicts
            .iter()
            .map(|(p, v)| json!({"path": p, "result": v}))
            .collect();
        println!(
            "{}",
            json!({
                "files": list,
                "equal": count(Verdict::Equal),
                "different": count(Verdict::Different),
                "only_local": count(Verdict::OnlyLocal),
                "only_remote": count(Verdict::OnlyRemote),
                "unknown": count(Verdict::Unknown),
                "adopted": adopted,
            })
        );
    } else {
        t.finish();
        for (p, v) in verdicts {
            if *v != Verdict::Equal || ctx.cli.verbose >= 1 {
                println!("{:<11}  {p}", v.word());
            }
        }
    }
    format!(
        "check: {} equal, {} different, {} only local, {} only remote{}{}",
        count(Verdict::Equal),
        count(Verdict::Different),
        count(Verdict::OnlyLocal),
        count(Verdict::OnlyRemote),
        match count(Verdict::Unknown) {
            0 => String::new(),
            n => format!(", {n} unknown (no key)"),
        },
        if adopted > 0 {
            format!("; fingerprints written to {adopted}")
        } else {
            String::new()
        }
    )
}
