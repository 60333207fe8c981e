//! Routing and the `/cs` endpoint: request-level faults, hashcash challenges, session checks
//! (before anything else, so nothing outlives a logout), the reply cache that makes retries
//! idempotent, the request limits, one SQLite transaction per command, and the admin
//! endpoints (token required) tests use to steer a server running as a child process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::faults::{Fault, FaultConfig};
use crate::guard::{ct_eq, ReplyKey};
use crate::store::{sid_hash, Queries};
use crate::{commands, crypto, events, fileattrs, transfer, State};

/// Largest `/cs` request body accepted (the real API also caps batches).
const MAX_CS_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/cs", post(cs))
        .route("/sc", get(events::sc).post(events::sc))
        .route("/sc/wait/:token", get(events::wait).post(events::wait))
        .route("/dl/:id", get(transfer::download).post(transfer::download))
        .route(
            "/dl/:id/:range",
            get(transfer::download_range).post(transfer::download_range),
        )
        .route(
            "/ul/:id/:offset",
            post(transfer::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/fa/:id", post(fileattrs::post))
        .route("/fa/:id/:kind", post(fileattrs::post_typed))
        .route("/__admin/faults", get(get_faults).post(set_faults))
        .route("/__admin/quota", post(set_quota))
        .route("/__admin/uploads", get(get_uploads))
        .route("/__admin/stats", get(get_stats))
        .route("/__admin/block", post(set_blocked))
        .layer(DefaultBodyLimit::max(MAX_CS_BODY))
        .with_state(state)
}

/// A JSON reply body.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// A reply that sends `keep` bytes of `body`, then breaks the connection: the declared
/// Content-Length is never reached, so the client sees a truncated body.
pub(crate) fn dropped_response(body: Vec<u8>, keep: usize) -> Response {
    let total = body.len();
    let head = Bytes::from(body).slice(..keep.min(total));
    let stream = futures::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(head),
        Err(std::io::Error::other("injected connection drop")),
    ]);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(total));
    r
}

pub(crate) fn status_response(code: StatusCode) -> Response {
    let mut r = Response::new(Body::from(if code == StatusCode::SERVICE_UNAVAILABLE {
        "Server Too Busy"
    } else {
        ""
    }));
    *r.status_mut() = code;
    r
}

/// Checks an `X-Hashcash: 1:<token>:<prefix>` answer against the tokens we issued.
fn hashcash_answered(state: &State, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get("x-hashcash").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() != 3 || parts[0] != "1" {
        return false;
    }
    let issued = state
        .hashcash_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(parts[1]);
    let (Some(token), Some(prefix)) = (crypto::b64d(parts[1]), crypto::b64d(parts[2])) else {
        return false;
    };
    issued && crypto::hashcash_valid(&token, &prefix, state.faults.hashcash_easiness())
}

fn hashcash_challenge(state: &State) -> Response {
    let token = crypto::b64e(&crypto::random_bytes::<48>());
    state
        .hashcash_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone());
    let header = format!(
        "1:{}:{}:{}",
        state.faults.hashcash_easiness(),
        crate::store::now(),
        token
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::PAYMENT_REQUIRED;
    if let Ok(v) = HeaderValue::from_str(&header) {
        r.headers_mut().insert("x-hashcash", v);
    }
    r
}

