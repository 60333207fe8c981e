//! megacmd's exit codes (documented in the README) and how every error becomes one line on
//! stderr with one of them. The mapping from the engine's [`Error`] is exhaustive.

use crate::config::ConfigError;
use crate::error::{AuthError, Error};

use super::path::PathError;

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
/// A contact's key is not the one this account recorded: nothing was shared.
pub const KEY_CHANGED: i32 = 12;
/// `check`: some files differ, or are on one side only.
pub const DIFFERENT: i32 = 13;
pub const INTERRUPTED: i32 = 130;

/// Every exit code with what it means (for `--help` and the man page).
pub const MEANINGS: &[(i32, &str)] = &[
    (0, "success"),
    (OTHER, "other error"),
    (USAGE, "usage (bad arguments, a folder without -r...)"),
    (
        AUTH,
        "authentication: wrong password, not logged in, session expired, account blocked",
    ),
    (MFA, "two-factor code required or rejected"),
    (NOT_FOUND, "not found"),
    (
        EXISTS,
        "already exists (without --force), or sync conflicts",
    ),
    (
        QUOTA,
        "over quota (storage, or MEGA's transfer quota for downloads)",
    ),
    (NETWORK, "network failure after retries"),
    (
        INTEGRITY,
        "integrity failure (MAC mismatch; nothing is saved)",
    ),
    (
        CONFIG,
        "configuration or permissions (e.g. a credentials file others can read)",
    ),
    (
        GUARD,
        "two-way sync stopped by --max-delete (nothing was changed)",
    ),
    (
        KEY_CHANGED,
        "a contact's key is not the one recorded for them (nothing was shared)",
    ),
    (
        DIFFERENT,
        "check: some files differ or exist on one side only",
    ),
    (INTERRUPTED, "interrupted (partial downloads are removed)"),
];

/// The exit codes as one paragraph.
pub fn status_help() -> String {
    let codes: Vec<String> = MEANINGS.iter().map(|(c, m)| format!("{c} {m}")).collect();
    format!("Exit status: {}.", codes.join("; "))
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

/// The exit code of a local I/O failure.
pub fn io_code(e: &std::io::Error) -> i32 {
    match e.kind() {
        std::io::ErrorKind::NotFound => NOT_FOUND,
        std::io::ErrorKind::AlreadyExists => EXISTS,
        _ => OTHER,
    }
}

/// The exit code an engine error means. Exhaustive: every kind gets a decision.
pub fn code_of(e: &Error) -> i32 {
    match e {
        Error::NotFound { .. } => NOT_FOUND,
        Error::AlreadyExists { .. } => EXISTS,
        Error::Quota { .. } | Error::TransferQuota { .. } => QUOTA,
        Error::Integrity { .. } => INTEGRITY,
        Error::Auth(
            AuthError::WrongPassword
            | AuthError::Blocked(_)
            | AuthError::SessionExpired
            | AuthError::NotLoggedIn,
        ) => AUTH,
        Error::Auth(AuthError::MfaRequired | AuthError::MfaRejected) => MFA,
        Error::Network { .. } => NETWORK,
        Error::Config(_) => CONFIG,
        Error::KeyChanged { .. } => KEY_CHANGED,
        Error::Local { source, .. } => io_code(source),
        Error::NotAFolder { .. }
        | Error::NotAFile { .. }
        | Error::PermissionDenied { .. }
        | Error::Undecryptable { .. }
        | Error::Protocol(_)
        | Error::Server { .. }
        | Error::Invalid { .. }
        | Error::ShortRead { .. }
        | Error::CacheDamaged { .. } => OTHER,
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = code_of(&e);
        let msg = match &e {
            Error::Auth(AuthError::MfaRequired) => {
                "this account needs a two-factor code: run `megacmd login` (or pass --mfa CODE)"
                    .into()
            }
            Error::Auth(AuthError::NotLoggedIn) => {
                "not logged in: run `megacmd login`, or set MEGA_EMAIL and MEGA_PASSWORD".into()
            }
            Error::Auth(AuthError::SessionExpired) => {
                "the saved session has expired: run `megacmd login`".into()
            }
            Error::Integrity { .. } => format!("integrity check failed: {e}; nothing was saved"),
            other => other.to_string(),
        };
        CliError::new(code, msg)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::new(CONFIG, e.to_string())
    }
}

impl From<PathError> for CliError {
    fn from(e: PathError) -> Self {
        CliError::new(USAGE, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;

    #[test]
    fn engine_errors_get_their_documented_codes() {
        let what = String::new;
        let code = |e: Error| CliError::from(e).code;
        assert_eq!(code(Error::NotFound { what: what() }), NOT_FOUND);
        assert_eq!(code(Error::AlreadyExists { what: what() }), EXISTS);
        assert_eq!(code(Error::from_code(ErrorCode::OverQuota)), QUOTA);
        assert_eq!(code(Error::Integrity { what: what() }), INTEGRITY);
        assert_eq!(code(AuthError::WrongPassword.into()), AUTH);
        assert_eq!(code(AuthError::NotLoggedIn.into()), AUTH);
        assert_eq!(code(AuthError::MfaRejected.into()), MFA);
        assert_eq!(code(Error::from_code(ErrorCode::Again)), NETWORK);
        assert_eq!(code(Error::Config(ConfigError::NoConfigDir)), CONFIG);
        assert_eq!(
            code(std::io::Error::from(std::io::ErrorKind::NotFound).into()),
            NOT_FOUND
        );
        assert_eq!(code(Error::Protocol("x".into())), OTHER);
        let m = CliError::from(Error::Integrity {
            what: "mega:/x".into(),
        })
        .msg;
        assert!(m.contains("MAC") && m.contains("nothing was saved"), "{m}");
    }
}
