//! The engine's public error, grouped by meaning (not found, already exists, permission,
//! quota, integrity, network, protocol, …) rather than by the layer it came from. Every lower
//! layer's error converts into it exhaustively (no catch-all arm), so a new low-level error
//! forces a decision here; front-ends map [`Error`] to their own vocabulary (errnos for the
//! mount, exit codes for megacmd) with exhaustive matches too.
//!
//! Messages are lowercase, name the thing when it is known ([`Error::about`] adds it), and
//! never contain a secret or a URL (URLs carry the session id).

use std::path::PathBuf;

pub use crate::api::session::AuthError;
use crate::api::session::LoginError;
use crate::api::{ApiError, ErrorCode};
use crate::config::ConfigError;
use crate::link::LinkError;
use crate::transfer::TransferError;
use crate::tree::TreeError;

/// `"what: "` when a subject is known, else nothing.
fn subject(what: &str) -> String {
    if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    }
}

fn network_message(detail: &str, attempts: u32) -> String {
    if attempts > 1 {
        format!("network failure, giving up after {attempts} attempts: {detail}")
    } else {
        format!("network failure: {detail}")
    }
}

/// An engine error, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}no such file or folder", subject(.what))]
    NotFound { what: String },
    #[error("{}already exists", subject(.what))]
    AlreadyExists { what: String },
    #[error("{}not a folder", subject(.what))]
    NotAFolder { what: String },
    #[error("{}not a file", subject(.what))]
    NotAFile { what: String },
    /// The server refuses access, or the node is one that cannot be changed (a root).
    #[error("{}permission denied", subject(.what))]
    PermissionDenied {
        what: String,
        code: Option<ErrorCode>,
    },
    #[error("over quota ({code})")]
    Quota { code: ErrorCode },
    /// Over MEGA's transfer quota (free accounts: per address, over six hours): downloads
    /// may go on in `wait` seconds. Uploads are not limited by it.
    #[error("{}", transfer_quota_message(*.wait))]
    TransferQuota { wait: u64 },
    /// Content that does not match its MAC: corrupt or tampered. Nothing was verified.
    #[error("{}content failed MAC verification (corrupt or tampered data)", subject(.what))]
    Integrity { what: String },
    /// A node this account has no usable key for (or whose attributes do not decrypt).
    #[error("{}cannot be decrypted (no usable key)", subject(.what))]
    Undecryptable { what: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The network or the server's availability failed, after retries where they were safe.
    #[error("{}", network_message(.detail, *.attempts))]
    Network {
        detail: String,
        /// The MEGA code of a server that kept answering "try again", if that was it.
        code: Option<ErrorCode>,
        attempts: u32,
    },
    /// The server sent something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused the request with a code that means none of the above.
    #[error("{}the server refused: {code}", subject(.what))]
    Server { what: String, code: ErrorCode },
    /// The request itself is invalid (a move into its own subtree, a malformed link…).
    #[error("{}invalid request{}", subject(.what), .code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Invalid {
        what: String,
        code: Option<ErrorCode>,
    },
    /// The content ended before the size that was announced for the upload.
    #[error("the content ended after {got} of {expected} bytes")]
    ShortRead { got: u64, expected: u64 },
    /// A local file or disk operation failed (ENOSPC included).
    #[error("{}{source}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Local {
        path: Option<PathBuf>,
        #[source]
        source: std::io::Error,
    },
    /// The configuration or a credentials file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A contact presents a key that is not the one this account recorded for them: nothing
    /// was encrypted to it. Only the user can accept the new key, after comparing
    /// fingerprints with the contact (`megacmd contacts verify`).
    #[error("{who}: their key is not the one this account recorded for them (a new device or a reset account, or someone in between); nothing was shared with them. Compare fingerprints with them (megacmd contacts), then confirm with `megacmd contacts verify {who}`")]
    KeyChanged { who: String },
    /// The tree cache this tree is served from turned out damaged while it was read: what
    /// was read is not trusted (a folder is never shown as empty for it). The tree is
    /// fetched again (the mount does it at once; megacmd and sync at their next start).
    #[error("the tree cache {} is damaged; the tree is fetched again, try again", .path.display())]
    CacheDamaged { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Names the thing the error is about, if it does not name one yet.
    pub fn about(mut self, thing: impl Into<String>) -> Self {
        match &mut self {
            Error::NotFound { what }
            | Error::AlreadyExists { what }
            | Error::NotAFolder { what }
            | Error::NotAFile { what }
            | Error::PermissionDenied { what, .. }
            | Error::Integrity { what }
            | Error::Undecryptable { what }
            | Error::Server { what, .. }
            | Error::Invalid { what, .. } => {
                if what.is_empty() {
                    *what = thing.into();
                }
            }
            Error::Quota { .. }
            | Error::TransferQuota { .. }
            | Error::Auth(_)
            | Error::Network { .. }
            | Error::Protocol(_)
            | Error::ShortRead { .. }
            | Error::Config(_)
            | Error::KeyChanged { .. }
            | Error::CacheDamaged { .. } => {}
            Error::Local { path, .. } => {
                if path.is_none() {
                    *path = Some(PathBuf::from(thing.into()));
                }
            }
        }
        self
    }

    /// A local I/O error about `path`.
    pub fn local(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Local {
            path: Some(path.into()),
            source,
        }
    }

    /// The MEGA error code behind this error, if there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::PermissionDenied { code, .. }
            | Error::Invalid { code, .. }
            | Error::Network { code, .. } => *code,
            Error::Quota { code } | Error::Server { code, .. } => Some(*code),
            Error::Auth(AuthError::SessionExpired) => Some(ErrorCode::Sid),
            _ => None,
        }
    }

    /// The error a MEGA error code means. Exhaustive: every code gets a decision.
    pub fn from_code(code: ErrorCode) -> Self {
        use ErrorCode as C;
        let what = String::new();
        match code {
            C::NotFound => Error::NotFound { what },
            C::Exists => Error::AlreadyExists { what },
            C::Access | C::MasterOnly | C::BusinessPastDue | C::SubuserKeyMissing => {
                Error::PermissionDenied {
                    what,
                    code: Some(code),
                }
            }
            C::OverQuota | C::GoingOverQuota | C::Paywall => Error::Quota { code },
            C::Circular | C::Args | C::Range => Error::Invalid {
                what,
                code: Some(code),
            },
            C::Again | C::RateLimit | C::TempUnavail | C::TooManyConnections | C::TooMany => {
                Error::Network {
                    detail: format!("the server is busy: {code}"),
                    code: Some(code),
                    attempts: 1,
                }
            }
            C::Sid => Error::Auth(AuthError::SessionExpired),
            C::Blocked => Error::Auth(AuthError::Blocked(None)),
            C::MfaRequired => Error::Auth(AuthError::MfaRequired),
            C::Internal
            | C::Failed
            | C::Expired
            | C::Incomplete
            | C::Key
            | C::Write
            | C::Read
            | C::AppKey
            | C::Ssl
            | C::RolledBack
            | C::Other(_) => Error::Server { what, code },
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Mega(c) => Error::from_code(c),
            ApiError::SessionLost => Error::Auth(AuthError::SessionExpired),
            ApiError::Blocked(r) => Error::Auth(AuthError::Blocked(r)),
            ApiError::Connect(detail) | ApiError::Network(detail) => Error::Network {
                detail,
                code: None,
                attempts: 1,
            },
            ApiError::Http(s) if s == 429 || s >= 500 => Error::Network {
                detail: format!("HTTP status {s}"),
                code: None,
                attempts: 1,
            },
            ApiError::Http(s) => Error::Protocol(format!("unexpected HTTP status {s}")),
            ApiError::BadResponse(m) => Error::Protocol(m),
            ApiError::Crypto(c) => Error::Protocol(format!("undecodable server data: {c}")),
            ApiError::TransferQuota { wait } => Error::TransferQuota { wait },
            ApiError::RetriesExhausted { attempts, last } => match Error::from(*last) {
                Error::Network { detail, code, .. } => Error::Network {
                    detail,
                    code,
                    attempts,
                },
                other => other,
            },
        }
    }
}

