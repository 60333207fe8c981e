//! Typed `/cs` commands and their replies (`MEGA-PROTOCOL.md` §3–§10). Each request is a
//! struct whose `a` field is its command name; [`Command::Reply`] is what a successful reply
//! decodes into. Fields the server may leave out are `Option`s, so a reply that omits what we
//! do not need still decodes; a reply of the wrong shape is a protocol error
//! ([`ApiError::BadResponse`](super::ApiError)), never a panic.
//!
//! Wire types only: no crypto, no tree. Node objects ([`RawNode`]) are decrypted by `tree`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::crypto::json::lenient;

/// A `/cs` command and the type its successful reply decodes into.
pub trait Command: Serialize {
    type Reply: DeserializeOwned;
}

/// A reply whose content does not matter (`0`, or an object nobody reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ack;

impl<'de> Deserialize<'de> for Ack {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Ack)
    }
}

// ---- login and session ----

/// `us0`: the login variant of an account (v1, or v2 with its salt).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "us0")]
pub struct PreLogin<'a> {
    pub user: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct PreLoginReply {
    pub v: Option<i64>,
    /// v2: the PBKDF2 salt (base64url).
    pub s: Option<String>,
}

impl Command for PreLogin<'_> {
    type Reply = PreLoginReply;
}

/// `us`: logs in with the password-derived user hash.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "us")]
pub struct Login<'a> {
    pub user: &'a str,
    pub uh: &'a str,
    pub sek: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub struct LoginReply {
    /// The master key, wrapped with the password key.
    pub k: String,
    pub u: Option<String>,
    pub privk: Option<String>,
    pub csid: Option<String>,
    pub tsid: Option<String>,
}

impl Command for Login<'_> {
    type Reply = LoginReply;
}

/// `ug`: the logged-in user. With `v: 1` (as the SDK asks) the reply also carries the
/// account's attributes (`^!keys`, `^!dv`, the public keys…) as `{av, v}` objects.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "ug")]
pub struct GetUser {
    pub v: u8,
}

#[derive(Debug, Deserialize)]
pub struct UserReply {
    pub u: String,
    pub privk: Option<String>,
    pub email: Option<String>,
    /// Every other field: among them the attributes `v: 1` asks for.
    #[serde(flatten)]
    pub rest: std::collections::HashMap<String, serde_json::Value>,
}

impl UserReply {
    /// The attribute `name` if the reply carries it (as `{av, v}`; anything else there is
    /// not an attribute this client can use, and counts as absent).
    pub fn attr(&self, name: &str) -> Option<super::attrs::UserAttribute> {
        serde_json::from_value(self.rest.get(name)?.clone()).ok()
    }
}

impl Command for GetUser {
    type Reply = UserReply;
}

/// `sml`: ends the session.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "sml")]
pub struct Logout {}

impl Command for Logout {
    type Reply = Ack;
}

/// `uq`: storage quota.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "uq")]
pub struct GetQuota {
    pub strg: u8,
    pub xfer: u8,
}

#[derive(Debug, Deserialize)]
pub struct QuotaReply {
    /// Total storage in bytes.
    pub mstrg: Option<u64>,
    /// Storage used in bytes.
    pub cstrg: Option<u64>,
    /// The transfer allowance (paid accounts; absent for free ones).
    #[serde(default)]
    pub mxfer: Option<u64>,
    /// Transfer used by the account itself, and served to others (paid accounts).
    #[serde(default)]
    pub caxfer: Option<u64>,
    #[serde(default)]
    pub csxfer: Option<u64>,
    /// Free accounts: bytes downloaded from this address per hour, the last hours.
    #[serde(default)]
    pub tah: Option<Vec<i64>>,
}

impl Command for GetQuota {
    type Reply = QuotaReply;
}

// ---- the node tree ----

/// `f`: the whole node tree (with `c: 1`, the share keys too).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "f")]
pub struct FetchNodes {
    pub c: u8,
    /// Folder links: attributes of the root (`ca: 1`) and recursively (`r: 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r: Option<u8>,
}

/// A list whose elements are read one by one: an element of the wrong shape is dropped, not
/// the whole reply.
fn lenient_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|i| serde_json::from_value(i).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// One node as the server sends it in `f`, `p` and `t`. Only the handle and the type are
/// required; every other field is optional and read leniently.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RawNode {
    pub h: String,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub p: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub u: Option<String>,
    pub t: i64,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub a: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub k: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub s: Option<u64>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub ts: Option<i64>,
    /// Incoming share: the sharing user, and the share key wrapped for us.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub su: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub sk: Option<String>,
    /// File attributes: `<cluster>:<type>*<handle>` entries joined by `/`.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub fa: Option<String>,
    /// Incoming share: our access level (0 read-only, 1 read-write, 2 full).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub r: Option<i64>,
}

