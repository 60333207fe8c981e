//! mega-mount: a client for MEGA cloud storage.
//!
//! The protocol engine shared by the front-ends (the FUSE mount, `megacmd`, folder sync):
//! layers point one way, down — `events`/`transfer`/`tree` -> `api` -> `crypto`.
//! See `doc/ARCHITECTURE.md`.

pub mod api;
pub mod client;
pub mod crypto;
pub mod events;
pub mod link;
pub mod transfer;
pub mod tree;

pub use client::{Client, Error, PublicFolder, Quota, TreeEvent};
pub mod cli;
pub mod config;
pub mod fs;
pub mod fuse;
pub mod mount;
pub mod names;
pub mod sync;