impl From<TransferError> for Error {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::Api(a) => a.into(),
            TransferError::MacMismatch => Error::Integrity {
                what: String::new(),
            },
            TransferError::Io(source) => Error::Local { path: None, source },
            TransferError::Server(c) => Error::from_code(c),
            TransferError::NoToken => {
                Error::Protocol("the upload finished without a completion token".into())
            }
            TransferError::ShortRead { got, expected } => Error::ShortRead { got, expected },
            TransferError::ResumeRefused(why) => Error::Local {
                path: None,
                source: std::io::Error::other(format!("cannot resume: {why}")),
            },
        }
    }
}

impl From<TreeError> for Error {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Malformed(m) => Error::Protocol(format!("malformed node: {m}")),
            TreeError::NotFound(what) => Error::NotFound { what },
            TreeError::NotAFolder(what) => Error::NotAFolder { what },
        }
    }
}

impl From<LoginError> for Error {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Auth(a) => a.into(),
            LoginError::UnsupportedVersion(v) => {
                Error::Protocol(format!("unsupported account version {v}"))
            }
            LoginError::Crypto(c) => {
                Error::Protocol(format!("the login reply could not be decrypted: {c}"))
            }
            LoginError::Api(a) => a.into(),
            LoginError::SessionFile { path, msg } => ConfigError::File { path, msg }.into(),
        }
    }
}

