//! The Backup Centre (`MEGA-BACKUPS-TRUST.md` §1): this device's id and name, the Vault's
//! "My backups" folder (`^!bak`) and device folders, and the registrations every backup and
//! sync has with the account (`sp`, `sphb`, `sr`, `sf`), which MEGA's apps list for all the
//! account's devices.
//!
//! Vault writes carry `vw:1` only on a client where [`Client::allow_vault_writes`] was called
//! (the backup engine's); a user's own commands never do, and the server refuses them there.

use std::sync::atomic::Ordering;

use serde_json::{json, Map};

use super::Client;
use crate::api::attrs::{GetUserAttribute, PutVersionedAttribute};
use crate::api::commands::{
    BackupFetch, BackupHeartbeat, BackupPut, BackupRemove, NewNode, RawBackup,
};
use crate::api::{ApiError, ErrorCode};
use crate::crypto::keys::{FolderKey, Key128, NodeKey};
use crate::crypto::{attr, b64, tlv};
use crate::error::{Error, Result};
use crate::tree::{Node, NodeHandle};

/// The attribute holding the handle of "My backups" (6 raw bytes).
const MY_BACKUPS_ATTR: &str = "^!bak";
/// The attribute of device (and drive) names.
const DEVICE_NAMES_ATTR: &str = "*!dn";
/// Desired states of syncs of the whole Cloud Drive.
const DESIRED_STATES_ATTR: &str = "*!sds";
/// The name "My backups" gets when this client creates it (MEGA's apps localise it).
pub const MY_BACKUPS_NAME: &str = "My backups";

/// Kinds of registration (`t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    TwoWay,
    UpSync,
    DownSync,
    CameraUploads,
    MediaUploads,
    Backup,
    Other,
}

impl BackupKind {
    pub fn wire(self) -> u8 {
        match self {
            BackupKind::TwoWay => 0,
            BackupKind::UpSync => 1,
            BackupKind::DownSync => 2,
            BackupKind::CameraUploads => 3,
            BackupKind::MediaUploads => 4,
            BackupKind::Backup | BackupKind::Other => 5,
        }
    }

    fn from_wire(t: i64) -> BackupKind {
        match t {
            0 => BackupKind::TwoWay,
            1 => BackupKind::UpSync,
            2 => BackupKind::DownSync,
            3 => BackupKind::CameraUploads,
            4 => BackupKind::MediaUploads,
            5 => BackupKind::Backup,
            _ => BackupKind::Other,
        }
    }
}

/// Registration states (`s`, and the desired states of `sds`).
pub mod state {
    pub const ACTIVE: u8 = 1;
    pub const FAILED: u8 = 2;
    /// Temporarily disabled; what "pause" sets.
    pub const PAUSED: u8 = 3;
    pub const DISABLED: u8 = 4;
    /// Only in a desired state: remove it.
    pub const DELETED: u8 = 8;

    /// What a state is called in listings.
    pub fn name(s: i64) -> &'static str {
        match s {
            0 => "not-initialised",
            1 => "active",
            2 => "failed",
            3 => "paused",
            4 => "disabled",
            5 => "uploads-paused",
            6 => "downloads-paused",
            7 => "transfers-paused",
            8 => "deleted",
            _ => "unknown",
        }
    }
}

/// Heartbeat statuses (`sphb` `s`).
pub mod beat {
    pub const UP_TO_DATE: u8 = 1;
    pub const SYNCING: u8 = 2;
    /// The initial scan.
    pub const PENDING: u8 = 3;
    pub const INACTIVE: u8 = 4;

    pub fn name(s: i64) -> &'static str {
        match s {
            1 => "up-to-date",
            2 => "syncing",
            3 => "scanning",
            4 => "inactive",
            6 => "stalled",
            _ => "unknown",
        }
    }
}

