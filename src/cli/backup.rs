//! `megacmd backup`: backups MEGA's apps see (Backup Centre, Vault), from this machine.
//!
//! * `backup LOCAL [--name NAME] [--watch]`: creates the backup if this device has none of
//!   LOCAL, then runs a pass (or keeps it current with `--watch`).
//! * `backup --list`: every backup and sync registered on the account, all devices.
//! * `backup --remove LOCAL|ID [--delete-remote]`: unregisters; the remote copy stays in the
//!   Vault unless `--delete-remote` moves it to the Rubbish Bin.
//! * `backup --pause ID` / `--resume ID`: asks the owning device, as MEGA's apps do.

use std::sync::Arc;

use serde_json::json;

use super::exit::{self, CliError};
use super::path::{self, Location};
use super::resolve::ensure_path;
use super::sync::sync_error;
use super::Ctx;
use crate::client::backups::{self, beat, state, BackupRecord};
use crate::local::time::fmt_time;
use crate::sync::backup::{dispose, Backup, PassReport, RemoteCopy};
use crate::sync::registry::request_state;

/// What `megacmd backup` was asked to do.
pub(super) enum BackupCmd<'a> {
    Run {
        local: &'a str,
        name: Option<&'a str>,
        watch: bool,
    },
    List,
    Remove {
        what: &'a str,
        delete_remote: bool,
        move_remote: Option<&'a str>,
    },
    Request {
        id: &'a str,
        want: u8,
    },
}

fn report(ctx: &Ctx, name: &str, r: &PassReport) {
    if ctx.cli.json {
        println!("{}", json!({"backup": name, "pass": r}));
        return;
    }
    if r.ended {
        eprintln!("backup {name:?}: removed (from another device, or its remote folder is gone)");
    } else if r.paused {
        eprintln!("backup {name:?}: paused from another device; nothing uploaded");
    } else {
        eprintln!(
            "backup {name:?}: {} uploaded, {} folder(s) created, {} moved to the Rubbish Bin, {} unchanged{}",
            r.uploaded,
            r.folders,
            r.removed,
            r.unchanged,
            if r.failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", r.failed.len())
            }
        );
        for f in &r.failed {
            eprintln!("megacmd: {f}");
        }
    }
}

pub(super) async fn backup(ctx: &Ctx, cmd: BackupCmd<'_>) -> Result<(), CliError> {
    let client = ctx.client().await?;
    match cmd {
        BackupCmd::Run { local, name, watch } => {
            let local = std::path::Path::new(local);
            let mut b = match Backup::open(Arc::clone(&client), local).await {
                Ok(b) if name.is_some_and(|n| n != b.name()) => {
                    return Err(CliError::new(
                        exit::EXISTS,
                        format!(
                            "{}: already backed up as {:?} (id {}); megacmd backup --remove it first to rename",
                            local.display(),
                            b.name(),
                            b.id()
                        ),
                    ))
                }
                Ok(b) => b,
                Err(crate::sync::SyncError::Client(crate::error::Error::NotFound { .. })) => {
                    let b = Backup::create(Arc::clone(&client), local, name)
                        .await
                        .map_err(sync_error)?;
                    if !ctx.cli.json {
                        eprintln!(
                            "backup {:?} created: {} (id {})",
                            b.name(),
                            client.path_of(b.root()),
                            b.id()
                        );
                    }
                    b
                }
                Err(e) => return Err(sync_error(e)),
            };
            b.set_parallel(ctx.parallel());
            let name = b.name().to_string();
            if watch {
                let mut done = |r: &PassReport| {
                    if r != &PassReport::default() {
                        report(ctx, &name, r)
                    }
                };
                return b.watch(&mut done).await.map_err(sync_error);
            }
            let r = b.run_once().await.map_err(sync_error)?;
            report(ctx, &name, &r);
            if !r.failed.is_empty() {
                return Err(CliError::new(
                    exit::OTHER,
                    format!("{} upload(s) failed", r.failed.len()),
                ));
            }
            Ok(())
        }
        BackupCmd::List => list(ctx, &client.backup_records().await?, &client).await,
        BackupCmd::Remove {
            what,
            delete_remote,
            move_remote,
        } => {
            let copy = match (delete_remote, move_remote) {
                (true, _) => RemoteCopy::Delete,
                (false, Some(target)) => {
                    let rp = match path::parse(target)? {
                        Location::Remote(rp) => rp,
                        _ => {
                            return Err(CliError::new(
                                exit::USAGE,
                                "--move-remote needs a mega:/ folder",
                            ))
                        }
                    };
                    RemoteCopy::MoveTo(ensure_path(&client, &rp).await?)
                }
                (false, None) => RemoteCopy::Keep,
            };
            let shown = match &copy {
                RemoteCopy::Keep => "; its remote copy stays in the Vault (mega://Backups/)",
                RemoteCopy::Delete => "; its remote copy is in the Rubbish Bin (SyncDebris)",
                RemoteCopy::MoveTo(_) => "; its remote copy was moved out of the Vault",
            };
            let records = client.backup_records().await?;
            if let Some(r) = records.iter().find(|r| r.id == what) {
                // Any device's, by id: unregistered, and its device told to stop.
                request_state(&client, &r.id, state::DELETED).await?;
                if let Some(root) = &r.root {
                    dispose(&client, &crate::tree::NodeHandle(root.clone()), copy)
                        .await
                        .map_err(sync_error)?;
                }
            } else {
                let b = Backup::open(Arc::clone(&client), std::path::Path::new(what))
                    .await
                    .map_err(sync_error)?;
                b.remove(copy).await.map_err(sync_error)?;
            }
            if !ctx.cli.json {
                eprintln!("backup removed{shown}");
            }
            Ok(())
        }
        BackupCmd::Request { id, want } => {
            request_state(&client, id, want).await?;
            Ok(())
        }
    }
}