/// A user in `f`'s `u` list, a `t` packet's `u` or a `c` packet.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RawUser {
    #[serde(default, deserialize_with = "lenient")]
    pub u: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub m: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub c: Option<i64>,
}

/// An outgoing share in `f`'s `s` list: folder, recipient (`EXP` for a link), access.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RawOutShare {
    #[serde(default, deserialize_with = "lenient")]
    pub h: Option<String>,
    /// A pending share's pending contact (`ps` entries).
    #[serde(default, deserialize_with = "lenient")]
    pub p: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub u: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub r: Option<i64>,
}

/// A pending contact request: `opc` (sent: `m` is the invited address) or `ipc` (received:
/// `m` is the sender's address), with its handle `p`, message and time.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RawPendingContact {
    #[serde(default, deserialize_with = "lenient")]
    pub p: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub m: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub ts: Option<i64>,
}

/// An outgoing share's key (`ok`/`ok0`), authenticated by `ha`.
#[derive(Debug, Clone, Deserialize)]
pub struct ShareKey {
    #[serde(default, deserialize_with = "lenient")]
    pub h: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub ha: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub k: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FetchReply {
    pub f: Vec<RawNode>,
    /// Previous versions of files (each the child of the next newer version).
    #[serde(default)]
    pub f2: Vec<RawNode>,
    #[serde(default)]
    pub ok: Vec<ShareKey>,
    #[serde(default)]
    pub ok0: Vec<ShareKey>,
    /// Users the account shares with (and contacts).
    #[serde(default, deserialize_with = "lenient_list")]
    pub u: Vec<RawUser>,
    /// Outgoing shares.
    #[serde(default, deserialize_with = "lenient_list")]
    pub s: Vec<RawOutShare>,
    /// Pending shares (to addresses without an account yet): `h`, `p` (pending contact), `r`.
    #[serde(default, deserialize_with = "lenient_list")]
    pub ps: Vec<RawOutShare>,
    /// Outgoing pending contacts: `p` and the address `m`.
    #[serde(default, deserialize_with = "lenient_list")]
    pub opc: Vec<RawPendingContact>,
    /// Incoming pending contacts: `p` and the sender's address `m`.
    #[serde(default, deserialize_with = "lenient_list")]
    pub ipc: Vec<RawPendingContact>,
    /// The event cursor this snapshot corresponds to.
    pub sn: Option<String>,
}

impl Command for FetchNodes {
    type Reply = FetchReply;
}

/// A node to create with `p`.
#[derive(Debug, Clone, Serialize)]
pub struct NewNode {
    /// A completion token (files), a placeholder handle (folders), or for a copy the
    /// source node's handle (the server copies a file's content by it; for a folder it is
    /// only the label that `p` of its children names). Empty for an import (`ph`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub h: String,
    /// An import: a public file link's handle, or the handle of a node inside a folder link
    /// (then also the label its children's `p` names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ph: Option<String>,
    pub t: i64,
    pub a: String,
    pub k: String,
    /// The file this one supersedes: it becomes this node's previous version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ov: Option<String>,
    /// The `h` of an earlier element of the same request, the new folder this node goes
    /// into (a tree copied in one `p`); absent, it goes into the request's `t`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// File attributes stored beforehand (`0*<handle>/1*<handle>`: thumbnail, preview).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fa: Option<String>,
}

/// `cr`: node keys wrapped with share keys, as `[share handles, node handles, triples]`
/// where each triple is (share index, node index, wrapped key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareKeys {
    pub shares: Vec<String>,
    pub nodes: Vec<String>,
    pub keys: Vec<(usize, usize, String)>,
}

impl Serialize for ShareKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut flat = Vec::with_capacity(self.keys.len() * 3);
        for (i, j, k) in &self.keys {
            flat.push(serde_json::json!(i));
            flat.push(serde_json::json!(j));
            flat.push(serde_json::json!(k));
        }
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.shares)?;
        t.serialize_element(&self.nodes)?;
        t.serialize_element(&flat)?;
        t.end()
    }
}

