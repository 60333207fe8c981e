//! The account's key manager (`^!keys`, `MEGA-KEYS-SHARES-VERSIONS.md` §2): read at login
//! (an account without one is a legacy account and keeps using `ok`/`sk`), its share keys
//! (tag 48) given to the key ring, re-read when a `ua` packet names it, and changed only
//! through [`Client::commit_keys`], the read-modify-write of §2.8: read the current value and
//! version, apply the change to what was read, write it with `upv` naming that version at
//! generation + 1; on `-8` (somebody else wrote meanwhile) read again, re-apply, retry.
//!
//! What this client never does (§8.4): create or re-initialise `^!keys`, write it without the
//! version it read, lower the generation or build on a lower one than it has seen (that
//! stops all writes for the session), touch a tag it does not own, replace an existing share
//! key.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Client, Error, Result};
use crate::api::attrs::{GetUserAttribute, PutVersionedAttribute, UserAttribute};
use crate::api::{ApiError, ErrorCode};
use crate::crypto::keymgr::KeysContainer;
use crate::crypto::{b64, Key128};

/// The attribute's name.
pub const KEYS_ATTR: &str = "^!keys";

/// How many times a commit re-reads and re-applies after version conflicts.
const MAX_CONFLICTS: u32 = 8;

/// What the client knows of the key manager.
#[derive(Debug, Default)]
pub(crate) struct KeyManager {
    /// The version token of the value last read or written.
    version: Option<String>,
    /// The highest generation seen this session.
    seen: u32,
    /// A container older than one already seen was served: no more writes this session.
    downgraded: bool,
    /// Tag 64 held pending outshares when last looked at.
    pub(super) pending_out: bool,
}

/// The 6 bytes of an 8-character node handle, as `^!keys` records hold them.
pub(super) fn raw_handle(node: &str) -> Result<[u8; 6]> {
    b64::decode(node, "node handle")
        .map_err(ApiError::from)?
        .try_into()
        .map_err(|_| Error::Protocol(format!("{node}: not a node handle")))
}

impl Client {
    /// Whether the account has a key manager (`^!keys`), read at login.
    pub fn has_key_manager(&self) -> bool {
        self.key_manager.load(Ordering::Relaxed)
    }

    /// Reads `^!keys` and checks it: ours (identity), not older than what was seen. `None`
    /// on an account without one.
    pub(super) async fn read_keys(&self) -> Result<Option<(KeysContainer, String)>> {
        let _io = self.keys_io.lock().await;
        self.read_keys_locked().await
    }

