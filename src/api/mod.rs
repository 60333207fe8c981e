//! The MEGA API client: batched `/cs` commands with request ids and the session id, typed
//! commands ([`commands`]; user attributes and pending keys in [`attrs`]) and error codes,
//! and the one retry policy ([`retry`]) that every network path of the engine uses.
//!
//! Retries: a request that fails transiently (EAGAIN -3 or ERATELIMIT -4 for the whole request,
//! HTTP 429/5xx, a refused or dropped connection, a truncated reply) is sent again after an
//! exponential backoff with jitter, **with the same request id and the same body**: the server
//! recognises the id and does not run the commands twice, so retrying a non-idempotent batch
//! (`p`, `m`, `d`…) is safe ([`Repeat::Safe`]). A per-command EAGAIN in a one-command batch
//! means that command did not run; it is sent again under a fresh id. HTTP 402 +
//! `X-Hashcash` is answered with a proof of work and the same request is re-sent. ESID (-15)
//! becomes [`ApiError::SessionLost`]. EBLOCKED (-16), for the request or a command, becomes
//! [`ApiError::Blocked`] with the reason `whyamiblocked` gives when there is a session.
//!
//! Replies are read with a size bound ([`read_body`]): a server cannot make the client
//! allocate without limit.
//!
//! Must not know about paths, inodes or FUSE.

pub mod attrs;
pub mod commands;
mod error;
pub mod hashcash;
mod reply;
pub mod retry;
pub mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

pub use commands::Command;
pub use error::{ApiError, BlockReason, ErrorCode};
pub use retry::{Failure, GiveUp, Repeat, RetryConfig, Retrying};
pub use session::{Session, SessionId};

/// The public MEGA API endpoint.
pub const DEFAULT_API_URL: &str = "https://g.api.mega.co.nz/";

/// The largest `/cs` or `sc` reply read. Real accounts of millions of nodes have `f` replies of
/// a few hundred MB; anything past this is refused as a protocol error instead of exhausting
/// memory.
pub const MAX_REPLY_BYTES: u64 = 2 << 30;

/// The most a reply's announced length reserves before its bytes arrive.
const PREALLOCATE_MAX: u64 = 64 << 20;

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// API base URL, ending in `/` (default [`DEFAULT_API_URL`]).
    pub base_url: String,
    pub retry: RetryConfig,
    /// Timeout of one `/cs` request.
    pub request_timeout: Duration,
    /// Timeout of a connection attempt.
    pub connect_timeout: Duration,
    /// Hashcash challenges answered per request before giving up.
    pub max_hashcash: u32,
    pub user_agent: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            base_url: DEFAULT_API_URL.into(),
            retry: RetryConfig::default(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            max_hashcash: 3,
            user_agent: concat!("mega-mount/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

impl ApiConfig {
    pub fn with_base_url(url: &str) -> Self {
        let mut base_url = url.to_string();
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        ApiConfig {
            base_url,
            ..Default::default()
        }
    }
}

/// Sends commands to MEGA. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ApiClient {
    http: reqwest::Client,
    cfg: ApiConfig,
    seq: AtomicU64,
    sid: RwLock<Option<SessionId>>,
    /// Echo id sent as `i` with our mutations, so the event channel can skip our own packets.
    echo_id: String,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.cfg.base_url)
            .finish_non_exhaustive()
    }
}

/// The outcome of one command in a batch.
pub type CommandResult = Result<Value, ApiError>;

fn random_echo_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Parses a MEGA reply value that may be a bare error number.
pub fn as_error(v: &Value) -> Option<ErrorCode> {
    match v.as_i64() {
        Some(n) if n < 0 => Some(ErrorCode::from_code(n)),
        _ => None,
    }
}