/// `p`: creates nodes (new folders, uploaded files) under `t`.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "p")]
pub struct PutNodes<'a> {
    pub t: &'a str,
    pub n: Vec<NewNode>,
    pub i: &'a str,
    /// Versioning for `ov`: 1 keep the superseded file as a version, 0 do not; absent, the
    /// account's setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vb: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cr: Option<ShareKeys>,
    /// 1: a write into the Vault (backups; never a user's own action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vw: Option<u8>,
}

#[derive(Debug, Deserialize)]
pub struct PutNodesReply {
    /// The nodes made, in the order of the request (an element that failed has none).
    #[serde(default)]
    pub f: Vec<RawNode>,
    /// The elements that failed, each with its error code (see [`NodeErrors`]).
    #[serde(default)]
    pub e: Option<NodeErrors>,
}

/// `e` of a `p` reply: which elements of the request made no node, and why. MEGA sends
/// either an array by element (`[-9,-9]`, `[]` for none) or an object naming only the
/// elements that failed (`{"1":-9}`), as `sdk:src/commands.cpp` `CommandPutNodes` reads it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum NodeErrors {
    ByElement(Vec<i64>),
    Named(std::collections::HashMap<String, i64>),
}

impl NodeErrors {
    /// The error of element `i`, if it failed.
    pub fn of(&self, i: usize) -> Option<super::ErrorCode> {
        let code = match self {
            NodeErrors::ByElement(v) => v.get(i).copied(),
            NodeErrors::Named(m) => m.get(&i.to_string()).copied(),
        }?;
        (code != 0).then(|| super::ErrorCode::from_code(code))
    }
}

impl Command for PutNodes<'_> {
    type Reply = PutNodesReply;
}

/// `a`: replaces a node's encrypted attributes.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "a")]
pub struct SetAttributes<'a> {
    pub n: &'a str,
    pub at: &'a str,
    pub i: &'a str,
    /// 1: a write into the Vault (backups; never a user's own action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vw: Option<u8>,
}

impl Command for SetAttributes<'_> {
    type Reply = Ack;
}

/// `m`: moves a node (and its subtree) under `t`.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "m")]
pub struct Move<'a> {
    pub n: &'a str,
    pub t: &'a str,
    pub i: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cr: Option<ShareKeys>,
    /// 1: a write into the Vault (backups; never a user's own action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vw: Option<u8>,
}

impl Command for Move<'_> {
    type Reply = Ack;
}

/// `d`: deletes a node and its subtree permanently.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "d")]
pub struct Delete<'a> {
    pub n: &'a str,
    pub i: &'a str,
    /// 1: remove only this version of a file and keep the others (re-linked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<u8>,
    /// 1: a write into the Vault (backups; never a user's own action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vw: Option<u8>,
}

impl Command for Delete<'_> {
    type Reply = Ack;
}

// ---- content ----

/// `g`: a download URL for a node (`n`) or a public handle (`p`).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "g")]
pub struct GetDownloadUrl<'a> {
    pub g: u8,
    pub ssl: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<&'a str>,
}

/// The `ssl` value that asks for `https://` transfer URLs (`0` lets the server choose).
pub fn ssl(https: bool) -> u8 {
    if https {
        2
    } else {
        0
    }
}

impl<'a> GetDownloadUrl<'a> {
    pub fn node(h: &'a str, https: bool) -> Self {
        GetDownloadUrl {
            g: 1,
            ssl: ssl(https),
            n: Some(h),
            p: None,
        }
    }

