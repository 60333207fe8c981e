//! The shadow state database of one sync pair (SQLite, 0600, in the XDG state directory):
//! per path, the state both sides last agreed on, and a journal of actions in progress.
//!
//! Every action is journaled before it runs and removed, together with the shadow update it
//! implies, in one transaction after it ran. After a crash the journal says what was in
//! progress; the next run re-plans from the real state of both sides, and the planner's
//! content comparison (size + fingerprint) turns a transfer that completed without being
//! recorded into a "record", never into a second copy.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::plan::Shadow;

#[derive(Debug, thiserror::Error)]
#[error("sync state database {path}: {source}")]
pub struct ShadowError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

pub struct ShadowDb {
    /// Behind a mutex so that a `Syncer` (and its futures) can move between threads.
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
}

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS entries (
  path TEXT PRIMARY KEY, dir INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
  rmtime INTEGER NOT NULL, handle TEXT NOT NULL, inode INTEGER NOT NULL, crc TEXT);
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, started INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modes (path TEXT PRIMARY KEY, mode INTEGER NOT NULL);
"#;

/// A change to the shadow, applied when an action finishes.
#[derive(Debug, Clone)]
pub enum Update {
    /// Record (or replace) a path's agreed state.
    Put(Shadow),
    /// Forget a path and everything below it.
    Remove(String),
    /// A folder or file moved: its entry and everything below it.
    Move { from: String, to: String },
}

impl ShadowDb {
    /// Opens (creating, mode 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<ShadowDb, ShadowError> {
        let err = |source| ShadowError {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if !path.exists() {
            // Created private before SQLite opens it.
            let _ = crate::local::names::create_private(path);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(ShadowDb {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> ShadowError {
        ShadowError {
            path: self.path.display().to_string(),
            source,
        }
    }

    pub fn entries(&self) -> Result<Vec<Shadow>, ShadowError> {
        let db = self.db();
        let mut st = db
            .prepare(
                "SELECT path, dir, size, mtime, rmtime, handle, inode, crc FROM entries ORDER BY path",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Shadow {
                    path: r.get(0)?,
                    dir: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    mtime: r.get(3)?,
                    rmtime: r.get(4)?,
                    handle: r.get(5)?,
                    inode: r.get::<_, i64>(6)? as u64,
                    crc: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The permission bits both sides last agreed on, by path (see `sync::modes`).
    pub fn modes(&self) -> Result<std::collections::HashMap<String, u32>, ShadowError> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT path, mode FROM modes")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records (or with `None` forgets) agreed modes, in one transaction.
    pub fn set_modes(&self, modes: &[(String, Option<u32>)]) -> Result<(), ShadowError> {
        if modes.is_empty() {
            return Ok(());
        }
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| self.err(e))?;
        for (path, mode) in modes {
            match mode {
                Some(m) => tx.execute(
                    "INSERT INTO modes (path, mode) VALUES (?1, ?2) \
                     ON CONFLICT(path) DO UPDATE SET mode = excluded.mode",
                    params![path, m],
                ),
                None => tx.execute("DELETE FROM modes WHERE path = ?1", params![path]),
            }
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Journals an action about to run; returns its journal id.
    pub fn begin(&self, action: &str) -> Result<i64, ShadowError> {
        let db = self.db();
        db.execute(
            "INSERT INTO journal (action, started) VALUES (?1, ?2)",
            params![action, crate::local::time::now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(db.last_insert_rowid())
    }

    /// Ends a journaled action, applying its shadow updates in the same transaction.
    pub fn finish(&self, id: i64, updates: &[Update]) -> Result<(), ShadowError> {
        let path = self.path.display().to_string();
        let err = |source| ShadowError {
            path: path.clone(),
            source,
        };
        let mut db = self.db();
        let tx = db.transaction().map_err(err)?;
        for u in updates {
            match u {
                Update::Put(s) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO entries
                           (path, dir, size, mtime, rmtime, handle, inode, crc)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            s.path,
                            s.dir,
                            s.size as i64,
                            s.mtime,
                            s.rmtime,
                            s.handle,
                            s.inode as i64,
                            s.crc
                        ],
                    )
                    .map_err(err)?;
                }
                Update::Remove(p) => {
                    tx.execute(
                        "DELETE FROM entries WHERE path = ?1 OR substr(path, 1, length(?1) + 1) = ?1 || '/'",
                        params![p],
                    )
                    .map_err(err)?;
                }
                Update::Move { from, to } => {
                    tx.execute(
                        "DELETE FROM entries WHERE path = ?2 OR substr(path, 1, length(?2) + 1) = ?2 || '/'",
                        params![from, to],
                    )
                    .map_err(err)?;
                    tx.execute(
                        "UPDATE entries SET path = ?2 || substr(path, length(?1) + 1)
                         WHERE path = ?1 OR substr(path, 1, length(?1) + 1) = ?1 || '/'",
                        params![from, to],
                    )
                    .map_err(err)?;
                }
            }
        }
        tx.execute("DELETE FROM journal WHERE id = ?1", params![id])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Actions journaled but not finished (a previous run was killed), oldest first; the
    /// journal is then cleared (the next plan starts from the real state of both sides).
    pub fn take_unfinished(&self) -> Result<Vec<String>, ShadowError> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT action FROM journal ORDER BY id")
            .map_err(|e| self.err(e))?;
        let out = st
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))?;
        drop(st);
        db.execute("DELETE FROM journal", [])
            .map_err(|e| self.err(e))?;
        Ok(out)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, ShadowError> {
        self.db()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn delete_meta(&self, key: &str) -> Result<(), ShadowError> {
        self.db()
            .execute("DELETE FROM meta WHERE key = ?1", [key])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), ShadowError> {
        self.db()
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str) -> Shadow {
        Shadow {
            path: path.into(),
            dir: false,
            size: 1,
            mtime: 2,
            rmtime: 4,
            handle: "H".into(),
            inode: 3,
            crc: Some("c".into()),
        }
    }

    #[test]
    fn journal_and_updates_are_one_transaction_and_moves_carry_subtrees() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s/pair.sqlite");
        let db = ShadowDb::open(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let id = db.begin("upload a").unwrap();
        db.finish(
            id,
            &[
                Update::Put(e("a")),
                Update::Put(e("d/x")),
                Update::Put(e("d/y")),
                Update::Put(e("dz")),
            ],
        )
        .unwrap();
        db.finish(
            db.begin("move d").unwrap(),
            &[Update::Move {
                from: "d".into(),
                to: "e".into(),
            }],
        )
        .unwrap();
        let paths: Vec<String> = db.entries().unwrap().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["a", "dz", "e/x", "e/y"]);
        db.finish(db.begin("rm e").unwrap(), &[Update::Remove("e".into())])
            .unwrap();
        let paths: Vec<String> = db.entries().unwrap().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["a", "dz"]);
        // An action that never finished is reported once after a restart.
        db.begin("download b").unwrap();
        drop(db);
        let db = ShadowDb::open(&p).unwrap();
        assert_eq!(db.take_unfinished().unwrap(), ["download b"]);
        assert!(db.take_unfinished().unwrap().is_empty());
        assert_eq!(db.entries().unwrap()[0], e("a"));
    }
}