impl From<LinkError> for Error {
    fn from(e: LinkError) -> Self {
        let what = match e {
            LinkError::NotALink => "not a MEGA link",
            LinkError::BadKey => "the link's key is malformed",
            LinkError::NoKey => "the link has no decryption key",
            LinkError::WrongPassword => "wrong password for this link (or the link is damaged)",
        };
        Error::Invalid {
            what: what.into(),
            code: None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Local { path: None, source }
    }
}

/// "transfer quota exceeded: downloads can go on in about 42 min (at 2026-12-07 15:04 UTC)".
fn transfer_quota_message(wait: u64) -> String {
    let at = crate::local::time::fmt_time(crate::local::time::now() + wait as i64);
    let minutes = wait.div_ceil(60);
    format!(
        "transfer quota exceeded (MEGA limits how much an address may download in six hours): \
         downloads can go on in about {minutes} min (at {at} UTC)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_by_meaning() {
        assert!(matches!(
            Error::from(ApiError::Mega(ErrorCode::NotFound)),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from(ApiError::Mega(ErrorCode::Exists)),
            Error::AlreadyExists { .. }
        ));
        let q = Error::from(ApiError::Mega(ErrorCode::OverQuota));
        assert!(matches!(q, Error::Quota { .. }));
        assert_eq!(q.code(), Some(ErrorCode::OverQuota));
        assert_eq!(
            Error::from(ApiError::Mega(ErrorCode::Circular)).code(),
            Some(ErrorCode::Circular)
        );
        assert!(matches!(
            Error::from(ApiError::SessionLost),
            Error::Auth(AuthError::SessionExpired)
        ));
        assert!(matches!(
            Error::from(ApiError::Http(404)),
            Error::Protocol(_)
        ));
        let busy = Error::from(ApiError::RetriesExhausted {
            attempts: 9,
            last: Box::new(ApiError::Mega(ErrorCode::Again)),
        });
        assert!(
            matches!(
                busy,
                Error::Network {
                    attempts: 9,
                    code: Some(ErrorCode::Again),
                    ..
                }
            ),
            "{busy:?}"
        );
        assert!(
            busy.to_string().contains("giving up after 9 attempts"),
            "{busy}"
        );
        for c in -35..0 {
            // Every code has a meaning (and a message without a panic).
            let _ = Error::from_code(ErrorCode::from_code(c)).to_string();
        }
    }

    #[test]
    fn messages_name_what_they_are_about() {
        let e = Error::from(ApiError::Mega(ErrorCode::NotFound)).about("/a/b");
        assert_eq!(e.to_string(), "/a/b: no such file or folder");
        assert_eq!(
            Error::from(TransferError::MacMismatch)
                .about("x.bin")
                .to_string(),
            "x.bin: content failed MAC verification (corrupt or tampered data)"
        );
        let e = Error::NotFound {
            what: "first".into(),
        }
        .about("second");
        assert_eq!(e.to_string(), "first: no such file or folder");
    }
}