    pub fn public(ph: &'a str, https: bool) -> Self {
        GetDownloadUrl {
            g: 1,
            ssl: ssl(https),
            n: None,
            p: Some(ph),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DownloadUrlReply {
    /// The URL; absent when `e` says why not.
    #[serde(default)]
    pub g: Option<String>,
    /// An error instead of a URL: `-17` over the transfer quota (with `tl`).
    #[serde(default)]
    pub e: Option<i64>,
    /// Seconds until there is transfer quota again (0 when there is).
    #[serde(default)]
    pub tl: Option<i64>,
    /// The size of the content behind the URL.
    pub s: Option<u64>,
    /// Encrypted attributes (public handles only).
    pub at: Option<String>,
}

impl Command for GetDownloadUrl<'_> {
    type Reply = DownloadUrlReply;
}

impl DownloadUrlReply {
    /// The download URL, or why there is none: over the transfer quota (`e: -17`; a `tl`
    /// that is not positive means an hour, as the SDK takes it), another error code, or a
    /// malformed reply.
    pub fn url(&self) -> Result<String, super::ApiError> {
        match (self.e, &self.g) {
            (Some(-17), _) => Err(super::ApiError::TransferQuota {
                wait: self.tl.filter(|t| *t > 0).map_or(3600, |t| t as u64),
            }),
            (Some(e), _) if e < 0 => Err(super::ApiError::Mega(super::ErrorCode::from_code(e))),
            (_, Some(g)) => Ok(g.clone()),
            (_, None) => Err(super::ApiError::BadResponse("g without a URL".into())),
        }
    }
}

/// `u`: an upload URL for `s` bytes (`v: 2`: a raw 36-byte completion token).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "u")]
pub struct GetUploadUrl {
    pub s: u64,
    pub ssl: u8,
    pub v: u8,
}

#[derive(Debug, Deserialize)]
pub struct UploadUrlReply {
    pub p: String,
}

impl Command for GetUploadUrl {
    type Reply = UploadUrlReply;
}

// ---- file attributes (thumbnails, previews) ----

/// `ufa` with `s`: a URL to store one file attribute of `s` bytes (encrypted, padded).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "ufa")]
pub struct PutFileAttrUrl {
    pub s: u64,
    pub ssl: u8,
}

impl Command for PutFileAttrUrl {
    type Reply = FileAttrUrlReply;
}

/// `ufa` with `fah`: a URL to fetch file attributes from the cluster holding `fah` (the
/// batch's first handle); `r: 1` asks for the streamed record form.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "ufa")]
pub struct GetFileAttrUrl<'a> {
    pub fah: &'a str,
    pub ssl: u8,
    pub r: u8,
}

impl Command for GetFileAttrUrl<'_> {
    type Reply = FileAttrUrlReply;
}

#[derive(Debug, Deserialize)]
pub struct FileAttrUrlReply {
    pub p: String,
}

/// `pfa`: attaches stored file attributes (`<type>*<handle>[/…]`) to a node; the reply is
/// the node's whole new `fa`.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "pfa")]
pub struct AttachFileAttr<'a> {
    pub n: &'a str,
    pub fa: &'a str,
}

impl Command for AttachFileAttr<'_> {
    type Reply = String;
}

/// `mc`: MEGA's media codec list, `[version, [containers, video, audio, short formats]]`.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "mc")]
pub struct MediaCodecs {}

impl Command for MediaCodecs {
    type Reply = serde_json::Value;
}

// ---- sharing ----

/// `l`: a public handle for a node (a link).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "l")]
pub struct GetLink<'a> {
    pub n: &'a str,
    pub i: &'a str,
    /// When the link expires (absolute Unix time); absent, an existing link keeps its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ets: Option<i64>,
}

impl Command for GetLink<'_> {
    type Reply = String;
}

/// `l` with `d: 1`: removes a node's public link.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "l")]
pub struct DeleteLink<'a> {
    pub n: &'a str,
    pub d: u8,
    pub i: &'a str,
}

impl Command for DeleteLink<'_> {
    type Reply = Ack;
}

/// `l` with `w: "1"`: a writable folder link; the reply carries its write key.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "l")]
pub struct GetWritableLink<'a> {
    pub n: &'a str,
    pub w: &'a str,
    pub i: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ets: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct WritableLinkReply {
    pub ph: String,
    /// The write key (base64url): whoever has it may add to the folder through the link.
    pub w: String,
}

impl Command for GetWritableLink<'_> {
    type Reply = WritableLinkReply;
}

/// `upc`: invites an address to be a contact (`aa: "a"`, with an optional message),
/// reminds it (`"r"`) or cancels the invitation (`"d"`).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "upc")]
pub struct InviteContact<'a> {
    pub u: &'a str,
    pub aa: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<&'a str>,
}

/// The new request (`p`, `m`, …) for an invitation; `0` otherwise.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InviteReply {
    Request(RawPendingContact),
    Done(i64),
}

impl Command for InviteContact<'_> {
    type Reply = InviteReply;
}

/// `upca`: answers an invitation received: accept (`aa: "a"`), deny (`"d"`), ignore (`"i"`).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "upca")]
pub struct AnswerInvitation<'a> {
    pub p: &'a str,
    pub aa: &'a str,
}

impl Command for AnswerInvitation<'_> {
    type Reply = Ack;
}

/// `ur2`: removes a contact (by e-mail address or handle).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "ur2")]
pub struct RemoveContact<'a> {
    pub u: &'a str,
    pub l: u8,
}

impl Command for RemoveContact<'_> {
    type Reply = Ack;
}

