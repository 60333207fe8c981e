//! Action packets from the event channel (`MEGA-PROTOCOL.md` §9.4), typed, and applying them
//! to the tree with a list of what changed. Moves arrive as `d` (marked as a move) followed
//! by `t` with the same nodes and are reported as one [`Change::Moved`].

use std::collections::HashMap;

use serde_json::Value;

use super::node::{parse_node, raw_from_value, Access, InShare, NodeHandle};
use super::NodeTree;
use crate::api::commands::RawUser;

/// The users of a `u` list, leniently.
fn users(v: Option<&Value>) -> Vec<RawUser> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| serde_json::from_value(u.clone()).ok())
        .collect()
}

/// What applying action packets changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(NodeHandle),
    /// Attributes (name, mtime…) changed.
    Updated(NodeHandle),
    Removed {
        handle: NodeHandle,
        parent: Option<NodeHandle>,
    },
    Moved {
        handle: NodeHandle,
        from: Option<NodeHandle>,
        to: Option<NodeHandle>,
    },
}

/// A typed action packet (`MEGA-PROTOCOL.md` §9.4).
#[derive(Debug, Clone, PartialEq)]
pub enum ActionPacket {
    /// `t`: new nodes (uploads, new folders, the second half of a move).
    NewNodes {
        nodes: Vec<Value>,
        /// Users the nodes come with (the sharer of a new incoming share).
        users: Vec<RawUser>,
        echo: Option<String>,
    },
    /// `u`: attributes changed.
    Update {
        handle: NodeHandle,
        attrs: String,
        echo: Option<String>,
    },
    /// `fa`: a file's attributes (thumbnail, preview…) changed; `fa` is the whole new list.
    FileAttributes {
        handle: NodeHandle,
        fa: String,
        echo: Option<String>,
    },
    /// `d`: a subtree was removed; `is_move` when a `t` with the same nodes follows.
    Delete {
        handle: NodeHandle,
        is_move: bool,
        echo: Option<String>,
    },
    /// `ua`: user attributes of `user` changed (names and their new versions).
    UserAttributes {
        user: String,
        names: Vec<String>,
        /// The new version of each, in the same order.
        versions: Vec<String>,
        echo: Option<String>,
    },
    /// `s`/`s2`: a share of `node` by `owner` with `user` started, changed (`access`) or
    /// ended (no `access`).
    Share {
        node: NodeHandle,
        owner: String,
        user: String,
        access: Option<i64>,
        echo: Option<String>,
    },
    /// `opc`/`ipc`: a contact request sent or received (`gone`: cancelled, `dts`);
    /// `upco`/`upci`: one answered (accepted, denied or ignored: no longer pending).
    Request {
        id: String,
        /// The other side's address, where the packet names it.
        email: Option<String>,
        outgoing: bool,
        msg: String,
        ts: i64,
        gone: bool,
        echo: Option<String>,
    },
    /// `c`: contacts (users) appeared or changed.
    Contacts {
        users: Vec<RawUser>,
        echo: Option<String>,
    },
    /// Any other packet type (links, pending keys…), not applied to the tree.
    Other { kind: String, echo: Option<String> },
}

