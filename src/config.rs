//! Front-end configuration: a TOML file under the XDG config directory, overridden by the
//! environment (`MEGA_EMAIL`, `MEGA_PASSWORD`, `MEGA_API_URL`), then by command-line flags.
//! Built once in the binary; nothing below the front-ends reads the environment.
//!
//! Files holding credentials (a config file with a password, the session file) must not be
//! readable by other users: such a file is refused with a message saying how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::DEFAULT_API_URL;

/// Requests in flight per file transferred unless configured otherwise.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// Files transferred at once unless configured otherwise.
pub const DEFAULT_PARALLEL_FILES: usize = 4;

/// How long a closed file waits before its upload starts, with write-back.
pub const DEFAULT_WRITEBACK_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// A write-back delay in seconds (`writeback_delay` in the config file, `-o
/// writeback_delay=`): from 0 to an hour, fractions allowed.
pub fn writeback_delay(secs: f64) -> Result<std::time::Duration, String> {
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{secs} is not a number of seconds from 0 to 3600"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The tree cache's directory inside the cache directory (shared by megacmd and the mount).
pub const TREE_CACHE_DIR: &str = "trees";

/// A bandwidth limit as written (`None` or `off`: none).
pub fn bwlimit(
    s: Option<&str>,
    file: Option<&Path>,
) -> Result<(Option<u64>, Option<u64>), ConfigError> {
    let Some(s) = s else {
        return Ok((None, None));
    };
    crate::local::units::parse_rates(s).map_err(|msg| ConfigError::File {
        path: file.map(Path::to_path_buf).unwrap_or_default(),
        msg: format!("bwlimit: {msg}"),
    })
}

/// The settings file, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub email: Option<String>,
    pub password: Option<String>,
    pub api_url: Option<String>,
    /// Files transferred at once.
    pub parallel: Option<usize>,
    /// Where the session (sid + master key) is kept.
    pub session_file: Option<PathBuf>,
    /// Retries of a failing request before giving up (default 8, with exponential backoff).
    pub max_retries: Option<u32>,
    /// Ask for HTTPS transfer URLs and refuse plain HTTP ones (default false: the content is
    /// encrypted either way, as in MEGA's own clients).
    pub https_transfers: Option<bool>,
    /// Bandwidth limit: `RATE` for both directions or `UP:DOWN` (`512K`, `10M`, `off`).
    pub bwlimit: Option<String>,
    /// Requests in flight per file transferred (default 4).
    pub connections: Option<usize>,
    /// Keep the account's tree in a local cache between runs (default true); `false` fetches
    /// it whole every time, as `--no-cache` does.
    pub tree_cache: Option<bool>,
    /// How many unchanged nodes of the cached tree to keep in memory (default 50,000).
    pub tree_nodes: Option<usize>,
    /// Make thumbnails and previews of images on upload (default true; MEGAcmd's
    /// `graphics off` is `false`).
    pub graphics: Option<bool>,
    /// Images larger than this (bytes, or `100M`) get no thumbnail (default 100M).
    pub graphics_max_size: Option<String>,
    /// Images with more pixels than this get no thumbnail (default 100,000,000).
    pub graphics_max_pixels: Option<u64>,
    /// The mount writes back: `close()` returns once the writes are staged locally and the
    /// upload runs in the background (default false; `-o writeback` does the same).
    pub writeback: Option<bool>,
    /// With write-back, how long (seconds) a closed file waits before its upload starts
    /// (default 2; 0 uploads at once): a burst of files (`tar x`) is written before the
    /// uploads compete with it, and a file removed or replaced meanwhile is never sent.
    pub writeback_delay: Option<f64>,
}

