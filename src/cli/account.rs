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
            json!({"used": q.used, "total": q.total, "free": q.total.saturating_sub(q.used),
                   "transfer_used": q.transfer_used, "transfer_max": q.transfer_max,
                   "transfer_hours": q.transfer_hours})
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
        match q.transfer_max {
            Some(max) => println!("transfer: used {} of {}", human(q.transfer_used), human(max)),
            None => println!(
                "transfer: {} downloaded from this address in the last {} h (MEGA's free transfer quota)",
                human(q.transfer_used),
                q.transfer_hours
            ),
        }
    }
    Ok(())
}

/// What `link` is asked for besides a plain link.
pub(super) struct LinkOptions {
    pub password: bool,
    pub delete: bool,
    pub writable: bool,
    /// When the link expires (Unix time).
    pub expires: Option<i64>,
}

pub(super) async fn link(ctx: &Ctx, arg: &str, how: LinkOptions) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let node = resolve(&client, &rp)?;
    // One line: the link; with --json an object with the path and what was done.
    let show = |link: Option<&str>| {
        if ctx.cli.json {
            let mut o = json!({"path": rp.display(), "handle": node.handle.0});
            match link {
                Some(l) => o["link"] = json!(l),
                None => o["deleted"] = json!(true),
            }
            if let Some(t) = how.expires {
                o["expires"] = json!(t);
            }
            println!("{o}");
        } else if let Some(l) = link {
            println!("{l}");
        }
    };
    if how.delete {
        client.unexport(&node.handle).await?;
        show(None);
        return Ok(());
    }
    if how.writable {
        show(Some(
            &client.export_writable(&node.handle, how.expires).await?,
        ));
        return Ok(());
    }
    let expires = how.expires;
    let secret = if how.password {
        let p = link_password("Password for the link: ")?;
        if p.is_empty() {
            return Err(CliError::new(exit::USAGE, "an empty link password"));
        }
        Some(p)
    } else {
        None
    };
    let link = client.export_until(&node.handle, expires).await?;
    match secret {
        Some(p) => {
            let salt: [u8; 32] = rand::random();
            let protected = crate::link::protect(&link, &p, salt)
                .map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
            show(Some(&protected));
        }
        None => show(Some(&link)),
    }
    Ok(())
}

/// `--expire`: a date `YYYY-MM-DD[THH:MM[:SS]]` (UTC) or a time from `now`, `N` with a unit
/// of `s`, `m`, `h`, `d`, `w`; the result must lie in the future.
pub(super) fn parse_when(when: &str, now: i64) -> Result<i64, CliError> {
    let bad = || {
        CliError::new(
            exit::USAGE,
            format!(
                "--expire {when}: expected a date (2027-01-31, 2027-01-31T18:00) or 12h, 30d, 2w"
            ),
        )
    };
    let w = when.trim();
    let t = if let Some(d) = crate::local::time::parse_duration(w, None) {
        i64::try_from(d)
            .ok()
            .and_then(|d| now.checked_add(d))
            .ok_or_else(bad)?
    } else {
        let (date, time) = w.split_once(['T', ' ']).unwrap_or((w, "00:00"));
        let d: Vec<i64> = date
            .split('-')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let t: Vec<i64> = time
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let ([y, mo, da], [h, mi, rest @ ..]) = (d.as_slice(), t.as_slice()) else {
            return Err(bad());
        };
        let sec = match rest {
            [] => 0,
            [s] => *s,
            _ => return Err(bad()),
        };
        if !(1..=12).contains(mo) || !(1..=31).contains(da) || *h > 23 || *mi > 59 || sec > 59 {
            return Err(bad());
        }
        crate::local::time::unix_time(*y, *mo, *da, *h, *mi, sec)
    };
    if t <= now {
        return Err(CliError::new(
            exit::USAGE,
            format!("--expire {when}: that is not in the future"),
        ));
    }
    Ok(t)
}

/// A link password: asked on the terminal without echo, else the first line of stdin.
pub(super) fn link_password(prompt: &str) -> Result<zeroize::Zeroizing<String>, CliError> {
    use std::io::{BufRead, IsTerminal};
    let p = if std::io::stdin().is_terminal() {
        super::tty::prompt_secret(prompt)
            .map_err(|e| CliError::new(exit::USAGE, format!("cannot read the password: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::new(exit::USAGE, format!("cannot read the password: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    Ok(zeroize::Zeroizing::new(p))
}

/// The ordinary link a command-line link stands for: a password-protected one (`#P!`) is
/// opened with a password asked for (see [`link_password`]).
pub(super) fn open_link(url: &str) -> Result<String, CliError> {
    if !crate::link::is_protected(url) {
        return Ok(url.to_string());
    }
    let p = link_password("Password for the link: ")?;
    crate::link::unprotect(url, &p).map_err(|e| {
        let code = match e {
            crate::link::LinkError::WrongPassword => exit::AUTH,
            _ => exit::USAGE,
        };
        CliError::new(code, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_read_as_dates_or_durations() {
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(parse_when("12h", now).unwrap(), now + 12 * 3600);
        assert_eq!(parse_when("30d", now).unwrap(), now + 30 * 86_400);
        assert_eq!(parse_when("2w", now).unwrap(), now + 14 * 86_400);
        assert_eq!(parse_when("2024-01-01", now).unwrap(), 1_704_067_200);
        assert_eq!(parse_when("2024-02-29T12:30", now).unwrap(), 1_709_209_800);
        assert_eq!(
            parse_when("2024-02-29 12:30:15", now).unwrap(),
            1_709_209_815
        );
        for bad in [
            "2020-01-01",
            "0d",
            "",
            "d",
            "1y",
            "2024-13-01",
            "2024-01-01T25:00",
            "soon",
        ] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
    }
}
