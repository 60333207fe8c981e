//! `megacmd`: an s3cmd-style command line over the engine — the clap definitions and the
//! dispatch to the commands. Each command module resolves its arguments, does its work
//! through the library, prints results on stdout (listings, links, JSON) and progress and
//! summaries on stderr.
//!
//! * [`exit`]: exit codes and the one-line error for each failure.
//! * [`path`]: `mega:` locations; [`resolve`]: finding them in the tree.
//! * [`progress`]: the progress bar, counters and summaries.
//! * `list`, `find`, `transfer`, `manage`, `account`, `share`, `sync`: the commands.
//! * [`install`]: shell completions and man pages from these definitions.
//!
//! Nothing in the library imports this module.

mod account;
mod backup;
mod check;
pub mod exit;
mod find;
pub mod install;
mod list;
mod manage;
pub mod path;
mod progress;
mod queue;
mod resolve;
mod share;
mod sync;
mod transfer;
mod transfers;
mod tty;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::api::ApiConfig;
use crate::client::{connect, Client};
use crate::config::{self, Config};
use crate::transfer::fileattr;

pub use exit::CliError;

/// An s3cmd-style command line for MEGA.
#[derive(Debug, Parser)]
#[command(
    name = "megacmd",
    version = crate::VERSION,
    about = "An s3cmd-style command line for MEGA cloud storage",
    long_about = None,
    propagate_version = true,
    after_long_help = exit::status_help()
)]
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
    /// Machine-readable JSON output (list, find, du, df, whoami, contacts, link, copy, import,
    /// transfer summaries)
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
    /// Bandwidth limit: RATE for both directions, or UP:DOWN (512K, 10M, off); shared by
    /// all transfers of the command
    #[arg(long, global = true, value_name = "RATE")]
    pub bwlimit: Option<String>,
    /// Requests in flight per file transferred (default from the config file, else 4)
    #[arg(long, global = true, value_name = "N")]
    pub connections: Option<usize>,
    /// (put, sync) Make no thumbnails or previews of images (config `graphics = false`)
    #[arg(long, global = true)]
    pub no_graphics: bool,
    /// (put, get) Hand the transfer to a background megacmd and return at once; queued
    /// transfers run one after another (see `transfers`)
    #[arg(long, global = true)]
    pub queue: bool,
    /// Over MEGA's transfer quota, stop at once (exit 7) instead of waiting for it to
    /// reset; the download resumes where it stopped at the next run
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// Fetch the whole tree instead of loading the local tree cache
    #[arg(long, global = true)]
    pub no_cache: bool,
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
        /// Also list each file's previous versions (1 = the newest previous one)
        #[arg(long)]
        versions: bool,
        /// Also show what was set in MEGA's apps: label, favourite, sensitive, tags,
        /// description
        #[arg(long, short = 'l')]
        long: bool,
    },
    /// Set what MEGA's apps show on a file or folder: `attr mega:/a.jpg --label red
    /// --favourite --tag holiday --description "…"`; without options, show it
    Attr {
        path: String,
        /// red, orange, yellow, green, blue, purple, grey, or none
        #[arg(long, value_name = "COLOUR")]
        label: Option<String>,
        /// Mark as favourite (--favourite=false unmarks)
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        favourite: Option<bool>,
        /// Mark as sensitive, hidden in MEGA's apps (--sensitive=false unmarks)
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        sensitive: Option<bool>,
        /// Set the description ("" removes it)
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Add a tag (repeatable)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Remove a tag (repeatable)
        #[arg(long = "untag", value_name = "TAG")]
        untags: Vec<String>,
    },
    /// Download files or folders (--recursive), or a public link: `get mega:/a.txt /tmp/`
    #[command(disable_version_flag = true)]
    Get {
        /// Remote path, glob, or public mega.nz link
        source: String,
        /// Local file or folder (default: the current folder)
        target: Option<String>,
        /// Download a previous version of a file: 1 = the one before the current, 2 = the
        /// one before that... (see `list --versions`)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
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
        /// Delete the previous versions of the files (of every file below a folder with
        /// --recursive) permanently, keeping the current ones
        #[arg(long)]
        versions: bool,
    },
    /// Create folders (and missing parents): `mkdir mega:/foo/bar`
    Mkdir {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move or rename: `move mega:/foo/a.txt mega:/bar/b.txt`
    #[command(alias = "mv")]
    Move { source: String, target: String },
    /// Copy on the server, nothing downloaded (folders with --recursive; --force replaces a
    /// file, keeping it as a previous version): `copy mega:/a.txt mega:/backup/`
    #[command(alias = "cp")]
    Copy {
        /// Remote sources (globs too), then the target: a folder, or the copy's path
        #[arg(required = true, num_args = 2..)]
        paths: Vec<String>,
    },
    /// Import a public file or folder link into your account (a copy on the server):
    /// `import 'https://mega.nz/folder/…#…' mega:/Imported/`
    Import {
        /// The public link (quote it: it holds a `#`)
        link: String,
        /// A folder to import into (default mega:/), or the new file's or folder's path
        target: Option<String>,
    },
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
        /// Two-way, one run: how long to wait for files still being written before giving up
        /// on them (and exiting non-zero)
        #[arg(long, value_name = "SECS", default_value_t = 60, requires = "two_way")]
        settle_wait: u64,
        /// Two-way: unregister the pair from the account's Backup Centre (nothing is synced;
        /// a later run registers it again)
        #[arg(long, requires = "two_way", conflicts_with = "watch")]
        remove: bool,
    },
    /// Back a folder up as MEGA's apps do (read-only in the Vault, listed in the Backup
    /// Centre): `backup ~/Documents [--watch]`; `backup --list`; `backup --remove PATH|ID`
    Backup {
        /// The local folder (created as a backup the first time, then kept current)
        #[arg(required_unless_present_any = ["list", "remove", "pause", "resume"])]
        local: Option<String>,
        /// The backup's name (default: the folder's name)
        #[arg(long, requires = "local")]
        name: Option<String>,
        /// Keep running, uploading local changes as they happen
        #[arg(long, requires = "local")]
        watch: bool,
        /// List every backup and sync registered on the account (all devices)
        #[arg(long, conflicts_with_all = ["local", "remove", "pause", "resume"])]
        list: bool,
        /// Stop a backup (this device's by its folder, any device's by its id)
        #[arg(long, value_name = "PATH|ID", conflicts_with_all = ["local", "pause", "resume"])]
        remove: Option<String>,
        /// With --remove: move the backup's remote copy to the Rubbish Bin (default: it stays
        /// in the Vault)
        #[arg(long, requires = "remove")]
        delete_remote: bool,
        /// With --remove: move the backup's remote copy out of the Vault into this mega:/
        /// folder (created if missing), where it can be changed
        #[arg(
            long,
            value_name = "FOLDER",
            requires = "remove",
            conflicts_with = "delete_remote"
        )]
        move_remote: Option<String>,
        /// Ask the device running backup or sync ID to pause it
        #[arg(long, value_name = "ID", conflicts_with_all = ["local", "resume"])]
        pause: Option<String>,
        /// Ask the device running backup or sync ID to resume it
        #[arg(long, value_name = "ID", conflicts_with = "local")]
        resume: Option<String>,
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
    /// Interrupted uploads and downloads (resumed by running the same command again, or
    /// here): `transfers`, `transfers --resume all`, `transfers --cancel ID`
    Transfers {
        /// Carry on an interrupted transfer (its ID from the listing), or `all`
        #[arg(long, value_name = "ID", conflicts_with = "cancel")]
        resume: Option<String>,
        /// Forget an interrupted transfer and remove its partial download, or `all`
        #[arg(long, value_name = "ID")]
        cancel: Option<String>,
    },
    /// Export a public link to a file or folder (or remove it): `link mega:/a.txt [--password]`
    Link {
        path: String,
        /// Protect the link with a password (asked without echo, or read from stdin):
        /// MEGA's `#P!` links, made on this machine; the server never sees the password
        #[arg(long)]
        password: bool,
        /// Remove the link (a folder's link also stops the folder being exported)
        #[arg(long, conflicts_with_all = ["password", "expire"])]
        delete: bool,
        /// The link stops working then: a date (UTC) `2027-01-31` or `2027-01-31T18:00`,
        /// or a time from now, `12h`, `30d`, `2w`
        #[arg(long, value_name = "WHEN")]
        expire: Option<String>,
        /// A writable folder link (printed as LINK:WRITE-KEY): whoever has it may add files
        /// and folders to the folder
        #[arg(long, conflicts_with_all = ["password", "delete"])]
        writable: bool,
    },
    /// Show a folder tree
    Tree { path: Option<String> },
    /// Find files and folders below a folder: `find mega:/photos --name '*.jpg' --size +1M --mtime -7d`
    Find {
        /// Where to look (default mega:/)
        path: Option<String>,
        /// Only names matching this glob (`*`, `?`, `[...]`; quote it)
        #[arg(long, value_name = "GLOB")]
        name: Option<String>,
        /// Only files of this size: +N more than, -N less than, N exactly; units k, M, G, T
        /// (powers of 1024), bytes without one
        #[arg(long, value_name = "[+|-]N[kMGT]", allow_hyphen_values = true)]
        size: Option<String>,
        /// Modified -N: less than N ago, +N: more than N ago; units s, m, h, d (the
        /// default), w
        #[arg(long, value_name = "[+|-]N[smhdw]", allow_hyphen_values = true)]
        mtime: Option<String>,
        /// f: files only, d: folders only
        #[arg(long = "type", value_enum, value_name = "f|d")]
        kind: Option<find::FindType>,
    },
    /// Prove local files equal remote ones without downloading them (their MACs under each
    /// node's key): `check ~/Photos mega:/Photos -r`; exit 13 if anything differs
    Check {
        local: String,
        remote: String,
        /// Write the local fingerprint (checksum and mtime) onto remote files proved equal
        /// whose own is missing or different, so that syncs see them as equal
        #[arg(long)]
        adopt: bool,
    },
    /// Sizes of a folder and every folder below it (files' previous versions counted apart):
    /// `du mega:/photos --max-depth 1`
    Du {
        /// The folder (default mega:/)
        path: Option<String>,
        /// Show folders at most this deep below it (0: the folder alone)
        #[arg(long, value_name = "N")]
        max_depth: Option<usize>,
    },
    /// Write a file to stdout (after its MAC verified)
    Cat { path: String },
    /// Save a file's thumbnail (200×200, as MEGA's apps show it): `thumbnail mega:/a.jpg a-thumb.jpg`
    /// (OUT `-`: stdout; default: NAME.thumbnail.jpg here)
    Thumbnail { path: String, out: Option<PathBuf> },
    /// Save a file's preview (at most 1000×1000): `preview mega:/a.jpg a-preview.jpg`
    /// (OUT `-`: stdout; default: NAME.preview.jpg here)
    Preview { path: String, out: Option<PathBuf> },
    /// Share a folder with another MEGA user: `share mega:/Project bob@example.com --access readwrite`
    Share {
        path: String,
        /// The other user's e-mail address
        user: String,
        /// What the other user may do
        #[arg(long, value_enum, default_value = "read")]
        access: share::AccessArg,
    },
    /// Stop sharing a folder with a user, or leave a folder shared with you:
    /// `unshare mega:/Project bob@example.com`, `unshare mega://Shared/alice@example.com/Project`
    Unshare { path: String, user: Option<String> },
    /// List the folders you share (out) and those shared with you (in), with access levels
    Shares,
    /// List your contacts with the fingerprint of each one's key and whether it is verified,
    /// and the invitations sent and received; `contacts invite|accept|decline|remove EMAIL`;
    /// `contacts verify EMAIL` records that you compared the fingerprint with them
    Contacts {
        #[command(subcommand)]
        action: Option<ContactsAction>,
    },
    /// Print a shell completion script: `megacmd completion bash > ~/.local/share/bash-completion/completions/megacmd`
    Completion {
        shell: clap_complete::Shell,
        /// The program to complete
        #[arg(
            long = "for",
            value_enum,
            value_name = "PROGRAM",
            default_value = "megacmd"
        )]
        program: install::Program,
    },
    /// Write the man pages (megacmd.1, megacmd-COMMAND.1, mega-mount.1) into DIR
    #[command(hide = true)]
    ManPages { dir: PathBuf },
}

