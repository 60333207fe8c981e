//! Folders shared between users (`MEGA-KEYS-SHARES-VERSIONS.md` §3–§5), both ways.
//!
//! Sharing one of our folders ([`Client::share`]): the share key (a folder link's, if the
//! folder has one) is stored in `^!keys` first (trusted, in use), sent to the recipient by
//! pending keys (`pk`, wrapped with our Cu25519 pairwise key after the recipient's signed
//! Cu25519 key verified and both of the recipient's keys matched what this account pinned
//! for them, see [`contacts`](super::contacts)), then `s2` with zero `ok`/`ha` and, for a new share, the keys of the
//! whole subtree (versions too) under the share key (`cr`). A legacy account — or a recipient
//! without Cu25519 keys — gets the key RSA-encrypted in `s2` (`k`), as before the key manager.
//!
//! Receiving: keys that arrived by `pk` are decrypted, committed to `^!keys` and only then
//! acknowledged ([`Client::accept_pending_keys`]), at login and on every `pk` packet; a key a
//! legacy sharer sent in `sk` is used and recorded in `^!keys` as untrusted. Writes into a
//! share carry the share keys of every share above them (`cr`, in [`nodes`](super::nodes)).

use super::keys::raw_handle;
use super::{Client, Error, Result};
use crate::api::attrs::{
    AckPendingKeys, FetchPendingKeys, GetPublicKey, GetUserAttribute, SendPendingKey,
};
use crate::api::commands::{Share, ShareKeys, ShareTo};
use crate::api::{ApiError, ErrorCode};
use crate::crypto::keymgr::{pairwise_key, PendingOutshare, Recipient, TRUSTED};
use crate::crypto::{b64, rsa, Key128};
use crate::tree::{Access, Node, NodeHandle, OutShare};

/// 16 zero bytes: the `ok`/`ha` placeholders of key-manager clients.
const ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAA";

fn protocol(e: impl std::fmt::Display) -> Error {
    Error::Protocol(e.to_string())
}