/// One recipient of `s2` (`EXP` for a folder link), with an access level.
#[derive(Debug, Serialize)]
pub struct ShareTo<'a> {
    pub u: &'a str,
    /// The access level; `None` ends the share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r: Option<u8>,
    /// Legacy sharing: the share key RSA-encrypted to the recipient's public key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

/// `s2`: shares a folder.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "s2")]
pub struct Share<'a> {
    pub n: &'a str,
    pub s: Vec<ShareTo<'a>>,
    /// The share key wrapped with the master key, and its authentication (zero
    /// placeholders from key-manager accounts); left out when ending a share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<&'a str>,
    /// The keys of the folder's nodes under the share key, for a new share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cr: Option<ShareKeys>,
    pub i: &'a str,
}

impl Command for Share<'_> {
    type Reply = Ack;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `e` of a `p` reply in both of MEGA's forms; no `f` when nothing was made.
    #[test]
    fn put_nodes_errors_by_element_or_by_name() {
        use crate::api::ErrorCode;
        let r: PutNodesReply = serde_json::from_value(json!({"e": [-9, 0, -14]})).unwrap();
        assert!(r.f.is_empty());
        let e = r.e.unwrap();
        assert_eq!(e.of(0), Some(ErrorCode::NotFound));
        assert_eq!(e.of(1), None);
        assert_eq!(e.of(2), Some(ErrorCode::Key));
        assert_eq!(e.of(3), None);
        let r: PutNodesReply = serde_json::from_value(json!({"f": [], "e": {"2": -11}})).unwrap();
        let e = r.e.unwrap();
        assert_eq!((e.of(1), e.of(2)), (None, Some(ErrorCode::Access)));
        let r: PutNodesReply = serde_json::from_value(json!({"f": [], "e": []})).unwrap();
        assert_eq!(r.e.unwrap().of(0), None);
    }

    #[test]
    fn odd_fields_are_absent_not_fatal() {
        let text = r#"{"f":[
            {"h":"AAAAAAAA","t":0,"p":7,"u":["x"],"a":{"n":1},"k":null,"s":-1,"ts":1.5,
             "su":true,"sk":"c2s","r":"2"},
            {"h":"BBBBBBBB","t":1,"p":"AAAAAAAA","u":"me","a":"YQ","k":"me:a2V5","s":12,
             "ts":-3,"r":18446744073709551615}
        ],"sn":"c24"}"#;
        let r: FetchReply = serde_json::from_str(text).unwrap();
        let a = &r.f[0];
        assert_eq!((&a.p, &a.u, &a.a, &a.k), (&None, &None, &None, &None));
        assert_eq!((a.s, a.ts, &a.su, a.r), (None, None, &None, None));
        assert_eq!(a.sk.as_deref(), Some("c2s"));
        let b = &r.f[1];
        assert_eq!(b.p.as_deref(), Some("AAAAAAAA"));
        assert_eq!((b.s, b.ts, b.r), (Some(12), Some(-3), None));
        assert_eq!(r.sn.as_deref(), Some("c24"));
        // A node without a handle or type is malformed: the reply does not decode.
        assert!(serde_json::from_str::<FetchReply>(r#"{"f":[{"t":0}]}"#).is_err());
    }

    #[test]
    fn requests_serialize_as_the_wire_wants() {
        assert_eq!(
            serde_json::to_value(FetchNodes {
                c: 1,
                ca: None,
                r: None
            })
            .unwrap(),
            json!({"a": "f", "c": 1})
        );
        assert_eq!(
            serde_json::to_value(GetDownloadUrl::node("H", false)).unwrap(),
            json!({"a": "g", "g": 1, "ssl": 0, "n": "H"})
        );
        let cr = ShareKeys {
            shares: vec!["S".into()],
            nodes: vec!["N".into()],
            keys: vec![(0, 0, "K".into())],
        };
        assert_eq!(
            serde_json::to_value(Move {
                n: "N",
                t: "T",
                i: "E",
                cr: Some(cr),
                vw: None,
            })
            .unwrap(),
            json!({"a": "m", "n": "N", "t": "T", "i": "E", "cr": [["S"], ["N"], [0, 0, "K"]]})
        );
        // A backup's write into the Vault says so; `sp` sends only what it has.
        assert_eq!(
            serde_json::to_value(Delete {
                n: "N",
                i: "E",
                v: None,
                vw: Some(1)
            })
            .unwrap(),
            json!({"a": "d", "n": "N", "i": "E", "vw": 1})
        );
        assert_eq!(
            serde_json::to_value(BackupPut {
                id: Some("I"),
                s: Some(3),
                ..BackupPut::default()
            })
            .unwrap(),
            json!({"a": "sp", "id": "I", "s": 3})
        );
        let id: BackupId = serde_json::from_value(json!(["st", "pQ0xxYz1RfE"])).unwrap();
        assert_eq!(id.0, "pQ0xxYz1RfE");
        assert_eq!(
            serde_json::to_value(Login {
                user: "u",
                uh: "h",
                sek: "s",
                mfa: None
            })
            .unwrap(),
            json!({"a": "us", "user": "u", "uh": "h", "sek": "s"})
        );
    }

    #[test]
    fn replies_tolerate_missing_optional_fields_and_reject_wrong_shapes() {
        let r: FetchReply = serde_json::from_value(json!({"f": [{"h": "A", "t": 2}]})).unwrap();
        assert_eq!(r.f[0].h, "A");
        assert!(r.ok.is_empty() && r.sn.is_none());
        let no_url: DownloadUrlReply = serde_json::from_value(json!({"s": 1})).unwrap();
        assert!(matches!(
            no_url.url(),
            Err(super::super::ApiError::BadResponse(_))
        ));
        // Over the transfer quota: the wait it says, or an hour when it says nothing useful.
        for (tl, wait) in [(json!(1234), 1234), (json!(0), 3600), (json!(-5), 3600)] {
            let r: DownloadUrlReply =
                serde_json::from_value(json!({"s": 1, "at": "x", "e": -17, "tl": tl})).unwrap();
            assert!(
                matches!(r.url(), Err(super::super::ApiError::TransferQuota { wait: w }) if w == wait)
            );
        }
        assert!(serde_json::from_value::<Ack>(json!(0)).is_ok());
        assert!(serde_json::from_value::<Ack>(json!({"x": [1]})).is_ok());
    }
}

