//! `megacmd`: an s3cmd-style command line over the engine. This module holds the clap
//! definitions, the exit codes, the mapping from engine errors to one-line messages, and how
//! a command gets a logged-in client (saved session, else configured credentials).
//!
//! Submodules: [`path`] (`mega:` locations, globs, name escaping), [`plan`] (the pure one-way
//! sync planner), `files` (local files: temp names, walking, times), `ops` (the commands).

pub mod files;
mod ops;
pub mod path;
pub mod plan;
mod tty;
mod twoway;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::api::session::{LoginError, SavedSession};
use crate::api::{ApiConfig, ApiError, ErrorCode};
use crate::client::{self, Client};
use crate::config::{self, Config};
use crate::transfer::TransferError;
use crate::tree::TreeError;

/// Exit codes (documented in the README).
pub mod exit {
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const AUTH: i32 = 3;
    pub const MFA: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const EXISTS: i32 = 6;
    pub const QUOTA: i32 = 7;
    pub const NETWORK: i32 = 8;
    pub const INTEGRITY: i32 = 9;
    pub const CONFIG: i32 = 10;
    /// Two-way sync: the `--max-delete` guard stopped the run.
    pub const GUARD: i32 = 11;
    pub const INTERRUPTED: i32 = 130;
}

/// A failed command: one line for stderr and an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    pub msg: String,
}

