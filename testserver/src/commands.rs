//! The `/cs` commands (`MEGA-PROTOCOL.md` §4–§8): login, account info, the node tree, transfers
//! slots, mutations and links. Each command answers a JSON value or a negative error number;
//! mutations append action packets to the account's event log, carrying the command's `i`.
//!
//! Isolation: every node a command touches is checked to belong to the session's account.
//! Atomicity: each command runs in one SQLite transaction ([`run`]); one that fails changes
//! nothing, and what happens outside the database (waking pollers, removing blobs, forgetting
//! a logged-out session's replies) happens only after it committed.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use crate::contacts::ContactQueries;
use crate::guard::ct_eq;
use crate::shares::{self, ShareQueries};
use crate::store::{self, sid_hash, Node, Queries, User, FILE, FOLDER};
use crate::{crypto, new_node_handle, State};

/// MEGA error codes used here.
pub(crate) mod err {
    pub const EINTERNAL: i64 = -1;
    pub const EARGS: i64 = -2;
    pub const ERATELIMIT: i64 = -4;
    pub const ETOOMANY: i64 = -6;
    pub const EEXPIRED: i64 = -8;
    pub const EEXIST: i64 = -12;
    pub const ENOENT: i64 = -9;
    pub const ECIRCULAR: i64 = -10;
    pub const EACCESS: i64 = -11;
    pub const EOVERQUOTA: i64 = -17;
    pub const ESID: i64 = -15;
    pub const EBLOCKED: i64 = -16;
    pub const EMFAREQUIRED: i64 = -26;
}

pub(crate) struct Session {
    pub sid: String,
    pub user: User,
    pub sek: String,
    /// The request's User-Agent (at most 256 characters).
    pub agent: String,
}

pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a State,
    /// The command's transaction.
    pub(crate) db: &'a Connection,
    session: Option<&'a Session>,
    /// The public handle of a folder link (`&n=` in the query): `f` and `g` then work on the
    /// exported folder, without a session.
    folder_link: Option<&'a str>,
    /// The client's address (login throttling).
    peer: Option<IpAddr>,
    effects: &'a RefCell<Effects>,
}

/// What a command does outside the database, once it committed.
#[derive(Default)]
struct Effects {
    /// An account's event log grew: wake the pollers.
    notify: bool,
    /// Blob files no node refers to any more.
    blobs: Vec<String>,
    /// A session ended (its hash): forget its cached replies.
    logout: Option<String>,
}

/// A command that failed: nothing it did is kept.
struct Rejected(i64);

impl From<store::StoreError> for Rejected {
    fn from(e: store::StoreError) -> Self {
        tracing::error!("store: {e}");
        Rejected(err::EINTERNAL)
    }
}

/// Runs one command in its own transaction and answers its reply (or error code), as JSON
/// text.
pub(crate) fn run(
    state: &State,
    session: Option<&Session>,
    folder_link: Option<&str>,
    peer: Option<IpAddr>,
    cmd: &Value,
) -> String {
    if let Some(a) = cmd.get("a").and_then(Value::as_str) {
        state.stats.count(a);
        if state.faults.unknown(a) {
            return err::EINTERNAL.to_string();
        }
    }
    let effects = RefCell::new(Effects::default());
    let r = state.store.atomic(|db| {
        let ctx = Ctx {
            state,
            db,
            session,
            folder_link,
            peer,
            effects: &effects,
        };
        ctx.run_text(cmd).map_err(Rejected)
    });
    match r {
        Ok(v) => {
            let e = effects.into_inner();
            if e.notify {
                state.events.notify_waiters();
            }
            state.store.remove_blobs(&e.blobs);
            if let Some(h) = e.logout {
                state
                    .replies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drop_session(&h);
            }
            v
        }
        Err(Rejected(code)) => code.to_string(),
    }
}

pub(crate) type CmdResult = Result<Value, i64>;

pub(crate) fn s<'v>(c: &'v Value, k: &str) -> Option<&'v str> {
    c.get(k).and_then(Value::as_str)
}