impl Client {
    /// A public user attribute of another user, decoded (`None` if it is not set).
    pub(super) async fn peer_attr(&self, user: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let q = GetUserAttribute {
            u: user,
            ua: name,
            v: 1,
        };
        match self.api.run(&q).await {
            Ok(a) => Ok(Some(
                b64::decode(&a.av, "attribute").map_err(ApiError::from)?,
            )),
            Err(ApiError::Mega(ErrorCode::NotFound)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A user's handle from an e-mail address (or a handle).
    pub(super) async fn user_handle(&self, who: &str) -> Result<String> {
        if !who.contains('@') {
            return Ok(who.to_string());
        }
        if let Some(h) = self.read_tree().user_by_email(who) {
            return Ok(h.to_string());
        }
        match self.api.run(&GetPublicKey { u: who }).await {
            Ok(p) => Ok(p.u),
            Err(ApiError::Mega(ErrorCode::NotFound)) => Err(Error::NotFound {
                what: format!("{who}: no MEGA account"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Our Cu25519 private key, from the key manager.
    async fn own_cu25519(&self) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        let (c, _) = self
            .read_keys()
            .await?
            .ok_or_else(|| Error::Protocol("the account has no key manager (^!keys)".into()))?;
        c.cu25519_private()
            .ok_or_else(|| Error::Protocol("the key manager holds no Cu25519 key".into()))
    }

    /// Shares one of our folders with a user (e-mail or handle) at `access`; sharing it
    /// again changes the access. With someone who is not a contact the share is pending
    /// until they accept the contact request it sends.
    pub async fn share(&self, h: &NodeHandle, who: &str, access: Access) -> Result<Shared> {
        let n = self.node(h)?;
        if n.kind != crate::tree::NodeKind::Folder {
            return Err(Error::NotAFolder {
                what: self.path_of(h),
            });
        }
        if self.view(|t| t.inshare_of(h).is_some()) {
            return Err(Error::PermissionDenied {
                what: format!("{}: only the owner can share it", self.path_of(h)),
                code: None,
            });
        }
        let peer = match self.api.run(&GetPublicKey { u: who }).await {
            Ok(p) => p,
            // An address without an account: a pending share, completed when it has one.
            Err(ApiError::Mega(ErrorCode::NotFound)) if who.contains('@') => {
                return self
                    .share_pending(h, who, access)
                    .await
                    .map(|()| Shared::Pending)
            }
            Err(ApiError::Mega(ErrorCode::NotFound)) => {
                return Err(Error::NotFound {
                    what: format!("{who}: no MEGA account"),
                })
            }
            Err(e) => return Err(e.into()),
        };
        if peer.u == self.session.user {
            return Err(Error::Invalid {
                what: "a folder cannot be shared with its owner".into(),
                code: None,
            });
        }
        // Someone who is not a contact is invited first, as MEGA's apps do it: the share is
        // pending until they accept, and its key goes to them only then.
        let (contact, shared) = self.view(|t| {
            (
                is_contact(t, &peer.u),
                t.outshares()
                    .iter()
                    .any(|s| s.node == *h && s.user == peer.u),
            )
        });
        if !contact && !shared {
            let email = match who.contains('@') {
                true => who.to_string(),
                false => self
                    .view(|t| t.email_of(&peer.u).map(str::to_string))
                    .ok_or_else(|| Error::Invalid {
                        what: format!("{who}: not a contact; share with their e-mail address"),
                        code: None,
                    })?,
            };
            return self
                .share_pending(h, &email, access)
                .await
                .map(|()| Shared::Pending);
        }
        let (key, fresh) = self.share_key_of(h);
        let mut rsa_key = None;
        if self.has_key_manager() {
            self.store_own_share_key(&h.0, &key).await?;
            match self.trusted_cu25519(&peer.u).await? {
                Some(cu) => {
                    let pw = pairwise_key(&*self.own_cu25519().await?, &cu);
                    let k = b64::encode(&pw.wrap(&key.0));
                    self.api
                        .run(&SendPendingKey {
                            u: &peer.u,
                            h: &h.0,
                            k: &k,
                        })
                        .await?;
                }
                // A legacy recipient can only take the key RSA-encrypted.
                None => rsa_key = Some(self.rsa_wrap(&peer.pubk, &key)?),
            }
        } else {
            rsa_key = Some(self.rsa_wrap(&peer.pubk, &key)?);
        }
        self.send_share(h, &peer.u, access, &key, fresh, rsa_key)
            .await
            .map(|()| Shared::Now)
    }

    /// The folder's share key (a folder link's or an earlier share's), or a new one; and
    /// whether the folder is shared for the first time (its nodes' keys then go in `cr`).
    fn share_key_of(&self, h: &NodeHandle) -> (Key128, bool) {
        let tree = self.read_tree();
        let existing = tree.keys().share_keys.get(&h.0).cloned();
        let fresh = existing.is_none() && !tree.outshares().iter().any(|s| s.node == *h);
        (existing.unwrap_or_else(new_share_key), fresh)
    }

    /// `s2` of `h` to `to` (a user handle, or an address for a pending share) at `access`,
    /// then the tree records the share and its key.
    async fn send_share(
        &self,
        h: &NodeHandle,
        to: &str,
        access: Access,
        key: &Key128,
        fresh: bool,
        rsa_key: Option<String>,
    ) -> Result<()> {
        let (ok, ha) = self.owner_key(h, key);
        let cr = fresh.then(|| self.keys_under(h, key));
        let _m = self.mutation()?;
        self.api
            .run(&Share {
                n: &h.0,
                s: vec![ShareTo {
                    u: to,
                    r: Some(access.level()),
                    k: rsa_key,
                }],
                ok: Some(&ok),
                ha: Some(&ha),
                cr,
                i: self.api.echo_id(),
            })
            .await?;
        let mut tree = self.write_tree();
        tree.keys_mut().share_keys.insert(h.0.clone(), key.clone());
        tree.set_outshare(h.clone(), to, Some(access));
        Ok(())
    }

    /// Shares a folder with someone who is not a contact (an account, or an address without
    /// one): the key goes into `^!keys` with a pending-outshare record (tag 64) naming the
    /// address, then `s2` to the address, which the server makes a pending share on a
    /// contact request to them. Once they accept (and have an account),
    /// [`Client::complete_pending_outshares`] sends the key. Only a key-manager account can
    /// do this (a legacy one would have no way to send the key later).
    async fn share_pending(&self, h: &NodeHandle, email: &str, access: Access) -> Result<()> {
        if !self.has_key_manager() {
            return Err(Error::NotFound {
                what: format!(
                    "{email}: not a contact (sharing with someone before they accept a contact \
                     request needs an account with MEGA's key manager; invite them first)"
                ),
            });
        }
        let email = email.trim().to_lowercase();
        let (key, fresh) = self.share_key_of(h);
        self.store_own_share_key(&h.0, &key).await?;
        let record = PendingOutshare {
            node: raw_handle(&h.0)?,
            to: Recipient::Email(email.clone()),
        };
        self.commit_keys("sharing a folder", |c| {
            c.add_pending_outshare(record.clone())
        })
        .await?;
        self.keys_state.lock().await.pending_out = true;
        self.send_share(h, &email, access, &key, fresh, None).await
    }

    /// Sends the keys of pending outshares (tag 64) whose recipients can now take them (the
    /// address has an account, is a contact — the request was accepted — and has a trusted
    /// Cu25519 key), then drops those records. At login and when a share or contact packet
    /// arrives while some are pending. Returns how many keys went out.
    pub async fn complete_pending_outshares(&self) -> Result<usize> {
        if !self.has_key_manager() {
            return Ok(0);
        }
        let Some((c, _)) = self.read_keys().await? else {
            return Ok(0);
        };
        let pending = c.pending_outshares();
        if pending.is_empty() {
            self.keys_state.lock().await.pending_out = false;
            return Ok(0);
        }
        let own = self.own_cu25519().await?;
        let keys = c.share_keys();
        let mut delivered = Vec::new();
        for p in &pending {
            let user = match &p.to {
                Recipient::User(u) => b64::encode(u),
                Recipient::Email(e) => match self.api.run(&GetPublicKey { u: e }).await {
                    Ok(r) => r.u,
                    Err(ApiError::Mega(ErrorCode::NotFound)) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            // Keys go to contacts only: until the request is accepted the share waits.
            if !self.view(|t| is_contact(t, &user)) {
                continue;
            }
            let Some(key) = keys.iter().find(|k| k.node == p.node) else {
                continue;
            };
            let cu = match self.trusted_cu25519(&user).await {
                Ok(Some(cu)) => cu,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("the key of a shared folder not sent: {e}");
                    continue;
                }
            };
            let k = b64::encode(&pairwise_key(&own, &cu).wrap(&key.key.0));
            let node = b64::encode(&p.node);
            self.api
                .run(&SendPendingKey {
                    u: &user,
                    h: &node,
                    k: &k,
                })
                .await?;
            if let Recipient::Email(e) = &p.to {
                self.write_tree()
                    .set_outshare(NodeHandle(node.clone()), e, None);
            }
            delivered.push(p.clone());
        }
        if !delivered.is_empty() {
            self.commit_keys("recording delivered share keys", |c| {
                let mut changed = false;
                for p in &delivered {
                    changed |= c.remove_pending_outshare(p);
                }
                changed
            })
            .await?;
        }
        self.keys_state.lock().await.pending_out = delivered.len() < pending.len();
        Ok(delivered.len())
    }

    /// Whether shares wait for their recipients' accounts (worth re-checking on packets).
    pub(crate) async fn has_pending_outshares(&self) -> bool {
        self.keys_state.lock().await.pending_out
    }

    /// `s2`'s `ok` and `ha`: zero placeholders on a key-manager account (the key is in
    /// `^!keys`), else the share key wrapped by the master key and the handle authentication.
    pub(super) fn owner_key(&self, h: &NodeHandle, key: &Key128) -> (String, String) {
        if self.has_key_manager() {
            return (ZERO_KEY.to_string(), ZERO_KEY.to_string());
        }
        let mk = &self.session.master_key.0;
        (
            b64::encode(&mk.wrap(&key.0)),
            b64::encode(&mk.wrap(format!("{}{}", h.0, h.0).as_bytes())),
        )
    }

    /// The share key RSA-encrypted to a user's public key (legacy sharing).
    fn rsa_wrap(&self, pubk: &str, key: &Key128) -> Result<String> {
        let pubk = b64::decode(pubk, "pubk").map_err(ApiError::from)?;
        Ok(b64::encode(
            &rsa::encrypt_key(&pubk, &key.0).map_err(protocol)?,
        ))
    }

    /// `cr` for a new share: every node below `h`, versions included, under `key`.
    pub(super) fn keys_under(&self, h: &NodeHandle, key: &Key128) -> ShareKeys {
        let nodes: Vec<Node> =
            self.view(|t| t.subtree_with_versions(h).into_iter().cloned().collect());
        ShareKeys {
            shares: vec![h.0.clone()],
            keys: nodes
                .iter()
                .enumerate()
                .filter_map(|(j, n)| Some((0, j, b64::encode(&key.wrap(&n.key.as_ref()?.raw())))))
                .collect(),
            nodes: nodes.iter().map(|n| n.handle.0.clone()).collect(),
        }
    }

    /// Ends the share of one of our folders with a user (e-mail or handle), or leaves a
    /// share we received (`who` = `None`).
    pub async fn unshare(&self, h: &NodeHandle, who: Option<&str>) -> Result<()> {
        let Some(who) = who else {
            let root = self.view(|t| t.inshare_of(h).cloned());
            let root = root.ok_or_else(|| Error::Invalid {
                what: format!("{}: not a folder shared with you", self.path_of(h)),
                code: None,
            })?;
            let _m = self.mutation()?;
            self.api
                .run(&crate::api::commands::Delete {
                    n: &root.handle.0,
                    i: self.api.echo_id(),
                    v: None,
                    vw: None,
                })
                .await?;
            self.remove_local(&root.handle);
            return Ok(());
        };
        let known = self.read_tree().user_by_email(who).map(str::to_string);
        let user = match known {
            Some(u) => u,
            None if who.contains('@') => self.api.run(&GetPublicKey { u: who }).await?.u,
            None => who.to_string(),
        };
        if !self
            .read_tree()
            .outshares()
            .iter()
            .any(|s| s.node == *h && s.user == user)
        {
            return Err(Error::NotFound {
                what: format!("{}: not shared with {who}", self.path_of(h)),
            });
        }
        let _m = self.mutation()?;
        self.end_share(h, &user).await?;
        self.write_tree().set_outshare(h.clone(), &user, None);
        Ok(())
    }

    /// `s2` ending the share of `h` with `user` (a handle, or `EXP` for a folder link).
    pub(super) async fn end_share(&self, h: &NodeHandle, user: &str) -> Result<()> {
        self.api
            .run(&Share {
                n: &h.0,
                s: vec![ShareTo {
                    u: user,
                    r: None,
                    k: None,
                }],
                ok: None,
                ha: None,
                cr: None,
                i: self.api.echo_id(),
            })
            .await?;
        Ok(())
    }

    /// Our outgoing shares, and the roots of the folders shared with us.
    pub fn shares(&self) -> (Vec<OutShare>, Vec<Node>) {
        self.view(|tree| {
            (
                tree.outshares().to_vec(),
                tree.inshares().into_iter().cloned().collect(),
            )
        })
    }

    /// Fetches the share keys other users sent us (`pk`), verifies the senders' keys,
    /// decrypts them, commits them to `^!keys` and only then acknowledges them. Returns how
    /// many new keys the key ring got. A legacy account has none.
    pub async fn accept_pending_keys(&self) -> Result<usize> {
        if !self.has_key_manager() {
            return Ok(0);
        }
        let reply = match self.api.run(&FetchPendingKeys {}).await {
            Ok(r) => r,
            Err(ApiError::Mega(ErrorCode::NotFound)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let own = self.own_cu25519().await?;
        let mut accepted: Vec<([u8; 6], Key128)> = Vec::new();
        for (sender, keys) in &reply.by_sender {
            let Some(map) = keys.as_object() else {
                continue;
            };
            let cu = match self.trusted_cu25519(sender).await {
                Ok(Some(cu)) => cu,
                Ok(None) => {
                    tracing::warn!("{sender} sent share keys but has no Cu25519 key; ignored");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("share keys from {sender} not accepted: {e}");
                    continue;
                }
            };
            let pw = pairwise_key(&own, &cu);
            for (node, k) in map {
                let decoded = k
                    .as_str()
                    .and_then(|k| b64::decode(k, "pending key").ok())
                    .and_then(|raw| pw.unwrap_key(&raw, "pending key").ok());
                let handle = b64::decode(node, "node")
                    .ok()
                    .and_then(|h| h.try_into().ok());
                match (handle, decoded) {
                    (Some(h), Some(key)) if key.len() == 16 => {
                        let mut arr = [0u8; 16];
                        arr.copy_from_slice(&key);
                        accepted.push((h, Key128(arr)));
                    }
                    _ => tracing::warn!("a malformed pending key from {sender} for {node}"),
                }
            }
        }
        let before = self.read_tree().keys().share_keys.len();
        if !accepted.is_empty() {
            self.commit_keys("accepting shared folders' keys", |c| {
                let mut changed = false;
                for (h, k) in &accepted {
                    let had = c.share_keys().iter().any(|r| r.node == *h);
                    // A different key for a share we have a key for is not taken.
                    changed |= !had && c.add_share_key(*h, k, TRUSTED);
                }
                changed
            })
            .await?;
        }
        // Stored: now the server may drop its copy.
        if let Some(d) = &reply.d {
            self.api.run(&AckPendingKeys { d }).await?;
        }
        Ok(self
            .read_tree()
            .keys()
            .share_keys
            .len()
            .saturating_sub(before))
    }

    /// Records in `^!keys` (untrusted) the keys of shares we received that only a legacy
    /// `sk` gave us, so that MEGA's apps find them there too.
    pub(crate) async fn adopt_legacy_share_keys(&self) -> Result<()> {
        if !self.has_key_manager() {
            return Ok(());
        }
        let keys: Vec<([u8; 6], Key128)> = self.view(|tree| {
            tree.inshares()
                .iter()
                .filter_map(|n| {
                    let k = tree.keys().share_keys.get(&n.handle.0)?.clone();
                    let h = b64::decode(&n.handle.0, "node").ok()?.try_into().ok()?;
                    Some((h, k))
                })
                .collect()
        });
        if keys.is_empty() {
            return Ok(());
        }
        self.commit_keys("recording shared folders' keys", |c| {
            let mut changed = false;
            for (h, k) in &keys {
                if !c.share_keys().iter().any(|r| r.node == *h) {
                    changed |= c.add_share_key(*h, k, 0);
                }
            }
            changed
        })
        .await
    }
}

/// A new random share key whose first byte is not zero (legacy RSA wrapping takes the
/// leading bytes of the minimal plaintext).
pub(super) fn new_share_key() -> Key128 {
    loop {
        let k = Key128::random();
        if k.0[0] != 0 {
            return k;
        }
    }
}

/// Whether `user` is a contact: known with an address, not hidden (removed).
fn is_contact(t: &crate::tree::NodeTree, user: &str) -> bool {
    t.email_of(user).is_some() && !t.is_hidden(user)
}

/// What sharing a folder did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// Shared with a contact: they see it now.
    Now,
    /// Shared with someone who is not a contact (or has no account yet): they were sent a
    /// contact request, and see the folder once they accept it.
    Pending,
}