impl CliError {
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        CliError {
            code,
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

fn api_code(e: &ApiError) -> i32 {
    match e {
        ApiError::Network(_) | ApiError::RetriesExhausted { .. } => exit::NETWORK,
        ApiError::Http(s) if *s >= 500 => exit::NETWORK,
        ApiError::SessionLost => exit::AUTH,
        ApiError::Mega(c) => mega_code(*c),
        _ => exit::OTHER,
    }
}

fn mega_code(c: ErrorCode) -> i32 {
    match c {
        ErrorCode::NotFound => exit::NOT_FOUND,
        ErrorCode::Exists => exit::EXISTS,
        ErrorCode::OverQuota | ErrorCode::GoingOverQuota => exit::QUOTA,
        ErrorCode::MfaRequired => exit::MFA,
        c if c.is_retryable() => exit::NETWORK,
        _ => exit::OTHER,
    }
}

impl From<client::Error> for CliError {
    fn from(e: client::Error) -> Self {
        use client::Error as E;
        let code = match &e {
            E::Login(LoginError::WrongPassword) => exit::AUTH,
            E::Login(LoginError::MfaRequired | LoginError::MfaRejected) => exit::MFA,
            E::Login(LoginError::SessionFile { .. }) => exit::CONFIG,
            E::Login(LoginError::Api(a)) | E::Api(a) => api_code(a),
            E::Transfer(TransferError::MacMismatch) => exit::INTEGRITY,
            E::Transfer(TransferError::Api(a)) => api_code(a),
            E::Transfer(TransferError::Server(c)) => mega_code(*c),
            E::Tree(TreeError::NotFound(_)) | E::NoSuchNode(_) => exit::NOT_FOUND,
            E::Io(_) | E::Transfer(TransferError::Io(_)) => exit::OTHER,
            _ => exit::OTHER,
        };
        let msg = match &e {
            E::Login(LoginError::MfaRequired) => {
                "this account needs a two-factor code: run `megacmd login` (or pass --mfa CODE)".into()
            }
            E::Transfer(TransferError::MacMismatch) => {
                "integrity check failed: the downloaded data does not match its MAC (corrupt or tampered); nothing was saved".into()
            }
            other => other.to_string(),
        };
        CliError::new(code, msg)
    }
}

impl From<config::ConfigError> for CliError {
    fn from(e: config::ConfigError) -> Self {
        CliError::new(exit::CONFIG, e.to_string())
    }
}

impl From<path::PathError> for CliError {
    fn from(e: path::PathError) -> Self {
        CliError::new(exit::USAGE, e.to_string())
    }
}

/// An s3cmd-style command line for MEGA.
#[derive(Debug, Parser)]
#[command(name = "megacmd", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML); default $XDG_CONFIG_HOME/megacmd/config.toml
    #[arg(long, global = true, value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Delete permanently (instead of to the Rubbish Bin), or overwrite existing targets
    #[arg(long, short = 'f', global = true)]
    pub force: bool,
    /// Operate on folders and everything below them
    #[arg(long, short = 'r', global = true)]
    pub recursive: bool,
    /// Files of the same size at the same path count as the same (sync)
    #[arg(long, global = true)]
    pub ignore_same_size: bool,
    /// 0: summary only, 1: every file, 2: debug log, 3: trace log
    #[arg(long, global = true, value_name = "N", default_value_t = 0)]
    pub verbose: u8,
    /// Machine-readable JSON output (list, df, whoami, transfer summaries)
    #[arg(long, global = true)]
    pub json: bool,
    /// Files transferred at once (default from the config file, else 4)
    #[arg(long, global = true, value_name = "N")]
    pub parallel: Option<usize>,
    /// Show what would be done, change nothing (sync)
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Delete target files that the source does not have (sync)
    #[arg(long, global = true)]
    pub delete: bool,
    /// Never show a progress bar
    #[arg(long, global = true)]
    pub no_progress: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List a folder (or show a file): `list mega:/foo/`
    #[command(alias = "ls")]
    List {
        /// Remote path (default mega:/); the last component may be a glob
        path: Option<String>,
    },
    /// Download files or folders (--recursive), or a public link: `get mega:/a.txt /tmp/`
    Get {
        /// Remote path, glob, or public mega.nz link
        source: String,
        /// Local file or folder (default: the current folder)
        target: Option<String>,
    },
    /// Upload files or folders (--recursive): `put /tmp/a.txt mega:/bar/`
    Put {
        /// Local files or folders, then the remote target
        #[arg(required = true, num_args = 2..)]
        paths: Vec<String>,
    },
    /// Move to the Rubbish Bin (--force: delete permanently): `delete mega:/foo/bar`
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Create folders (and missing parents): `mkdir mega:/foo/bar`
    Mkdir {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move or rename: `move mega:/foo/a.txt mega:/bar/b.txt`
    #[command(alias = "mv")]
    Move { source: String, target: String },
    /// One-way sync: `sync mega:/foo/ /tmp/foo/` or `sync /tmp/foo mega:/foo`;
    /// two-way: `sync --two-way /tmp/foo mega:/foo [--watch]`
    Sync {
        source: String,
        target: String,
        /// Keep both sides the same in both directions (LOCAL mega:/REMOTE), with a shadow
        /// state database, conflict copies and a .debris folder
        #[arg(long)]
        two_way: bool,
        /// Two-way: keep running, syncing local and remote changes as they happen
        #[arg(long, requires = "two_way")]
        watch: bool,
        /// Two-way: stop before doing anything if more than N files or folders would be deleted
        #[arg(long, value_name = "N", requires = "two_way")]
        max_delete: Option<usize>,
        /// Two-way: local files modified less than this many seconds ago wait for a later pass
        #[arg(long, value_name = "SECS", default_value_t = 2, requires = "two_way")]
        settle: u64,
    },
    /// Log in and save the session (password prompt without echo)
    Login {
        /// Account e-mail (default: from the config or MEGA_EMAIL, else asked)
        email: Option<String>,
        /// Two-factor authentication code
        #[arg(long, value_name = "CODE")]
        mfa: Option<String>,
    },
    /// End the saved session
    Logout,
    /// Show the logged-in account
    Whoami,
    /// Show storage quota
    #[command(alias = "quota")]
    Df,
    /// Export a public link to a file or folder
    Link { path: String },
    /// Show a folder tree
    Tree { path: Option<String> },
    /// Write a file to stdout (after its MAC verified)
    Cat { path: String },
}

/// Everything a command needs.
pub struct Ctx {
    pub cli: Cli,
    pub cfg: Config,
    client: tokio::sync::OnceCell<Arc<Client>>,
}

impl Ctx {
    pub fn api_config(&self) -> ApiConfig {
        let mut c = ApiConfig::with_base_url(&self.cfg.api_url);
        c.retry.max_retries = self.cfg.max_retries;
        c
    }

    pub fn parallel(&self) -> usize {
        self.cli.parallel.unwrap_or(self.cfg.parallel).max(1)
    }

    /// The logged-in client, connecting on first use.
    pub async fn client(&self) -> Result<Arc<Client>, CliError> {
        self.client
            .get_or_try_init(|| async { connect(&self.cfg, self.api_config()).await.map(Arc::new) })
            .await
            .cloned()
    }
}

/// Resumes the saved session, else logs in with configured credentials (and saves the
/// session), else explains how to log in. Shared by `megacmd` and `mega-mount`.
pub async fn connect(cfg: &Config, api: ApiConfig) -> Result<Client, CliError> {
    let transfer = crate::transfer::TransferConfig {
        retry: api.retry.clone(),
        ..Default::default()
    };
    let mut c = connect_inner(cfg, api).await?;
    c.set_transfer_config(transfer);
    Ok(c)
}

async fn connect_inner(cfg: &Config, api: ApiConfig) -> Result<Client, CliError> {
    let mut expired = false;
    if cfg.session_file.exists() {
        let saved = SavedSession::load(&cfg.session_file)
            .map_err(|e| CliError::new(exit::CONFIG, e.to_string()))?;
        if saved.api_url == cfg.api_url {
            match Client::resume(api.clone(), &saved).await {
                Ok(c) => return Ok(c),
                Err(client::Error::Login(LoginError::Api(ApiError::SessionLost))) => expired = true,
                Err(e) => return Err(e.into()),
            }
        }
    }
    match (&cfg.email, &cfg.password) {
        (Some(email), Some(password)) => {
            let c = Client::login(api, email, password, None).await?;
            c.save_session(&cfg.session_file)?;
            Ok(c)
        }
        _ if expired => Err(CliError::new(
            exit::AUTH,
            "the saved session has expired: run `megacmd login`",
        )),
        _ => Err(CliError::new(
            exit::AUTH,
            "not logged in: run `megacmd login`, or set MEGA_EMAIL and MEGA_PASSWORD",
        )),
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli, env: &config::Env) -> Result<(), CliError> {
    let cfg = config::load(cli.conf.as_deref(), env)?;
    let ctx = Ctx {
        cli,
        cfg,
        client: tokio::sync::OnceCell::new(),
    };
    ops::dispatch(&ctx).await
}
