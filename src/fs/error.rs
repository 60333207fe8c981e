//! The filesystem's errors, by meaning, and the one errno table. Engine errors convert into
//! [`FsError`] exhaustively, and [`FsError::errno`] has no catch-all arm: a new variant on
//! either side forces a decision. The FUSE adapter logs each error once, at
//! [`FsError::level`], and replies with its errno.

use std::path::PathBuf;

use crate::error::{AuthError, Error};

/// Filesystem errors, by meaning.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    #[error("no such file or folder")]
    NotFound,
    #[error("not a folder")]
    NotDir,
    #[error("is a folder")]
    IsDir,
    #[error("already exists")]
    Exists,
    #[error("folder not empty")]
    NotEmpty,
    #[error("read-only mount")]
    ReadOnly,
    /// The operation is not allowed on this node (a root, a link).
    #[error("not permitted")]
    NotPermitted,
    /// The account may not do this (the server refused, no key, no valid session).
    #[error("permission denied: {0}")]
    AccessDenied(String),
    #[error("invalid argument")]
    Invalid,
    /// A name component longer than a file name may be (255 bytes).
    #[error("file name too long")]
    NameTooLong,
    #[error("over quota")]
    Quota,
    #[error("no space left on the local disk for the staging file")]
    NoSpace,
    /// Content that failed its MAC. `first` for the read that found out (logged as an error);
    /// later reads of the same file are answered the same way, quietly.
    #[error("content failed MAC verification: {detail}")]
    Integrity { detail: String, first: bool },
    #[error("not supported")]
    Unsupported,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// A move between trees of different accounts (a share and the Cloud Drive, or two
    /// users' shares): MEGA cannot move it, so `mv` copies and deletes instead (EXDEV).
    #[error("not movable between different accounts' folders")]
    CrossDevice,
    /// MEGA's transfer quota is used up for longer than a read waits (logged once per
    /// window by the reader, with the time it comes back).
    #[error("MEGA's transfer quota is used up for another {wait} s")]
    TransferQuota { wait: u64 },
    /// MEGA could not be reached or answered with an error (after retries).
    #[error("{0}")]
    Remote(String),
    /// A local file operation (the staging file, the cache) failed.
    #[error("local i/o: {0}")]
    Local(String),
    /// A commit failed; the writes stay in the staging file named here.
    #[error(
        "could not save to MEGA ({source}); the content is kept, encrypted, in {} and the next start of the mount uploads it beside the file as \"NAME (unsaved DATE TIME)\"",
        .staging.display()
    )]
    Unsaved {
        staging: PathBuf,
        source: Box<FsError>,
    },
}

/// How loud an error is at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Expected answers (ENOENT on lookup, EEXIST…).
    Debug,
    /// The caller asked for something this mount refuses.
    Info,
    /// A remote or local failure worth a look.
    Warn,
    /// Data integrity or data kept aside: always shown.
    Error,
}