// ---- backups and syncs (Backup Centre) ----

/// `sp`: registers a backup or sync (no `id`) or updates one; `l` and `e` are `*`-TLV
/// containers under the master key.
#[derive(Debug, Default, Serialize)]
#[serde(tag = "a", rename = "sp")]
pub struct BackupPut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ss: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// The id `sp` answers: a string, or with sequence tags `[tag, id]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupId(pub String);

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(BackupId(s)),
            serde_json::Value::Array(a) => match a.last() {
                Some(serde_json::Value::String(s)) => Ok(BackupId(s.clone())),
                _ => Err(serde::de::Error::custom("sp reply without an id")),
            },
            _ => Err(serde::de::Error::custom("sp reply without an id")),
        }
    }
}

impl Command for BackupPut<'_> {
    type Reply = BackupId;
}

/// `sphb`: a heartbeat: status, progress (only when up to date or syncing), pending
/// transfers, last activity.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "sphb")]
pub struct BackupHeartbeat<'a> {
    pub id: &'a str,
    pub s: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<u8>,
    pub qu: u32,
    pub qd: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lh: Option<&'a str>,
}

impl Command for BackupHeartbeat<'_> {
    type Reply = Ack;
}

/// `sr`: removes a registration (the Vault folders stay).
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "sr")]
pub struct BackupRemove<'a> {
    pub id: &'a str,
}

impl Command for BackupRemove<'_> {
    type Reply = Ack;
}

/// `sf`: every registration of the account, all devices.
#[derive(Debug, Serialize)]
#[serde(tag = "a", rename = "sf")]
pub struct BackupFetch {}

/// One registration as `sf` lists it (unknown fields skipped).
#[derive(Debug, Clone, Deserialize)]
pub struct RawBackup {
    pub id: String,
    #[serde(default)]
    pub t: i64,
    #[serde(default)]
    pub h: Option<String>,
    #[serde(default)]
    pub l: Option<String>,
    #[serde(default)]
    pub d: Option<String>,
    #[serde(default)]
    pub s: i64,
    #[serde(default)]
    pub ss: i64,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub hb: Option<RawHeartbeat>,
    /// The registering client's user agent (server-side).
    #[serde(default)]
    pub dua: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawHeartbeat {
    #[serde(default)]
    pub ts: i64,
    #[serde(default)]
    pub s: i64,
    #[serde(default)]
    pub p: Option<i64>,
    #[serde(default)]
    pub qu: i64,
    #[serde(default)]
    pub qd: i64,
    #[serde(default)]
    pub lts: Option<i64>,
}

impl Command for BackupFetch {
    type Reply = Vec<RawBackup>;
}
