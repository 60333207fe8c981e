//! Folder sync, both kinds.
//!
//! One-way (`megacmd sync SRC DST`): [`oneway`] plans and carries out making a target look
//! like its source.
//!
//! Two-way (`megacmd sync --two-way`): a local folder and a MEGA folder kept the same in both
//! directions.
//!
//! * [`plan`]: the pure planner `(local, remote, shadow) -> actions` and its decision table.
//! * [`shadow`]: the per-pair SQLite database of agreed states and the action journal.
//! * [`ignore`]: exclusions, MEGA's `.megaignore` read and applied as MEGA's apps do.
//! * [`engine`]: a pair ([`Syncer`]): one reconciliation, or `--watch`.
//! * [`scan`]: both sides as the planner sees them.
//! * [`execute`]: running actions with the journal, debris, conflict copies.
//!
//! Both register with the account's Backup Centre ([`registry`]: heartbeats, pause and
//! removal asked from other devices), and watch the same way ([`wake`]).
//!
//! Backups (`megacmd backup`): [`backup`] keeps a local folder copied one way into the Vault,
//! registered with the account's Backup Centre.
//!
//! Must not touch FUSE or the command line.

pub mod backup;
pub mod engine;
pub mod execute;
pub mod ignore;
mod modes;
pub mod oneway;
pub mod plan;
pub mod registry;
pub mod scan;
pub mod shadow;
pub mod wake;

pub use engine::{Report, SyncError, SyncOptions, Syncer};
