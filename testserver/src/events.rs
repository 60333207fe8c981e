//! The legacy event channel (`MEGA-PROTOCOL.md` §9.1): `/sc?sn=&sid=` answers the packets
//! after `sn` as `{"a":[…],"sn":…}` (`sn` last), or `{"w":url}` when the client is up to date;
//! the wait URL blocks until the account's log grows past `sn` or a timeout passes.
//!
//! A cursor the log cannot continue from (older packets were dropped: see
//! [`Limits::event_log`](crate::guard::Limits::event_log); or one never handed out) is
//! answered `-6`, after which a client fetches the tree again.
//!
//! A wait URL carries an unguessable token, works once, and only while the session that
//! asked for it is live: it tells nobody else when an account changes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::commands::{decode_sn, encode_sn};
use crate::http::json_response;
use crate::store::{sid_hash, Queries};
use crate::State;

/// Most packets handed out in one `sc` reply.
const MAX_PACKETS_PER_REPLY: i64 = 500;

fn bare(code: i64) -> Response {
    json_response(StatusCode::OK, code.to_string().into_bytes())
}

pub(crate) async fn sc(
    AxState(state): AxState<Arc<State>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    state.stats.count("sc");
    let Some(sid) = q.get("sid") else {
        return bare(-15);
    };
    let idle = state.config.limits.session_idle.as_secs() as i64;
    let session = state.store.lock().session(sid, idle);
    let user = match session {
        Ok(Some((user, _))) => user,
        Ok(None) => return bare(-15),
        Err(_) => return bare(-3),
    };
    let Some(sn) = q.get("sn").and_then(|s| decode_sn(s)) else {
        return bare(-2);
    };
    // A cursor before the oldest packet kept (the client was away too long) or after the
    // newest (not one this server handed out): "too many pending updates", fetch again.
    match state.store.lock().cursor_valid(&user, sn) {
        Ok(true) => {}
        Ok(false) => return bare(-6),
        Err(_) => return bare(-3),
    }
    let events = state
        .store
        .lock()
        .events_after(&user, sn, MAX_PACKETS_PER_REPLY);
    let events = match events {
        Ok(e) => e,
        Err(_) => return bare(-3),
    };
    let body = match events.last() {
        Some((last, _)) => {
            let packets: Vec<_> = events.iter().map(|(_, p)| p.clone()).collect();
            json!({"a": packets, "sn": encode_sn(*last)})
        }
        None => {
            let max_age = state.config.wait_timeout * 4 + std::time::Duration::from_secs(60);
            let token = state.waits.issue(&user, &sid_hash(sid), sn, max_age);
            json!({"w": format!("{}sc/wait/{token}", state.base_url)})
        }
    };
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

pub(crate) async fn wait(
    AxState(state): AxState<Arc<State>>,
    Path(token): Path<String>,
) -> Response {
    // Unknown, used or expired: answer at once; the client polls `sc` again (and learns
    // there whether its session still works).
    let Some(w) = state.waits.take(&token) else {
        return json_response(StatusCode::OK, Vec::new());
    };
    let live = state.store.lock().session_live(&w.session).unwrap_or(false);
    if !live {
        return json_response(StatusCode::OK, Vec::new());
    }
    let (user, sn) = (w.user, w.sn);
    let deadline = tokio::time::Instant::now() + state.config.wait_timeout;
    loop {
        // Register interest before checking, so an event between the check and the await
        // still wakes us.
        let notified = state.events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let last = state.store.lock().last_seq(&user);
        match last {
            Ok(last) if last > sn => break,
            Ok(_) => {}
            Err(_) => break,
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break;
        }
    }
    json_response(StatusCode::OK, Vec::new())
}
