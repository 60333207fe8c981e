//! `sync`: the front end of [`crate::sync`]. One-way (`sync mega:/a/ /tmp/a/` or
//! `sync /tmp/a mega:/a`): plan, print the plan (dry run, `--verbose`), carry it out with a
//! progress bar. Two-way (`sync --two-way LOCAL mega:/REMOTE [--watch]`): a [`Syncer`] run
//! once or kept watching, with a summary after each pass.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::exit::{self, CliError};
use super::path::{self, Location, RemotePath};
use super::progress::{outcome, Transfers};
use super::resolve::{ensure_path, io_err, resolve};
use super::Ctx;
use crate::local::files::walk;
use crate::sync::oneway::{
    self, download_tree, remote_listing, upload_tree, Action, Entry, Execution, Outcome,
    PlanOptions, RemoteListing,
};
use crate::sync::plan::Action as TwoWayAction;
use crate::sync::{Report, SyncError, SyncOptions, Syncer};

pub(super) async fn one_way(ctx: &Ctx, source: &str, target: &str) -> Result<(), CliError> {
    match (path::parse(source)?, path::parse(target)?) {
        (Location::Remote(r), Location::Local(l)) => sync_down(ctx, &r, &l).await,
        (Location::Local(l), Location::Remote(r)) => sync_up(ctx, &l, &r).await,
        _ => Err(CliError::new(
            exit::USAGE,
            "sync needs one mega:/ path and one local path",
        )),
    }
}

/// Plans a sync and reports it; `None` after a dry run (nothing more to do).
fn plan_sync(
    ctx: &Ctx,
    src: &[Entry],
    tgt: &[Entry],
    src_name: &dyn Fn(&str) -> String,
    dst_name: &dyn Fn(&str) -> String,
) -> Option<(oneway::Plan, serde_json::Value)> {
    let opts = PlanOptions {
        ignore_same_size: ctx.cli.ignore_same_size,
        delete: ctx.cli.delete,
    };
    let p = oneway::plan(src, tgt, opts);
    let planned = report_plan(ctx, &p, src_name, dst_name);
    let mut extra = counts(&p);
    if ctx.cli.dry_run {
        extra["dry_run"] = json!(true);
        if ctx.cli.json {
            println!(
                "{}",
                json!({"operation": "sync", "summary": extra, "actions": planned})
            );
        }
        return None;
    }
    Some((p, extra))
}

/// Prints the plan (dry run or --verbose) and returns it as JSON values for --json.
fn report_plan(
    ctx: &Ctx,
    p: &oneway::Plan,
    src: &dyn Fn(&str) -> String,
    dst: &dyn Fn(&str) -> String,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for a in &p.actions {
        let (kind, from, to) = match a {
            Action::Mkdir(path) => ("mkdir", None, dst(path)),
            Action::Copy {
                path,
                replace: true,
                ..
            } => ("update", Some(src(path)), dst(path)),
            Action::Copy { path, .. } => ("copy", Some(src(path)), dst(path)),
            Action::Delete { path, .. } => ("delete", None, dst(path)),
            Action::Conflict { path } => ("conflict", None, dst(path)),
        };
        out.push(json!({"action": kind, "source": from, "target": to}));
        if !ctx.cli.json && (ctx.cli.dry_run || ctx.cli.verbose >= 1) {
            match from {
                Some(f) => println!("{kind} {f} -> {to}"),
                None => println!("{kind} {to}"),
            }
        }
    }
    out
}

fn counts(p: &oneway::Plan) -> serde_json::Value {
    let c = |f: fn(&Action) -> bool| p.actions.iter().filter(|a| f(a)).count();
    json!({
        "copied_planned": c(|a| matches!(a, Action::Copy { .. })),
        "deleted": c(|a| matches!(a, Action::Delete { .. })),
        "conflicts": c(|a| matches!(a, Action::Conflict { .. })),
        "unchanged": p.unchanged,
        "dry_run": false,
    })
}

