//! `list` (alias `ls`) and `tree`: folders and files as remote paths, sizes and mtimes.

use std::io::Write;

use serde_json::json;

use super::exit::CliError;
use super::path::{unescape_name, RemotePath};
use super::progress::human;
use super::resolve::{expand, remote_arg, resolve};
use super::Ctx;
use crate::client::marks::Marks;
use crate::client::Client;
use crate::local::time::fmt_time;
use crate::sync::oneway::{remote_children, remote_listing, Entry, RemoteListing};
use crate::transfer::fileattr;
use crate::tree::{Node, NodeHandle};

/// One listed file or folder, and (with `--versions`) a file's previous versions, newest
/// first.
struct Row {
    path: RemotePath,
    entry: Entry,
    handle: Option<NodeHandle>,
    versions: Vec<Node>,
    /// What was set on it in MEGA's apps (label, favourite, description, tags).
    marks: Marks,
    /// Its file attributes: "thumbnail", "preview", "media".
    pictures: Vec<&'static str>,
    /// A video's or sound's properties (media attribute), decrypted.
    media: Option<crate::transfer::media::MediaProps>,
    /// The POSIX mode mega-mount stored on it, if any.
    mode: Option<u32>,
}

/// A mode as `ls -l` writes it (`-rwxr-xr-x`, `lrwxrwxrwx`, `drwx------`; `s`/`S`, `t`/`T`
/// for the set-ID and sticky bits).
fn mode_text(mode: u32) -> String {
    use crate::tree::posix::{S_IFDIR, S_IFLNK, S_IFMT};
    let mut s = String::with_capacity(10);
    s.push(match mode & S_IFMT {
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        _ => '-',
    });
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Marks as `--long` shows them: `[red] ★ sensitive #tag "description"`.
fn show_marks(m: &Marks) -> String {
    let mut parts = Vec::new();
    if let Some(l) = m.label {
        parts.push(format!("[{l}]"));
    }
    if m.favourite {
        parts.push("★".to_string());
    }
    if m.sensitive {
        parts.push("sensitive".to_string());
    }
    parts.extend(m.tags.iter().map(|t| format!("#{t}")));
    if let Some(d) = &m.description {
        parts.push(format!("{d:?}"));
    }
    parts.join(" ")
}

pub(super) async fn list(ctx: &Ctx, arg: &str, versions: bool, long: bool) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    if let Some(lines) = super::share::list_virtual(&client, &rp) {
        let mut out = std::io::stdout().lock();
        for l in lines {
            let _ = writeln!(out, "{:>16}  {:>12}  {l}", "", "DIR");
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for (p, node) in expand(&client, &rp)? {
        if node.kind.is_container() && (!rp.has_glob() || ctx.cli.recursive) {
            let RemoteListing { entries, handles } = if ctx.cli.recursive {
                remote_listing(&client, &node.handle)?
            } else {
                remote_children(&client, &node.handle)?
            };
            for e in entries {
                if !ctx.cli.recursive && e.path.contains('/') {
                    continue;
                }
                let shown = RemotePath {
                    parts: p
                        .parts
                        .iter()
                        .cloned()
                        .chain(e.path.split('/').map(unescape_name))
                        .collect(),
                    ..p.clone()
                };
                let h = handles.get(&e.path).cloned();
                rows.push((shown, e, h));
            }
        } else {
            let e = Entry {
                path: node.name.clone(),
                size: node.size,
                mtime: node.mtime,
                dir: node.kind.is_container(),
                link: node.is_symlink(),
            };
            rows.push((p, e, Some(node.handle.clone())));
        }
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(path, entry, handle)| {
            let versions = match (&handle, versions && !entry.dir) {
                (Some(h), true) => client.view(|t| t.versions(h).into_iter().cloned().collect()),
                _ => Vec::new(),
            };
            // Decrypted only where shown (`-l`, `--json`): a plain listing needs none.
            let marks = handle
                .as_ref()
                .filter(|_| long || ctx.cli.json)
                .and_then(|h| client.view(|t| t.get(h).and_then(Node::attrs)))
                .map(|a| Marks::of(&a))
                .unwrap_or_default();
            // Also only where shown.
            let pictures = handle
                .as_ref()
                .filter(|_| long || ctx.cli.json)
                .and_then(|h| client.view(|t| t.get(h).and_then(|n| n.fa.clone())))
                .map(|fa| fileattr::kinds(&fa))
                .unwrap_or_default();
            let media = handle
                .as_ref()
                .filter(|_| pictures.contains(&"media"))
                .and_then(|h| client.media_properties(h));
            let mode = handle
                .as_ref()
                .filter(|_| long || ctx.cli.json)
                .and_then(|h| client.view(|t| t.get(h).and_then(|n| n.mode)));
            Row {
                path,
                entry,
                handle,
                versions,
                marks,
                pictures,
                media,
                mode,
            }
        })
        .collect();
    if ctx.cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let (p, e) = (&r.path, &r.entry);
                let mut o = json!({
                    "path": p.display(), "name": p.parts.last().cloned().unwrap_or_default(),
                    "type": if e.dir { "folder" } else if e.link { "link" } else { "file" },
                    "size": e.size, "mtime": e.mtime,
                    "mode": r.mode.map(|m| format!("{:04o}", m & crate::tree::posix::PERM)),
                    "handle": r.handle.as_ref().map(|h| h.0.clone()),
                    "label": r.marks.label, "favourite": r.marks.favourite,
                    "sensitive": r.marks.sensitive, "description": r.marks.description,
                    "tags": r.marks.tags, "attributes": r.pictures,
                });
                if let Some(m) = &r.media {
                    o["media"] = json!({"width": m.width, "height": m.height, "fps": m.fps,
                                        "duration": m.playtime});
                }
                if versions && !e.dir {
                    o["versions"] = r
                        .versions
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            json!({"version": i + 1, "size": v.size, "mtime": v.mtime,
                                   "created": v.ctime, "handle": v.handle.0})
                        })
                        .collect();
                }
                o
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for r in rows {
        let (p, e) = (&r.path, &r.entry);
        let mut first = if e.dir {
            format!("{:>16}  {:>12}  {}/", "", "DIR", p.display())
        } else {
            format!("{}  {:>12}  {}", fmt_time(e.mtime), e.size, p.display())
        };
        if let Some(m) = r.mode.filter(|_| long) {
            first = format!("{}  {first}", mode_text(m));
        } else if long && e.link {
            first = format!(
                "{}  {first}",
                mode_text(crate::tree::posix::S_IFLNK | 0o777)
            );
        }
        if long && !r.marks.is_empty() {
            first = format!("{first}  {}", show_marks(&r.marks));
        }
        if long && !r.pictures.is_empty() {
            let mut shown: Vec<String> = r.pictures.iter().map(|p| p.to_string()).collect();
            if let (Some(m), Some(last)) = (&r.media, shown.last_mut()) {
                *last = format!(
                    "media {}×{} {} fps {} s",
                    m.width, m.height, m.fps, m.playtime
                );
            }
            first = format!("{first}  ({})", shown.join(", "));
        }
        let mut lines = vec![first];
        for (i, v) in r.versions.iter().enumerate() {
            lines.push(format!(
                "{}  {:>12}  {}  (version {})",
                fmt_time(v.mtime),
                v.size,
                p.display(),
                i + 1
            ));
        }
        for line in lines {
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // stdout closed (e.g. piped into head)
            }
        }
    }
    Ok(())
}

