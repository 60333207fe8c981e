//! Account commands: `login` (password prompt without echo, 2FA), `logout`, `whoami`, `df`
//! (alias `quota`), and `link` (export a public link).

use std::io::{IsTerminal, Write};

use serde_json::json;

use super::exit::{self, CliError};
use super::progress::human;
use super::resolve::{io_err, remote_arg, resolve};
use super::Ctx;
use crate::api::session::{self, AuthError, LoginError, SavedSession};
use crate::api::ApiClient;
use crate::error::Error;

pub(super) fn prompt_line(prompt: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

pub(super) async fn login(
    ctx: &Ctx,
    email: Option<&str>,
    mfa: Option<&str>,
) -> Result<(), CliError> {
    let email = email
        .map(str::to_string)
        .or_else(|| ctx.cfg.email.clone())
        .or_else(|| prompt_line("E-mail: "))
        .ok_or_else(|| {
            CliError::new(
                exit::USAGE,
                "no e-mail: give it as an argument or set MEGA_EMAIL",
            )
        })?;
    let password = match ctx.cfg.password.clone() {
        Some(p) => p,
        None => super::tty::prompt_secret("Password: ").map_err(|_| {
            CliError::new(
                exit::AUTH,
                "no password: run in a terminal, or set MEGA_PASSWORD",
            )
        })?,
    };
    let api = ApiClient::new(ctx.api_config()).map_err(Error::from)?;
    let prepared = session::prepare_login(&api, &email, &password)
        .await
        .map_err(Error::from)?;
    let sess = match prepared.login(&api, mfa).await {
        Err(LoginError::Auth(AuthError::MfaRequired)) => match prompt_line("Two-factor code: ") {
            Some(code) => prepared.login(&api, Some(&code)).await,
            None => Err(AuthError::MfaRequired.into()),
        },
        other => other,
    }
    .map_err(Error::from)?;
    SavedSession::from_session(&sess, &ctx.cfg.api_url)
        .save(&ctx.cfg.session_file)
        .map_err(Error::from)?;
    eprintln!(
        "logged in as {}; session saved to {}",
        sess.email,
        ctx.cfg.session_file.display()
    );
    Ok(())
}

pub(super) async fn logout(ctx: &Ctx) -> Result<(), CliError> {
    let path = &ctx.cfg.session_file;
    if !path.exists() {
        eprintln!("not logged in");
        return Ok(());
    }
    let saved = SavedSession::load(path).map_err(|e| CliError::new(exit::CONFIG, e.to_string()))?;
    let mut api_cfg = ctx.api_config();
    api_cfg.base_url = saved.api_url.clone();
    let api = ApiClient::new(api_cfg).map_err(Error::from)?;
    api.set_sid(Some(session::SessionId::new(saved.sid.clone())));
    let r = session::logout(&api).await;
    SavedSession::remove(path).map_err(|e| io_err(path, e))?;
    // The account's tree cache goes with the session.
    if let Some(dir) = &ctx.cfg.tree_cache {
        crate::tree::cache::remove(&crate::tree::cache::file_for(
            dir,
            &saved.api_url,
            &saved.user,
        ));
    }
    r.map_err(Error::from)?;
    eprintln!("logged out");
    Ok(())
}

pub(super) async fn whoami(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let s = client.session();
    if ctx.cli.json {
        println!(
            "{}",
            json!({"email": s.email, "user": s.user, "api_url": ctx.cfg.api_url})
        );
    } else {
        println!("{} (user {})", s.email, s.user);
    }
    Ok(())
}

pub(super) async fn df(ctx: &Ctx) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let q = client.quota().await?;
    if ctx.cli.json {
        println!(
            "{}",
            json!({"used": q.used, "total": q.total, "free": q.total.saturating_sub(q.used)})
        );
    } else {
        let pct = if q.total > 0 {
            q.used as f64 * 100.0 / q.total as f64
        } else {
            0.0
        };
        println!(
            "used {} of {} ({pct:.1}%), {} free",
            human(q.used),
            human(q.total),
            human(q.total.saturating_sub(q.used))
        );
    }
    Ok(())
}

pub(super) async fn link(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let node = resolve(&client, &rp)?;
    println!("{}", client.export(&node.handle).await?);
    Ok(())
}