/// How the plan is carried out, reporting into `t`.
fn execution(ctx: &Ctx, t: &Arc<Transfers>, verb: &'static str) -> Execution {
    let t2 = t.clone();
    Execution {
        parallel: ctx.parallel(),
        permanent: ctx.cli.force,
        sync_debris: false,
        progress: Some(t.progress()),
        copied: Arc::new(move |from: &str, to: &str| t2.done(|| format!("{verb} {from} -> {to}"))),
        quota: Arc::new(crate::client::quota::QuotaPause::new(!ctx.cli.no_wait)),
    }
}

/// The end of a sync: conflicts warned about, failed transfers reported, the summary, and
/// conflicts as the command's error.
fn finish_sync(
    ctx: &Ctx,
    t: &Transfers,
    done: Outcome,
    extra: serde_json::Value,
    shown: &dyn Fn(&str) -> String,
) -> Result<(), CliError> {
    for c in &done.conflicts {
        eprintln!(
            "megacmd: {}: a file on one side and a folder on the other; left alone (--delete replaces it)",
            shown(c)
        );
    }
    let total = done.copied + done.failed.len();
    outcome(total, done.failed.into_iter().map(CliError::from).collect())?;
    t.summary(ctx, "synced", extra);
    let conflicts = done.conflicts.len();
    if conflicts > 0 {
        return Err(CliError::new(
            exit::EXISTS,
            format!("{conflicts} conflict(s) left alone"),
        ));
    }
    Ok(())
}

async fn sync_down(ctx: &Ctx, r: &RemotePath, local: &Path) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let top = resolve(&client, r)?;
    if !top.kind.is_container() {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: sync needs a folder", r.display()),
        ));
    }
    let remote = remote_listing(&client, &top.handle)?;
    let tgt = if local.exists() {
        walk(local).map_err(|e| io_err(local, e))?
    } else {
        Vec::new()
    };
    let rd = |x: &str| r.join(x).display();
    let ld = |x: &str| local.join(x).display().to_string();
    let Some((p, extra)) = plan_sync(ctx, &remote.entries, &tgt, &rd, &ld) else {
        return Ok(());
    };
    let total = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Copy { size, .. } => Some(*size),
            _ => None,
        })
        .sum();
    let t = Transfers::new(ctx, total);
    let done = download_tree(
        &client,
        &p,
        &remote,
        local,
        &execution(ctx, &t, "downloaded"),
    )
    .await?;
    finish_sync(ctx, &t, done, extra, &ld)
}

async fn sync_up(ctx: &Ctx, local: &Path, r: &RemotePath) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let meta = std::fs::metadata(local).map_err(|e| io_err(local, e))?;
    if !meta.is_dir() {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: sync needs a folder", local.display()),
        ));
    }
    let src = walk(local).map_err(|e| io_err(local, e))?;
    let top = match resolve(&client, r) {
        Ok(n) if n.kind.is_container() => Some(n.handle),
        Ok(_) => {
            return Err(CliError::new(
                exit::USAGE,
                format!("{}: not a folder", r.display()),
            ))
        }
        Err(e) if e.code == exit::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let remote = match &top {
        Some(h) => remote_listing(&client, h)?,
        None => RemoteListing {
            entries: Vec::new(),
            handles: Default::default(),
        },
    };
    let ld = |x: &str| local.join(x).display().to_string();
    let rd = |x: &str| r.join(x).display();
    let Some((p, extra)) = plan_sync(ctx, &src, &remote.entries, &ld, &rd) else {
        return Ok(());
    };
    let top = match top {
        Some(h) => h,
        None => ensure_path(&client, r).await?,
    };
    let total = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Copy { path, .. } => std::fs::metadata(local.join(path)).ok(),
            _ => None,
        })
        .map(|m| m.len())
        .sum();
    let t = Transfers::new(ctx, total);
    let done = upload_tree(
        &client,
        &p,
        &remote,
        &top,
        local,
        &execution(ctx, &t, "uploaded"),
    )
    .await?;
    finish_sync(ctx, &t, done, extra, &rd)
}

/// Options of a two-way run, from the command line.
pub(super) struct TwoWay<'a> {
    pub local: &'a str,
    pub remote: &'a str,
    pub watch: bool,
    pub max_delete: Option<usize>,
    pub settle: u64,
    pub settle_wait: u64,
    pub remove: bool,
}

