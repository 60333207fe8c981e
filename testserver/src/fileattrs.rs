//! File attributes — thumbnails (type 0), previews (type 1) and media properties (8, 9) —
//! as the real service keeps them (`MEGA-FILES-TRANSFERS.md` §1.5–1.8), content-blind:
//!
//! * `ufa` with `s` (a session) gives a URL to store one encrypted blob of exactly `s` bytes
//!   (a multiple of 16, at most 16 MiB); one POST to it, or to it + `/<type>` as the
//!   webclient and megajs send, answers the attribute's 8 raw handle bytes.
//! * `p` (per new node, `fa: "0*<h>/1*<h>"`) and `pfa` (`n`, `fa`) attach handles; the node
//!   lists them as `<cluster>:<type>*<h>`, one entry per type (a later one replaces it).
//!   `pfa` answers the whole new list and tells every viewer (`{"a":"fa","n","fa"}`).
//!   Copies and imports keep their source's list. Types 8 and 9 carry their (encrypted)
//!   value in the list itself.
//! * `ufa` with `fah` (a session or a folder link) gives a URL to fetch; a POST of raw 8-byte
//!   handles answers, for each one known, `handle ‖ len (u32 LE) ‖ blob` (`r: 1`), or without
//!   `r` the index form (`handle ‖ offset (u32 LE)` per blob, then the blobs).
//!
//! Limits as for content: open store slots per account, the blob size, the handles per
//! fetch; slots expire like upload and download URLs, and blobs never attached go when their
//! slot's lifetime has passed.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use crate::commands::{db, err, i, s, CmdResult, Ctx, Session};
use crate::store::{self, FILE};
use crate::{crypto, shares, State};

/// The largest attribute blob (`MAX_FILE_ATTRIBUTE_SIZE`).
pub(crate) const MAX_BLOB: i64 = 16 * 1024 * 1024;
/// Handles one fetch may name.
const MAX_FETCH: usize = 1024;
/// Entries one node's list may hold.
const MAX_ENTRIES: usize = 16;

/// The attribute server group a handle lives on (any digits do: clients batch by it).
fn cluster(handle: &[u8]) -> u32 {
    900 + u32::from(handle.first().copied().unwrap_or(0) % 8)
}

/// Parses a list as clients send it (`type*handle`) or as it is stored
/// (`cluster:type*handle`); `None` if an entry is malformed.
fn entries(fa: &str) -> Option<Vec<(u32, String)>> {
    if fa.is_empty() {
        return Some(Vec::new());
    }
    fa.split('/')
        .map(|e| {
            let e = match e.split_once(':') {
                Some((c, rest)) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) => rest,
                Some(_) => return None,
                None => e,
            };
            let (t, h) = e.split_once('*')?;
            let t: u32 = t.parse().ok().filter(|t| *t <= 255)?;
            let raw = crypto::b64d(h).filter(|r| r.len() == 8)?;
            Some((t, crypto::b64e(&raw)))
        })
        .collect()
}