pub(super) async fn tree(ctx: &Ctx, arg: &str) -> Result<(), CliError> {
    let rp = remote_arg(arg)?;
    let client = ctx.client().await?;
    let top = resolve(&client, &rp)?;
    let mut lines = vec![rp.display()];
    fn walk_tree(
        client: &Client,
        h: &NodeHandle,
        prefix: &str,
        lines: &mut Vec<String>,
    ) -> Result<(), CliError> {
        let kids = client.children(h)?;
        for (i, k) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let suffix = if k.kind.is_container() {
                "/".to_string()
            } else {
                format!("  ({})", human(k.size))
            };
            lines.push(format!(
                "{prefix}{}{}{suffix}",
                if last { "└── " } else { "├── " },
                k.name
            ));
            if k.kind.is_container() {
                walk_tree(
                    client,
                    &k.handle,
                    &format!("{prefix}{}", if last { "    " } else { "│   " }),
                    lines,
                )?;
            }
        }
        Ok(())
    }
    walk_tree(&client, &top.handle, "", &mut lines)?;
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_writes_them() {
        assert_eq!(mode_text(0o100_755), "-rwxr-xr-x");
        assert_eq!(mode_text(0o120_777), "lrwxrwxrwx");
        assert_eq!(mode_text(0o040_700), "drwx------");
        assert_eq!(mode_text(0o104_644), "-rwSr--r--");
        assert_eq!(mode_text(0o041_777), "drwxrwxrwt");
    }
}
