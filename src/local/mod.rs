//! Small local helpers any layer may use; none of them knows about MEGA's protocol.
//!
//! * [`names`]: remote names as local file names (reversible escaping) and private files.
//! * [`files`]: temporary files renamed into place, local tree listings, mtimes, the umask.
//! * [`time`]: Unix seconds formatted in UTC.
//! * [`glob`]: shell-style matching of one name.
//! * [`units`]: sizes and rates as people write them.
//! * [`jsonl`]: append-only records as JSON lines.

pub mod files;
pub mod glob;
pub mod jsonl;
pub mod names;
pub mod time;
pub mod units;
