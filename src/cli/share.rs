//! `share`, `unshare` and `shares`: folders shared between users, both ways, and listing
//! `mega://Shared/` (the owners) and `mega://Shared/<owner>/` (their folders); `contacts`:
//! the people this account knows, their key fingerprints and whether they are verified.

use std::io::Write;

use serde_json::json;

use super::exit::{self, CliError};
use super::path::{RemotePath, RootKind};
use super::resolve::{remote_arg, resolve};
use super::{ContactsAction, Ctx};
use crate::client::contacts::Answer;
use crate::client::Client;
use crate::tree::{Access, Node};

/// `--access` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessArg {
    /// Read-only.
    Read,
    /// Add and change files and folders.
    Readwrite,
    /// Also move and delete.
    Full,
}

impl From<AccessArg> for Access {
    fn from(a: AccessArg) -> Self {
        match a {
            AccessArg::Read => Access::Read,
            AccessArg::Readwrite => Access::ReadWrite,
            AccessArg::Full => Access::Full,
        }
    }
}

/// One of our folders, by path.
fn own_folder(client: &Client, arg: &str) -> Result<Node, CliError> {
    let rp = remote_arg(arg)?;
    let n = resolve(client, &rp)?;
    if n.kind != crate::tree::NodeKind::Folder {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: only folders can be shared", rp.display()),
        ));
    }
    Ok(n)
}

pub(super) async fn share(
    ctx: &Ctx,
    path: &str,
    user: &str,
    access: AccessArg,
) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let n = own_folder(&client, path)?;
    let done = client.share(&n.handle, user, access.into()).await?;
    if done == crate::client::shares::Shared::Pending {
        eprintln!(
            "{user} is not a contact: they were sent a contact request, and see {} once they accept it",
            client.path_of(&n.handle)
        );
    } else if ctx.cli.verbose >= 1 {
        eprintln!(
            "shared {} with {user} ({})",
            client.path_of(&n.handle),
            Access::from(access).name()
        );
    }
    Ok(())
}

/// Ends a share with `user`, with every user (`--all` style: no user on an outgoing share
/// is refused), or leaves a share we received.
pub(super) async fn unshare(ctx: &Ctx, path: &str, user: Option<&str>) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let rp = remote_arg(path)?;
    let n = resolve(&client, &rp)?;
    if client.view(|t| t.inshare_of(&n.handle).is_some()) {
        if user.is_some() {
            return Err(CliError::new(
                exit::USAGE,
                format!(
                    "{}: shared with you; only its owner can change who else has it",
                    rp.display()
                ),
            ));
        }
        return Ok(client.unshare(&n.handle, None).await?);
    }
    let Some(user) = user else {
        return Err(CliError::new(
            exit::USAGE,
            format!("{}: name the user to stop sharing with", rp.display()),
        ));
    };
    Ok(client.unshare(&n.handle, Some(user)).await?)
}

