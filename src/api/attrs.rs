//! User attributes and pending keys on the wire (`MEGA-KEYS-SHARES-VERSIONS.md` §1, §5):
//! `uga` with versions, `upv` (a versioned write naming the version it read), and `pk`
//! (fetch, acknowledge). Wire types only.

use std::collections::{BTreeMap, HashMap};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use super::commands::{Ack, Command};

/// `uga`: one user attribute, as `{av, v}` (`v: 1`).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "uga")]
pub struct GetUserAttribute<'a> {
    pub u: &'a str,
    pub ua: &'a str,
    pub v: u8,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UserAttribute {
    /// The value, base64url.
    pub av: String,
    /// The version token (opaque).
    pub v: String,
}

impl Command for GetUserAttribute<'_> {
    type Reply = UserAttribute;
}

/// `upv`: sets one versioned attribute to `value` (base64url), naming the version it read
/// (`None` only for an attribute that does not exist yet). `-8` means somebody else wrote
/// it since: read again, re-apply, retry.
#[derive(Debug)]
pub struct PutVersionedAttribute<'a> {
    pub name: &'a str,
    pub value: String,
    pub version: Option<&'a str>,
}

impl Serialize for PutVersionedAttribute<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("a", "upv")?;
        match self.version {
            Some(v) => m.serialize_entry(self.name, &[self.value.as_str(), v])?,
            None => m.serialize_entry(self.name, &[self.value.as_str()])?,
        }
        m.end()
    }
}

impl Command for PutVersionedAttribute<'_> {
    /// The new version of each attribute written.
    type Reply = HashMap<String, String>;
}

/// `uk`: a user's RSA public key, by handle or e-mail (ENOENT: no such account).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "uk")]
pub struct GetPublicKey<'a> {
    pub u: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct PublicKeyReply {
    /// The user's handle.
    pub u: String,
    /// `MPI(n) ‖ MPI(e)`, base64url.
    pub pubk: String,
}

impl Command for GetPublicKey<'_> {
    type Reply = PublicKeyReply;
}

/// `pk` without arguments: the share keys other users sent us.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "pk")]
pub struct FetchPendingKeys {}

/// `{"<sender>": {"<share>": "<b64 key>", …}, …, "d": "<token>"}`.
#[derive(Debug, Deserialize)]
pub struct PendingKeysReply {
    /// The token that acknowledges (deletes) everything fetched.
    pub d: Option<String>,
    #[serde(flatten)]
    pub by_sender: BTreeMap<String, serde_json::Value>,
}

impl Command for FetchPendingKeys {
    type Reply = PendingKeysReply;
}

/// `pk` with `d`: the fetched keys are stored (in `^!keys`); the server may drop them.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "pk")]
pub struct AckPendingKeys<'a> {
    pub d: &'a str,
}

impl Command for AckPendingKeys<'_> {
    type Reply = Ack;
}

/// `pk` with `u`, `h`, `k`: delivers a share key to a user, wrapped with the pairwise key.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "pk")]
pub struct SendPendingKey<'a> {
    pub u: &'a str,
    pub h: &'a str,
    pub k: &'a str,
}

impl Command for SendPendingKey<'_> {
    type Reply = Ack;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_have_the_wire_shape() {
        let put = PutVersionedAttribute {
            name: "^!keys",
            value: "QUJD".into(),
            version: Some("v1"),
        };
        assert_eq!(
            serde_json::to_value(&put).unwrap(),
            json!({"a": "upv", "^!keys": ["QUJD", "v1"]})
        );
        let first = PutVersionedAttribute {
            version: None,
            ..put
        };
        assert_eq!(
            serde_json::to_value(&first).unwrap(),
            json!({"a": "upv", "^!keys": ["QUJD"]})
        );
        assert_eq!(
            serde_json::to_value(FetchPendingKeys {}).unwrap(),
            json!({"a": "pk"})
        );
        let r: PendingKeysReply =
            serde_json::from_value(json!({"U1": {"N1": "K1"}, "d": "T"})).unwrap();
        assert_eq!(r.d.as_deref(), Some("T"));
        assert_eq!(r.by_sender["U1"], json!({"N1": "K1"}));
    }
}