    /// [`read_keys`](Self::read_keys) with `keys_io` held by the caller: no commit of this
    /// client can land between the request and the check of the generation it answers (a
    /// reply older than our own commit is then a real downgrade, not a race).
    async fn read_keys_locked(&self) -> Result<Option<(KeysContainer, String)>> {
        let q = GetUserAttribute {
            u: &self.session.user,
            ua: KEYS_ATTR,
            v: 1,
        };
        match self.api.run(&q).await {
            Ok(a) => self.check_keys(a).await.map(Some),
            Err(ApiError::Mega(ErrorCode::NotFound)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a served `^!keys` value and checks it: ours (identity), not older than what
    /// was seen (the generation and version are remembered).
    async fn check_keys(&self, attr: UserAttribute) -> Result<(KeysContainer, String)> {
        let blob = b64::decode(&attr.av, "^!keys").map_err(ApiError::from)?;
        let c = KeysContainer::open(&self.session.master_key, &blob).map_err(|e| {
            Error::Protocol(format!(
                "the account's key manager (^!keys) is unreadable: {e}"
            ))
        })?;
        let own = b64::decode(&self.session.user, "user handle").map_err(ApiError::from)?;
        if c.identity().is_some_and(|id| id != own.as_slice()) {
            return Err(Error::Protocol(
                "the key manager (^!keys) belongs to another account".into(),
            ));
        }
        let mut km = self.keys_state.lock().await;
        if c.generation() < km.seen {
            km.downgraded = true;
            tracing::error!(
                seen = km.seen,
                served = c.generation(),
                "the server served an older key manager (^!keys) than this session has seen; \
                 no more key changes are written this session"
            );
            return Err(Error::Protocol(
                "an older key manager (^!keys) than already seen was served".into(),
            ));
        }
        km.seen = c.generation();
        km.version = Some(attr.v.clone());
        Ok((c, attr.v))
    }

    /// Takes the key manager as `ug` served it at login (`None`: the account has none) and
    /// hands its share keys to the key ring. A value that cannot be used is reported and left
    /// alone (never rewritten).
    pub(crate) async fn load_keys(&self, served: Option<UserAttribute>) -> Result<()> {
        let read = match served {
            Some(a) => {
                let _io = self.keys_io.lock().await;
                self.check_keys(a).await.map(Some)
            }
            None => Ok(None),
        };
        match read {
            Ok(Some((c, _))) => {
                self.key_manager.store(true, Ordering::Relaxed);
                self.keys_state.lock().await.pending_out = !c.pending_outshares().is_empty();
                self.learn_keys(&c);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e @ Error::Protocol(_)) => {
                // The account has one, but we cannot use it: never write to it.
                self.key_manager.store(true, Ordering::Relaxed);
                self.keys_state.lock().await.downgraded = true;
                tracing::warn!("{e}; shares that need it stay undecryptable");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the container's share keys to the key ring; true if any was new.
    fn learn_keys(&self, c: &KeysContainer) -> bool {
        let mut tree = self.write_tree();
        let ring = tree.keys_mut();
        let mut new = false;
        for r in c.share_keys() {
            let h = b64::encode(&r.node);
            if ring.share_keys.get(&h) != Some(&r.key) {
                ring.share_keys.insert(h, r.key.clone());
                new = true;
            }
        }
        new
    }

    /// Re-reads the key manager after a `ua` packet named it (unless the version is the one
    /// we wrote); true if it brought share keys the key ring did not have.
    pub async fn refresh_keys(&self, version: Option<&str>) -> Result<bool> {
        if !self.has_key_manager() {
            // The account was migrated by another client meanwhile.
            self.key_manager.store(true, Ordering::Relaxed);
        }
        if version.is_some() && self.keys_state.lock().await.version.as_deref() == version {
            return Ok(false);
        }
        Ok(match self.read_keys().await? {
            Some((c, _)) => self.learn_keys(&c),
            None => false,
        })
    }

    /// Changes the key manager: `change` is applied to the current value (and applied again
    /// to a fresh one after a conflict); it returns false when nothing needs to change.
    pub(crate) async fn commit_keys(
        &self,
        what: &str,
        change: impl Fn(&mut KeysContainer) -> bool,
    ) -> Result<()> {
        // One read-modify-write of this client at a time, and no read in between.
        let _io = self.keys_io.lock().await;
        for attempt in 0..=MAX_CONFLICTS {
            if self.keys_state.lock().await.downgraded {
                return Err(Error::Protocol(format!(
                    "{what}: the key manager (^!keys) is not safe to change this session"
                )));
            }
            let Some((mut c, version)) = self.read_keys_locked().await? else {
                return Err(Error::Protocol(format!(
                    "{what}: the account has no key manager (^!keys); \
                     MEGA's own apps create it when they upgrade the account"
                )));
            };
            if !change(&mut c) {
                self.learn_keys(&c);
                return Ok(());
            }
            let generation = c.generation().checked_add(1).ok_or_else(|| {
                Error::Protocol("the key manager's generation cannot grow".into())
            })?;
            c.set_generation(generation);
            let put = PutVersionedAttribute {
                name: KEYS_ATTR,
                value: b64::encode(&c.seal(&self.session.master_key, None)),
                version: Some(&version),
            };
            match self.api.run(&put).await {
                Ok(reply) => {
                    let mut km = self.keys_state.lock().await;
                    km.seen = km.seen.max(generation);
                    km.version = reply.get(KEYS_ATTR).cloned();
                    drop(km);
                    self.learn_keys(&c);
                    return Ok(());
                }
                Err(ApiError::Mega(ErrorCode::Expired)) => {
                    tracing::debug!(attempt, "{what}: ^!keys changed meanwhile; re-applying");
                    // Both writers retrying in lockstep would clash again: a short random
                    // pause, growing with the attempts.
                    let ms = rand::random::<u64>() % (50 << attempt.min(4));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Protocol(format!(
            "{what}: ^!keys kept changing under us ({MAX_CONFLICTS} conflicts)"
        )))
    }

    /// Stores the key of a share or folder link we create, trusted and in use, before it is
    /// used in `s2` or `cr` (§8.4, rule 7).
    pub(crate) async fn store_own_share_key(&self, node: &str, key: &Key128) -> Result<()> {
        let raw = raw_handle(node)?;
        let flags = crate::crypto::keymgr::TRUSTED | crate::crypto::keymgr::IN_USE;
        let clash = std::sync::atomic::AtomicBool::new(false);
        self.commit_keys("sharing a folder", |c| {
            let had = c
                .share_keys()
                .iter()
                .any(|r| r.node == raw && r.flags & flags == flags);
            if had {
                return false;
            }
            if !c.add_share_key(raw, key, flags) {
                clash.store(true, Ordering::Relaxed);
                return false;
            }
            true
        })
        .await?;
        if clash.load(Ordering::Relaxed) {
            return Err(Error::Protocol(format!(
                "{node}: the key manager holds another key for this folder"
            )));
        }
        Ok(())
    }
}