/// The effective configuration.
#[derive(Clone, Default)]
pub struct Config {
    pub email: Option<String>,
    pub password: Option<String>,
    pub api_url: String,
    pub parallel: usize,
    pub session_file: PathBuf,
    pub max_retries: u32,
    pub https_transfers: bool,
    /// Bandwidth limits in bytes per second (upload, download; `None`: unlimited), shared by
    /// every transfer.
    pub bwlimit: (Option<u64>, Option<u64>),
    /// Requests in flight per file transferred.
    pub connections: usize,
    /// Where two-way sync keeps its state databases: `$XDG_STATE_HOME/megacmd/sync`, else
    /// `~/.local/state/megacmd/sync` (beside the config directory if neither is set).
    pub state_dir: PathBuf,
    /// Where interrupted transfers are recorded for the next run to resume:
    /// `$XDG_STATE_HOME/megacmd/transfers`, else `~/.local/state/megacmd/transfers`.
    pub transfers_dir: PathBuf,
    /// Where the tree cache lives (`$XDG_CACHE_HOME/mega-mount/trees`, else
    /// `~/.cache/mega-mount/trees`); `None`: no cache (`tree_cache = false`, `--no-cache`).
    pub tree_cache: Option<PathBuf>,
    /// How many unchanged nodes of a tree served from the cache stay in memory (`None`: the
    /// default, 50,000).
    pub tree_nodes: Option<usize>,
    /// The mount writes back (see [`FileConfig::writeback`]).
    pub writeback: bool,
    /// See [`FileConfig::writeback_delay`].
    pub writeback_delay: std::time::Duration,
    /// Thumbnails and previews on upload: off, or on within (bytes, pixels) limits, each
    /// `None` for the default.
    pub graphics: Option<(Option<u64>, Option<u64>)>,
    /// The config file that was read, if any.
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("api_url", &self.api_url)
            .field("parallel", &self.parallel)
            .field("session_file", &self.session_file)
            .field("max_retries", &self.max_retries)
            .field("https_transfers", &self.https_transfers)
            .field("bwlimit", &self.bwlimit)
            .field("connections", &self.connections)
            .field("state_dir", &self.state_dir)
            .field("transfers_dir", &self.transfers_dir)
            .field("tree_cache", &self.tree_cache)
            .field("tree_nodes", &self.tree_nodes)
            .field("writeback", &self.writeback)
            .field("graphics", &self.graphics)
            .finish()
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("cannot find a config directory: neither XDG_CONFIG_HOME nor HOME is set")]
    NoConfigDir,
}

/// The environment values the configuration looks at (passed in, so that tests and library
/// users decide; only the binary reads the real environment).
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub xdg_config_home: Option<String>,
    pub xdg_state_home: Option<String>,
    pub xdg_cache_home: Option<String>,
    pub home: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub api_url: Option<String>,
    /// `NOTIFY_SOCKET`: where a service manager (systemd, `Type=notify`) waits to hear that
    /// the mount is ready.
    pub notify_socket: Option<String>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            xdg_config_home: get("XDG_CONFIG_HOME"),
            xdg_state_home: get("XDG_STATE_HOME"),
            xdg_cache_home: get("XDG_CACHE_HOME"),
            home: get("HOME"),
            email: get("MEGA_EMAIL"),
            password: get("MEGA_PASSWORD"),
            api_url: get("MEGA_API_URL"),
            notify_socket: get("NOTIFY_SOCKET"),
        }
    }

    /// `$XDG_CACHE_HOME/<app>`, else `~/.cache/<app>`.
    pub fn cache_dir(&self, app: &str) -> Option<PathBuf> {
        match (&self.xdg_cache_home, &self.home) {
            (Some(x), _) => Some(PathBuf::from(x).join(app)),
            (None, Some(h)) => Some(PathBuf::from(h).join(".cache").join(app)),
            (None, None) => None,
        }
    }

    /// `$XDG_CONFIG_HOME/megacmd`, else `~/.config/megacmd`.
    pub fn config_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(x) = &self.xdg_config_home {
            return Ok(PathBuf::from(x).join("megacmd"));
        }
        self.home
            .as_ref()
            .map(|h| PathBuf::from(h).join(".config").join("megacmd"))
            .ok_or(ConfigError::NoConfigDir)
    }
}

/// True if group or others may read the file.
fn readable_by_others(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o077 != 0
}