impl ActionPacket {
    pub fn parse(v: &Value) -> Option<ActionPacket> {
        let a = v.get("a")?.as_str()?;
        let echo = v.get("i").and_then(Value::as_str).map(str::to_string);
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        Some(match a {
            // Current nodes in `f`, previous versions of files in `f2`.
            "t" => ActionPacket::NewNodes {
                nodes: ["f", "f2"]
                    .iter()
                    .filter_map(|k| v.get("t")?.get(k)?.as_array())
                    .flatten()
                    .cloned()
                    .collect(),
                users: users(v.get("t").and_then(|t| t.get("u"))),
                echo,
            },
            "s" | "s2" => ActionPacket::Share {
                node: NodeHandle::from(s("n")?),
                owner: s("o").unwrap_or_default().to_string(),
                user: s("u").unwrap_or_default().to_string(),
                access: v.get("r").and_then(Value::as_i64),
                echo,
            },
            "opc" | "ipc" | "upco" | "upci" => ActionPacket::Request {
                id: s("p")?.to_string(),
                email: s("m").map(str::to_string),
                outgoing: matches!(a, "opc" | "upco"),
                msg: s("msg").unwrap_or_default().to_string(),
                ts: v.get("ts").and_then(Value::as_i64).unwrap_or(0),
                gone: a.starts_with("up") || v.get("dts").is_some(),
                echo,
            },
            "c" => ActionPacket::Contacts {
                users: users(v.get("u")),
                echo,
            },
            "u" => ActionPacket::Update {
                handle: NodeHandle::from(s("n")?),
                attrs: s("at")?.to_string(),
                echo,
            },
            "fa" => ActionPacket::FileAttributes {
                handle: NodeHandle::from(s("n")?),
                fa: s("fa")?.to_string(),
                echo,
            },
            "d" => ActionPacket::Delete {
                handle: NodeHandle::from(s("n")?),
                is_move: v.get("m").and_then(Value::as_i64) == Some(1),
                echo,
            },
            "ua" => {
                let strings = |k: &str| -> Vec<String> {
                    v.get(k)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                };
                ActionPacket::UserAttributes {
                    user: s("u").unwrap_or_default().to_string(),
                    names: strings("ua"),
                    versions: strings("v"),
                    echo,
                }
            }
            other => ActionPacket::Other {
                kind: other.to_string(),
                echo,
            },
        })
    }

    pub fn echo(&self) -> Option<&str> {
        match self {
            ActionPacket::NewNodes { echo, .. }
            | ActionPacket::Update { echo, .. }
            | ActionPacket::FileAttributes { echo, .. }
            | ActionPacket::Delete { echo, .. }
            | ActionPacket::UserAttributes { echo, .. }
            | ActionPacket::Share { echo, .. }
            | ActionPacket::Contacts { echo, .. }
            | ActionPacket::Request { echo, .. }
            | ActionPacket::Other { echo, .. } => echo.as_deref(),
        }
    }
}