pub(super) async fn shares(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let (out, incoming) = client.shares();
    let (outgoing, received) = client.view(|tree| {
        let email = |u: &str| tree.email_of(u).unwrap_or(u).to_string();
        let outgoing: Vec<_> = out
            .iter()
            .map(|s| {
                (
                    format!("mega:{}", tree.path_of(&s.node)),
                    email(&s.user),
                    s.access,
                    // Users with an account are known by handle; an address alone is pending.
                    s.user.contains('@'),
                )
            })
            .collect();
        let received: Vec<_> = incoming
            .iter()
            .map(|n| {
                let s = n.inshare.as_ref().map(|s| (email(&s.owner), s.access));
                let (owner, access) = s.unwrap_or_else(|| (String::new(), Access::Read));
                (format!("mega:{}", tree.path_of(&n.handle)), owner, access)
            })
            .collect();
        (outgoing, received)
    });
    if ctx.cli.json {
        let v = json!({
            "outgoing": outgoing.iter().map(|(p, u, a, pending)| json!({"path": p, "user": u, "access": a.name(), "pending": pending})).collect::<Vec<_>>(),
            "incoming": received.iter().map(|(p, u, a)| json!({"path": p, "owner": u, "access": a.name()})).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    for (p, u, a, pending) in &outgoing {
        let note = if *pending {
            " (pending: no account yet)"
        } else {
            ""
        };
        let _ = writeln!(o, "out  {:<9}  {p}  with {u}{note}", a.name());
    }
    for (p, u, a) in &received {
        let _ = writeln!(o, "in   {:<9}  {p}/  from {u}", a.name());
    }
    Ok(())
}

/// `list mega://Shared/` (the owners who share with us) and `list mega://Shared/<owner>/`
/// (their folders): virtual folders, listed here. `None` for any other path.
pub(super) fn list_virtual(client: &Client, rp: &RemotePath) -> Option<Vec<String>> {
    if rp.root != RootKind::Shared || rp.parts.len() >= 2 {
        return None;
    }
    let shares: Vec<(String, String)> = client.view(|tree| {
        tree.inshares()
            .into_iter()
            .map(|n| (tree.sharer_name(n), n.name.clone()))
            .collect()
    });
    let mut lines: Vec<String> = Vec::new();
    for (owner, name) in shares {
        let line = match rp.parts.first() {
            None => format!("mega://Shared/{owner}/"),
            Some(o) if o.eq_ignore_ascii_case(&owner) => {
                format!("mega://Shared/{owner}/{name}/")
            }
            Some(_) => continue,
        };
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    Some(lines)
}

pub(super) async fn contacts(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let list = client.contacts().await?;
    let requests = client.requests();
    let mut out = std::io::stdout().lock();
    if ctx.cli.json {
        // One array: contacts (`kind: contact`), then invitations (`incoming`, `outgoing`).
        let mut v: Vec<_> = list
            .iter()
            .map(|c| {
                json!({
                    "kind": "contact",
                    "user": c.user,
                    "email": c.email,
                    "fingerprint": c.fingerprint,
                    "trust": c.trust.as_str(),
                })
            })
            .collect();
        v.extend(requests.iter().map(|r| {
            json!({
                "kind": if r.outgoing { "outgoing" } else { "incoming" },
                "email": r.email, "message": r.msg, "time": r.ts,
            })
        }));
        let _ = writeln!(out, "{}", serde_json::Value::Array(v));
        return Ok(());
    }
    for c in &list {
        let _ = writeln!(
            out,
            "{:<32}  {:<8}  {}",
            c.email.as_deref().unwrap_or(&c.user),
            c.trust.as_str(),
            c.fingerprint.as_deref().unwrap_or("-")
        );
    }
    for r in &requests {
        let what = if r.outgoing {
            "invited (waiting for them)"
        } else {
            "invites you (megacmd contacts accept|decline)"
        };
        let msg = if r.msg.is_empty() {
            String::new()
        } else {
            format!(": {}", r.msg)
        };
        let _ = writeln!(out, "{:<32}  {what}{msg}", r.email);
    }
    Ok(())
}

/// `contacts invite|cancel|accept|decline|ignore|remove EMAIL`.
pub(super) async fn contact_action(ctx: &Ctx, action: &ContactsAction) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let (email, done) = match action {
        ContactsAction::Invite { email, message } => {
            client.invite(email, message.as_deref()).await?;
            (email, "invited")
        }
        ContactsAction::Cancel { email } => {
            client.cancel_invite(email).await?;
            (email, "invitation cancelled")
        }
        ContactsAction::Accept { email } => {
            client.answer_invitation(email, Answer::Accept).await?;
            (email, "accepted: now a contact")
        }
        ContactsAction::Decline { email } => {
            client.answer_invitation(email, Answer::Decline).await?;
            (email, "declined")
        }
        ContactsAction::Ignore { email } => {
            client.answer_invitation(email, Answer::Ignore).await?;
            (email, "ignored")
        }
        ContactsAction::Remove { email } => {
            client.remove_contact(email).await?;
            (email, "removed from your contacts")
        }
        ContactsAction::Verify { email } => return verify(ctx, email).await,
    };
    if ctx.cli.json {
        println!("{}", json!({"email": email, "done": done}));
    } else {
        println!("{email}: {done}");
    }
    Ok(())
}

pub(super) async fn verify(ctx: &Ctx, email: &str) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let fp = client.verify_contact(email).await?;
    if ctx.cli.json {
        println!(
            "{}",
            json!({"email": email, "fingerprint": fp, "trust": "verified"})
        );
    } else {
        println!("{email}: verified ({fp})");
    }
    Ok(())
}
