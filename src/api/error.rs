//! MEGA's numeric error codes as a typed enum, and the API layer's error type.

use super::retry::{Failure, GiveUp};
use crate::crypto::CryptoError;

/// A MEGA API error code (`MEGA-PROTOCOL.md` §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Internal,
    Args,
    Again,
    RateLimit,
    Failed,
    TooMany,
    Range,
    Expired,
    NotFound,
    Circular,
    Access,
    Exists,
    Incomplete,
    Key,
    Sid,
    Blocked,
    OverQuota,
    TempUnavail,
    TooManyConnections,
    Write,
    Read,
    AppKey,
    Ssl,
    GoingOverQuota,
    RolledBack,
    MfaRequired,
    MasterOnly,
    BusinessPastDue,
    Paywall,
    SubuserKeyMissing,
    /// A code this client does not know.
    Other(i64),
}

impl ErrorCode {
    pub fn from_code(code: i64) -> Self {
        use ErrorCode::*;
        match code {
            -1 => Internal,
            -2 => Args,
            -3 => Again,
            -4 => RateLimit,
            -5 => Failed,
            -6 => TooMany,
            -7 => Range,
            -8 => Expired,
            -9 => NotFound,
            -10 => Circular,
            -11 => Access,
            -12 => Exists,
            -13 => Incomplete,
            -14 => Key,
            -15 => Sid,
            -16 => Blocked,
            -17 => OverQuota,
            -18 => TempUnavail,
            -19 => TooManyConnections,
            -20 => Write,
            -21 => Read,
            -22 => AppKey,
            -23 => Ssl,
            -24 => GoingOverQuota,
            -25 => RolledBack,
            -26 => MfaRequired,
            -27 => MasterOnly,
            -28 => BusinessPastDue,
            -29 => Paywall,
            -30 => SubuserKeyMissing,
            n => Other(n),
        }
    }

    pub fn code(self) -> i64 {
        use ErrorCode::*;
        match self {
            Internal => -1,
            Args => -2,
            Again => -3,
            RateLimit => -4,
            Failed => -5,
            TooMany => -6,
            Range => -7,
            Expired => -8,
            NotFound => -9,
            Circular => -10,
            Access => -11,
            Exists => -12,
            Incomplete => -13,
            Key => -14,
            Sid => -15,
            Blocked => -16,
            OverQuota => -17,
            TempUnavail => -18,
            TooManyConnections => -19,
            Write => -20,
            Read => -21,
            AppKey => -22,
            Ssl => -23,
            GoingOverQuota => -24,
            RolledBack => -25,
            MfaRequired => -26,
            MasterOnly => -27,
            BusinessPastDue => -28,
            Paywall => -29,
            SubuserKeyMissing => -30,
            Other(n) => n,
        }
    }

    /// A short human description.
    pub fn describe(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Internal => "internal error",
            Args => "bad arguments",
            Again => "temporary failure, try again",
            RateLimit => "rate limited",
            Failed => "failed permanently",
            TooMany => "too many requests or connections",
            Range => "out of range",
            Expired => "expired",
            NotFound => "not found",
            Circular => "circular linkage",
            Access => "access denied",
            Exists => "already exists",
            Incomplete => "incomplete",
            Key => "cryptographic error",
            Sid => "bad session id",
            Blocked => "blocked",
            OverQuota => "over quota",
            TempUnavail => "temporarily unavailable",
            TooManyConnections => "too many connections",
            Write => "write error",
            Read => "read error",
            AppKey => "invalid application key",
            Ssl => "SSL verification failed",
            GoingOverQuota => "not enough quota",
            RolledBack => "rolled back",
            MfaRequired => "two-factor authentication required",
            MasterOnly => "denied for business sub-user",
            BusinessPastDue => "business account expired",
            Paywall => "over-disk-quota paywall",
            SubuserKeyMissing => "business sub-user key missing",
            Other(_) => "unknown error",
        }
    }

    /// Transient codes: the request did nothing and may be sent again after a pause.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Again | ErrorCode::RateLimit | ErrorCode::TempUnavail
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.describe(), self.code())
    }
}

/// Why the service blocked an account: the answer to `whyamiblocked` (the SDK's
/// `ACCOUNT_BLOCKED_*` codes in `sdk:include/megaapi.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// 200: suspended over copyright complaints.
    Copyright,
    /// 300: terminated for breaching the terms of service.
    TermsOfService,
    /// 400: a business sub-user disabled by the account's administrator.
    DisabledByAdministrator,
    /// 401: a business sub-user removed by the account's administrator.
    RemovedByAdministrator,
    /// 500: waiting for verification by SMS.
    SmsVerification,
    /// 700: temporarily suspended until the e-mail address is verified.
    EmailVerification,
    /// Any other positive code.
    Other(i64),
}

