//! `megacmd sync --two-way LOCAL mega:/REMOTE [--watch]`: the front end of [`crate::sync`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::path::{self, Location};
use super::{exit, CliError, Ctx};
use crate::sync::plan::Action;
use crate::sync::{Report, SyncError, SyncOptions, Syncer};

/// Options of a two-way run, from the command line.
pub struct TwoWay<'a> {
    pub local: &'a str,
    pub remote: &'a str,
    pub watch: bool,
    pub max_delete: Option<usize>,
    pub settle: u64,
}

fn sync_error(e: SyncError) -> CliError {
    match e {
        SyncError::TooManyDeletes { .. } => CliError::new(exit::GUARD, e.to_string()),
        SyncError::Client(c) => c.into(),
        SyncError::Shadow(_) => CliError::new(exit::CONFIG, e.to_string()),
        SyncError::Io { .. } | SyncError::Watch { .. } => CliError::new(exit::OTHER, e.to_string()),
    }
}

/// How an action is shown: `upload docs/a.txt`, `move-local a -> b`, …
pub fn describe(a: &Action) -> String {
    match a {
        Action::MoveLocal { from, to } => format!("move-local {from} -> {to}"),
        Action::MoveRemote { from, to, .. } => format!("move-remote {from} -> {to}"),
        Action::MkdirLocal { path } => format!("mkdir-local {path}"),
        Action::MkdirRemote { path } => format!("mkdir-remote {path}"),
        Action::Upload { path, .. } => format!("upload {path}"),
        Action::Download { path, .. } => format!("download {path}"),
        Action::Conflict { path, .. } => format!("conflict {path}"),
        Action::DeleteRemote { path, .. } => format!("delete-remote {path}"),
        Action::DeleteLocal { path, .. } => format!("delete-local {path}"),
        Action::Record { path } => format!("same {path}"),
        Action::Forget { path } => format!("forget {path}"),
        Action::Defer { path } => format!("wait {path}"),
    }
}

fn summary(ctx: &Ctx, r: &Report) {
    if ctx.cli.json {
        println!("{}", json!(r));
        return;
    }
    eprintln!(
        "two-way sync: {} uploaded, {} downloaded, {} moved, {} deleted (remote {}, local {} into .debris), {} conflict(s), {} waiting to settle{}",
        r.uploaded,
        r.downloaded,
        r.moved_local + r.moved_remote,
        r.deleted_remote + r.deleted_local,
        r.deleted_remote,
        r.deleted_local,
        r.conflicts,
        r.deferred,
        if r.errors.is_empty() {
            String::new()
        } else {
            format!(", {} failed", r.errors.len())
        }
    );
    for e in &r.errors {
        eprintln!("megacmd: {e}");
    }
}

pub async fn run(ctx: &Ctx, args: TwoWay<'_>) -> Result<(), CliError> {
    let (local, remote) = match (path::parse(args.local)?, path::parse(args.remote)?) {
        (Location::Local(l), Location::Remote(r)) => (l, r),
        _ => {
            return Err(CliError::new(
                exit::USAGE,
                "sync --two-way needs a local folder, then a mega:/ folder",
            ))
        }
    };
    let client = ctx.client().await?;
    let remote_h = super::ops::ensure_remote_folder(&client, &remote).await?;
    std::fs::create_dir_all(&local)
        .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", local.display())))?;
    let opts = SyncOptions {
        dry_run: ctx.cli.dry_run,
        max_delete: args.max_delete,
        settle: Duration::from_secs(args.settle),
        state_dir: ctx.cfg.state_dir.clone(),
        parallel: ctx.parallel(),
    };
    let mut syncer =
        Syncer::open(Arc::clone(&client), &local, remote_h, opts).map_err(sync_error)?;
    let dry = ctx.cli.dry_run;
    let verbose = ctx.cli.verbose >= 1;
    let mut show = |a: &Action| {
        if dry || verbose {
            println!("{}", describe(a));
        }
    };
    if args.watch && !dry {
        let mut done = |r: &Report| {
            if r != &Report::default() {
                summary(ctx, r);
            }
        };
        return syncer.watch(&mut show, &mut done).await.map_err(sync_error);
    }
    let report = syncer.run_once(&mut show).await.map_err(sync_error)?;
    if !dry {
        summary(ctx, &report);
    }
    if !report.errors.is_empty() {
        return Err(CliError::new(
            exit::OTHER,
            format!("{} action(s) failed", report.errors.len()),
        ));
    }
    Ok(())
}