impl ApiClient {
    pub fn new(cfg: ApiConfig) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .user_agent(cfg.user_agent.clone())
            .build()
            .map_err(|e| ApiError::Network(e.to_string()))?;
        Ok(ApiClient {
            http,
            cfg,
            // Like megajs: start from a random 10-digit number.
            seq: AtomicU64::new(rand::thread_rng().gen_range(1_000_000_000..9_000_000_000)),
            sid: RwLock::new(None),
            echo_id: random_echo_id(),
        })
    }

    pub fn config(&self) -> &ApiConfig {
        &self.cfg
    }

    /// The shared HTTP client (transfers use it too).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn echo_id(&self) -> &str {
        &self.echo_id
    }

    pub fn set_sid(&self, sid: Option<SessionId>) {
        *self.sid.write().unwrap_or_else(|e| e.into_inner()) = sid;
    }

    pub fn sid(&self) -> Option<SessionId> {
        self.sid.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn next_id(&self) -> String {
        self.seq.fetch_add(1, Ordering::Relaxed).to_string()
    }

    fn cs_url(&self, id: &str, extra: &[(&str, &str)]) -> String {
        let mut url = format!("{}cs?id={}", self.cfg.base_url, id);
        if let Some(sid) = self.sid() {
            url.push_str("&sid=");
            url.push_str(sid.expose());
        }
        for (k, v) in extra {
            url.push('&');
            url.push_str(k);
            url.push('=');
            url.push_str(v);
        }
        url
    }

    /// Runs one typed command and decodes its reply.
    pub async fn run<C: Command>(&self, cmd: &C) -> Result<C::Reply, ApiError> {
        self.run_with(cmd, &[]).await
    }

    /// Like [`run`](Self::run) with extra query parameters (e.g. `n` for folder links).
    pub async fn run_with<C: Command>(
        &self,
        cmd: &C,
        query: &[(&str, &str)],
    ) -> Result<C::Reply, ApiError> {
        let v = serde_json::to_value(cmd).map_err(|e| ApiError::BadResponse(e.to_string()))?;
        let name = v
            .get("a")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        // Decoded from the bytes straight into the reply type (no `Value` in between: an `f`
        // reply can be hundreds of megabytes).
        self.exchange(vec![v], query, |bytes, n| {
            reply::parse_typed::<C::Reply>(bytes, n, &name)
        })
        .await?
        .pop()
        .ok_or_else(|| ApiError::BadResponse("empty reply array".into()))?
    }

    /// Runs one untyped command and returns its result.
    pub async fn call(&self, cmd: Value) -> CommandResult {
        let mut r = self.batch(vec![cmd]).await?;
        r.pop()
            .ok_or_else(|| ApiError::BadResponse("empty reply array".into()))?
    }

    /// Runs a batch of commands; the outer error is for the whole request.
    pub async fn batch(&self, cmds: Vec<Value>) -> Result<Vec<CommandResult>, ApiError> {
        self.batch_with(cmds, &[]).await
    }

    /// Like [`batch`](Self::batch) with extra query parameters (e.g. `n` for folder links).
    pub async fn batch_with(
        &self,
        cmds: Vec<Value>,
        query: &[(&str, &str)],
    ) -> Result<Vec<CommandResult>, ApiError> {
        self.exchange(cmds, query, |bytes, n| {
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|_| ApiError::BadResponse("reply is not JSON".into()))?;
            parse_reply(v, n)
        })
        .await
    }

    /// Sends a batch and decodes its reply with `parse` (bytes, number of commands), with
    /// the retry, hashcash and blocked-account handling described in the module doc.
    async fn exchange<R>(
        &self,
        cmds: Vec<Value>,
        query: &[(&str, &str)],
        parse: impl Fn(&[u8], usize) -> Result<Vec<Result<R, ApiError>>, ApiError>,
    ) -> Result<Vec<Result<R, ApiError>>, ApiError> {
        let n = cmds.len();
        let body = serde_json::to_vec(&Value::Array(cmds))
            .map_err(|e| ApiError::BadResponse(e.to_string()))?;
        let mut id = self.next_id();
        let mut hashcash: Option<String> = None;
        let mut challenges = 0u32;
        // Safe to repeat: the server runs a request id once and answers repeats from memory.
        let mut retry = self.cfg.retry.start("API request", Repeat::Safe);
        loop {
            let outcome = self.send_once(&id, query, &body, hashcash.as_deref()).await;
            let err = match outcome {
                Ok(Reply::Body(bytes)) => match parse(&bytes, n) {
                    Ok(mut results) => {
                        if results
                            .iter()
                            .any(|r| matches!(r, Err(ApiError::Mega(ErrorCode::Blocked))))
                        {
                            let why = self.why_blocked().await;
                            for r in &mut results {
                                if matches!(r, Err(ApiError::Mega(ErrorCode::Blocked))) {
                                    *r = Err(ApiError::Blocked(why));
                                }
                            }
                        }
                        // A single command that reported EAGAIN did not run: resend it under a
                        // fresh id (the old id's reply is the error itself).
                        let again = n == 1 && matches!(&results[0], Err(e) if e.is_retryable());
                        if !again {
                            return Ok(results);
                        }
                        id = self.next_id();
                        results
                            .into_iter()
                            .next()
                            .and_then(Result::err)
                            .unwrap_or(ApiError::Mega(ErrorCode::Again))
                    }
                    Err(e) => e,
                },
                Ok(Reply::Hashcash(header)) => {
                    challenges += 1;
                    if challenges > self.cfg.max_hashcash {
                        return Err(ApiError::BadResponse(
                            "server keeps asking for hashcash".into(),
                        ));
                    }
                    let ch = hashcash::Challenge::parse(&header)?;
                    tracing::debug!(easiness = ch.easiness, "solving hashcash challenge");
                    let answer = tokio::task::spawn_blocking(move || ch.solve())
                        .await
                        .map_err(|e| ApiError::BadResponse(e.to_string()))??;
                    hashcash = Some(answer);
                    continue;
                }
                Err(e) => e,
            };
            if matches!(err, ApiError::Mega(ErrorCode::Sid)) {
                return Err(ApiError::SessionLost);
            }
            if matches!(err, ApiError::Mega(ErrorCode::Blocked)) {
                return Err(ApiError::Blocked(self.why_blocked().await));
            }
            let failure = err.failure();
            retry.after(err, failure).await.map_err(ApiError::from)?;
        }
    }

    /// Asks the service why the account is blocked (`whyamiblocked`, alone in its request,
    /// as the SDK sends it). Needs a session; `None` when there is none or no reason came.
    async fn why_blocked(&self) -> Option<BlockReason> {
        self.sid()?;
        let body = br#"[{"a":"whyamiblocked"}]"#;
        match self.send_once(&self.next_id(), &[], body, None).await {
            Ok(Reply::Body(bytes)) => serde_json::from_slice::<Value>(&bytes)
                .ok()?
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .map(BlockReason::from_code),
            _ => None,
        }
    }

    async fn send_once(
        &self,
        id: &str,
        query: &[(&str, &str)],
        body: &[u8],
        hashcash: Option<&str>,
    ) -> Result<Reply, ApiError> {
        let mut req = self
            .http
            .post(self.cs_url(id, query))
            .timeout(self.cfg.request_timeout)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(h) = hashcash {
            req = req.header("X-Hashcash", h);
        }
        let resp = req.send().await.map_err(network_error)?;
        let status = resp.status().as_u16();
        if status == 402 {
            if let Some(h) = resp
                .headers()
                .get("x-hashcash")
                .and_then(|v| v.to_str().ok())
            {
                return Ok(Reply::Hashcash(h.to_string()));
            }
        }
        if status != 200 {
            return Err(ApiError::Http(status));
        }
        Ok(Reply::Body(read_body(resp, MAX_REPLY_BYTES).await?))
    }
}