impl BlockReason {
    pub fn from_code(code: i64) -> Self {
        match code {
            200 => BlockReason::Copyright,
            300 => BlockReason::TermsOfService,
            400 => BlockReason::DisabledByAdministrator,
            401 => BlockReason::RemovedByAdministrator,
            500 => BlockReason::SmsVerification,
            700 => BlockReason::EmailVerification,
            c => BlockReason::Other(c),
        }
    }
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockReason::Copyright => {
                f.write_str("suspended after copyright complaints; see the e-mail from MEGA")
            }
            BlockReason::TermsOfService => {
                f.write_str("terminated for breaching MEGA's terms of service")
            }
            BlockReason::DisabledByAdministrator => {
                f.write_str("disabled by the administrator of the business account")
            }
            BlockReason::RemovedByAdministrator => {
                f.write_str("removed by the administrator of the business account")
            }
            BlockReason::SmsVerification => f.write_str(
                "waiting for verification by SMS; verify it in MEGA's web or mobile app",
            ),
            BlockReason::EmailVerification => f.write_str(
                "suspended until the e-mail address is verified; follow the e-mail from MEGA",
            ),
            BlockReason::Other(c) => write!(f, "reason code {c}"),
        }
    }
}

/// "the account is blocked", with the reason when the service gave one.
pub(crate) fn blocked_message(reason: &Option<BlockReason>) -> String {
    match reason {
        Some(r) => format!("the account is blocked: {r}"),
        None => "the account is blocked".into(),
    }
}

/// Errors of the API layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered a MEGA error code for a command or the whole request.
    #[error("MEGA error: {0}")]
    Mega(ErrorCode),
    /// The session id is no longer valid (ESID): log in again.
    #[error("the session is no longer valid; log in again")]
    SessionLost,
    /// The account is blocked (EBLOCKED); the reason is asked for when there is a session.
    #[error("{}", blocked_message(.0))]
    Blocked(Option<BlockReason>),
    /// No connection could be made: the request never reached the server.
    #[error("network error: {0}")]
    Connect(String),
    /// The network failed after the request was sent (timeout, connection dropped, truncated
    /// reply): it may or may not have been processed.
    #[error("network error: {0}")]
    Network(String),
    /// An HTTP status the protocol does not expect.
    #[error("unexpected HTTP status {0}")]
    Http(u16),
    /// The reply could not be understood.
    #[error("malformed server reply: {0}")]
    BadResponse(String),
    /// Decrypting or decoding server data failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Transient failures went on past the retry budget.
    #[error("giving up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: Box<ApiError> },
    /// Over the transfer quota (`g` with `e: -17`, or HTTP 509 from a storage server):
    /// downloads may go on in `wait` seconds. Not retried at once.
    #[error("transfer quota exceeded; more in {wait} s")]
    TransferQuota { wait: u64 },
}

impl ApiError {
    /// How the attempt failed, for the retry policy.
    pub fn failure(&self) -> Failure {
        match self {
            ApiError::Mega(c) if c.is_retryable() => Failure::NotApplied,
            ApiError::Connect(_) => Failure::NotApplied,
            ApiError::Network(_) => Failure::Unknown,
            ApiError::Http(s) if *s == 429 || *s >= 500 => Failure::NotApplied,
            ApiError::Mega(_)
            | ApiError::Http(_)
            | ApiError::SessionLost
            | ApiError::Blocked(_)
            | ApiError::BadResponse(_)
            | ApiError::Crypto(_)
            | ApiError::RetriesExhausted { .. }
            | ApiError::TransferQuota { .. } => Failure::Permanent,
        }
    }

    /// True if sending the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.failure() != Failure::Permanent
    }

    /// The MEGA error code, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Mega(c) => Some(*c),
            ApiError::SessionLost => Some(ErrorCode::Sid),
            ApiError::Blocked(_) => Some(ErrorCode::Blocked),
            ApiError::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }
}

impl From<GiveUp<ApiError>> for ApiError {
    fn from(g: GiveUp<ApiError>) -> Self {
        match g {
            GiveUp::Final(e) => e,
            GiveUp::Exhausted { attempts, last } => ApiError::RetriesExhausted {
                attempts,
                last: Box::new(last),
            },
        }
    }
}