async fn cs(
    AxState(state): AxState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let answered = hashcash_answered(&state, &headers);
    let fault = state.faults.next_cs();
    match fault {
        Fault::Hashcash if !answered => return hashcash_challenge(&state),
        Fault::Eagain => return json_response(StatusCode::OK, b"-3".to_vec()),
        Fault::RateLimit => return json_response(StatusCode::OK, b"-4".to_vec()),
        Fault::Http500 => return status_response(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::Http503 => return status_response(StatusCode::SERVICE_UNAVAILABLE),
        _ => {}
    }
    if state.faults.request_held(&body) {
        let _held = state.stats.held.enter();
        while state.faults.request_held(&body) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let st = state.clone();
    // The client's own name for itself (kept as `dua` with the backups it registers).
    let agent: String = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(256)
        .collect();
    let reply = tokio::task::spawn_blocking(move || request(&st, &q, &body, peer, agent))
        .await
        .unwrap_or_else(|_| b"-1".to_vec());
    let delay = state.faults.reply_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fault == Fault::Drop {
        let keep = reply.len() / 2;
        return dropped_response(reply, keep);
    }
    json_response(StatusCode::OK, reply)
}

/// Answers one `/cs` request: the session first (an ended session gets `-15`, also for a
/// request answered before), then the reply cache (authenticated requests only: those are
/// the ones that change things; a visitor's reply is never handed to anyone else), then the
/// batch.
fn request(
    state: &State,
    q: &HashMap<String, String>,
    body: &[u8],
    peer: SocketAddr,
    agent: String,
) -> Vec<u8> {
    let limits = &state.config.limits;
    let session = match q.get("sid") {
        Some(sid) => {
            let live = state
                .store
                .lock()
                .session(sid, limits.session_idle.as_secs() as i64);
            let user = match live {
                Ok(Some((user, sek))) => {
                    state.store.lock().user(&user).map(|u| u.map(|u| (u, sek)))
                }
                Ok(None) => return b"-15".to_vec(),
                Err(e) => Err(e),
            };
            match user {
                Ok(Some((user, sek))) => Some(commands::Session {
                    sid: sid.clone(),
                    user,
                    sek,
                    agent,
                }),
                Ok(None) => return b"-15".to_vec(),
                Err(e) => {
                    tracing::error!("session lookup: {e}");
                    return b"-1".to_vec();
                }
            }
        }
        None => None,
    };
    let link = q.get("n").map(String::as_str);
    let key = match (&session, q.get("id")) {
        (Some(s), Some(id)) => Some(ReplyKey::new(&sid_hash(&s.sid), link, id, body)),
        _ => None,
    };
    let cached = key.as_ref().and_then(|k| {
        state
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
    });
    if let Some(r) = cached {
        return r;
    }
    let reply = run_batch(state, session.as_ref(), link, body, peer);
    // After a logout the session's replies are gone; do not keep the logout's either.
    let still_live = session.as_ref().is_some_and(|s| {
        state
            .store
            .lock()
            .session_live(&sid_hash(&s.sid))
            .unwrap_or(false)
    });
    if let (Some(k), true) = (key, still_live) {
        state
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(k, reply.clone());
    }
    reply
}

/// Runs one `/cs` batch, each command in its own transaction; returns the reply body (an
/// array, or a bare error number).
fn run_batch(
    state: &State,
    session: Option<&commands::Session>,
    link: Option<&str>,
    body: &[u8],
    peer: SocketAddr,
) -> Vec<u8> {
    let limits = &state.config.limits;
    let Ok(Value::Array(cmds)) = serde_json::from_slice::<Value>(body) else {
        return b"-2".to_vec();
    };
    if cmds.len() > limits.max_commands {
        return b"-6".to_vec();
    }
    // A blocked account's session can only ask why, or log out; anything else fails the
    // whole request with EBLOCKED (what the SDK answers with `whyamiblocked`).
    if session.is_some_and(|s| s.user.blocked != 0)
        && !cmds.iter().all(|c| {
            matches!(
                c.get("a").and_then(Value::as_str),
                Some("whyamiblocked" | "sml")
            )
        })
    {
        return commands::err::EBLOCKED.to_string().into_bytes();
    }
    // Each result is JSON text as soon as it is made (an `f` reply is never a `Value`).
    let too_many = commands::err::ETOOMANY.to_string();
    let mut out: Vec<String> = Vec::with_capacity(cmds.len());
    let mut bytes = 2;
    for c in &cmds {
        if bytes > limits.max_reply_bytes {
            // Not run: the reply would be too large.
            out.push(too_many.clone());
            continue;
        }
        let r = commands::run(state, session, link, Some(peer.ip()), c);
        bytes += r.len() + 1;
        out.push(r);
    }
    if bytes > limits.max_reply_bytes {
        // The last command run pushed it over: keep what fits.
        let mut kept = 2;
        for r in out.iter_mut() {
            let len = r.len() + 1;
            if kept + len > limits.max_reply_bytes {
                *r = too_many.clone();
            } else {
                kept += len;
            }
        }
    }
    // The first result's buffer becomes the body (grown in place: a large one is not copied).
    let total: usize = out.iter().map(|r| r.len() + 1).sum::<usize>() + 1;
    let mut results = out.into_iter();
    let mut body = results.next().unwrap_or_default().into_bytes();
    body.reserve(total.saturating_sub(body.len()));
    body.insert(0, b'[');
    for r in results {
        body.push(b',');
        body.extend_from_slice(r.as_bytes());
    }
    body.push(b']');
    body
}

/// Whether a request carries the admin token.
fn admin(state: &State, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| ct_eq(t.trim().as_bytes(), state.admin_token.as_bytes()))
}

fn unauthorized() -> Response {
    let mut r = status_response(StatusCode::UNAUTHORIZED);
    r.headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    r
}

async fn get_faults(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if !admin(&state, &headers) {
        return unauthorized();
    }
    Json(state.faults.get()).into_response()
}

/// The upload URLs and the bytes each received (tests of resumed uploads).
async fn get_uploads(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if !admin(&state, &headers) {
        return unauthorized();
    }
    let report = state.store.lock().upload_report();
    match report {
        Ok(r) => Json(r).into_response(),
        Err(_) => status_response(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// What the server counted since it started: API commands by name, download requests and
/// bytes, and the transfers and held requests in flight now.
async fn get_stats(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if !admin(&state, &headers) {
        return unauthorized();
    }
    Json(state.stats.report()).into_response()
}

async fn set_faults(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !admin(&state, &headers) {
        return unauthorized();
    }
    match serde_json::from_slice::<FaultConfig>(&body) {
        Ok(cfg) => {
            state.faults.set(cfg);
            Json(json!({"ok": true})).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct BlockReq {
    email: String,
    /// A `whyamiblocked` reason code; 0 unblocks.
    reason: i64,
}

async fn set_blocked(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admin_account_update(&state, &headers, &body, |q, r: BlockReq| {
        q.set_blocked(&r.email.to_lowercase(), r.reason)
    })
}

#[derive(serde::Deserialize)]
struct QuotaReq {
    email: String,
    bytes: i64,
}

async fn set_quota(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admin_account_update(&state, &headers, &body, |q, r: QuotaReq| {
        q.set_quota(&r.email.to_lowercase(), r.bytes)
    })
}

/// An admin request that changes one account: the admin token is checked, the JSON body
/// parsed, and `update` answers whether the account exists.
fn admin_account_update<R: serde::de::DeserializeOwned>(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
    update: impl FnOnce(&dyn Queries, R) -> crate::store::Result<bool>,
) -> Response {
    if !admin(state, headers) {
        return unauthorized();
    }
    let req: R = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    let r = update(&state.store.lock(), req);
    match r {
        Ok(true) => Json(json!({"ok": true})).into_response(),
        Ok(false) => status_response(StatusCode::NOT_FOUND),
        Err(_) => status_response(StatusCode::INTERNAL_SERVER_ERROR),
    }
}