enum Reply {
    /// The reply's bytes, decoded by the caller.
    Body(Vec<u8>),
    Hashcash(String),
}

/// Maps a reqwest failure to a network error without leaking the URL (it carries the sid).
/// A failure to connect means the request never reached the server.
pub(crate) fn network_error(e: reqwest::Error) -> ApiError {
    if e.is_connect() && !e.is_timeout() {
        return ApiError::Connect("connection failed".into());
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the reply"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    ApiError::Network(kind.to_string())
}

/// Reads a reply body of at most `limit` bytes. A longer body (by its `Content-Length`, or
/// as it streams in) is a protocol error, not an allocation the server decides.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    let too_long = || ApiError::BadResponse(format!("reply longer than {limit} bytes"));
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Err(too_long());
    }
    // Memory is reserved for what the server announced only up to a modest amount; past it
    // the buffer grows with what actually arrives.
    let cap = declared.unwrap_or(0).min(limit).min(PREALLOCATE_MAX);
    let mut out = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    while let Some(chunk) = resp.chunk().await.map_err(network_error)? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_long());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn parse_reply(v: Value, n: usize) -> Result<Vec<CommandResult>, ApiError> {
    match v {
        Value::Array(items) => {
            if items.len() != n {
                return Err(ApiError::BadResponse(format!(
                    "{} results for {} commands",
                    items.len(),
                    n
                )));
            }
            Ok(items
                .into_iter()
                .map(|item| match as_error(&item) {
                    Some(ErrorCode::Sid) => Err(ApiError::SessionLost),
                    Some(code) => Err(ApiError::Mega(code)),
                    None => Ok(item),
                })
                .collect())
        }
        other => match as_error(&other) {
            Some(code) => Err(ApiError::Mega(code)),
            None => Err(ApiError::BadResponse(
                "reply is neither array nor error".into(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reply_parsing() {
        let r = parse_reply(json!([0, -9, {"x": 1}]), 3).unwrap();
        assert!(matches!(r[0], Ok(ref v) if v == &json!(0)));
        assert!(matches!(r[1], Err(ApiError::Mega(ErrorCode::NotFound))));
        assert!(r[2].is_ok());
        assert!(matches!(
            parse_reply(json!(-3), 1),
            Err(ApiError::Mega(ErrorCode::Again))
        ));
        assert!(matches!(
            parse_reply(json!([-15]), 1).unwrap()[0],
            Err(ApiError::SessionLost)
        ));
        assert!(matches!(
            parse_reply(json!([0]), 2),
            Err(ApiError::BadResponse(_))
        ));
        assert!(matches!(
            parse_reply(json!("x"), 1),
            Err(ApiError::BadResponse(_))
        ));
    }

    #[test]
    fn error_codes_round_trip_and_classify() {
        for c in -35..0 {
            assert_eq!(ErrorCode::from_code(c).code(), c);
        }
        assert!(ErrorCode::Again.is_retryable());
        assert!(ErrorCode::RateLimit.is_retryable());
        assert!(!ErrorCode::NotFound.is_retryable());
        assert!(ApiError::Http(503).is_retryable());
        assert!(ApiError::Http(500).is_retryable());
        assert!(!ApiError::Http(404).is_retryable());
        assert!(ApiError::Network("x".into()).is_retryable());
        assert!(ApiError::Connect("x".into()).is_retryable());
        assert_eq!(ApiError::Network("x".into()).failure(), Failure::Unknown);
        assert_eq!(ApiError::Connect("x".into()).failure(), Failure::NotApplied);
        assert_eq!(ApiError::Http(503).failure(), Failure::NotApplied);
        assert!(!ApiError::SessionLost.is_retryable());
    }

    #[test]
    fn hashcash_parse_and_solve() {
        let token = crate::crypto::b64::encode(&[7u8; 48]);
        let ch = hashcash::Challenge::parse(&format!("1:255:1731410499:{token}")).unwrap();
        assert_eq!(ch.threshold(), 127 << 24);
        let answer = ch.solve().unwrap();
        let parts: Vec<&str> = answer.split(':').collect();
        assert_eq!(parts[0], "1");
        assert_eq!(parts[1], token);
        assert!(hashcash::Challenge::parse("2:255:1:abc").is_err());
        assert!(hashcash::Challenge::parse("garbage").is_err());
    }
}