/// Loads the configuration: `explicit` (from `--conf`, must exist) or the default file (may
/// be absent), then the environment on top. Without `XDG_CONFIG_HOME` and `HOME` (as mount(8)
/// runs a mount helper for an fstab line), what lives in the config directory (the session
/// file) goes beside an explicit config file.
pub fn load(explicit: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
    let dir = match (env.config_dir(), explicit.and_then(Path::parent)) {
        (Ok(dir), _) => dir,
        (Err(_), Some(beside)) => beside.to_path_buf(),
        (Err(e), None) => return Err(e),
    };
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("config.toml"));
    let err = |msg: String| ConfigError::File {
        path: path.clone(),
        msg,
    };
    let (file, source) = match std::fs::metadata(&path) {
        Ok(meta) => {
            let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
            let file: FileConfig =
                toml::from_str(&text).map_err(|e| err(e.message().to_string()))?;
            if file.password.is_some() && readable_by_others(&meta) {
                return Err(err(
                    "holds a password but other users can read it; refusing to use it (chmod 600 it)"
                        .into(),
                ));
            }
            (file, Some(path.clone()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            (FileConfig::default(), None)
        }
        Err(e) => return Err(err(e.to_string())),
    };
    let mut api_url = env
        .api_url
        .clone()
        .or(file.api_url)
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    Ok(Config {
        email: env.email.clone().or(file.email),
        password: env.password.clone().or(file.password),
        api_url,
        parallel: file.parallel.unwrap_or(DEFAULT_PARALLEL_FILES).max(1),
        session_file: file
            .session_file
            .unwrap_or_else(|| dir.join("session.json")),
        max_retries: file
            .max_retries
            .unwrap_or(crate::api::RetryConfig::default().max_retries),
        https_transfers: file.https_transfers.unwrap_or(false),
        bwlimit: bwlimit(file.bwlimit.as_deref(), source.as_deref())?,
        connections: file.connections.unwrap_or(DEFAULT_CONNECTIONS).max(1),
        state_dir: match (&env.xdg_state_home, &env.home) {
            (Some(x), _) => PathBuf::from(x).join("megacmd/sync"),
            (None, Some(h)) => PathBuf::from(h).join(".local/state/megacmd/sync"),
            (None, None) => dir.join("sync-state"),
        },
        transfers_dir: match (&env.xdg_state_home, &env.home) {
            (Some(x), _) => PathBuf::from(x).join("megacmd/transfers"),
            (None, Some(h)) => PathBuf::from(h).join(".local/state/megacmd/transfers"),
            (None, None) => dir.join("transfers"),
        },
        tree_cache: match file.tree_cache {
            Some(false) => None,
            _ => env.cache_dir("mega-mount").map(|d| d.join(TREE_CACHE_DIR)),
        },
        tree_nodes: file.tree_nodes,
        writeback: file.writeback.unwrap_or(false),
        writeback_delay: match file.writeback_delay {
            None => DEFAULT_WRITEBACK_DELAY,
            Some(s) => writeback_delay(s).map_err(|msg| ConfigError::File {
                path: source.clone().unwrap_or_default(),
                msg: format!("writeback_delay: {msg}"),
            })?,
        },
        graphics: match file.graphics {
            Some(false) => None,
            _ => {
                let size = match file.graphics_max_size.as_deref() {
                    None => None,
                    Some(s) => Some(crate::local::units::parse_size(s).ok_or_else(|| {
                        ConfigError::File {
                            path: source.clone().unwrap_or_default(),
                            msg: format!("graphics_max_size: {s:?} is not a size"),
                        }
                    })?),
                };
                Some((size, file.graphics_max_pixels))
            }
        },
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> Env {
        Env {
            xdg_config_home: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_without_a_file() {
        let d = tempfile::tempdir().unwrap();
        let c = load(None, &env(d.path())).unwrap();
        assert_eq!(c.api_url, DEFAULT_API_URL);
        assert_eq!(c.parallel, DEFAULT_PARALLEL_FILES);
        assert_eq!(c.session_file, d.path().join("megacmd/session.json"));
        assert!(c.source.is_none());
        // No HOME (a mount helper run by mount(8)): beside an explicit file, else an error.
        let bare = Env::default();
        let conf = d.path().join("mine.toml");
        std::fs::write(&conf, "").unwrap();
        let c = load(Some(&conf), &bare).unwrap();
        assert_eq!(c.session_file, d.path().join("session.json"));
        assert!(matches!(load(None, &bare), Err(ConfigError::NoConfigDir)));
    }

    #[test]
    fn file_then_environment() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(
            &f,
            "email = \"a@b\"\napi_url = \"http://127.0.0.1:1\"\nparallel = 9\n",
        )
        .unwrap();
        let c = load(Some(&f), &env(d.path())).unwrap();
        assert_eq!(c.email.as_deref(), Some("a@b"));
        assert_eq!(c.api_url, "http://127.0.0.1:1/");
        assert_eq!(c.parallel, 9);
        let mut e = env(d.path());
        e.email = Some("env@b".into());
        e.api_url = Some("http://127.0.0.1:2/".into());
        let c = load(Some(&f), &e).unwrap();
        assert_eq!(c.email.as_deref(), Some("env@b"));
        assert_eq!(c.api_url, "http://127.0.0.1:2/");
    }

    #[test]
    fn readable_password_file_is_refused_and_errors_are_clear() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(&f, "password = \"hunter2\"\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(Some(&f), &env(d.path())).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("hunter2"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = load(Some(&f), &env(d.path())).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        std::fs::write(&f, "bogus = 1\n").unwrap();
        assert!(load(Some(&f), &env(d.path())).is_err());
        assert!(load(Some(&d.path().join("missing.toml")), &env(d.path())).is_err());
    }
}