impl NodeTree {
    /// Applies a batch of action packets in order. Packets whose echo id is `skip_echo` (this
    /// client's own changes, already applied locally) are ignored. A `d` marked as a move is
    /// held until the end of the batch so that the following `t` turns it into a move.
    pub fn apply(&mut self, packets: &[ActionPacket], skip_echo: Option<&str>) -> Vec<Change> {
        let mut changes = Vec::new();
        // Subtrees removed by a move-`d`, waiting for their `t`.
        let mut limbo: HashMap<NodeHandle, Option<NodeHandle>> = HashMap::new();
        // New shares announced by `s` before their `t` brings the nodes.
        let mut announced: HashMap<NodeHandle, InShare> = HashMap::new();
        for p in packets {
            if skip_echo.is_some() && p.echo() == skip_echo {
                continue;
            }
            match p {
                ActionPacket::NewNodes { nodes, users, .. } => {
                    self.learn_users(users);
                    for v in nodes {
                        let node = match raw_from_value(v.clone())
                            .and_then(|raw| parse_node(&raw, &mut self.keys))
                        {
                            Ok(mut n) => {
                                if n.inshare.is_none() {
                                    n.inshare = announced.remove(&n.handle);
                                }
                                n
                            }
                            Err(e) => {
                                tracing::warn!("ignoring malformed node in event: {e}");
                                continue;
                            }
                        };
                        let h = node.handle.clone();
                        let to = node.parent.clone();
                        let version = to
                            .as_ref()
                            .and_then(|p| self.node(p))
                            .is_some_and(|p| p.is_file());
                        if version {
                            // A previous version of a file: not part of any folder's
                            // listing, so no change to report (its file was reported).
                            limbo.remove(&h);
                            self.insert(node);
                            continue;
                        }
                        if let Some(from) = limbo.remove(&h) {
                            changes.push(Change::Moved {
                                handle: h.clone(),
                                from,
                                to,
                            });
                        } else if self.node(&h).is_some() {
                            let from = self.node(&h).and_then(|n| n.parent.clone());
                            if from != to {
                                changes.push(Change::Moved {
                                    handle: h.clone(),
                                    from,
                                    to,
                                });
                            } else {
                                changes.push(Change::Updated(h.clone()));
                            }
                        } else {
                            changes.push(Change::Added(h.clone()));
                        }
                        self.insert(node);
                    }
                }
                ActionPacket::Update { handle, attrs, .. } => {
                    if self.set_encrypted_attrs(handle, attrs) {
                        changes.push(Change::Updated(handle.clone()));
                    }
                }
                ActionPacket::FileAttributes { handle, fa, .. } => {
                    if self.set_file_attrs(handle, fa) {
                        changes.push(Change::Updated(handle.clone()));
                    }
                }
                ActionPacket::Delete {
                    handle, is_move, ..
                } => {
                    let parent = self.node(handle).and_then(|n| n.parent.clone());
                    let removed = self.remove_subtree(handle);
                    if removed.is_empty() {
                        continue;
                    }
                    if *is_move {
                        limbo.insert(handle.clone(), parent);
                        // Descendants come back in the `t`; remember them silently.
                        for n in removed.iter().skip(1) {
                            limbo.insert(n.handle.clone(), n.parent.clone());
                        }
                    } else {
                        changes.push(Change::Removed {
                            handle: handle.clone(),
                            parent,
                        });
                    }
                }
                ActionPacket::Share {
                    node,
                    owner,
                    user,
                    access,
                    ..
                } => {
                    let me = self.keys.user.clone();
                    let access = access.and_then(Access::from_level);
                    if *owner == me && user != "EXP" && !user.is_empty() {
                        self.set_outshare(node.clone(), user, access);
                    } else if *user == me {
                        match access {
                            Some(access) if self.node(node).is_none() => {
                                let owner = owner.clone();
                                announced.insert(node.clone(), InShare { owner, access });
                            }
                            _ => changes.extend(self.apply_inshare(node, access)),
                        }
                    }
                }
                ActionPacket::Contacts { users, .. } => self.learn_users(users),
                ActionPacket::Request {
                    id,
                    email,
                    outgoing,
                    msg,
                    ts,
                    gone,
                    ..
                } => self.learn_request(id, email.as_deref(), *outgoing, msg, *ts, *gone),
                ActionPacket::UserAttributes { .. } | ActionPacket::Other { .. } => {}
            }
        }
        // Descendants re-added under a moved folder are not separate moves.
        changes.retain(|c| match c {
            Change::Moved { from, to, .. } => from != to,
            _ => true,
        });
        for (h, parent) in limbo {
            if self.node(&h).is_none() {
                changes.push(Change::Removed { handle: h, parent });
            }
        }
        changes
    }
}

impl NodeTree {
    /// A share we received changed access or ended. Ended: its nodes go (a nested share
    /// keeps its nodes, which stay visible through the outer one, and only loses its mark).
    fn apply_inshare(&mut self, node: &NodeHandle, access: Option<Access>) -> Vec<Change> {
        let Some(n) = self.node(node) else {
            return Vec::new();
        };
        let owner = n
            .inshare
            .as_ref()
            .map(|s| s.owner.clone())
            .unwrap_or_default();
        let parent = n.parent.clone();
        let top = parent.as_ref().is_none_or(|p| self.node(p).is_none());
        match access {
            Some(access) => {
                let mut n = n.clone();
                n.inshare = Some(InShare { owner, access });
                self.insert(n);
                vec![Change::Updated(node.clone())]
            }
            None if top => {
                self.remove_subtree(node);
                vec![Change::Removed {
                    handle: node.clone(),
                    parent,
                }]
            }
            None => {
                let mut n = n.clone();
                n.inshare = None;
                self.insert(n);
                vec![Change::Updated(node.clone())]
            }
        }
    }
}
