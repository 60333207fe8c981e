//! User attributes (`MEGA-KEYS-SHARES-VERSIONS.md` §1): `uga` reads one, `up`/`up2` set
//! non-versioned ones, `upv` sets versioned ones with conflict detection (`-8` when the
//! version the client read is not the current one), and every change is announced to the
//! owner's sessions with a `ua` packet. `ug` lists them.
//!
//! Content-blind: values are opaque bytes (the server never parses `^!keys`); version tokens
//! are opaque random strings that change on every write. A private (`^`, `*`) attribute is
//! readable only by its owner; public ones (`+`) by any logged-in user who knows the handle;
//! protected ones (`#`, `firstname`, `lastname`) by the owner and users it shares with.

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::commands::{db, err, CmdResult, Ctx, Session};
use crate::crypto;
use crate::store::{Queries, Result};

/// Attributes that only `upv` may set: the SDK's versioned definitions
/// (`sdk:user_attribute_definition.cpp`). Setting them with `up`/`up2` would let a client
/// overwrite a concurrent change it never saw.
pub(crate) const VERSIONED: &[&str] = &[
    "^!keys",
    "*keyring",
    "+puEd255",
    "+puCu255",
    "+sigPubk",
    "+sigCu255",
    "*!authring",
    "*!authCu255",
];

/// The size limit of one value: 16 MiB for `!`/`~` attributes, else 64 KiB (the SDK's
/// `MAX_USER_VAR_SIZE` and `MAX_USER_ATTRIBUTE_SIZE`).
fn max_len(name: &str) -> usize {
    match name.chars().nth(1) {
        Some('!') | Some('~') => 16 << 20,
        _ => 64 << 10,
    }
}