pub(super) fn sync_error(e: SyncError) -> CliError {
    match e {
        SyncError::TooManyDeletes { .. } => CliError::new(exit::GUARD, e.to_string()),
        SyncError::Client(c) => c.into(),
        SyncError::Shadow(_) | SyncError::Ignore(_) => CliError::new(exit::CONFIG, e.to_string()),
        SyncError::Io { .. } | SyncError::Watch { .. } | SyncError::Removed => {
            CliError::new(exit::OTHER, e.to_string())
        }
    }
}

/// How an action is shown: `upload docs/a.txt`, `move-local a -> b`, …
pub(super) fn describe(a: &TwoWayAction) -> String {
    match a {
        TwoWayAction::MoveLocal { from, to } => format!("move-local {from} -> {to}"),
        TwoWayAction::MoveRemote { from, to, .. } => format!("move-remote {from} -> {to}"),
        TwoWayAction::MkdirLocal { path } => format!("mkdir-local {path}"),
        TwoWayAction::MkdirRemote { path } => format!("mkdir-remote {path}"),
        TwoWayAction::Upload { path, .. } => format!("upload {path}"),
        TwoWayAction::Download { path, .. } => format!("download {path}"),
        TwoWayAction::Conflict { path, .. } => format!("conflict {path}"),
        TwoWayAction::DeleteRemote { path, .. } => format!("delete-remote {path}"),
        TwoWayAction::DeleteLocal { path, .. } => format!("delete-local {path}"),
        TwoWayAction::Record { path } => format!("same {path}"),
        TwoWayAction::Forget { path } => format!("forget {path}"),
        TwoWayAction::Defer { path } => format!("wait {path}"),
    }
}

fn summary(ctx: &Ctx, r: &Report) {
    if ctx.cli.json {
        println!("{}", json!(r));
        return;
    }
    if r.paused {
        eprintln!("two-way sync: paused from another device (megacmd backup --resume ID)");
        return;
    }
    eprintln!(
        "two-way sync: {} uploaded, {} downloaded, {} moved, {} mode(s) carried, {} deleted (remote {}, local {} into .debris), {} conflict(s), {} waiting to settle{}",
        r.uploaded,
        r.downloaded,
        r.moved_local + r.moved_remote,
        r.modes,
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

pub(super) async fn two_way(ctx: &Ctx, args: TwoWay<'_>) -> Result<(), CliError> {
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
    let remote_h = ensure_path(&client, &remote).await?;
    std::fs::create_dir_all(&local)
        .map_err(|e| CliError::new(exit::OTHER, format!("{}: {e}", local.display())))?;
    let opts = SyncOptions {
        dry_run: ctx.cli.dry_run,
        max_delete: args.max_delete,
        settle: Duration::from_secs(args.settle),
        state_dir: ctx.cfg.state_dir.clone(),
        parallel: ctx.parallel(),
        wait_for_quota: !ctx.cli.no_wait,
    };
    let mut syncer =
        Syncer::open(Arc::clone(&client), &local, remote_h, opts).map_err(sync_error)?;
    if args.remove {
        let id = syncer.registration().map(str::to_string);
        syncer.remove().await.map_err(sync_error)?;
        eprintln!(
            "{}",
            match id {
                Some(id) => format!("sync {id} unregistered from the Backup Centre"),
                None => "this pair was not registered".to_string(),
            }
        );
        return Ok(());
    }
    let dry = ctx.cli.dry_run;
    let verbose = ctx.cli.verbose >= 1;
    let mut show = |a: &TwoWayAction| {
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
    let report = if dry {
        syncer.run_once(&mut show).await
    } else {
        let wait = Duration::from_secs(args.settle_wait);
        syncer.run_settled(&mut show, wait).await
    }
    .map_err(sync_error)?;
    if !dry {
        summary(ctx, &report);
    }
    if !report.errors.is_empty() {
        return Err(CliError::new(
            exit::OTHER,
            format!("{} action(s) failed", report.errors.len()),
        ));
    }
    if !dry && !report.waiting.is_empty() {
        return Err(CliError::new(
            exit::OTHER,
            format!(
                "{} file(s) still being written after {} s, not synced: {}",
                report.waiting.len(),
                args.settle_wait,
                report.waiting.join(", ")
            ),
        ));
    }
    Ok(())
}
