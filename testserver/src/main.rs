//! `mega-testserver`: run the server, or create accounts.
//!
//! ```text
//! mega-testserver --data DIR [--listen 127.0.0.1:PORT] [--fault NAME=N]... [--wait-timeout SECS]
//!                 [--admin-token TOKEN] [--session-idle SECS] [--url-lifetime SECS]
//!                 [--upload-lifetime SECS] [--transfer-quota BYTES] [--transfer-bucket SECS]
//!                 [--max-commands N] [--max-open-uploads N] [--login-failures N] [--login-window SECS] [--event-log N]
//! mega-testserver useradd --data DIR EMAIL PASSWORD [--v1] [--totp-secret S] [--quota BYTES] [--transfer-quota BYTES] [--name NAME]
//!                 [--blocked CODE]
//! mega-testserver audit --data DIR EMAIL PASSWORD [EMAIL PASSWORD]...
//! ```
//! The first line the server prints on stdout is its base URL, for scripts to read.

use std::io::Write;
use std::process::ExitCode;

use mega_testserver::{add_user, faults, Config, Limits, Store, TestServer, UserOptions};

const USAGE: &str = "usage:
  mega-testserver --data DIR [--listen ADDR:PORT] [--fault NAME=N]... [--wait-timeout SECS]
                  [--admin-token TOKEN] [--session-idle SECS] [--url-lifetime SECS]
                  [--upload-lifetime SECS] [--transfer-quota BYTES] [--transfer-bucket SECS]
                  [--max-commands N] [--max-open-uploads N] [--login-failures N] [--login-window SECS] [--event-log N]
  mega-testserver useradd --data DIR EMAIL PASSWORD [--v1] [--totp-secret BASE32] [--quota BYTES] [--transfer-quota BYTES] [--name NAME]
                  [--blocked CODE] [--legacy]
  mega-testserver seed --data DIR EMAIL PASSWORD --folders N --files M [--depth D]
  mega-testserver audit --data DIR EMAIL PASSWORD [EMAIL PASSWORD]...

audit unwraps the key of every file node the given accounts created (previous versions and
the Rubbish Bin included) and fails if two uploads with different content share an
AES key and nonce, which would give the server the XOR of their plaintexts.

seed fills an existing account with FOLDERS folders DEPTH levels deep (default 3) and FILES
(empty) files spread over them, encrypted as a client would, directly in the store.

useradd creates an account as MEGA does today: RSA, Ed25519 and Cu25519 key pairs, the signed
public keys and the key manager (^!keys); --legacy makes a pre-2022 account without them.

The first line printed on stdout is the API base URL (port 0 picks a free port).
The admin endpoints (/__admin/faults, /__admin/quota, /__admin/block, /__admin/uploads, /__admin/stats) need `Authorization: Bearer TOKEN`;
without --admin-token a random token is written to DIR/admin-token (mode 0600).
Faults: cs_eagain, cs_ratelimit, cs_http500, cs_http503, cs_drop, hashcash, hashcash_easiness,
dl_http500, dl_http503, dl_drop, ul_http500, ul_http503, ul_drop, ul_hold, corrupt_downloads, corrupt_after,
latency_ms, cs_reply_delay_ms, bandwidth_bps, unknown_commands=A,B (commands answered -1), cs_hold=A,B (requests with these commands wait while set) (also settable at run time: POST /__admin/faults with JSON).";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("useradd") {
        useradd(&args[1..])
    } else if args.first().map(String::as_str) == Some("seed") {
        seed(&args[1..])
    } else if args.first().map(String::as_str) == Some("audit") {
        audit(&args[1..])
    } else if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        Ok(())
    } else {
        serve(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mega-testserver: {e}");
            ExitCode::from(2)
        }
    }
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
}