/// A plausible attribute name: a scope character or a known system name, printable ASCII.
fn valid_name(name: &str) -> bool {
    let scoped = matches!(name.chars().next(), Some('+' | '#' | '^' | '*' | '%' | '$'));
    let system = matches!(
        name,
        "firstname" | "lastname" | "country" | "birthday" | "birthmonth" | "birthyear"
    );
    (scoped || system)
        && name.len() <= 64
        && name.len() >= 2
        && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Who may read `name` of `owner`.
fn readable_by(name: &str, owner: &str, reader: &str, related: bool) -> bool {
    if owner == reader {
        return true;
    }
    match name.chars().next() {
        Some('+') => true,
        Some('#') => related,
        _ => matches!(name, "firstname" | "lastname") && related,
    }
}

/// Attribute storage, for a connection or a transaction.
pub(crate) trait AttrQueries: Queries {
    /// `(value, version)` of one attribute.
    fn attr(&self, user: &str, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value, version FROM user_attrs WHERE user = ?1 AND name = ?2",
                params![user, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Stores a value under a fresh version token, which it returns.
    fn put_attr(&self, user: &str, name: &str, value: &[u8]) -> Result<String> {
        let version = crypto::b64e(&crypto::random_bytes::<8>());
        self.conn().execute(
            "INSERT INTO user_attrs (user, name, value, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, name) DO UPDATE SET value = ?3, version = ?4",
            params![user, name, value, version],
        )?;
        Ok(version)
    }

    /// Every attribute of an account: `(name, value, version)`, by name.
    fn attrs_of(&self, user: &str) -> Result<Vec<(String, Vec<u8>, String)>> {
        let mut st = self
            .conn()
            .prepare("SELECT name, value, version FROM user_attrs WHERE user = ?1 ORDER BY name")?;
        let v = st
            .query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Whether the account turned file versions off (`^!dv` = "1").
    fn versions_disabled(&self, user: &str) -> Result<bool> {
        Ok(self
            .attr(user, "^!dv")?
            .is_some_and(|(v, _)| v.as_slice() == b"1"))
    }
}

impl<T: Queries + ?Sized> AttrQueries for T {}

/// The `{"av", "v"}` object of a stored value.
pub(crate) fn attr_object(value: &[u8], version: &str) -> Value {
    json!({"av": crypto::b64e(value), "v": version})
}

impl Ctx<'_> {
    /// `uga`: one attribute of a user (the session's own, or another's public one).
    pub(crate) fn uga(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let name = cmd.get("ua").and_then(Value::as_str).ok_or(err::EARGS)?;
        let target = match cmd.get("u").and_then(Value::as_str) {
            None => sess.user.clone(),
            Some(u) => self.user_by_handle_or_email(u)?.ok_or(err::ENOENT)?,
        };
        let related = self.related(&sess.user.handle, &target.handle)?;
        if !readable_by(name, &target.handle, &sess.user.handle, related) {
            // Like a missing attribute: whether it exists is not revealed.
            return Err(err::ENOENT);
        }
        let (value, version) = db(self.db.attr(&target.handle, name))?.ok_or(err::ENOENT)?;
        if cmd.get("v").and_then(Value::as_i64) == Some(1) {
            Ok(attr_object(&value, &version))
        } else {
            Ok(json!(crypto::b64e(&value)))
        }
    }

    /// `up` (attribute form) and `up2`: set non-versioned attributes.
    pub(crate) fn up2(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let mut set = Vec::new();
        for (name, v) in Self::attr_fields(cmd)? {
            if VERSIONED.contains(&name) {
                return Err(err::EARGS);
            }
            let value = Self::attr_value(name, v.as_str())?;
            set.push((name, value, None));
        }
        self.store_attrs(cmd, sess, set)
    }

    /// `upv`: set versioned attributes; each element is `[value, version read]` (the version
    /// left out only when the attribute does not exist yet). All or nothing: one stale
    /// version (`-8`) sets none of them.
    pub(crate) fn upv(&self, cmd: &Value, sess: &Session) -> CmdResult {
        let mut set = Vec::new();
        for (name, v) in Self::attr_fields(cmd)? {
            let arr = v.as_array().ok_or(err::EARGS)?;
            let value = Self::attr_value(name, arr.first().and_then(Value::as_str))?;
            let expected = match arr.get(1) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(err::EARGS),
            };
            set.push((name, value, Some(expected)));
        }
        self.store_attrs(cmd, sess, set)
    }

    /// The attribute fields of an `up`/`up2`/`upv` command (everything but `a` and `i`).
    fn attr_fields(cmd: &Value) -> std::result::Result<Vec<(&str, &Value)>, i64> {
        let obj = cmd.as_object().ok_or(err::EARGS)?;
        let fields: Vec<(&str, &Value)> = obj
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "a" | "i" | "v"))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        if fields.is_empty() || fields.iter().any(|(k, _)| !valid_name(k)) {
            return Err(err::EARGS);
        }
        Ok(fields)
    }

    fn attr_value(name: &str, v: Option<&str>) -> std::result::Result<Vec<u8>, i64> {
        let v = v.ok_or(err::EARGS)?;
        let bytes = if v.is_empty() {
            Vec::new()
        } else {
            crypto::b64d(v).ok_or(err::EARGS)?
        };
        if bytes.len() >= max_len(name) {
            return Err(err::EARGS);
        }
        Ok(bytes)
    }

    /// Stores attributes (checking versions where given) and emits one `ua` packet.
    #[allow(clippy::type_complexity)]
    fn store_attrs(
        &self,
        cmd: &Value,
        sess: &Session,
        set: Vec<(&str, Vec<u8>, Option<Option<String>>)>,
    ) -> CmdResult {
        let user = &sess.user.handle;
        for (name, _, expected) in &set {
            let Some(expected) = expected else { continue };
            let current = db(self.db.attr(user, name))?.map(|(_, v)| v);
            // A versioned write must name the version it read; an absent one only for an
            // attribute that does not exist yet.
            if current != *expected {
                return Err(err::EEXPIRED);
            }
        }
        let mut reply = Map::new();
        let (mut names, mut versions) = (Vec::new(), Vec::new());
        for (name, value, _) in &set {
            let version = db(self.db.put_attr(user, name, value))?;
            reply.insert((*name).to_string(), json!(version));
            names.push(json!(name));
            versions.push(json!(version));
        }
        self.emit(
            user,
            Self::packet("ua", cmd, json!({"u": user, "ua": names, "v": versions})),
        )?;
        Ok(Value::Object(reply))
    }

    /// The attribute objects `ug` carries.
    pub(crate) fn ug_attrs(&self, sess: &Session) -> std::result::Result<Map<String, Value>, i64> {
        let mut m = Map::new();
        for (name, value, version) in db(self.db.attrs_of(&sess.user.handle))? {
            m.insert(name, attr_object(&value, &version));
        }
        Ok(m)
    }
}