/// One registration, decrypted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupRecord {
    pub id: String,
    pub kind: BackupKind,
    /// The remote root.
    pub root: Option<String>,
    /// The local folder (on its device); `None` if it does not decrypt.
    pub local: Option<String>,
    pub name: Option<String>,
    pub device: Option<String>,
    /// The registering client, as the server recorded its user agent.
    pub agent: Option<String>,
    pub state: i64,
    pub substate: i64,
    /// The last heartbeat, if one came.
    pub heartbeat: Option<Heartbeat>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Heartbeat {
    pub received: i64,
    pub status: i64,
    pub progress: Option<i64>,
    pub uploads: i64,
    pub downloads: i64,
    pub last_activity: Option<i64>,
}

/// What a new registration says.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub kind: BackupKind,
    pub root: &'a NodeHandle,
    pub local: &'a str,
    pub name: &'a str,
    pub device: &'a str,
}

/// This machine's device id as MEGA's apps compute it: base64url of SHA-256 of
/// `/etc/machine-id` (or `/var/lib/dbus/machine-id`) without its trailing newline.
pub fn device_id() -> Result<String> {
    for f in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(text) = std::fs::read_to_string(f) {
            let id = text.strip_suffix('\n').unwrap_or(&text);
            if !id.is_empty() {
                return Ok(device_id_of(id));
            }
        }
    }
    Err(Error::Config(crate::config::ConfigError::File {
        path: "/etc/machine-id".into(),
        msg: "missing or empty; MEGA's Backup Centre tells devices apart by it \
              (systemd-machine-id-setup creates one)"
            .into(),
    }))
}

/// The device id of a machine id.
pub fn device_id_of(machine_id: &str) -> String {
    use sha2::Digest;
    b64::encode(&sha2::Sha256::digest(machine_id.as_bytes()))
}

/// This machine's name, for `*!dn` (the kernel's host name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

/// The desired states another device asked for, from a root node's `sds` attribute
/// (`"<id>:<state>,…"`): the last entry for `id` wins.
pub fn desired_state(sds: &str, id: &str) -> Option<u8> {
    sds.split(',')
        .filter_map(|e| e.split_once(':'))
        .filter(|(i, _)| *i == id)
        .filter_map(|(_, s)| s.trim().parse().ok())
        .next_back()
}

impl Client {
    /// Lets this client write into the Vault (`vw:1` on its writes): for the backup engine's
    /// own client only.
    pub fn allow_vault_writes(&self) {
        self.vault_writes.store(true, Ordering::Relaxed);
    }

    pub(super) fn vw(&self) -> Option<u8> {
        self.vault_writes.load(Ordering::Relaxed).then_some(1)
    }

    /// Every registration of the account (all devices), decrypted where it can be.
    pub async fn backup_records(&self) -> Result<Vec<BackupRecord>> {
        let raw: Vec<RawBackup> = self.api.run(&BackupFetch {}).await?;
        let mk = &self.session.master_key;
        Ok(raw
            .into_iter()
            .map(|r| BackupRecord {
                kind: BackupKind::from_wire(r.t),
                root: r.h,
                local: r.l.and_then(|l| tlv::open_text(mk, &l, "lf").ok()),
                name: r.e.and_then(|e| tlv::open_text(mk, &e, "bn").ok()),
                device: r.d,
                agent: r.dua,
                state: r.s,
                substate: r.ss,
                heartbeat: r.hb.map(|h| Heartbeat {
                    received: h.ts,
                    status: h.s,
                    progress: h.p,
                    uploads: h.qu,
                    downloads: h.qd,
                    last_activity: h.lts,
                }),
                id: r.id,
            })
            .collect())
    }

    /// Registers a backup or sync; answers its id.
    pub async fn register_backup(&self, r: &Registration<'_>) -> Result<String> {
        let mk = &self.session.master_key;
        let id = self
            .api
            .run(&BackupPut {
                t: Some(r.kind.wire()),
                h: Some(&r.root.0),
                l: Some(tlv::seal_text(mk, "lf", r.local)),
                d: Some(r.device),
                s: Some(state::ACTIVE),
                ss: Some(0),
                e: Some(tlv::seal_text(mk, "bn", r.name)),
                ..BackupPut::default()
            })
            .await?;
        if id.0.is_empty() {
            return Err(Error::Protocol("sp answered no backup id".into()));
        }
        Ok(id.0)
    }