fn useradd(args: &[String]) -> Result<(), String> {
    let mut data = None;
    let mut opts = UserOptions::default();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--data" => data = Some(value(args, &mut i, "--data")?.to_string()),
            "--v1" => opts.v1 = true,
            "--legacy" => opts.legacy = true,
            "--totp-secret" => {
                opts.totp_secret = Some(value(args, &mut i, "--totp-secret")?.into())
            }
            "--quota" => {
                opts.quota = value(args, &mut i, "--quota")?
                    .parse()
                    .map_err(|_| "--quota takes a number of bytes".to_string())?
            }
            "--transfer-quota" => {
                opts.transfer_quota = value(args, &mut i, "--transfer-quota")?
                    .parse()
                    .map_err(|_| "--transfer-quota takes a number of bytes".to_string())?
            }
            "--name" => opts.name = value(args, &mut i, "--name")?.into(),
            "--blocked" => {
                opts.blocked = value(args, &mut i, "--blocked")?
                    .parse()
                    .ok()
                    .filter(|c: &i64| *c > 0)
                    .ok_or_else(|| "--blocked takes a positive reason code".to_string())?
            }
            a if a.starts_with("--") => return Err(format!("unknown option {a}\n{USAGE}")),
            a => positional.push(a.to_string()),
        }
        i += 1;
    }
    let data = data.ok_or_else(|| format!("useradd needs --data DIR\n{USAGE}"))?;
    let [email, password] = <[String; 2]>::try_from(positional)
        .map_err(|_| format!("useradd needs EMAIL and PASSWORD\n{USAGE}"))?;
    let store = Store::open(std::path::Path::new(&data)).map_err(|e| e.to_string())?;
    let user = add_user(&store, &email, &password, &opts).map_err(|e| e.to_string())?;
    println!(
        "created {} (v{}, user handle {})",
        user.email, user.version, user.handle
    );
    Ok(())
}

fn seed(args: &[String]) -> Result<(), String> {
    let (mut data, mut folders, mut files, mut depth) = (None, None, None, 3usize);
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--data" => data = Some(value(args, &mut i, "--data")?.to_string()),
            "--folders" => folders = Some(number(args, &mut i, "--folders", "a count")?),
            "--files" => files = Some(number(args, &mut i, "--files", "a count")?),
            "--depth" => depth = number(args, &mut i, "--depth", "a count")?,
            a if a.starts_with("--") => return Err(format!("unknown option {a}\n{USAGE}")),
            a => positional.push(a.to_string()),
        }
        i += 1;
    }
    let data = data.ok_or_else(|| format!("seed needs --data DIR\n{USAGE}"))?;
    let [email, password] = <[String; 2]>::try_from(positional)
        .map_err(|_| format!("seed needs EMAIL and PASSWORD\n{USAGE}"))?;
    let plan = mega_testserver::seed::SeedPlan {
        folders: folders.unwrap_or(0),
        files: files.unwrap_or(0),
        depth,
    };
    let store = Store::open(std::path::Path::new(&data)).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let n =
        mega_testserver::seed::seed(&store, &email, &password, plan).map_err(|e| e.to_string())?;
    println!(
        "created {n} nodes for {email} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn audit(args: &[String]) -> Result<(), String> {
    let mut data = None;
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--data" => data = Some(value(args, &mut i, "--data")?.to_string()),
            a if a.starts_with("--") => return Err(format!("unknown option {a}\n{USAGE}")),
            a => positional.push(a.to_string()),
        }
        i += 1;
    }
    let data = data.ok_or_else(|| format!("audit needs --data DIR\n{USAGE}"))?;
    if positional.is_empty() || positional.len() % 2 != 0 {
        return Err(format!("audit needs EMAIL PASSWORD pairs\n{USAGE}"));
    }
    let passwords: std::collections::HashMap<String, String> = positional
        .chunks_exact(2)
        .map(|p| (p[0].trim().to_lowercase(), p[1].clone()))
        .collect();
    let store = Store::open(std::path::Path::new(&data)).map_err(|e| e.to_string())?;
    let report = mega_testserver::audit::keystreams(&store, |e| passwords.get(e).cloned())
        .map_err(|e| e.to_string())?;
    println!(
        "{} file nodes checked, {} skipped (no password for their creator)",
        report.checked, report.skipped
    );
    for group in &report.repeats {
        println!(
            "one key and nonce for different content: {}",
            group.join(", ")
        );
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!(
            "{} key and nonce pairs used for more than one upload",
            report.repeats.len()
        ))
    }
}

