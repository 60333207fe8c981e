//! Modes in two-way sync. A `chmod` alone changes neither side's size, mtime or node, so the
//! planner ([`super::plan`]) does not see it. After the transfers, every path both sides agree
//! on (the shadow) compares its local permission bits, the mode stored on the remote node
//! (see [`crate::tree::posix`]) and the mode both last agreed on (kept beside the shadow): the
//! side that changed wins, the local one when both did. The first time a path is compared, a
//! mode stored on MEGA wins over the local one (a new local file or folder has the defaults
//! where a mode on MEGA was set on purpose). Links are left alone (their mode is always 0777).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::engine::{io_err, SyncError, Syncer};
use crate::tree::NodeHandle;

/// The bits synced: read, write, execute (set-ID and sticky bits from the cloud are not
/// applied to local files, as for downloads).
const RWX: u32 = 0o777;

impl Syncer {
    /// Carries `chmod`s across (see the module doc). A change that cannot be made (a folder
    /// shared with read-write access only) is left for the next run, logged at debug.
    pub(super) async fn sync_modes(&self) -> Result<usize, SyncError> {
        let agreed = self.db.modes()?;
        let mut record: Vec<(String, Option<u32>)> = Vec::new();
        let mut changed = 0;
        let shadow = self.db.entries()?;
        for s in &shadow {
            let Ok(n) = self.client.node(&NodeHandle(s.handle.clone())) else {
                continue;
            };
            let p = self.local.join(&s.path);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if n.is_symlink() || m.file_type().is_symlink() || m.is_dir() != s.dir {
                continue;
            }
            let local = m.mode() & RWX;
            let remote = n.mode.map(|m| m & RWX);
            let last = agreed.get(&s.path).copied();
            let push = match (last, remote) {
                (None, Some(r)) if r != local => false,
                (None, _) => {
                    record.push((s.path.clone(), Some(local)));
                    continue;
                }
                (Some(a), _) if local != a => true,
                (Some(a), Some(r)) if r != a => false,
                _ => continue,
            };
            if push {
                if let Err(e) = self.client.set_mode(&n.handle, local).await {
                    tracing::debug!("{}: mode not stored on MEGA: {e}", s.path);
                    continue;
                }
                record.push((s.path.clone(), Some(local)));
            } else if let Some(r) = remote {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(r))
                    .map_err(|e| io_err(&p, e))?;
                record.push((s.path.clone(), Some(r)));
            }
            changed += 1;
        }
        // Paths no longer agreed on are forgotten.
        let known: std::collections::HashSet<&str> =
            shadow.iter().map(|s| s.path.as_str()).collect();
        record.extend(
            agreed
                .keys()
                .filter(|p| !known.contains(p.as_str()))
                .map(|p| (p.clone(), None)),
        );
        self.db.set_modes(&record)?;
        Ok(changed)
    }
}
