//! `transfers`: the uploads and downloads an earlier run left unfinished (killed, the
//! machine asleep, the network gone, the transfer quota), as recorded by
//! [`crate::client::resume`]; resumed here or by running the same `put`/`get` again, or
//! cancelled (the record and the partial download removed).

use serde_json::json;

use super::exit::{self, CliError};
use super::progress::{human, outcome, Transfers};
use super::resolve::io_err;
use super::transfer::{download_node, upload_one};
use super::Ctx;
use crate::client::resume::Interrupted;
use crate::tree::NodeHandle;

pub(super) async fn run(
    ctx: &Ctx,
    resume: Option<&str>,
    cancel: Option<&str>,
) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let state = client.transfer_state().ok_or_else(|| {
        CliError::new(exit::CONFIG, "interrupted transfers are not recorded here")
    })?;
    let all = state
        .list(&client.session().user)
        .map_err(|e| io_err(state.dir(), e))?;
    let chosen = |id: &str| -> Result<Vec<Interrupted>, CliError> {
        let picked: Vec<Interrupted> = all
            .iter()
            .filter(|t| id == "all" || t.id == id)
            .cloned()
            .collect();
        if picked.is_empty() && id != "all" {
            return Err(CliError::new(
                exit::NOT_FOUND,
                format!("{id}: no such interrupted transfer (see megacmd transfers)"),
            ));
        }
        Ok(picked)
    };
    let queued = super::queue::waiting(&ctx.cfg.transfers_dir);
    if let Some(id) = cancel {
        let mut errors = Vec::new();
        let waiting: Vec<_> = queued
            .iter()
            .filter(|q| id == "all" || q.id == id)
            .collect();
        for q in &waiting {
            match super::queue::cancel(&ctx.cfg.transfers_dir, q) {
                Ok(()) => eprintln!("cancelled {} (megacmd {})", q.id, q.args.join(" ")),
                Err(e) => errors.push(CliError::new(exit::OTHER, format!("{}: {e}", q.id))),
            }
        }
        if !waiting.is_empty() && id != "all" {
            return outcome(waiting.len(), errors);
        }
        let picked = chosen(id)?;
        for t in &picked {
            match state.cancel(t) {
                Ok(()) => eprintln!("cancelled {} ({})", t.id, t.local.display()),
                Err(e) => errors.push(CliError::new(exit::OTHER, format!("{}: {e}", t.id))),
            }
        }
        return outcome(picked.len() + waiting.len(), errors);
    }
    if let Some(id) = resume {
        let picked: Vec<Interrupted> = chosen(id)?.into_iter().filter(|t| !t.running).collect();
        let t = Transfers::new(ctx, picked.iter().map(|t| t.size - t.done).sum());
        let mut errors = Vec::new();
        for job in &picked {
            if let Err(e) = resume_one(&client, job, &t).await {
                errors.push(e);
            }
        }
        let r = outcome(picked.len(), errors);
        if r.is_ok() {
            t.summary(ctx, "resumed", json!({}));
        }
        return r;
    }
    if ctx.cli.json {
        let mut v: Vec<_> = all
            .iter()
            .map(|t| {
                json!({"id": t.id, "direction": if t.upload { "upload" } else { "download" },
                       "local": t.local, "size": t.size, "done": t.done, "started": t.started,
                       "state": if t.running { "running" } else { "interrupted" }})
            })
            .collect();
        v.extend(queued.iter().map(|q| {
            json!({"id": q.id, "state": "queued", "command": q.args, "log": q.log,
                   "started": q.queued})
        }));
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    for q in &queued {
        println!("{}  queued   megacmd {}", q.id, q.args.join(" "));
    }
    for t in &all {
        let pct = if t.size > 0 {
            t.done as f64 * 100.0 / t.size as f64
        } else {
            100.0
        };
        println!(
            "{}  {:<8} {:<11} {:>5.1}% of {:>10}  {}",
            t.id,
            if t.upload { "upload" } else { "download" },
            if t.running { "running" } else { "interrupted" },
            pct,
            human(t.size),
            t.local.display()
        );
    }
    Ok(())
}

/// Carries on one interrupted transfer: the same upload or download, which finds its record.
async fn resume_one(
    client: &std::sync::Arc<crate::client::Client>,
    job: &Interrupted,
    t: &std::sync::Arc<Transfers>,
) -> Result<(), CliError> {
    let gone = |what: &str| {
        CliError::new(
            exit::NOT_FOUND,
            format!("{}: {what} is gone; cancel it", job.id),
        )
    };
    if job.upload {
        let parent = NodeHandle(job.parent.clone().ok_or_else(|| gone("the destination"))?);
        let name = job.name.clone().ok_or_else(|| gone("the destination"))?;
        if client.view(|tree| tree.get(&parent).is_none()) {
            return Err(gone("the destination folder"));
        }
        if !job.local.exists() {
            return Err(gone("the local file"));
        }
        upload_one(client, &job.local, &parent, &name, job.replace, t).await
    } else {
        let h = NodeHandle(job.node.clone().ok_or_else(|| gone("the file"))?);
        let node = client
            .view(|tree| tree.get(&h).cloned())
            .ok_or_else(|| gone("the file"))?;
        download_node(client, &node, &job.local, false, t).await
    }
}