/// What `contacts` does besides listing.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ContactsAction {
    /// Invite someone to be a contact (they see it in MEGA's apps)
    Invite {
        email: String,
        /// A message for them
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
    },
    /// Cancel an invitation you sent
    Cancel { email: String },
    /// Accept an invitation you received
    Accept { email: String },
    /// Decline an invitation you received
    Decline { email: String },
    /// Ignore an invitation you received (the sender is not told)
    Ignore { email: String },
    /// Remove a contact (folders shared either way stay shared)
    Remove { email: String },
    /// Mark a contact's key verified after comparing its fingerprint with them (also how a
    /// changed key is accepted)
    Verify {
        /// The contact's e-mail address
        email: String,
    },
}

/// Everything a command needs.
pub struct Ctx {
    pub cli: Cli,
    pub cfg: Config,
    client: tokio::sync::OnceCell<Arc<Client>>,
}

impl Ctx {
    pub fn api_config(&self) -> ApiConfig {
        connect::api_config(&self.cfg)
    }

    pub fn parallel(&self) -> usize {
        self.cli.parallel.unwrap_or(self.cfg.parallel).max(1)
    }

    /// The logged-in client, connecting on first use (saved session, else configured
    /// credentials; see [`connect`]).
    pub async fn client(&self) -> Result<Arc<Client>, CliError> {
        self.client
            .get_or_try_init(|| async {
                let client = connect(&self.cfg, self.api_config())
                    .await
                    .map_err(CliError::from)?;
                // Interrupted transfers resume at the next run of the same command.
                if let Err(e) = client.keep_transfer_state(&self.cfg.transfers_dir) {
                    tracing::warn!(
                        "{}: {e}; interrupted transfers will not resume",
                        self.cfg.transfers_dir.display()
                    );
                }
                Ok::<_, CliError>(Arc::new(client))
            })
            .await
            .cloned()
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli, env: &config::Env) -> Result<(), CliError> {
    // Neither needs a config file or an account.
    match &cli.command {
        Command::Completion { shell, program } => {
            install::completion(*shell, *program, &mut std::io::stdout().lock());
            return Ok(());
        }
        Command::ManPages { dir } => {
            for page in install::man_pages(dir)? {
                eprintln!("{}", dir.join(format!("{page}.1")).display());
            }
            return Ok(());
        }
        _ => {}
    }
    let mut cfg = config::load(cli.conf.as_deref(), env)?;
    if cli.no_cache {
        cfg.tree_cache = None;
    }
    if let Some(b) = &cli.bwlimit {
        cfg.bwlimit = config::bwlimit(Some(b), None).map_err(|_| {
            CliError::new(
                exit::USAGE,
                format!("--bwlimit {b}: not a rate (e.g. 512K, 10M, 1M:10M, off)"),
            )
        })?;
    }
    if let Some(n) = cli.connections {
        cfg.connections = n.max(1);
    }
    if cli.no_graphics {
        cfg.graphics = None;
    }
    let ctx = Ctx {
        cli,
        cfg,
        client: tokio::sync::OnceCell::new(),
    };
    if ctx.cli.queue {
        if !matches!(ctx.cli.command, Command::Put { .. } | Command::Get { .. }) {
            return Err(CliError::new(exit::USAGE, "--queue is for put and get"));
        }
        return queue::enqueue(&ctx);
    }
    if let Some(entry) = std::env::var_os(queue::ENTRY_VAR) {
        queue::take_turn(&ctx.cfg.transfers_dir, std::path::Path::new(&entry)).await?;
    }
    let r = dispatch(&ctx).await;
    if let Some(c) = ctx.client.get() {
        // A first run writes the tree cache while the command works; the next run needs it.
        c.finish_cache_write().await;
        c.release_tree_for_exit();
    }
    r
}

async fn dispatch(ctx: &Ctx) -> Result<(), CliError> {
    match &ctx.cli.command {
        Command::List {
            path,
            versions,
            long,
        } => list::list(ctx, path.as_deref().unwrap_or("mega:/"), *versions, *long).await,
        Command::Attr {
            path,
            label,
            favourite,
            sensitive,
            description,
            tags,
            untags,
        } => {
            let changes = crate::client::marks::MarkChanges {
                label: label
                    .as_ref()
                    .map(|l| (!l.eq_ignore_ascii_case("none")).then(|| l.clone())),
                favourite: *favourite,
                sensitive: *sensitive,
                description: description.clone(),
                add_tags: tags.clone(),
                remove_tags: untags.clone(),
            };
            manage::attr(ctx, path, &changes).await
        }
        Command::Get {
            source,
            target,
            version: Some(n),
        } => transfer::get_version(ctx, source, target.as_deref(), *n).await,
        Command::Get { source, target, .. } => transfer::get(ctx, source, target.as_deref()).await,
        Command::Put { paths } => transfer::put(ctx, paths).await,
        Command::Delete {
            paths,
            versions: true,
        } => manage::delete_versions(ctx, paths).await,
        Command::Delete { paths, .. } => manage::delete(ctx, paths).await,
        Command::Mkdir { paths } => manage::mkdir(ctx, paths).await,
        Command::Move { source, target } => manage::mv(ctx, source, target).await,
        Command::Copy { paths } => manage::cp(ctx, paths).await,
        Command::Import { link, target } => manage::import(ctx, link, target.as_deref()).await,
        Command::Sync {
            source,
            target,
            two_way: true,
            watch,
            max_delete,
            settle,
            settle_wait,
            remove,
        } => {
            sync::two_way(
                ctx,
                sync::TwoWay {
                    local: source,
                    remote: target,
                    watch: *watch,
                    max_delete: *max_delete,
                    settle: *settle,
                    settle_wait: *settle_wait,
                    remove: *remove,
                },
            )
            .await
        }
        Command::Sync { source, target, .. } => sync::one_way(ctx, source, target).await,
        Command::Backup {
            local,
            name,
            watch,
            list,
            remove,
            delete_remote,
            move_remote,
            pause,
            resume,
        } => {
            use crate::client::backups::state;
            let cmd = match (local, remove, pause, resume) {
                _ if *list => backup::BackupCmd::List,
                (_, Some(what), _, _) => backup::BackupCmd::Remove {
                    what,
                    delete_remote: *delete_remote,
                    move_remote: move_remote.as_deref(),
                },
                (_, _, Some(id), _) => backup::BackupCmd::Request {
                    id,
                    want: state::PAUSED,
                },
                (_, _, _, Some(id)) => backup::BackupCmd::Request {
                    id,
                    want: state::ACTIVE,
                },
                (Some(local), _, _, _) => backup::BackupCmd::Run {
                    local,
                    name: name.as_deref(),
                    watch: *watch,
                },
                (None, ..) => return Err(CliError::new(exit::USAGE, "backup: which folder?")),
            };
            backup::backup(ctx, cmd).await
        }
        Command::Login { email, mfa } => {
            account::login(ctx, email.as_deref(), mfa.as_deref()).await
        }
        Command::Logout => account::logout(ctx).await,
        Command::Whoami => account::whoami(ctx).await,
        Command::Df => account::df(ctx).await,
        Command::Transfers { resume, cancel } => {
            transfers::run(ctx, resume.as_deref(), cancel.as_deref()).await
        }
        Command::Link {
            path,
            password,
            delete,
            expire,
            writable,
        } => {
            let expires = expire
                .as_deref()
                .map(|w| account::parse_when(w, crate::local::time::now()))
                .transpose()?;
            let how = account::LinkOptions {
                password: *password,
                delete: *delete,
                writable: *writable,
                expires,
            };
            account::link(ctx, path, how).await
        }
        Command::Tree { path } => list::tree(ctx, path.as_deref().unwrap_or("mega:/")).await,
        Command::Check {
            local,
            remote,
            adopt,
        } => check::check(ctx, local, remote, *adopt).await,
        Command::Find {
            path,
            name,
            size,
            mtime,
            kind,
        } => {
            let filter = find::Filter::new(
                name.as_deref(),
                size.as_deref(),
                mtime.as_deref(),
                *kind,
                crate::local::time::now(),
            )?;
            find::find(ctx, path.as_deref().unwrap_or("mega:/"), &filter).await
        }
        Command::Du { path, max_depth } => {
            find::du(ctx, path.as_deref().unwrap_or("mega:/"), *max_depth).await
        }
        Command::Cat { path } => transfer::cat(ctx, path).await,
        Command::Thumbnail { path, out } => {
            transfer::picture(ctx, path, out.as_deref(), fileattr::THUMBNAIL).await
        }
        Command::Preview { path, out } => {
            transfer::picture(ctx, path, out.as_deref(), fileattr::PREVIEW).await
        }
        Command::Share { path, user, access } => share::share(ctx, path, user, *access).await,
        Command::Unshare { path, user } => share::unshare(ctx, path, user.as_deref()).await,
        Command::Shares => share::shares(ctx).await,
        Command::Contacts { action: None } => share::contacts(ctx).await,
        Command::Contacts {
            action: Some(ContactsAction::Verify { email }),
        } => share::verify(ctx, email).await,
        Command::Contacts {
            action: Some(action),
        } => share::contact_action(ctx, action).await,
        Command::Completion { .. } | Command::ManPages { .. } => Ok(()), // handled in `run`
    }
}
