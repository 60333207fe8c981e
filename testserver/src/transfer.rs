//! Transfer URLs. Downloads: `GET|POST /dl/<id>[/<start>-<end>]` (inclusive end, clamped to
//! the file size) stream ciphertext, subject to bandwidth caps, corruption and dropped
//! connections. Uploads: `POST /ul/<id>/<offset>[?c=|?d=]` write ciphertext at an offset (any
//! order, any size, in parallel); the POST that completes the file answers the completion
//! token — 36 raw bytes when `u` had `v>=2`, else 36 base64url characters.
//!
//! URLs expire: a download URL stops working (403, so clients ask for a new one) after the
//! configured lifetime or when what issued it ends (the session logs out, the link is
//! revoked); an upload URL likewise answers `-8` (EEXPIRED).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::faults::Fault;
use crate::http::{dropped_response, status_response};
use crate::store::{Queries, Upload};
use crate::{crypto, State};

/// Bytes per read when streaming a download.
const DL_PIECE: usize = 1024 * 1024;

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

pub(crate) async fn download(
    state: AxState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    serve_download(state.0, id, None, peer.ip()).await
}

pub(crate) async fn download_range(
    state: AxState<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, range)): Path<(String, String)>,
) -> Response {
    let parsed = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some(r) => serve_download(state.0, id, Some(r), peer.ip()).await,
        None => text(StatusCode::BAD_REQUEST, ""),
    }
}

