//! mega-mount: a client for MEGA cloud storage.
//!
//! The protocol engine shared by the front-ends (the FUSE mount, `megacmd`, folder sync).
//! Layers point one way, down (see `doc/ARCHITECTURE.md` for the graph):
//!
//! * front-ends: [`cli`] (megacmd), [`mount`] (running a mount) over [`fuse`] (the adapter);
//! * [`fs`] (the mount's filesystem logic) and [`sync`] (one-way and two-way sync);
//! * [`client`] (the account facade, [`connect`](client::connect)) and its [`Error`];
//! * [`transfer`], [`tree`], [`events`] over [`api`] over [`crypto`];
//! * helpers any layer may use: [`local`] (local files, names, times, globs), [`link`],
//!   [`config`].
//!
//! No library module imports `cli`; the binaries are short `main`s.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
pub mod fs;
pub mod fuse;
pub mod jobs;
pub mod link;
pub mod local;
pub mod mount;
pub mod sync;
pub mod transfer;
pub mod tree;

pub use client::{Client, PublicFolder, Quota, TreeEvent};

/// The version `--version` prints: the package version and the commit built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MEGA_MOUNT_COMMIT"),
    ")"
);
pub use error::{AuthError, Error, Result};
