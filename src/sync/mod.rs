//! Two-way folder sync: a local folder and a MEGA folder kept the same in both directions.
//!
//! * [`plan`]: the pure planner `(local, remote, shadow) -> actions` and its decision table.
//! * [`shadow`]: the per-pair SQLite database of agreed states and the action journal.
//! * [`ignore`]: `.megaignore` exclusions.
//! * [`engine`]: scanning, executing with the journal, debris, conflicts, `--watch`.

pub mod engine;
pub mod ignore;
pub mod plan;
pub mod shadow;

pub use engine::{Report, SyncError, SyncOptions, Syncer};

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