    /// Changes a registration's state (`s`, and `ss` with it).
    pub async fn set_backup_state(&self, id: &str, s: u8, ss: u32) -> Result<()> {
        self.api
            .run(&BackupPut {
                id: Some(id),
                s: Some(s),
                ss: Some(ss),
                ..BackupPut::default()
            })
            .await?;
        Ok(())
    }

    /// One heartbeat: status, progress 0–100 (sent only when up to date or syncing),
    /// pending uploads and downloads, last activity (Unix seconds).
    pub async fn backup_heartbeat(
        &self,
        id: &str,
        status: u8,
        progress: u8,
        pending: (u32, u32),
        last_activity: Option<i64>,
    ) -> Result<()> {
        self.api
            .run(&BackupHeartbeat {
                id,
                s: status,
                p: matches!(status, beat::UP_TO_DATE | beat::SYNCING).then_some(progress.min(100)),
                qu: pending.0,
                qd: pending.1,
                lts: last_activity,
                lh: None,
            })
            .await?;
        Ok(())
    }

    /// Removes a registration (its folders stay).
    pub async fn remove_backup(&self, id: &str) -> Result<()> {
        self.api.run(&BackupRemove { id }).await?;
        Ok(())
    }

    /// Reads one of our own attributes as bytes (`None`: not set).
    async fn own_attr(&self, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        let q = GetUserAttribute {
            u: &self.session.user,
            ua: name,
            v: 1,
        };
        match self.api.run(&q).await {
            Ok(a) => {
                let raw = b64::decode(&a.av, "user attribute")
                    .map_err(|e| Error::Protocol(format!("{name}: {e}")))?;
                Ok(Some((raw, a.v)))
            }
            Err(ApiError::Mega(ErrorCode::NotFound)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Remembers "My backups" from a served `^!bak` (6 raw bytes; anything else is ignored).
    pub(super) fn remember_my_backups(&self, served: Option<&crate::api::attrs::UserAttribute>) {
        let h = served
            .and_then(|a| b64::decode(&a.av, "^!bak").ok())
            .filter(|raw| raw.len() == 6)
            .map(|raw| NodeHandle(b64::encode(&raw)));
        *self.my_backups.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }

    /// "My backups" as last known (login, or created since), if it is in the tree.
    pub fn my_backups_cached(&self) -> Option<NodeHandle> {
        let h = self
            .my_backups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        self.view(|t| t.get(&h).is_some()).then_some(h)
    }

    /// `^!bak` as stored: the "My backups" folder it names (if that exists), and the
    /// attribute's version (`None`: never set).
    async fn read_my_backups(&self) -> Result<(Option<Node>, Option<String>)> {
        let Some((raw, version)) = self.own_attr(MY_BACKUPS_ATTR).await? else {
            return Ok((None, None));
        };
        if raw.len() != 6 {
            return Err(Error::Protocol(format!(
                "{MY_BACKUPS_ATTR} holds {} bytes, not a node handle",
                raw.len()
            )));
        }
        let h = NodeHandle(b64::encode(&raw));
        *self.my_backups.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.clone());
        Ok((self.view(|t| t.get(&h).cloned()), Some(version)))
    }

    /// "My backups" in the Vault, if the account has one (`^!bak` names it and it exists).
    pub async fn my_backups(&self) -> Result<Option<Node>> {
        Ok(self.read_my_backups().await?.0)
    }

    /// "My backups", created in the Vault (and named by `^!bak`) if missing.
    pub async fn ensure_my_backups(&self) -> Result<Node> {
        let (existing, version) = self.read_my_backups().await?;
        if let Some(n) = existing {
            return Ok(n);
        }
        let vault = self
            .view(|t| t.inbox().cloned())
            .ok_or_else(|| Error::Protocol("the account has no Vault root".into()))?;
        let folder = self
            .mkdir_with(&vault.handle, MY_BACKUPS_NAME, Map::new())
            .await?;
        let raw = b64::decode(&folder.handle.0, "node handle")
            .map_err(|e| Error::Protocol(format!("new folder handle: {e}")))?;
        self.api
            .run(&PutVersionedAttribute {
                name: MY_BACKUPS_ATTR,
                value: b64::encode(&raw),
                version: version.as_deref(),
            })
            .await?;
        *self.my_backups.lock().unwrap_or_else(|p| p.into_inner()) = Some(folder.handle.clone());
        Ok(folder)
    }

    /// This device's folder in "My backups" (the one whose `dev-id` is the device id),
    /// created if missing.
    pub async fn ensure_device_folder(
        &self,
        my_backups: &NodeHandle,
        device: &str,
    ) -> Result<Node> {
        let found = self.view(|t| {
            t.children(my_backups)
                .into_iter()
                .find(|n| {
                    n.kind.is_container()
                        && n.attrs()
                            .and_then(|a| {
                                a.get("dev-id").and_then(|v| v.as_str()).map(str::to_string)
                            })
                            .as_deref()
                            == Some(device)
                })
                .cloned()
        });
        if let Some(n) = found {
            return Ok(n);
        }
        if self.view(|t| t.child_by_name(my_backups, device).is_some()) {
            return Err(Error::AlreadyExists {
                what: format!(
                    "{} (a folder without the device id)",
                    self.path_of(my_backups)
                ),
            });
        }
        let mut extra = Map::new();
        extra.insert("dev-id".into(), json!(device));
        self.mkdir_with(my_backups, device, extra).await
    }

    /// Names this device in `*!dn` if it has no name yet.
    pub async fn ensure_device_name(&self, device: &str, name: &str) -> Result<()> {
        let mk = &self.session.master_key;
        let (mut records, version) = match self.own_attr(DEVICE_NAMES_ATTR).await? {
            Some((raw, v)) => (
                tlv::open(mk, &raw)
                    .map_err(|e| Error::Protocol(format!("{DEVICE_NAMES_ATTR}: {e}")))?,
                Some(v),
            ),
            None => (Vec::new(), None),
        };
        if records.iter().any(|(k, _)| k == device) {
            return Ok(());
        }
        // Another device's name already: keep them apart, as MEGA's apps insist.
        let mut chosen = name.to_string();
        let mut n = 2;
        while records.iter().any(|(_, v)| v == chosen.as_bytes()) {
            chosen = format!("{name} ({n})");
            n += 1;
        }
        records.push((device.to_string(), chosen.into_bytes()));
        records.sort();
        self.api
            .run(&PutVersionedAttribute {
                name: DEVICE_NAMES_ATTR,
                value: b64::encode(&tlv::seal(mk, &records, None)),
                version: version.as_deref(),
            })
            .await?;
        Ok(())
    }

    /// The device names of the account: device id → name.
    pub async fn device_names(&self) -> Result<Vec<(String, String)>> {
        let mk = &self.session.master_key;
        Ok(match self.own_attr(DEVICE_NAMES_ATTR).await? {
            Some((raw, _)) => tlv::open(mk, &raw)
                .map_err(|e| Error::Protocol(format!("{DEVICE_NAMES_ATTR}: {e}")))?
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
            None => Vec::new(),
        })
    }

    /// Sets (`Some`) or clears (`None`) the desired state for registration `id` on its
    /// root node's `sds` attribute, keeping other entries.
    pub async fn set_desired_state(
        &self,
        root: &NodeHandle,
        id: &str,
        s: Option<u8>,
    ) -> Result<()> {
        let n = self.node(root)?;
        let mut attrs = n.attrs().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        let old = attrs
            .get("sds")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let mut entries: Vec<String> = old
            .split(',')
            .filter(|e| !e.is_empty() && e.split_once(':').map(|(i, _)| i) != Some(id))
            .map(str::to_string)
            .collect();
        if let Some(s) = s {
            entries.push(format!("{id}:{s}"));
        }
        if entries.is_empty() {
            if attrs.remove("sds").is_none() {
                return Ok(());
            }
        } else {
            attrs.insert("sds".into(), json!(entries.join(",")));
        }
        self.put_attrs_vw(&n, attrs, Some(1)).await
    }

    /// Moves a node to today's `SyncDebris` folder in the Rubbish Bin (UTC date), where MEGA's
    /// apps put what a sync or backup removed remotely.
    pub async fn to_sync_debris(&self, h: &NodeHandle) -> Result<()> {
        let rubbish = self.rubbish()?.handle;
        let day = crate::local::time::fmt_time(crate::local::time::now());
        let parts = ["SyncDebris".to_string(), day[..10].to_string()];
        let debris = self.ensure_path(&rubbish, &parts).await?;
        self.move_to(h, &debris).await
    }

    /// The desired states in `*!sds` (for syncs of the whole Cloud Drive, whose root cannot
    /// carry attributes): `(id, state)`; `None` if the attribute is not set.
    pub async fn desired_states_of_account(&self) -> Result<Option<Vec<(String, String)>>> {
        let mk = &self.session.master_key;
        let Some((raw, _)) = self.own_attr(DESIRED_STATES_ATTR).await? else {
            return Ok(None);
        };
        let records = tlv::open(mk, &raw)
            .map_err(|e| Error::Protocol(format!("{DESIRED_STATES_ATTR}: {e}")))?;
        Ok(Some(
            records
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
        ))
    }

    /// Sets or clears one registration's desired state in `*!sds`, keeping the others.
    pub async fn set_account_desired_state(&self, id: &str, s: Option<u8>) -> Result<()> {
        let mk = &self.session.master_key;
        let (mut records, version) = match self.own_attr(DESIRED_STATES_ATTR).await? {
            Some((raw, v)) => (
                tlv::open(mk, &raw)
                    .map_err(|e| Error::Protocol(format!("{DESIRED_STATES_ATTR}: {e}")))?,
                Some(v),
            ),
            None => (Vec::new(), None),
        };
        let before = records.len();
        records.retain(|(k, _)| k != id);
        if let Some(s) = s {
            records.push((id.to_string(), s.to_string().into_bytes()));
        } else if records.len() == before {
            return Ok(());
        }
        self.api
            .run(&PutVersionedAttribute {
                name: DESIRED_STATES_ATTR,
                value: b64::encode(&tlv::seal(mk, &records, None)),
                version: version.as_deref(),
            })
            .await?;
        Ok(())
    }

    /// Creates a folder with attributes beyond its name.
    pub(crate) async fn mkdir_with(
        &self,
        parent: &NodeHandle,
        name: &str,
        mut attrs: Map<String, serde_json::Value>,
    ) -> Result<Node> {
        self.container(parent)?;
        let key = NodeKey::Folder(FolderKey(Key128::random()));
        attrs.insert("n".into(), json!(name));
        let node = NewNode {
            h: "xxxxxxxx".into(),
            t: 1,
            a: b64::encode(&attr::encrypt(&key.attr_key(), &attrs)),
            k: self.wrap_key(&key),
            ov: None,
            p: None,
            ph: None,
            fa: None,
        };
        self.put_node(parent, node, &key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_device_id() {
        assert_eq!(
            device_id_of("0123456789abcdef0123456789abcdef"),
            "PrG9Q5lH63YpmOVmzMLgmceREYsvQFecxPfaK1Bht_k"
        );
    }

    #[test]
    fn desired_states() {
        assert_eq!(desired_state("pQ0xxYz1RfE:8", "pQ0xxYz1RfE"), Some(8));
        assert_eq!(desired_state("a:3,b:1,a:1", "a"), Some(1));
        assert_eq!(desired_state("a:3", "b"), None);
        assert_eq!(desired_state("", "a"), None);
        assert_eq!(desired_state("a:x,a", "a"), None);
    }
}
