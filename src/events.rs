//! The server-to-client event channel (`MEGA-PROTOCOL.md` §9.1): long-polls `sc?sn=` with the
//! sequence cursor; when up to date the server hands out a wait URL that blocks until
//! something happens. Packets are parsed into [`ActionPacket`]s for the tree.
//!
//! Transient failures back off and retry; ESID ends the channel (the session is gone);
//! ETOOMANY (-6) means the cursor is too old and the caller must fetch the tree again.
//!
//! Must not know about FUSE.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::api::{
    as_error, network_error, read_body, ApiClient, ApiError, ErrorCode, Repeat, MAX_REPLY_BYTES,
};
use crate::tree::ActionPacket;

/// How long one wait-URL request may block before we poll again anyway.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);
/// The wait URL's reply carries nothing; more than this is not read.
const WAIT_REPLY_BYTES: u64 = 4096;
/// Timeout of an `sc` request (the SDK uses 40 s).
const SC_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls the event channel from a cursor.
pub struct EventPoller {
    api: Arc<ApiClient>,
    sn: String,
}

impl std::fmt::Debug for EventPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPoller").field("sn", &self.sn).finish()
    }
}

impl EventPoller {
    /// Starts from the `sn` of the tree fetch.
    pub fn new(api: Arc<ApiClient>, sn: String) -> Self {
        EventPoller { api, sn }
    }

    /// The cursor after the last batch returned.
    pub fn sn(&self) -> &str {
        &self.sn
    }

    /// Waits for and returns the next non-empty batch of action packets.
    pub async fn next_batch(&mut self) -> Result<Vec<ActionPacket>, ApiError> {
        let api = self.api.clone();
        // Polls are safe to repeat (the cursor says where to resume); the channel never gives
        // up on transient failures, it only stops growing its pause.
        let mut retry = api
            .config()
            .retry
            .start("event channel", Repeat::Safe)
            .forever();
        loop {
            match self.poll_once().await {
                Ok(Some(packets)) if !packets.is_empty() => return Ok(packets),
                Ok(_) => retry.reset(),
                // ETOOMANY: the cursor is too old; the caller fetches the tree again.
                Err(e @ ApiError::Mega(ErrorCode::TooMany)) => return Err(e),
                Err(e) => {
                    let failure = e.failure();
                    retry.after(e, failure).await?;
                }
            }
        }
    }

    /// The packets the server has after the cursor, without waiting for new ones: `None`
    /// when up to date (a warm start's catch-up). Transient failures are retried within the
    /// retry budget; ETOOMANY is returned at once (the caller fetches the tree).
    pub async fn pending(&mut self) -> Result<Option<Vec<ActionPacket>>, ApiError> {
        let api = self.api.clone();
        let mut retry = api.config().retry.start("event channel", Repeat::Safe);
        loop {
            match self.request().await {
                Ok(Reply::Packets(p)) => return Ok(Some(p)),
                Ok(Reply::Wait(_)) => return Ok(None),
                Err(e @ (ApiError::Mega(ErrorCode::TooMany) | ApiError::SessionLost)) => {
                    return Err(e)
                }
                Err(e) => {
                    let failure = e.failure();
                    retry.after(e, failure).await?;
                }
            }
        }
    }

    /// One `sc` request (and, when up to date, one wait). `Ok(None)` = nothing new yet.
    async fn poll_once(&mut self) -> Result<Option<Vec<ActionPacket>>, ApiError> {
        match self.request().await? {
            Reply::Packets(p) => Ok(Some(p)),
            Reply::Wait(w) => {
                // Up to date: block on the wait URL (its body is meaningless), then poll
                // again.
                let resp = self
                    .api
                    .http()
                    .post(w)
                    .timeout(WAIT_TIMEOUT)
                    .send()
                    .await
                    .map_err(network_error)?;
                let _ = read_body(resp, WAIT_REPLY_BYTES).await;
                Ok(None)
            }
        }
    }

    /// One `sc` request: the packets after the cursor (which it advances), or the wait URL.
    async fn request(&mut self) -> Result<Reply, ApiError> {
        let sid = self.api.sid().ok_or(ApiError::SessionLost)?;
        let url = format!(
            "{}sc?sn={}&sid={}",
            self.api.config().base_url,
            self.sn,
            sid.expose()
        );
        let resp = self
            .api
            .http()
            .post(url)
            .timeout(SC_TIMEOUT)
            .send()
            .await
            .map_err(network_error)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ApiError::Http(status));
        }
        let body = read_body(resp, MAX_REPLY_BYTES).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::BadResponse("event reply is not JSON".into()))?;
        if let Some(code) = as_error(&v) {
            return Err(match code {
                ErrorCode::Sid => ApiError::SessionLost,
                c => ApiError::Mega(c),
            });
        }
        if let Some(w) = v.get("w").and_then(Value::as_str) {
            return Ok(Reply::Wait(w.to_string()));
        }
        let sn = v
            .get("sn")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadResponse("event reply without `sn` or `w`".into()))?;
        let packets = v
            .get("a")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(ActionPacket::parse).collect())
            .unwrap_or_default();
        self.sn = sn.to_string();
        Ok(Reply::Packets(packets))
    }
}

/// What one `sc` request answered.
enum Reply {
    Packets(Vec<ActionPacket>),
    /// Up to date; the URL blocks until something happens.
    Wait(String),
}