impl FsError {
    /// The errno for the kernel. Exhaustive on purpose: a new variant needs a decision.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotPermitted => libc::EPERM,
            FsError::AccessDenied(_) => libc::EACCES,
            FsError::Invalid => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Quota => libc::EDQUOT,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Integrity { .. } => libc::EIO,
            FsError::Unsupported => libc::EOPNOTSUPP,
            FsError::NoAttr => libc::ENODATA,
            FsError::CrossDevice => libc::EXDEV,
            FsError::TransferQuota { .. } => libc::EDQUOT,
            FsError::Remote(_) => libc::EIO,
            FsError::Local(_) => libc::EIO,
            FsError::Unsaved { source, .. } => source.errno(),
        }
    }

    /// The level the error is logged at, once, where it leaves the filesystem.
    pub fn level(&self) -> Level {
        match self {
            FsError::NotFound
            | FsError::Exists
            | FsError::NotEmpty
            | FsError::IsDir
            | FsError::NotDir
            | FsError::NameTooLong
            | FsError::NoAttr
            | FsError::CrossDevice
            | FsError::Integrity { first: false, .. }
            | FsError::TransferQuota { .. } => Level::Debug,
            FsError::ReadOnly
            | FsError::NotPermitted
            | FsError::AccessDenied(_)
            | FsError::Invalid
            | FsError::Unsupported => Level::Info,
            FsError::Quota | FsError::NoSpace | FsError::Remote(_) | FsError::Local(_) => {
                Level::Warn
            }
            FsError::Integrity { first: true, .. } | FsError::Unsaved { .. } => Level::Error,
        }
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => FsError::NotFound,
            Error::AlreadyExists { .. } => FsError::Exists,
            Error::NotAFolder { .. } => FsError::NotDir,
            Error::NotAFile { .. } => FsError::IsDir,
            Error::PermissionDenied { code: None, .. } => FsError::NotPermitted,
            e @ Error::PermissionDenied { code: Some(_), .. } => {
                FsError::AccessDenied(e.to_string())
            }
            Error::Quota { .. } => FsError::Quota,
            e @ Error::Integrity { .. } => FsError::Integrity {
                detail: e.to_string(),
                first: true,
            },
            e @ Error::Undecryptable { .. } => FsError::AccessDenied(e.to_string()),
            e @ Error::Auth(
                AuthError::SessionExpired
                | AuthError::NotLoggedIn
                | AuthError::Blocked(_)
                | AuthError::WrongPassword
                | AuthError::MfaRequired
                | AuthError::MfaRejected,
            ) => FsError::AccessDenied(e.to_string()),
            e @ Error::KeyChanged { .. } => FsError::AccessDenied(e.to_string()),
            Error::TransferQuota { wait } => FsError::TransferQuota { wait },
            e @ (Error::Network { .. } | Error::Protocol(_) | Error::Server { .. }) => {
                FsError::Remote(e.to_string())
            }
            Error::Invalid { .. } => FsError::Invalid,
            e @ (Error::ShortRead { .. } | Error::Config(_) | Error::CacheDamaged { .. }) => {
                FsError::Local(e.to_string())
            }
            Error::Local { source, .. } => source.into(),
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) => FsError::NoSpace,
            Some(libc::EDQUOT) => FsError::Quota,
            _ => FsError::Local(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorCode;

    #[test]
    fn every_errno_is_named() {
        let cases = [
            (FsError::NotFound, libc::ENOENT),
            (FsError::NotDir, libc::ENOTDIR),
            (FsError::IsDir, libc::EISDIR),
            (FsError::Exists, libc::EEXIST),
            (FsError::NotEmpty, libc::ENOTEMPTY),
            (FsError::ReadOnly, libc::EROFS),
            (FsError::NotPermitted, libc::EPERM),
            (FsError::AccessDenied("x".into()), libc::EACCES),
            (FsError::Invalid, libc::EINVAL),
            (FsError::NameTooLong, libc::ENAMETOOLONG),
            (FsError::Quota, libc::EDQUOT),
            (FsError::NoSpace, libc::ENOSPC),
            (
                FsError::Integrity {
                    detail: "x".into(),
                    first: true,
                },
                libc::EIO,
            ),
            (FsError::Unsupported, libc::EOPNOTSUPP),
            (FsError::NoAttr, libc::ENODATA),
            (FsError::CrossDevice, libc::EXDEV),
            (FsError::Remote("x".into()), libc::EIO),
            (FsError::Local("x".into()), libc::EIO),
            (
                FsError::Unsaved {
                    staging: "/s".into(),
                    source: Box::new(FsError::Quota),
                },
                libc::EDQUOT,
            ),
        ];
        for (e, errno) in cases {
            assert_eq!(e.errno(), errno, "{e:?}");
        }
        assert_eq!(FsError::NotFound.errno(), 2);
        assert_eq!(FsError::Quota.errno(), 122);
    }

    #[test]
    fn engine_errors_map_by_meaning() {
        let what = String::new;
        let map = |e: Error| FsError::from(e).errno();
        assert_eq!(map(Error::NotFound { what: what() }), libc::ENOENT);
        assert_eq!(map(Error::AlreadyExists { what: what() }), libc::EEXIST);
        assert_eq!(map(Error::NotAFolder { what: what() }), libc::ENOTDIR);
        assert_eq!(map(Error::NotAFile { what: what() }), libc::EISDIR);
        assert_eq!(
            map(Error::PermissionDenied {
                what: what(),
                code: None
            }),
            libc::EPERM,
            "a root cannot be changed"
        );
        assert_eq!(
            map(Error::from_code(ErrorCode::Access)),
            libc::EACCES,
            "the server refused access"
        );
        assert_eq!(map(Error::from_code(ErrorCode::OverQuota)), libc::EDQUOT);
        assert_eq!(map(Error::Integrity { what: what() }), libc::EIO);
        assert_eq!(map(Error::Undecryptable { what: what() }), libc::EACCES);
        assert_eq!(map(AuthError::SessionExpired.into()), libc::EACCES);
        assert_eq!(map(Error::from_code(ErrorCode::Again)), libc::EIO);
        assert_eq!(map(Error::Protocol("x".into())), libc::EIO);
        assert_eq!(map(Error::from_code(ErrorCode::Circular)), libc::EINVAL);
        assert_eq!(
            map(Error::from_code(ErrorCode::Failed)),
            libc::EIO,
            "a server refusal"
        );
        assert_eq!(
            map(Error::ShortRead {
                got: 1,
                expected: 2
            }),
            libc::EIO
        );
        assert_eq!(
            map(Error::Config(crate::config::ConfigError::NoConfigDir)),
            libc::EIO
        );
        assert_eq!(
            map(Error::Invalid {
                what: what(),
                code: None
            }),
            libc::EINVAL
        );
        assert_eq!(
            map(Error::Local {
                path: None,
                source: std::io::Error::from_raw_os_error(libc::ENOSPC)
            }),
            libc::ENOSPC,
            "a full disk is ENOSPC, not EIO"
        );
        assert_eq!(
            map(std::io::Error::from_raw_os_error(libc::EDQUOT).into()),
            libc::EDQUOT
        );
        assert_eq!(map(std::io::Error::other("x").into()), libc::EIO);
    }

    #[test]
    fn levels() {
        assert_eq!(FsError::NotFound.level(), Level::Debug);
        let integrity = |first| FsError::Integrity {
            detail: "x".into(),
            first,
        };
        assert_eq!(integrity(true).level(), Level::Error);
        assert_eq!(
            integrity(false).level(),
            Level::Debug,
            "logged once per file"
        );
        assert_eq!(FsError::Remote("x".into()).level(), Level::Warn);
        assert_eq!(FsError::ReadOnly.level(), Level::Info);
    }
}
