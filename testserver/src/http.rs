//! Routing and the `/cs` endpoint: request-level faults, hashcash challenges, session checks,
//! the per-(sid, id) reply cache that makes retries idempotent, and the admin endpoints tests
//! use to steer a server running as a child process.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::faults::{Fault, FaultConfig};
use crate::{commands, crypto, events, transfer, State};

/// Largest `/cs` request body accepted (the real API also caps batches).
const MAX_CS_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/cs", post(cs))
        .route("/sc", get(events::sc).post(events::sc))
        .route("/sc/wait/:user/:sn", get(events::wait).post(events::wait))
        .route("/dl/:id", get(transfer::download).post(transfer::download))
        .route(
            "/dl/:id/:range",
            get(transfer::download_range).post(transfer::download_range),
        )
        .route(
            "/ul/:id/:offset",
            post(transfer::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/__admin/faults", get(get_faults).post(set_faults))
        .route("/__admin/quota", post(set_quota))
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

fn body_hash(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
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

    let sid = q.get("sid").cloned();
    let cache_key = q.get("id").map(|id| {
        (
            sid.clone().unwrap_or_default(),
            id.clone(),
            body_hash(&body),
        )
    });
    let cached = cache_key.as_ref().and_then(|k| {
        state
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
    });
    let reply = match cached {
        Some(r) => r,
        None => {
            let st = state.clone();
            let q2 = q.clone();
            let reply = tokio::task::spawn_blocking(move || run_batch(&st, &q2, &body))
                .await
                .unwrap_or_else(|_| b"-1".to_vec());
            if let Some(k) = cache_key {
                state
                    .replies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(k, reply.clone());
            }
            reply
        }
    };
    if fault == Fault::Drop {
        let keep = reply.len() / 2;
        return dropped_response(reply, keep);
    }
    json_response(StatusCode::OK, reply)
}

/// Runs one `/cs` batch; returns the reply body (an array, or a bare error number).
fn run_batch(state: &State, q: &HashMap<String, String>, body: &[u8]) -> Vec<u8> {
    let Ok(Value::Array(cmds)) = serde_json::from_slice::<Value>(body) else {
        return b"-2".to_vec();
    };
    let session = match q.get("sid") {
        Some(sid) => match state.store.session(sid) {
            Ok(Some((user, sek))) => match state.store.user(&user) {
                Ok(Some(u)) => Some(commands::Session {
                    sid: sid.clone(),
                    user: u,
                    sek,
                }),
                _ => return b"-15".to_vec(),
            },
            Ok(None) => return b"-15".to_vec(),
            Err(e) => {
                tracing::error!("session lookup: {e}");
                return b"-1".to_vec();
            }
        },
        None => None,
    };
    let ctx = commands::Ctx {
        state,
        session: session.as_ref(),
        folder_link: q.get("n").map(String::as_str),
    };
    let results: Vec<Value> = cmds.iter().map(|c| ctx.run(c)).collect();
    Value::Array(results).to_string().into_bytes()
}

async fn get_faults(AxState(state): AxState<Arc<State>>) -> Json<FaultConfig> {
    Json(state.faults.get())
}

async fn set_faults(
    AxState(state): AxState<Arc<State>>,
    Json(cfg): Json<FaultConfig>,
) -> impl IntoResponse {
    state.faults.set(cfg);
    Json(json!({"ok": true}))
}

#[derive(serde::Deserialize)]
struct QuotaReq {
    email: String,
    bytes: i64,
}

async fn set_quota(AxState(state): AxState<Arc<State>>, Json(req): Json<QuotaReq>) -> Response {
    match state.store.set_quota(&req.email.to_lowercase(), req.bytes) {
        Ok(true) => Json(json!({"ok": true})).into_response(),
        Ok(false) => status_response(StatusCode::NOT_FOUND),
        Err(_) => status_response(StatusCode::INTERNAL_SERVER_ERROR),
    }
}