fn render(list: &[(u32, String)]) -> String {
    list.iter()
        .map(|(t, h)| {
            let raw = crypto::b64d(h).unwrap_or_default();
            format!("{}:{t}*{h}", cluster(&raw))
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Ctx<'_> {
    /// `current` with the entries of `given` (as a client sends them) in place of those of
    /// the same type; thumbnails and previews must be blobs `user` stored.
    pub(crate) fn merge_fa(&self, current: &str, given: &str, user: &str) -> Result<String, i64> {
        let mut list = entries(current).unwrap_or_default();
        let new = entries(given).ok_or(err::EARGS)?;
        if new.is_empty() {
            return Err(err::EARGS);
        }
        for (t, h) in new {
            if t < 8 {
                let owner: Option<String> = db(self
                    .db
                    .query_row(
                        "SELECT owner FROM file_attrs WHERE handle = ?1",
                        [&h],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(store::StoreError::from))?;
                match owner {
                    None => return Err(err::ENOENT),
                    Some(o) if o != user => return Err(err::EACCESS),
                    Some(_) => {}
                }
                db(self
                    .db
                    .execute("UPDATE file_attrs SET attached = 1 WHERE handle = ?1", [&h])
                    .map_err(store::StoreError::from))?;
            }
            list.retain(|(x, _)| *x != t);
            list.push((t, h));
        }
        if list.len() > MAX_ENTRIES {
            return Err(err::ETOOMANY);
        }
        list.sort_by_key(|(t, _)| *t);
        Ok(render(&list))
    }

    /// `ufa`: a URL to store an attribute (`s`, a session) or to fetch some (`fah`).
    pub(crate) fn ufa(&self, cmd: &Value, sess: Option<&Session>) -> CmdResult {
        let base = &self.state.base_url;
        let id = crypto::b64e(&crypto::random_bytes::<15>());
        let now = store::now();
        if let Some(fah) = s(cmd, "fah") {
            if crypto::b64d(fah).is_none_or(|h| h.len() != 8) {
                return Err(err::EARGS);
            }
            let user = sess.map(|s| s.user.handle.as_str()).unwrap_or("");
            let streamed = i(cmd, "r").unwrap_or(0) == 1;
            db(self
                .db
                .execute(
                    "INSERT INTO fa_slots (id, user, size, streamed, created) \
                     VALUES (?1, ?2, -1, ?3, ?4)",
                    params![id, user, streamed, now],
                )
                .map_err(store::StoreError::from))?;
            return Ok(json!({"p": format!("{base}fa/{id}")}));
        }
        let sess = sess.ok_or(err::EACCESS)?;
        let size = i(cmd, "s")
            .filter(|s| *s > 0 && *s <= MAX_BLOB && s % 16 == 0)
            .ok_or(err::EARGS)?;
        let user = &sess.user.handle;
        let open: i64 = db(self
            .db
            .query_row(
                "SELECT COUNT(*) FROM fa_slots WHERE user = ?1 AND size >= 0",
                [user],
                |r| r.get(0),
            )
            .map_err(store::StoreError::from))?;
        if open >= self.state.config.limits.max_open_uploads {
            return Err(err::ETOOMANY);
        }
        db(self
            .db
            .execute(
                "INSERT INTO fa_slots (id, user, size, streamed, created) \
                 VALUES (?1, ?2, ?3, 0, ?4)",
                params![id, user, size, now],
            )
            .map_err(store::StoreError::from))?;
        Ok(json!({"p": format!("{base}fa/{id}")}))
    }

    /// `pfa`: attaches attributes to a file the session owns (as the SDK, which otherwise
    /// gets EACCESS and marks the node); answers the whole new list.
    pub(crate) fn pfa(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let node = self.node_for(sess, s(cmd, "n"), shares::FULL)?;
        if node.kind != FILE || node.owner != sess.user.handle {
            return Err(err::EACCESS);
        }
        let given = s(cmd, "fa").ok_or(err::EARGS)?;
        let fa = self.merge_fa(&node.fa, given, &sess.user.handle)?;
        db(self
            .db
            .execute(
                "UPDATE nodes SET fa = ?1 WHERE handle = ?2",
                params![fa, node.handle],
            )
            .map_err(store::StoreError::from))?;
        let packet = Self::packet("fa", cmd, json!({"n": node.handle, "fa": fa}));
        self.emit_to(&self.viewers(&node)?, |_| Ok(vec![packet.clone()]))?;
        Ok(json!(fa))
    }
}

/// `mc`: the media codec list, `[version, [containers, video codecs, audio codecs, short
/// formats]]`, names as MediaInfo gives them (codec ids and format names). The ids are this
/// server's own (the real list's are not published); clients use whatever the list says.
/// It holds the `mp42:avc1:mp4a-40-2` row the webclient checks for.
pub(crate) fn media_codecs() -> Value {
    json!([
        3,
        [
            [
                [1, "mp42"],
                [2, "isom"],
                [3, "qt  "],
                [4, "M4V "],
                [5, "MPEG-4"],
                [6, "Matroska"],
                [7, "WebM"],
                [8, "AVI"],
                [9, "MPEG-TS"],
                [10, "Ogg"],
                [11, "3gp4"],
                [12, "3gp5"],
                [13, "iso5"],
                [14, "avc1"],
                [15, "Wave"],
                [16, "FLAC"],
                [17, "MPEG Audio"],
                [18, "M4A "]
            ],
            [
                [1, "avc1"],
                [2, "hvc1"],
                [3, "hev1"],
                [4, "av01"],
                [5, "vp09"],
                [6, "V_MPEG4/ISO/AVC"],
                [7, "V_MPEGH/ISO/HEVC"],
                [8, "V_VP8"],
                [9, "V_VP9"],
                [10, "V_AV1"],
                [11, "AVC"],
                [12, "HEVC"],
                [13, "VP8"],
                [14, "VP9"],
                [15, "AV1"],
                [16, "MPEG-4 Visual"],
                [17, "mp4v-20"]
            ],
            [
                [1, "mp4a-40-2"],
                [2, "mp4a-40-5"],
                [3, "mp4a-40-29"],
                [4, "mp4a-6B"],
                [5, "Opus"],
                [6, "A_OPUS"],
                [7, "A_VORBIS"],
                [8, "A_AAC-2"],
                [9, "AAC"],
                [10, "Vorbis"],
                [11, "MPEG Audio"],
                [12, "ac-3"],
                [13, "AC-3"],
                [14, "FLAC"],
                [15, "PCM"]
            ],
            [
                ["1", "1", "1", "1"],
                ["2", "2", "1", "1"],
                ["3", "1", "1", "0"],
                ["4", "2", "1", "0"],
                ["5", "7", "9", "6"],
                ["6", "7", "9", "0"],
                ["7", "7", "8", "7"],
                ["8", "3", "1", "1"],
                ["9", "13", "1", "1"],
                ["10", "2", "2", "1"],
                ["11", "18", "0", "1"]
            ]
        ]
    ])
}

/// What a slot is for.
struct Slot {
    user: String,
    /// Bytes to store; -1: a fetch.
    size: i64,
    streamed: bool,
    created: i64,
}

fn reply(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

/// `POST /fa/<id>[/<type>]`.
pub(crate) async fn post(
    state: AxState<Arc<State>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    serve(&state.0, &id, &body)
}

pub(crate) async fn post_typed(
    state: AxState<Arc<State>>,
    Path((id, _kind)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    serve(&state.0, &id, &body)
}

fn serve(state: &State, id: &str, body: &[u8]) -> Response {
    if let crate::faults::Fault::Http503 = state.faults.next_file_attr() {
        return crate::http::status_response(StatusCode::SERVICE_UNAVAILABLE);
    }
    let db = state.store.lock();
    let slot = db
        .query_row(
            "SELECT user, size, streamed, created FROM fa_slots WHERE id = ?1",
            [id],
            |r| {
                Ok(Slot {
                    user: r.get(0)?,
                    size: r.get(1)?,
                    streamed: r.get(2)?,
                    created: r.get(3)?,
                })
            },
        )
        .optional();
    let slot = match slot {
        Ok(Some(s)) => s,
        Ok(None) => return reply(StatusCode::NOT_FOUND, ""),
        Err(_) => return reply(StatusCode::INTERNAL_SERVER_ERROR, ""),
    };
    let limits = &state.config.limits;
    let lifetime = if slot.size < 0 {
        limits.url_lifetime
    } else {
        limits.upload_lifetime
    };
    if store::now() - slot.created > lifetime.as_secs() as i64 {
        let _ = db.execute("DELETE FROM fa_slots WHERE id = ?1", [id]);
        return reply(StatusCode::FORBIDDEN, "");
    }
    if slot.size >= 0 {
        // A store: exactly the announced bytes, once.
        if body.len() as i64 != slot.size {
            return reply(StatusCode::OK, err::EARGS.to_string());
        }
        let handle = crypto::random_bytes::<8>();
        let stored = db
            .execute(
                "INSERT INTO file_attrs (handle, owner, data, created, attached) \
                 VALUES (?1, ?2, ?3, ?4, 0)",
                params![crypto::b64e(&handle), slot.user, body, store::now()],
            )
            .and_then(|_| db.execute("DELETE FROM fa_slots WHERE id = ?1", [id]));
        return match stored {
            Ok(_) => reply(StatusCode::OK, handle.to_vec()),
            Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, ""),
        };
    }
    // A fetch: the raw handles asked for, the known ones answered.
    if body.is_empty() || body.len() % 8 != 0 || body.len() / 8 > MAX_FETCH {
        return reply(StatusCode::BAD_REQUEST, "");
    }
    let mut found: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for h in body.chunks_exact(8) {
        let data: Option<Vec<u8>> = db
            .query_row(
                "SELECT data FROM file_attrs WHERE handle = ?1",
                [crypto::b64e(h)],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None);
        if let Some(d) = data {
            if !found.iter().any(|(x, _)| *x == h) {
                found.push((h, d));
            }
        }
    }
    drop(db);
    let mut out = Vec::new();
    if slot.streamed {
        for (h, d) in &found {
            out.extend_from_slice(h);
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            out.extend_from_slice(d);
        }
    } else {
        let mut offset = found.len() * 12;
        for (h, d) in &found {
            out.extend_from_slice(h);
            out.extend_from_slice(&(offset as u32).to_le_bytes());
            offset += d.len();
        }
        for (_, d) in &found {
            out.extend_from_slice(d);
        }
    }
    reply(StatusCode::OK, out)
}

/// Removes expired slots and blobs stored but never attached once their slot's lifetime
/// passed.
pub(crate) fn sweep(db: &rusqlite::Connection, url_lifetime: i64, upload_lifetime: i64) {
    let now = store::now();
    let _ = db.execute(
        "DELETE FROM fa_slots WHERE (size < 0 AND created < ?1) OR created < ?2",
        params![now - url_lifetime, now - upload_lifetime],
    );
    let _ = db.execute(
        "DELETE FROM file_attrs WHERE attached = 0 AND created < ?1",
        [now - upload_lifetime],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_both_forms_and_render_with_a_cluster() {
        let h = crypto::b64e(&[7u8; 8]);
        let e = entries(&format!("0*{h}/905:1*{h}")).expect("parses");
        assert_eq!(e, vec![(0, h.clone()), (1, h.clone())]);
        let out = render(&e);
        assert_eq!(out, format!("907:0*{h}/907:1*{h}"));
        assert_eq!(entries(&out), Some(e));
        for bad in [
            "0*short",
            "x:0*AAAAAAAAAAA",
            "0-AAAAAAAAAAA",
            "999*AAAAAAAAAAA",
        ] {
            assert_eq!(entries(bad), None, "{bad}");
        }
    }
}