async fn list(ctx: &Ctx, records: &[BackupRecord], client: &crate::Client) -> Result<(), CliError> {
    let names = client.device_names().await.unwrap_or_default();
    let this = backups::device_id().ok();
    let device_of = |d: &Option<String>| -> String {
        let Some(d) = d else { return String::new() };
        let name = names
            .iter()
            .find(|(k, _)| k == d)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| d.chars().take(8).collect());
        if this.as_deref() == Some(d.as_str()) {
            format!("{name} (this device)")
        } else {
            name
        }
    };
    if ctx.cli.json {
        let v: Vec<_> = records
            .iter()
            .map(|r| {
                let mut o = json!(r);
                o["device_name"] = json!(device_of(&r.device));
                o["remote"] = json!(r
                    .root
                    .as_ref()
                    .map(|h| client.path_of(&crate::tree::NodeHandle(h.clone()))));
                o
            })
            .collect();
        println!("{}", json!(v));
        return Ok(());
    }
    if records.is_empty() {
        eprintln!("no backups or syncs registered on this account");
        return Ok(());
    }
    println!(
        "{:<11}  {:<8}  {:<9}  {:<11}  {:<16}  {:<20}  LOCAL -> REMOTE",
        "ID", "TYPE", "STATE", "STATUS", "LAST ACTIVITY", "DEVICE"
    );
    for r in records {
        let kind = match r.kind {
            backups::BackupKind::Backup => "backup",
            backups::BackupKind::TwoWay => "sync",
            backups::BackupKind::UpSync => "upload",
            backups::BackupKind::DownSync => "download",
            backups::BackupKind::CameraUploads => "camera",
            backups::BackupKind::MediaUploads => "media",
            backups::BackupKind::Other => "other",
        };
        let (status, last) = match &r.heartbeat {
            Some(h) => (
                match (h.status, h.progress) {
                    (s, Some(p)) if s == i64::from(beat::SYNCING) => format!("syncing {p}%"),
                    (s, _) => beat::name(s).to_string(),
                },
                fmt_time(h.last_activity.unwrap_or(h.received).max(h.received)),
            ),
            None => ("-".into(), "-".into()),
        };
        let remote = r
            .root
            .as_ref()
            .map(|h| client.path_of(&crate::tree::NodeHandle(h.clone())))
            .unwrap_or_default();
        println!(
            "{:<11}  {:<8}  {:<9}  {:<11}  {:<16}  {:<20}  {} -> {}",
            r.id,
            kind,
            state::name(r.state),
            status,
            last,
            device_of(&r.device),
            r.local.as_deref().unwrap_or("?"),
            remote
        );
    }
    Ok(())
}