pub(crate) fn i(c: &Value, k: &str) -> Option<i64> {
    match c.get(k) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Encodes an event sequence number as an `sn` string (8 bytes, base64url).
pub(crate) fn encode_sn(seq: i64) -> String {
    crypto::b64e(&(seq as u64).to_be_bytes())
}

pub(crate) fn decode_sn(sn: &str) -> Option<i64> {
    let b: [u8; 8] = crypto::b64d(sn)?.try_into().ok()?;
    Some(u64::from_be_bytes(b) as i64)
}

pub(crate) fn db<T>(r: Result<T, store::StoreError>) -> Result<T, i64> {
    r.map_err(|e| {
        tracing::error!("store: {e}");
        err::EINTERNAL
    })
}

/// What an element of `p` is called by the others (`p`) and by `cr`: its `h`, or for an
/// import its `ph`.
fn label(n: &Value) -> &str {
    s(n, "h").or_else(|| s(n, "ph")).unwrap_or_default()
}

/// The length of a node handle in base64url (6 bytes); an upload token is longer.
const NODE_HANDLE_LEN: usize = 8;

/// The largest upload size accepted: 2^53 − 1, the largest integer a JSON number carries
/// exactly (what MEGA's JavaScript client can state).
const MAX_FILE_SIZE: i64 = (1 << 53) - 1;

/// Is `s` a base64url string of at most `max` characters?
pub(crate) fn valid_b64(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && crypto::b64d(s).is_some()
}

impl Ctx<'_> {
    /// The reply as JSON text. An account's `f` is written straight as text, node by node:
    /// with a million nodes, a `Value` of it would take gigabytes.
    fn run_text(&self, cmd: &Value) -> Result<String, i64> {
        match (s(cmd, "a"), self.session, self.folder_link) {
            (Some("f"), Some(sess), None) => self.f_text(sess),
            _ => self.run(cmd).map(|v| v.to_string()),
        }
    }

    fn run(&self, cmd: &Value) -> CmdResult {
        let Some(a) = s(cmd, "a") else {
            return Err(err::EARGS);
        };
        match a {
            "f" | "g" if self.folder_link.is_some() => self.folder_link_cmd(a, cmd),
            // A folder link's visitors fetch thumbnails too (never store them).
            "ufa" if self.folder_link.is_some() => self.ufa(cmd, None),
            "u" | "p" if self.folder_link.is_some() => self.link_write(a, cmd),
            "us0" => self.us0(cmd),
            "us" => self.us(cmd),
            "g" => self.g(cmd),
            "log" => Ok(json!(0)),
            "mc" => Ok(crate::fileattrs::media_codecs()),
            "mfag" => self.mfag(cmd),
            _ => match self.session {
                None => Err(err::EACCESS),
                Some(sess) => self.authed(a, cmd, sess),
            },
        }
    }

    fn authed(&self, a: &str, cmd: &Value, sess: &Session) -> CmdResult {
        match a {
            "ug" => self.ug(sess),
            // Why the account is blocked: a reason code, 0 if it is not.
            "whyamiblocked" => Ok(json!(sess.user.blocked)),
            "uq" => self.uq(sess),
            "sml" => {
                db(self.db.delete_session(&sess.sid))?;
                self.effects.borrow_mut().logout = Some(sid_hash(&sess.sid));
                Ok(json!(0))
            }
            // An account's "f" never gets here: `run_text` writes it as text.
            "u" => self.u(cmd, sess),
            "p" => self.p(cmd, sess),
            "m" => self.m(cmd, sess),
            "d" => self.d(cmd, sess),
            "a" => self.a(cmd, sess),
            "l" => self.l(cmd, sess),
            "s2" => self.s2(cmd, sess),
            "pk" => self.pk(cmd, sess),
            "upc" => self.upc(cmd, sess),
            "upca" => self.upca(cmd, sess),
            "ur2" => self.ur2(cmd, sess),
            "uk" => self.uk(cmd),
            // Accepted and ignored: key maintenance.
            "k" => Ok(json!(0)),
            "ufa" => self.ufa(cmd, Some(sess)),
            "pfa" => self.pfa(cmd, sess),
            "uga" => self.uga(cmd, sess),
            "up" | "up2" => self.up2(cmd, sess),
            "upv" => self.upv(cmd, sess),
            "dv" => self.dv(cmd, sess),
            "sp" => self.sp(cmd, sess),
            "sphb" => self.sphb(cmd, sess),
            "sr" => self.sr(cmd, sess),
            "sf" => self.sf(sess),
            _ => Err(err::EARGS),
        }
    }

    pub(crate) fn emit(&self, user: &str, packet: Value) -> Result<(), i64> {
        self.emit_all(user, &[packet])
    }

    /// Appends packets that belong together (a move's `d` + `t`) atomically.
    pub(crate) fn emit_all(&self, user: &str, packets: &[Value]) -> Result<(), i64> {
        db(self.db.append_events(user, packets))?;
        self.effects.borrow_mut().notify = true;
        Ok(())
    }

    /// Blobs to remove once the command committed.
    pub(crate) fn effects_blobs(&self, blobs: Vec<String>) {
        self.effects.borrow_mut().blobs.extend(blobs);
    }

    /// Builds an action packet with `a` first and `i` right after it (the SDK relies on it).
    pub(crate) fn packet(a: &str, cmd: &Value, rest: Value) -> Value {
        let mut m = Map::new();
        m.insert("a".into(), json!(a));
        if let Some(id) = s(cmd, "i") {
            m.insert("i".into(), json!(id));
        }
        if let Value::Object(r) = rest {
            m.extend(r);
        }
        Value::Object(m)
    }

    // ---- login ----

    fn us0(&self, cmd: &Value) -> CmdResult {
        let email = s(cmd, "user").ok_or(err::EARGS)?.trim().to_lowercase();
        match db(self.db.user_by_email(&email))? {
            Some(u) if u.version == 2 => {
                Ok(json!({"v": 2, "s": crypto::b64e(u.salt.as_deref().unwrap_or_default())}))
            }
            Some(_) => Ok(json!({"v": 1})),
            // An unknown e-mail looks like a v2 account, with a salt that is the same on every
            // request (the login then fails like a wrong password).
            None => Ok(json!({"v": 2, "s": crypto::b64e(&self.unknown_salt(&email)?)})),
        }
    }

    /// The salt `us0` shows for an e-mail without an account: stable, and meaningless without
    /// the server's secret.
    fn unknown_salt(&self, email: &str) -> Result<[u8; 32], i64> {
        use hmac::{Hmac, Mac};
        let mut m =
            Hmac::<sha2::Sha256>::new_from_slice(&self.state.secret).map_err(|_| err::EINTERNAL)?;
        m.update(b"us0 salt for ");
        m.update(email.as_bytes());
        Ok(m.finalize().into_bytes().into())
    }

    fn us(&self, cmd: &Value) -> CmdResult {
        let Some(email) = s(cmd, "user") else {
            // Session check / resume: the sid is in the query string.
            let sess = self.session.ok_or(err::ESID)?;
            return Ok(json!({
                "k": sess.user.k, "privk": sess.user.privk, "u": sess.user.handle,
                "ach": 1, "sek": sess.sek,
            }));
        };
        let uh = s(cmd, "uh").ok_or(err::EARGS)?;
        let email = email.trim().to_lowercase();
        let limits = &self.state.config.limits;
        let throttle = &self.state.throttle;
        // Too many failures lately, for this account or from this address: refused before
        // anything is checked, the right password included.
        if throttle.blocked(&email, self.peer, limits) {
            return Err(err::ERATELIMIT);
        }
        let failed = |code: i64| {
            throttle.failed(&email, self.peer, limits);
            Err(code)
        };
        let Some(user) = db(self.db.user_by_email(&email))? else {
            return failed(err::ENOENT);
        };
        let Some(presented) = crypto::b64d(uh) else {
            return failed(err::ENOENT);
        };
        let ok = if user.version == 1 {
            ct_eq(&presented, &user.verifier)
        } else {
            ct_eq(&crypto::v2_verifier(&presented), &user.verifier)
        };
        if !ok {
            return failed(err::ENOENT);
        }
        if let Some(secret) = &user.totp_secret {
            let code = match cmd.get("mfa") {
                Some(Value::String(c)) => c.clone(),
                Some(Value::Number(n)) => n.to_string(),
                // Asking for the code is not a failure.
                _ => return Err(err::EMFAREQUIRED),
            };
            let step = store::now() / 30;
            // The previous, current and next 30 s step (clock skew); each code works once.
            let matched = [step - 1, step, step + 1].into_iter().find(|&s| {
                crypto::totp(secret, (s * 30) as u64)
                    .is_some_and(|c| ct_eq(c.as_bytes(), code.trim().as_bytes()))
            });
            let fresh = match matched {
                Some(s) => db(self.db.use_totp_step(&user.handle, s))?,
                None => false,
            };
            if !fresh {
                return failed(err::EMFAREQUIRED);
            }
        }
        throttle.succeeded(&email);
        let sek = match s(cmd, "sek") {
            Some(k) if crypto::b64d(k).is_some_and(|b| b.len() == 16) => k.to_string(),
            _ => crypto::b64e(&crypto::random_bytes::<16>()),
        };
        let sid_raw = crypto::make_sid(&user.handle);
        let sid = crypto::b64e(&sid_raw);
        let pubk = crypto::b64d(&user.pubk).ok_or(err::EINTERNAL)?;
        let csid = crypto::make_csid(&sid_raw, &pubk).ok_or(err::EINTERNAL)?;
        db(self.db.insert_session(&sid, &user.handle, &sek))?;
        Ok(json!({
            "csid": crypto::b64e(&csid), "privk": user.privk, "k": user.k,
            "u": user.handle, "ach": 1, "sek": sek,
        }))
    }

    /// Whether an account needs a 2FA code; an unknown e-mail answers like an account
    /// without 2FA.
    fn mfag(&self, cmd: &Value) -> CmdResult {
        let email = s(cmd, "e").ok_or(err::EARGS)?.to_lowercase();
        let u = db(self.db.user_by_email(&email))?;
        Ok(json!(i64::from(u.is_some_and(|u| u.totp_secret.is_some()))))
    }

    fn ug(&self, sess: &Session) -> CmdResult {
        let u = &sess.user;
        let (first, last) = u.name.split_once(' ').unwrap_or((&u.name, ""));
        let mut reply = json!({
            "u": u.handle, "s": 1, "email": u.email, "name": u.name, "k": u.k, "c": 1,
            "pubk": u.pubk, "privk": u.privk, "ts": u.ts, "since": u.since,
            "firstname": crypto::b64e(first.as_bytes()), "lastname": crypto::b64e(last.as_bytes()),
        });
        if let Some(m) = reply.as_object_mut() {
            m.extend(self.ug_attrs(sess)?);
        }
        Ok(reply)
    }

    /// A user by handle or e-mail address.
    pub(crate) fn user_by_handle_or_email(&self, u: &str) -> Result<Option<User>, i64> {
        if u.contains('@') {
            db(self.db.user_by_email(&u.trim().to_lowercase()))
        } else {
            db(self.db.user(u))
        }
    }

    /// Whether two users are related (they share a folder, either way: contacts), which
    /// lets one read the other's protected (`#`) attributes.
    pub(crate) fn related(&self, a: &str, b: &str) -> Result<bool, i64> {
        Ok(a == b || db(self.db.share_peers(a, b))? || db(self.db.is_contact(a, b))?)
    }

    fn uq(&self, sess: &Session) -> CmdResult {
        let (used, per_root) = db(self.db.usage(&sess.user))?;
        let mut r = json!({
            "mstrg": sess.user.quota, "cstrg": used, "cstrgn": per_root,
            "caxfer": 0, "csxfer": 0, "srvratio": 0, "utype": 0,
        });
        let own = sess.user.xfer_quota;
        match (self.state.meter.enabled(), self.peer) {
            // An account with its own allowance (a paid plan): the allowance and its use.
            _ if own > 0 => {
                let used = self
                    .state
                    .meter
                    .account_used(&sess.user.handle, store::now() as u64);
                r["mxfer"] = json!(own);
                r["caxfer"] = json!(used);
                r["utype"] = json!(1);
            }
            // A free account under the transfer quota: its address's hourly buckets.
            (true, Some(ip)) => {
                if let (Some(m), Value::Object(f)) = (
                    r.as_object_mut(),
                    self.state.meter.uq_fields(ip, store::now() as u64),
                ) {
                    m.extend(f);
                }
            }
            // No limit: a transfer allowance no one reaches.
            _ => r["mxfer"] = json!(10_i64 * 1024 * 1024 * 1024 * 1024 * 1024),
        }
        Ok(r)
    }

    // ---- tree ----

    /// The account's tree (`f`) as JSON text: the account's own nodes are rendered one at a
    /// time into the text (the list of nodes and the text are all it holds at once), then the
    /// small parts (shares, keys, users, contacts) are added. Members in the order a JSON
    /// object of them would have (sorted).
    fn f_text(&self, sess: &Session) -> Result<String, i64> {
        /// Appends one element to a JSON array being written (`first`: nothing in it yet).
        fn append(out: &mut String, first: &mut bool, v: &Value) {
            if !std::mem::take(first) {
                out.push(',');
            }
            out.push_str(&v.to_string());
        }
        let me = &sess.user.handle;
        let nodes = db(self.db.nodes_of(me))?;
        // Current nodes go straight into the reply; previous versions (few) wait beside it.
        let mut text = String::from("{\"f\":[");
        let (mut f2, mut first, mut first2) = (String::new(), true, true);
        self.for_each_rendered(&nodes, me, |v, version| {
            if version {
                append(&mut f2, &mut first2, &v)
            } else {
                append(&mut text, &mut first, &v)
            }
        })?;
        drop(nodes);
        let mut rest = self.f_rest(sess)?;
        let mut more = |key: &str, out: &mut String, first: &mut bool| {
            if let Some(Value::Array(vs)) = rest.remove(key) {
                for v in &vs {
                    append(out, first, v);
                }
            }
        };
        more("f", &mut text, &mut first);
        more("f2", &mut f2, &mut first2);
        text.push_str("],\"f2\":[");
        text.push_str(&f2);
        text.push(']');
        for (k, v) in rest {
            text.push(',');
            text.push_str(&Value::String(k).to_string());
            text.push(':');
            text.push_str(&v.to_string());
        }
        text.push('}');
        Ok(text)
    }

    /// Everything of `f` but the account's own nodes: nodes of incoming shares (`f`, `f2`),
    /// share keys, shares, pending shares and contacts, users, the cursor.
    fn f_rest(&self, sess: &Session) -> Result<serde_json::Map<String, Value>, i64> {
        let seq = db(self.db.last_seq(&sess.user.handle))?;
        let shares = db(self.db.shares_of(&sess.user.handle))?;
        let ok: Vec<Value> = shares
            .iter()
            .map(|(h, ok, ha)| json!({"h": h, "ha": ha, "k": ok}))
            .collect();
        let s: Vec<Value> = shares
            .iter()
            .map(|(h, _, _)| json!({"h": h, "u": "EXP", "r": 0, "ts": store::now()}))
            .collect();
        let (f, f2, user_shares, users) = self.f_shares(sess)?;
        let mut s = s;
        s.extend(user_shares);
        let (ps, mut opc) = self.f_pending(sess)?;
        let (invited, ipc) = self.f_invitations(sess)?;
        // A pending share's contact request is listed once (from the invitations).
        opc.retain(|o| !invited.iter().any(|i| i["p"] == o["p"]));
        opc.extend(invited);
        let mut users = users;
        for (other, c) in self.f_contacts(sess)? {
            match users.iter_mut().find(|u| u["u"] == json!(other)) {
                Some(u) => u["c"] = json!(c),
                None => {
                    if let Some(u) = db(self.db.user(&other))? {
                        let mut obj = shares::user_object(&u);
                        obj["c"] = json!(c);
                        users.push(obj);
                    }
                }
            }
        }
        match json!({
            "f": f, "f2": f2,
            "ok": ok, "ok0": ok, "s": s, "ps": ps, "opc": opc, "ipc": ipc, "u": users,
            "sn": encode_sn(seq),
        }) {
            Value::Object(m) => Ok(m),
            _ => Err(err::EINTERNAL),
        }
    }

    /// A node of this account, or ENOENT (also for other accounts' nodes: no probing).
    pub(crate) fn own_node(&self, sess: &Session, h: Option<&str>) -> Result<Node, i64> {
        let h = h.ok_or(err::EARGS)?;
        match db(self.db.node(h))? {
            Some(n) if n.owner == sess.user.handle => Ok(n),
            _ => Err(err::ENOENT),
        }
    }

    // ---- transfers ----

    fn g(&self, cmd: &Value) -> CmdResult {
        let (node, issuer) = if let Some(ph) = s(cmd, "p") {
            let h = db(self.db.node_for_link(ph))?.ok_or(err::ENOENT)?;
            self.link_live(ph)?;
            let node = db(self.db.node(&h))?.ok_or(err::ENOENT)?;
            (node, format!("link:{ph}"))
        } else {
            let sess = self.session.ok_or(err::EACCESS)?;
            let n = self.node_for(sess, s(cmd, "n"), shares::READ)?;
            (n, sid_hash(&sess.sid))
        };
        self.g_node(&node, cmd, &issuer)
    }

    /// The account a download counts against, when it has its own allowance.
    fn metered_account(&self) -> Option<(String, u64)> {
        self.session
            .filter(|s| s.user.xfer_quota > 0)
            .map(|s| (s.user.handle.clone(), s.user.xfer_quota as u64))
    }

    /// File info, and a download URL when `g` is 1; the URL works while `issuer` (a session
    /// hash, `link:<ph>` or `folder:<ph>`) does, for the configured URL lifetime.
    fn g_node(&self, node: &Node, cmd: &Value, issuer: &str) -> CmdResult {
        if node.kind != FILE {
            return Err(err::EACCESS);
        }
        // Over the transfer quota (the account's own, else the address's): no URL, and the
        // seconds until there is quota again.
        let now = store::now() as u64;
        let account = self.metered_account();
        let over = match (&account, self.peer) {
            (Some((who, allowance)), _) => self.state.meter.over_account(who, *allowance, now),
            (None, Some(ip)) => self.state.meter.over(ip, now),
            (None, None) => None,
        };
        if let Some(wait) = over {
            return Ok(json!({"s": node.size, "at": node.attrs, "e": err::EOVERQUOTA, "tl": wait}));
        }
        let mut r = json!({"s": node.size, "at": node.attrs, "msd": 1, "tl": 0});
        if i(cmd, "g") == Some(1) {
            let id = crypto::b64e(&crypto::random_bytes::<18>());
            let blob = node.blob.clone().ok_or(err::EINTERNAL)?;
            db(self.db.insert_download(&id, &blob, node.size, issuer))?;
            if let Some((who, allowance)) = &account {
                self.state.meter.bind(&id, who, *allowance);
            }
            r["g"] = json!(format!("{}dl/{}", self.state.base_url, id));
        }
        Ok(r)
    }

    /// An upload slot for `s` bytes. Open slots reserve their size: the stored bytes, the
    /// open slots and this one must fit the quota (in checked arithmetic), and an account
    /// has a bounded number of open slots.
    fn u(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let size = i(cmd, "s")
            .filter(|s| (0..=MAX_FILE_SIZE).contains(s))
            .ok_or(err::EARGS)?;
        let user = &sess.user.handle;
        let used = db(self.db.used_bytes(user))?;
        let (open, reserved) = db(self.db.open_uploads(user))?;
        if open >= self.state.config.limits.max_open_uploads {
            return Err(err::ETOOMANY);
        }
        let fits = used
            .checked_add(reserved)
            .and_then(|b| b.checked_add(size))
            .is_some_and(|b| b <= sess.user.quota);
        if !fits {
            return Err(err::EOVERQUOTA);
        }
        let id = crypto::b64e(&crypto::random_bytes::<18>());
        let version = i(cmd, "v").unwrap_or(0);
        db(self.state.store.insert_upload(
            self.db,
            &id,
            user,
            size,
            version,
            &sid_hash(&sess.sid),
        ))?;
        Ok(json!({"p": format!("{}ul/{}", self.state.base_url, id)}))
    }

    fn p(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let parent = self.node_for(sess, s(cmd, "t"), shares::WRITE)?;
        if parent.kind == FILE {
            return Err(err::EACCESS);
        }
        self.vault_guard(cmd, &[&parent])?;
        let list = cmd.get("n").and_then(Value::as_array).ok_or(err::EARGS)?;
        if list.is_empty() {
            return Err(err::EARGS);
        }
        // Validate everything first so that a bad element creates nothing.
        let mut planned = Vec::new();
        let mut quota_needed = 0;
        // The `h` of each element so far and whether it makes a folder: a later element's
        // `p` names one of them as its parent (the SDK copies a folder tree in one `p`).
        let mut labels: Vec<(&str, bool)> = Vec::new();
        // Upload tokens named so far: each makes one node.
        let mut tokens: HashSet<&str> = HashSet::new();
        // Elements that make no node, with why (`e` of the reply): as MEGA does, one bad
        // upload token does not fail the other elements.
        let mut refused: BTreeMap<usize, i64> = BTreeMap::new();
        for (index, n) in list.iter().enumerate() {
            let kind = i(n, "t").ok_or(err::EARGS)?;
            let attrs = s(n, "a").ok_or(err::EARGS)?;
            let key = s(n, "k").ok_or(err::EARGS)?;
            if !valid_b64(attrs, crate::crypto::MAX_ATTR_B64) || !valid_b64(key, 64) {
                return Err(err::EARGS);
            }
            // A copy or an import keeps its source's file attributes; an upload names its
            // own (`fa`).
            let mut fa = String::new();
            let source = match kind {
                FOLDER => None,
                FILE => {
                    if let Some(ph) = s(n, "ph") {
                        let src = self.importable(ph)?;
                        if src.kind != FILE {
                            return Err(err::EACCESS);
                        }
                        fa = src.fa.clone();
                        quota_needed += src.size;
                        Some((src.blob.clone().ok_or(err::EINTERNAL)?, src.size, None))
                    } else {
                        let h = s(n, "h").ok_or(err::EARGS)?;
                        if h.len() == NODE_HANDLE_LEN {
                            // A copy of a file this user can read: same content, same key.
                            let src = self.node_for(sess, Some(h), shares::READ)?;
                            if src.kind != FILE {
                                return Err(err::EACCESS);
                            }
                            fa = src.fa.clone();
                            quota_needed += src.size;
                            Some((src.blob.clone().ok_or(err::EINTERNAL)?, src.size, None))
                        } else {
                            // Checked here, used up below: a token shown by another
                            // account stays good for its owner.
                            let fresh = tokens.insert(h);
                            match db(self.db.token(h))? {
                                Some((_, _, owner)) if owner != sess.user.handle => {
                                    refused.insert(index, err::EACCESS);
                                }
                                Some(_) if fresh => {}
                                _ => {
                                    refused.insert(index, err::ENOENT);
                                }
                            }
                            Some((String::new(), 0, Some(h.to_string())))
                        }
                    }
                }
                _ => return Err(err::EARGS),
            };
            if let Some(given) = s(n, "fa") {
                if kind != FILE {
                    return Err(err::EARGS);
                }
                fa = self.merge_fa(&fa, given, &sess.user.handle)?;
            }
            // `p`: the parent is an earlier element of this request (a folder).
            let nested = match s(n, "p") {
                None => None,
                Some(p) => Some(
                    labels
                        .iter()
                        .rposition(|(l, folder)| *l == p && *folder)
                        .ok_or(err::EARGS)?,
                ),
            };
            labels.push((label(n), kind == FOLDER));
            // `ov`: the file this one supersedes (a new version of it).
            let old = match s(n, "ov") {
                Some(ov) if kind == FILE && nested.is_none() => {
                    Some(self.superseded(sess, ov, &parent)?)
                }
                _ => None,
            };
            if old.as_ref().is_some_and(|o| o.owner != parent.owner) {
                return Err(err::EACCESS);
            }
            planned.push((
                kind,
                attrs.to_string(),
                key.to_string(),
                source,
                old,
                nested,
                fa,
            ));
        }
        if refused.len() == list.len() {
            // Nothing to make: the request fails, with the first element's reason.
            return Err(refused.values().next().copied().unwrap_or(err::EARGS));
        }
        let keep_versions = self.versioning_on(cmd, sess, &parent)?;
        if quota_needed > 0 {
            let used = db(self.db.used_bytes(&sess.user.handle))?;
            if used + quota_needed > sess.user.quota {
                return Err(err::EOVERQUOTA);
            }
        }
        let mut created = Vec::new();
        // What the client called each new node (token or "xxxxxxxx"), for `cr`.
        let mut names: Vec<(String, String)> = Vec::new();
        let mut new_nodes = Vec::new();
        // The handle each element made, by element (none for a refused one).
        let mut made: Vec<Option<String>> = Vec::new();
        let mut removals = Vec::new();
        for (i, (kind, attrs, key, source, old, nested, fa)) in planned.into_iter().enumerate() {
            if refused.contains_key(&i) {
                made.push(None);
                // Named for `cr` (positions count it), with no node: its keys are skipped.
                let h = list.get(i).map(label).unwrap_or_default();
                names.push((h.to_string(), String::new()));
                continue;
            }
            let (blob, size) = match source {
                None => (None, 0),
                Some((blob, size, None)) => (Some(blob), size),
                Some((_, _, Some(token))) => {
                    let (blob, size, _) = db(self.db.token(&token))?.ok_or(err::ENOENT)?;
                    db(self.db.use_token(&token))?;
                    (Some(blob), size)
                }
            };
            // In a share, the node belongs to the share owner's tree and is created by us.
            let creator = if parent.owner == sess.user.handle {
                String::new()
            } else {
                sess.user.handle.clone()
            };
            let node = Node {
                handle: new_node_handle(),
                owner: parent.owner.clone(),
                creator,
                parent: match nested {
                    Some(j) => made.get(j).cloned().flatten().ok_or(err::EINTERNAL)?,
                    None => parent.handle.clone(),
                },
                kind,
                attrs,
                key,
                size,
                ts: store::now(),
                blob,
                fa,
            };
            db(self.db.insert_node(&node))?;
            if let Some(old) = old {
                removals.extend(self.supersede(cmd, sess, &node, &old, keep_versions)?);
            }
            let h = list.get(i).map(label).unwrap_or_default();
            names.push((h.to_string(), node.handle.clone()));
            made.push(Some(node.handle.clone()));
            new_nodes.push(node);
        }
        if let Some(cr) = cmd.get("cr") {
            self.apply_cr(sess, cr, &names)?;
        }
        // The new nodes with the versions they took over (in `f2`), after the `d` of each
        // superseded file.
        // (A nested node comes with its top one's subtree.)
        let mut delivered = Vec::new();
        for n in &new_nodes {
            if n.parent == parent.handle {
                delivered.extend(db(self.db.subtree(&n.handle))?);
            }
            created.push(self.render(n, &sess.user.handle)?);
        }
        let user = &sess.user.handle;
        self.emit_to(&self.viewers(&parent)?, |v| {
            let mut packets = removals.clone();
            packets.push(self.tree_packet(cmd, user, v, &delivered)?);
            Ok(packets)
        })?;
        if refused.is_empty() {
            return Ok(json!({"f": created}));
        }
        // Only the elements that failed, by position (`{"1":-9}`).
        let e: Map<String, Value> = refused
            .iter()
            .map(|(i, code)| (i.to_string(), json!(code)))
            .collect();
        Ok(json!({"f": created, "e": e}))
    }

    /// `EEXPIRED` once the link `ph` is past its expiry (`ets` of `l`).
    fn link_live(&self, ph: &str) -> Result<(), i64> {
        let ets = db(self.db.link_expiry(ph))?;
        if ets > 0 && store::now() >= ets {
            return Err(err::EEXPIRED);
        }
        Ok(())
    }

    /// What a `ph` in `p` imports: the node of a public link (a file link), or a node inside
    /// an exported folder by its handle (a folder link's content, as the SDK imports it).
    fn importable(&self, ph: &str) -> Result<Node, i64> {
        if let Some(h) = db(self.db.node_for_link(ph))? {
            self.link_live(ph)?;
            return db(self.db.node(&h))?.ok_or(err::ENOENT);
        }
        let n = db(self.db.node(ph))?.ok_or(err::ENOENT)?;
        for a in self.lineage(&n)? {
            if a.kind != FOLDER {
                continue;
            }
            if let Some(link) = db(self.db.link_for_node(&a.handle))? {
                self.link_live(&link)?;
                return Ok(n);
            }
        }
        Err(err::ENOENT)
    }

    // ---- mutations ----

    fn m(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let node = self.node_for(sess, s(cmd, "n"), shares::FULL)?;
        let target = self.node_for(sess, s(cmd, "t"), shares::WRITE)?;
        self.vault_guard(cmd, &[&node, &target])?;
        // Within one account's tree only (into or out of another user's share would move
        // storage between accounts); never the root of a share we received.
        if node.kind > FOLDER || node.owner != target.owner {
            return Err(err::EACCESS);
        }
        // A previous version moves only with its file; nothing goes into a file.
        if target.kind == FILE || self.is_version(&node)? {
            return Err(err::EACCESS);
        }
        let subtree = db(self.db.subtree(&node.handle))?;
        if subtree.iter().any(|n| n.handle == target.handle) {
            return Err(err::ECIRCULAR);
        }
        let before = self.viewers(&node)?;
        db(self.db.set_parent(&node.handle, &target.handle))?;
        if let Some(cr) = cmd.get("cr") {
            self.apply_cr(sess, cr, &[])?;
        }
        let moved = db(self.db.subtree(&node.handle))?;
        let after = self.viewers(&node)?;
        let user = &sess.user.handle;
        let mut all = before.clone();
        all.extend(after.iter().filter(|v| !before.contains(v)).cloned());
        // Who saw it before and after gets a move (`d` with `m` + `t`); who only saw it
        // before, a deletion; who only sees it now, new nodes.
        self.emit_to(&all, |v| {
            let (was, is) = (before.iter().any(|b| b == v), after.iter().any(|a| a == v));
            let mut d = json!({"n": node.handle, "ou": user});
            if is {
                d["m"] = json!(1);
            }
            let mut packets = Vec::new();
            if was {
                packets.push(Self::packet("d", cmd, d));
            }
            if is {
                packets.push(self.tree_packet(cmd, user, v, &moved)?);
            }
            Ok(packets)
        })?;
        Ok(json!(0))
    }

    fn d(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let h = s(cmd, "n").ok_or(err::EARGS)?;
        // A recipient deleting the root of a share it received leaves the share.
        if let Some(n) = db(self.db.node(h))? {
            let received = db(self.db.shares_on(h))?
                .iter()
                .any(|s| s.target == sess.user.handle);
            if received && n.owner != sess.user.handle {
                return self.leave_share(cmd, sess, &n);
            }
        }
        let node = self.node_for(sess, Some(h), shares::FULL)?;
        if node.kind > FOLDER {
            return Err(err::EACCESS);
        }
        self.vault_guard(cmd, &[&node])?;
        // `v: 1` on a file: that version only, the others stay.
        if node.kind == FILE && i(cmd, "v") == Some(1) {
            return self.delete_one_version(cmd, sess, &node);
        }
        let viewers = self.viewers(&node)?;
        let subtree = db(self.db.subtree(&node.handle))?;
        let orphaned = db(self.state.store.delete_nodes(self.db, &subtree))?;
        self.effects.borrow_mut().blobs.extend(orphaned);
        let user = &sess.user.handle;
        let d = Self::packet("d", cmd, json!({"n": node.handle, "ou": user}));
        self.emit_to(&viewers, |_| Ok(vec![d.clone()]))?;
        Ok(json!(0))
    }

    fn a(&self, cmd: &Value, sess: &Session) -> CmdResult {
        // Renaming and changing attributes need full access, as on the real service (the
        // SDK checks FULL before it sends `a`); a read-write member changes a file by adding
        // a version of it.
        let node = self.node_for(sess, s(cmd, "n"), shares::FULL)?;
        if node.kind > FOLDER {
            return Err(err::EACCESS);
        }
        self.vault_guard(cmd, &[&node])?;
        // The official name is `at`; rclone/go-mega, mega.py and mega-rs send `attr` (+ `key`,
        // which is ignored: keys cannot be changed this way).
        let at = s(cmd, "at").or_else(|| s(cmd, "attr")).ok_or(err::EARGS)?;
        if !valid_b64(at, crate::crypto::MAX_ATTR_B64) {
            return Err(err::EARGS);
        }
        db(self.db.set_attrs(&node.handle, at))?;
        let user = &sess.user.handle;
        let u = Self::packet(
            "u",
            cmd,
            json!({"n": node.handle, "u": node.user(), "at": at, "ts": store::now(), "ou": user}),
        );
        self.emit_to(&self.viewers(&node)?, |_| Ok(vec![u.clone()]))?;
        Ok(json!(0))
    }

    // ---- shares and folder links ----

    /// `s2`: share a folder with users (see [`shares`]) or export it to the pseudo-user
    /// `EXP` (folder links); without `r`, stop. Node keys for the share travel in `cr`.
    fn s2(&self, cmd: &Value, sess: &Session) -> CmdResult {
        // Only the owner shares (a member sees the node: EACCESS, not ENOENT).
        let node = self.node_for(sess, s(cmd, "n"), shares::OWNER)?;
        if node.kind != FOLDER {
            return Err(err::EACCESS);
        }
        let targets = cmd.get("s").and_then(Value::as_array).ok_or(err::EARGS)?;
        // Keys first: the recipient's `t` packet carries them.
        if let Some(cr) = cmd.get("cr") {
            self.apply_cr(sess, cr, &[])?;
        }
        for t in targets {
            if s(t, "u") != Some("EXP") {
                self.s2_user(cmd, sess, &node, t)?;
                continue;
            }
            let revoke = match t.get("r") {
                None | Some(Value::Null) => true,
                Some(Value::String(r)) => r.is_empty(),
                _ => false,
            };
            if revoke {
                db(self.db.delete_share(&node.handle))?;
                db(self.db.delete_link(&node.handle))?;
                continue;
            }
            let (ok, ha) = (
                s(cmd, "ok").ok_or(err::EARGS)?,
                s(cmd, "ha").ok_or(err::EARGS)?,
            );
            if !valid_b64(ok, 24) || !valid_b64(ha, 24) {
                return Err(err::EARGS);
            }
            db(self.db.put_share(&node.handle, &sess.user.handle, ok, ha))?;
        }
        Ok(json!(0))
    }

    /// Stores node keys wrapped by share keys from a `cr` ("crypto request") element:
    /// `[[share handles], [node handles or new-node names], [share idx, node idx, key, …]]`.
    fn apply_cr(&self, sess: &Session, cr: &Value, names: &[(String, String)]) -> Result<(), i64> {
        let (Some(shares), Some(nodes), Some(keys)) = (
            cr.get(0).and_then(Value::as_array),
            cr.get(1).and_then(Value::as_array),
            cr.get(2).and_then(Value::as_array),
        ) else {
            return Err(err::EARGS);
        };
        for triple in keys.chunks(3) {
            let [si, ni, key] = triple else {
                return Err(err::EARGS);
            };
            let (Some(si), Some(ni), Some(key)) = (si.as_u64(), ni.as_u64(), key.as_str()) else {
                return Err(err::EARGS);
            };
            let share = shares
                .get(si as usize)
                .and_then(Value::as_str)
                .ok_or(err::EARGS)?;
            // An empty node list means the indices are positions in the `p`'s `n` (the SDK).
            let named = if nodes.is_empty() {
                names.get(ni as usize).map(|(n, _)| n.as_str())
            } else {
                nodes.get(ni as usize).and_then(Value::as_str)
            }
            .ok_or(err::EARGS)?;
            let handle = names
                .iter()
                .find(|(n, _)| n == named)
                .map_or(named, |(_, h)| h.as_str());
            if handle.is_empty() {
                continue; // an element of the `p` that made no node (refused)
            }
            if !valid_b64(key, 64) {
                return Err(err::EARGS);
            }
            // A share the session owns or received, and a node it may write to.
            let share_node = self.node_for(sess, Some(share), shares::READ)?;
            self.node_for(sess, Some(handle), shares::WRITE)?;
            // Only keys for nodes inside the share are meaningful; ignore the rest.
            if db(self.db.is_within(handle, &share_node.handle))? {
                db(self.db.put_share_key(handle, &share_node.handle, key))?;
            }
        }
        Ok(())
    }

    /// The exported folder behind the `&n=` folder link.
    fn linked_folder(&self) -> Result<Node, i64> {
        let (ph, _) = self.link_parts().ok_or(err::EARGS)?;
        let h = db(self.db.node_for_link(ph))?.ok_or(err::ENOENT)?;
        self.link_live(ph)?;
        let node = db(self.db.node(&h))?.ok_or(err::ENOENT)?;
        if node.kind != FOLDER || !db(self.db.is_shared(&node.handle))? {
            return Err(err::ENOENT);
        }
        Ok(node)
    }

    /// The folder link of `&n=`: its public handle, and the write key that follows it for a
    /// writable link (`&n=<handle><key>`).
    fn link_parts(&self) -> Option<(&str, Option<&str>)> {
        let n = self.folder_link?;
        let ph = n.get(..NODE_HANDLE_LEN)?;
        Some((ph, n.get(NODE_HANDLE_LEN..).filter(|w| !w.is_empty())))
    }

    /// `u` and `p` through a writable folder link (`&n=<handle><write key>`, no session):
    /// run as the folder's owner, new nodes only inside the exported folder. A read-only
    /// link or a wrong key: EACCESS.
    fn link_write(&self, a: &str, cmd: &Value) -> CmdResult {
        let root = self.linked_folder()?;
        let (ph, key) = self.link_parts().ok_or(err::EARGS)?;
        let auth = db(self.db.link_auth(ph))?;
        match key {
            Some(k) if !auth.is_empty() && k == auth => {}
            _ => return Err(err::EACCESS),
        }
        if a == "p"
            && !db(self
                .db
                .is_within(s(cmd, "t").ok_or(err::EARGS)?, &root.handle))?
        {
            return Err(err::EACCESS);
        }
        let owner = db(self.db.user(&root.owner))?.ok_or(err::ENOENT)?;
        let sess = Session {
            sid: format!("link:{ph}"),
            user: owner,
            sek: String::new(),
            agent: String::new(),
        };
        match a {
            "u" => self.u(cmd, &sess),
            _ => self.p(cmd, &sess),
        }
    }

    /// `f` and `g` through a folder link: the folder's subtree with every node's key under
    /// the share key (`"<folder>:<key>"`), and downloads of files inside it. A visitor gets
    /// only what it needs: no owner handle, no parent of the shared folder, no event cursor
    /// of the owner's account.
    fn folder_link_cmd(&self, a: &str, cmd: &Value) -> CmdResult {
        let root = self.linked_folder()?;
        let issuer = format!(
            "folder:{}",
            self.link_parts().map(|(ph, _)| ph).unwrap_or_default()
        );
        if a == "g" {
            let h = s(cmd, "n").ok_or(err::EARGS)?;
            if !db(self.db.is_within(h, &root.handle))? {
                return Err(err::ENOENT);
            }
            let node = db(self.db.node(h))?.ok_or(err::ENOENT)?;
            return self.g_node(&node, cmd, &issuer);
        }
        let nodes = db(self.db.subtree(&root.handle))?;
        let flags = self.version_flags(&nodes)?;
        let (mut out, mut out2) = (Vec::new(), Vec::new());
        for (n, version) in nodes.iter().zip(flags) {
            let k = db(self.db.share_key(&n.handle, &root.handle))?
                .map(|k| format!("{}:{}", root.handle, k))
                .unwrap_or_default();
            let mut v = n.to_json_keyed(&k);
            if let Some(m) = v.as_object_mut() {
                m.remove("u");
                if n.handle == root.handle {
                    m.insert("p".into(), json!(""));
                }
            }
            if version {
                out2.push(v);
            } else {
                out.push(v);
            }
        }
        Ok(json!({"f": out, "f2": out2, "ok": [], "s": [], "u": []}))
    }

    fn l(&self, cmd: &Value, sess: &Session) -> CmdResult {
        // Only the owner exports (the SDK checks OWNER before it sends `l`).
        let node = self.node_for(sess, s(cmd, "n"), shares::OWNER)?;
        if node.kind > FOLDER {
            return Err(err::EACCESS);
        }
        let user = &sess.user.handle;
        if i(cmd, "d") == Some(1) {
            if let Some(ph) = db(self.db.link_for_node(&node.handle))? {
                db(self.db.delete_link(&node.handle))?;
                self.emit(
                    user,
                    Self::packet(
                        "ph",
                        cmd,
                        json!({"h": node.handle, "ph": ph, "d": 1, "ts": store::now()}),
                    ),
                )?;
            }
            return Ok(json!(0));
        }
        // `ets`: when the link expires (absolute Unix time, in the future); a link that
        // exists keeps its expiry unless `ets` changes it.
        let ets = match cmd.get("ets") {
            None => None,
            Some(_) => match i(cmd, "ets") {
                Some(t) if t > store::now() => Some(t),
                _ => return Err(err::EARGS),
            },
        };
        // `w: "1"`: a writable folder link, with a write key the reply carries.
        let writable =
            matches!(cmd.get("w"), Some(Value::String(w)) if w == "1") || i(cmd, "w") == Some(1);
        if writable && node.kind != FOLDER {
            return Err(err::EARGS);
        }
        let (ph, change) = match db(self.db.link_for_node(&node.handle))? {
            Some(ph) if ets.is_none() && !writable => return Ok(json!(ph)),
            Some(ph) => (ph, "u"),
            None => {
                let ph = new_node_handle();
                db(self.db.insert_link(&ph, &node.handle))?;
                (ph, "n")
            }
        };
        let mut packet = json!({"h": node.handle, "ph": ph, change: 1, "ts": store::now()});
        if let Some(t) = ets {
            db(self.db.set_link_expiry(&ph, t))?;
            packet["ets"] = json!(t);
        }
        let w = if writable {
            let mut w = db(self.db.link_auth(&ph))?;
            if w.is_empty() {
                w = crypto::b64e(&crypto::random_bytes::<16>());
                db(self.db.set_link_auth(&ph, &w))?;
            }
            packet["w"] = json!(w);
            Some(w)
        } else {
            None
        };
        self.emit(user, Self::packet("ph", cmd, packet))?;
        Ok(match w {
            Some(w) => json!({"ph": ph, "w": w}),
            None => json!(ph),
        })
    }
}
