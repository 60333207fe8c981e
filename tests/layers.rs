//! The module graph points one way, down (`doc/ARCHITECTURE.md`): each top-level module of
//! the library imports only modules of a lower layer, no library module imports the CLI, and
//! each binary uses only its front-end. Checked from the source itself, so the picture in the
//! docs and the code cannot drift apart.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, bottom first. A module may import modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["crypto", "local", "jobs"],
    &["api"],
    &["tree", "link", "config"],
    &["transfer", "events"],
    &["error"],
    &["client"],
    &["fs", "sync"],
    &["fuse"],
    &["mount"],
    // megacmd's man pages and completions cover mega-mount's command line too.
    &["cli"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
}

/// The code of a file without its comments and its `#[cfg(test)]` items (a test module may
/// import anything): each such item is cut from the attribute to the end of the item — its
/// `;` or its matching closing brace — and the rest of the file is still read.
fn non_test_code(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        // A trailing comment (this scanner needs no string literals holding `//`).
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        rest = &rest[i + "#[cfg(test)]".len()..];
        // The item ends at a `;` before any `{`, else at the brace matching the first `{`.
        let semi = rest.find(';');
        let open = rest.find('{');
        let end = match (semi, open) {
            (Some(s), Some(o)) if s < o => s + 1,
            (Some(s), None) => s + 1,
            (_, Some(o)) => {
                let mut depth = 0usize;
                let mut end = rest.len();
                for (j, c) in rest[o..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = o + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => rest.len(),
        };
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The leading identifier of `s` (lowercase, digits, `_`).
fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// The first-level names of a `{a, b::c, d as e}` group starting at `s` (just after `{`).
fn group(s: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut at_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_start = true,
            c if c.is_whitespace() => {}
            _ if at_start && depth == 0 => {
                at_start = false;
                let name = ident(&s[i..]);
                if !name.is_empty() && name != "self" {
                    names.push(name);
                }
            }
            _ => {}
        }
    }
    names
}

/// Top-level modules the code of a file imports: named by `crate::x`, `mega_mount::x`,
/// `crate::{x, y}`, or by `super::` paths that climb out of the file's own top-level module
/// (`module` is the file's module path, e.g. `["fs", "read"]`). Comments and
/// `#[cfg(test)]` items do not count.
fn imports(text: &str, module: &[String]) -> BTreeSet<String> {
    let code = non_test_code(text);
    let mut out = BTreeSet::new();
    let add = |rest: &str, out: &mut BTreeSet<String>| {
        if let Some(g) = rest.strip_prefix('{') {
            out.extend(group(g));
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    };
    for prefix in ["crate::", "mega_mount::"] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            // Not the tail of a longer path (`x::crate::`) or identifier.
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            add(rest, &mut out);
        }
    }
    // `super::` (repeated): where it lands, relative to the file's module path.
    let mut rest = code.as_str();
    while let Some(i) = rest.find("super::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if ups >= module.len() {
            // Climbed to the crate root: the next name is a top-level module.
            add(rest, &mut out);
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Files that are test modules (`#[cfg(test)] mod x;` in their parent): not part of the
/// graph, whatever they import.
fn test_module_files(files: &[std::path::PathBuf]) -> BTreeSet<std::path::PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("#[cfg(test)]") {
            rest = &rest[i + "#[cfg(test)]".len()..];
            let Some(decl) = rest.trim_start().strip_prefix("mod ") else {
                continue;
            };
            let name = ident(decl.trim_start());
            if !decl.trim_start()[name.len()..]
                .trim_start()
                .starts_with(';')
            {
                continue;
            }
            // `a/mod.rs` and `lib.rs` hold their submodules beside them; `a/b.rs` in `a/b/`.
            let dir = match f.file_name().and_then(|n| n.to_str()) {
                Some("mod.rs") | Some("lib.rs") => f.parent().unwrap().to_path_buf(),
                _ => f.with_extension(""),
            };
            out.insert(dir.join(format!("{name}.rs")));
            out.insert(dir.join(&name).join("mod.rs"));
        }
    }
    out
}

/// The module path of a file below `src` (`fs/read.rs` → `["fs", "read"]`).
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let tests = test_module_files(&files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel == "lib.rs" || tests.contains(&f) {
            continue;
        }
        let module = if let Some(bin) = rel.strip_prefix("bin/") {
            format!("bin/{}", bin.trim_end_matches(".rs"))
        } else {
            rel.split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string()
        };
        let path = if module.starts_with("bin/") {
            // A binary is a crate of its own: `super::` cannot leave it.
            vec![String::new(); 64]
        } else {
            module_path(&rel)
        };
        let deps = g.entry(module.clone()).or_default();
        for d in imports(&std::fs::read_to_string(&f).unwrap(), &path) {
            if d != module {
                deps.insert(d);
            }
        }
    }
    g
}

#[test]
fn library_modules_import_only_lower_layers() {
    let mut bad = Vec::new();
    for (module, deps) in graph() {
        if module.starts_with("bin/") {
            continue;
        }
        let mine = layer_of(&module);
        for d in deps {
            if layer_of(&d) >= mine {
                bad.push(format!(
                    "{module} (layer {mine}) imports {d} (layer {})",
                    layer_of(&d)
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn nothing_below_the_front_ends_imports_them_and_binaries_stay_thin() {
    let g = graph();
    for (module, deps) in &g {
        if module != "cli" && !module.starts_with("bin/") {
            assert!(!deps.contains("cli"), "{module} imports cli");
        }
    }
    let allowed = |bin: &str| -> &[&str] {
        match bin {
            "bin/megacmd" => &["cli", "config"],
            "bin/mega-mount" => &["mount", "config"],
            other => panic!("unknown binary {other}"),
        }
    };
    for (module, deps) in g.iter().filter(|(m, _)| m.starts_with("bin/")) {
        for d in deps {
            assert!(
                allowed(module).contains(&d.as_str()),
                "{module} reaches into {d}: a binary is a short main over its front-end"
            );
        }
    }
}

#[test]
fn the_scanner_sees_imports() {
    let top = |m: &str| vec![m.to_string()];
    let text =
        "use crate::api::X;\n// crate::cli in a comment\nlet x = mega_mount::fs::Y; // crate::sync";
    let got = imports(text, &top("mount"));
    assert!(got.contains("api") && got.contains("fs") && !got.contains("cli"));
    assert!(!got.contains("sync"), "a trailing comment");
    // Grouped imports, nested groups and renames.
    let got = imports(
        "use crate::{\n    api::{self, X},\n    tree as t, error::Error,\n};",
        &top("client"),
    );
    assert_eq!(
        got,
        ["api", "error", "tree"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // Code after a test module is read; the test module is not.
    let text = "use crate::api::A;\n#[cfg(test)]\nmod tests {\n    use crate::cli::X;\n    fn f() { if true { } }\n}\nfn g() { crate::tree::h(); }\n#[cfg(test)]\nmod more;\nuse crate::events::E;";
    let got = imports(text, &top("client"));
    assert_eq!(
        got,
        ["api", "events", "tree"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // `super::` from a top-level module's file reaches the crate root; from a submodule it
    // stays inside.
    let got = imports("use super::client::Client;", &top("fs"));
    assert!(got.contains("client"));
    let got = imports("use super::cache::X;", &["fs".into(), "read".into()]);
    assert!(got.is_empty(), "{got:?}");
    let got = imports(
        "use super::super::{client, error};",
        &["fs".into(), "read".into()],
    );
    assert!(got.contains("client") && got.contains("error"));
}