fn number<T: std::str::FromStr>(
    args: &[String],
    i: &mut usize,
    flag: &str,
    what: &str,
) -> Result<T, String> {
    value(args, i, flag)?
        .parse()
        .map_err(|_| format!("{flag} takes {what}"))
}

fn serve(args: &[String]) -> Result<(), String> {
    let mut data = None;
    let mut listen = "127.0.0.1:0".to_string();
    let mut fault_cfg = faults::FaultConfig::default();
    let mut wait_timeout = None;
    let mut admin_token = None;
    let mut limits = Limits::default();
    let secs = |n: u64| std::time::Duration::from_secs(n);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--data" => data = Some(value(args, &mut i, "--data")?.to_string()),
            "--listen" => listen = value(args, &mut i, "--listen")?.to_string(),
            "--fault" => faults::apply_arg(&mut fault_cfg, value(args, &mut i, "--fault")?)?,
            "--wait-timeout" => {
                wait_timeout = Some(number::<u64>(args, &mut i, "--wait-timeout", "seconds")?)
            }
            "--admin-token" => {
                let t = value(args, &mut i, "--admin-token")?;
                if t.len() < 16 {
                    return Err("--admin-token must be at least 16 characters".into());
                }
                admin_token = Some(t.to_string());
            }
            "--session-idle" => {
                limits.session_idle = secs(number(args, &mut i, "--session-idle", "seconds")?)
            }
            "--transfer-quota" => {
                limits.transfer_quota = number(args, &mut i, "--transfer-quota", "bytes")?
            }
            "--transfer-bucket" => {
                limits.transfer_bucket = secs(number(args, &mut i, "--transfer-bucket", "seconds")?)
            }
            "--upload-lifetime" => {
                limits.upload_lifetime = secs(number(args, &mut i, "--upload-lifetime", "seconds")?)
            }
            "--url-lifetime" => {
                limits.url_lifetime = secs(number(args, &mut i, "--url-lifetime", "seconds")?)
            }
            "--max-commands" => {
                limits.max_commands = number(args, &mut i, "--max-commands", "a number")?
            }
            "--max-open-uploads" => {
                limits.max_open_uploads = number(args, &mut i, "--max-open-uploads", "a number")?
            }
            "--login-failures" => {
                limits.login_failures = number(args, &mut i, "--login-failures", "a number")?
            }
            "--login-window" => {
                limits.login_window = secs(number(args, &mut i, "--login-window", "seconds")?)
            }
            "--event-log" => {
                limits.event_log = number(args, &mut i, "--event-log", "a number of packets")?
            }
            a => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
        i += 1;
    }
    let data = data.ok_or_else(|| format!("--data DIR is required\n{USAGE}"))?;
    let mut cfg = Config::new(data);
    cfg.admin_token = admin_token;
    cfg.limits = limits;
    cfg.listen = listen
        .parse()
        .map_err(|_| format!("--listen {listen:?} is not an address:port"))?;
    cfg.faults = fault_cfg;
    if let Some(s) = wait_timeout {
        cfg.wait_timeout = std::time::Duration::from_secs(s);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // Handlers first: once the URL is out, a script may signal us at any moment.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| e.to_string())?;
        let server = TestServer::start(cfg).await.map_err(|e| e.to_string())?;
        println!("{}", server.base_url());
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        server.shutdown().await;
        Ok(())
    })
}