async fn serve_download(
    state: Arc<State>,
    id: String,
    range: Option<(u64, u64)>,
    ip: IpAddr,
) -> Response {
    let _counted = state.stats.downloads.enter();
    state.stats.count_download();
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let slot = state.store.lock().download(&id);
    let d = match slot {
        Ok(Some(d)) => d,
        Ok(None) => return text(StatusCode::NOT_FOUND, ""),
        Err(_) => return status_response(StatusCode::INTERNAL_SERVER_ERROR),
    };
    if !download_valid(&state, &d) {
        let _ = state.store.lock().delete_download(&id);
        return text(StatusCode::FORBIDDEN, "");
    }
    let (blob, size) = (d.blob, d.size as u64);
    let (start, end) = match range {
        None => (0, size),
        // Inclusive end; mega-rs asks for `0-size`, so clamp.
        Some((a, b)) => (a, b.saturating_add(1).min(size)),
    };
    if start > end || (start == end && size > 0 && start >= size) {
        return text(StatusCode::RANGE_NOT_SATISFIABLE, "");
    }
    // Over the transfer quota: 509 with the seconds until there is quota again, as MEGA's
    // storage servers answer. Otherwise what is served counts against it.
    let now = crate::store::now() as u64;
    let account = state.meter.bound(&id);
    let over = match &account {
        Some((who, allowance)) => state.meter.over_account(who, *allowance, now),
        None => state.meter.over(ip, now),
    };
    if let Some(wait) = over {
        let mut r = text(
            StatusCode::from_u16(509).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            "",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert("x-mega-time-left", v);
        }
        return r;
    }
    match &account {
        Some((who, _)) => state.meter.record_account(who, end - start, now),
        None => state.meter.record(ip, end - start, now),
    }
    let fault = state.faults.next_download();
    match fault {
        Fault::Http500 => return status_response(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::Http503 => return status_response(StatusCode::SERVICE_UNAVAILABLE),
        _ => {}
    }
    let mut file = match tokio::fs::File::open(state.store.blob_path(&blob)).await {
        Ok(f) => f,
        Err(_) => return text(StatusCode::NOT_FOUND, ""),
    };
    if file.seek(SeekFrom::Start(start)).await.is_err() {
        return status_response(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let len = end - start;
    if fault == Fault::Drop {
        let mut buf = vec![0u8; (len / 2) as usize];
        if file.read_exact(&mut buf).await.is_err() {
            return status_response(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let keep = buf.len();
        buf.resize(len as usize, 0);
        return dropped_response(buf, keep);
    }
    let bandwidth = state.faults.bandwidth();
    // The byte (of this response) whose bit is flipped, if any: the client's MAC check must
    // catch it.
    let flip = state.faults.corruption(len);
    let counter = state.clone();
    let stream = futures::stream::unfold((file, 0u64), move |(mut file, sent)| {
        let counter = counter.clone();
        async move {
            if sent >= len {
                return None;
            }
            let n = (len - sent).min(DL_PIECE as u64) as usize;
            let mut buf = vec![0u8; n];
            if let Err(e) = file.read_exact(&mut buf).await {
                return Some((Err(e), (file, len)));
            }
            if let Some(at) = flip.filter(|at| (sent..sent + n as u64).contains(at)) {
                buf[(at - sent) as usize] ^= 0x01;
            }
            if bandwidth > 0 {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / bandwidth as f64)).await;
            }
            counter.stats.count_download_bytes(n as u64);
            Some((
                Ok::<Bytes, std::io::Error>(Bytes::from(buf)),
                (file, sent + n as u64),
            ))
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(len));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

/// Whether a download slot still works: within its lifetime, and its issuer still there.
fn download_valid(state: &State, d: &crate::store::Download) -> bool {
    let lifetime = state.config.limits.url_lifetime.as_secs() as i64;
    if crate::store::now() - d.created > lifetime {
        return false;
    }
    let db = state.store.lock();
    let ok = if let Some(ph) = d.issuer.strip_prefix("link:") {
        db.node_for_link(ph).map(|n| n.is_some())
    } else if let Some(ph) = d.issuer.strip_prefix("folder:") {
        db.node_for_link(ph).and_then(|n| match n {
            Some(n) => db.is_shared(&n),
            None => Ok(false),
        })
    } else {
        db.session_live(&d.issuer)
    };
    ok.unwrap_or(false)
}

/// Whether an upload slot still takes data: active within its lifetime, its session live.
fn upload_valid(state: &State, u: &Upload) -> bool {
    let lifetime = state.config.limits.upload_lifetime.as_secs() as i64;
    crate::store::now() - u.created <= lifetime
        && state.store.lock().session_live(&u.issuer).unwrap_or(false)
}

/// Merges `[a, b)` into sorted, disjoint ranges.
fn merge(ranges: &mut Vec<(i64, i64)>, a: i64, b: i64) {
    ranges.push((a, b));
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

fn error_body(code: i64) -> Response {
    text(StatusCode::OK, code.to_string())
}

/// The completion token as the client receives it, and as it must present it in `p`.
fn make_token(version: i64) -> (Vec<u8>, String) {
    if version >= 2 {
        let raw = crypto::random_bytes::<36>();
        let b64 = crypto::b64e(&raw);
        (raw.to_vec(), b64)
    } else {
        let t = crypto::b64e(&crypto::random_bytes::<27>());
        (t.clone().into_bytes(), t)
    }
}

pub(crate) async fn upload(
    AxState(state): AxState<Arc<State>>,
    Path((id, offset)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let _counted = state.stats.uploads.enter();
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    while state.faults.upload_held() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fault = state.faults.next_upload();
    match fault {
        Fault::Http500 => return status_response(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::Http503 => return status_response(StatusCode::SERVICE_UNAVAILABLE),
        _ => {}
    }
    let Ok(offset) = offset.parse::<i64>() else {
        return error_body(-2);
    };
    let slot = state.store.lock().upload(&id);
    let up = match slot {
        Ok(Some(u)) if upload_valid(&state, &u) => u,
        // Unknown, already completed, expired or its session gone.
        Ok(_) => return error_body(-8),
        Err(_) => return error_body(-3),
    };
    if offset < 0 || offset % 16 != 0 || offset > up.size {
        return error_body(-7);
    }
    // Stream the body into the upload file at the offset, checking bounds as we go.
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .open(state.store.upload_path(&id))
        .await
    {
        Ok(f) => f,
        Err(_) => return error_body(-8),
    };
    if file.seek(SeekFrom::Start(offset as u64)).await.is_err() {
        return error_body(-3);
    }
    let mut stream = body.into_data_stream();
    let mut written: i64 = 0;
    let mut crc = [0u8; 12];
    while let Some(piece) = stream.next().await {
        let Ok(piece) = piece else {
            return error_body(-3); // the client went away mid-body
        };
        if offset + written + piece.len() as i64 > up.size {
            return error_body(-7);
        }
        for (j, b) in piece.iter().enumerate() {
            crc[(written as usize + j) % 12] ^= b;
        }
        if file.write_all(&piece).await.is_err() {
            return error_body(-3);
        }
        written += piece.len() as i64;
    }
    if file.flush().await.is_err() || file.sync_data().await.is_err() {
        return error_body(-3);
    }
    drop(file);
    let _ = state.store.lock().add_received(&id, written);
    if fault == Fault::Drop {
        // Throw the data away (the range is not recorded) and break the connection.
        return dropped_response(b"-3".to_vec(), 0);
    }
    let checksum = q.get("d").or_else(|| q.get("c"));
    if let Some(c) = checksum {
        if crypto::b64d(c).as_deref() != Some(&crc[..]) {
            return error_body(-14);
        }
    }
    let _guard = state.upload_lock.lock().await;
    let slot = state.store.lock().upload(&id);
    let mut up = match slot {
        Ok(Some(u)) => u,
        _ => return error_body(-8),
    };
    if written > 0 {
        merge(&mut up.ranges, offset, offset + written);
    }
    let complete = up.size == 0 || up.ranges.first() == Some(&(0, up.size));
    if !complete {
        if state
            .store
            .lock()
            .set_upload_ranges(&id, &up.ranges)
            .is_err()
        {
            return error_body(-3);
        }
        return text(StatusCode::OK, if q.contains_key("d") { "0" } else { "" });
    }
    let (wire, token) = make_token(up.version);
    if state.store.complete_upload(&id, &token).is_err() {
        return error_body(-3);
    }
    text(StatusCode::OK, wire)
}
