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
    &["mount", "cli"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/layers.rs"))
}

/// Top-level modules named by `crate::x` / `mega_mount::x` in non-comment, non-test code.
fn imports(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for prefix in ["crate::", "mega_mount::"] {
            let mut rest = line;
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
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

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel == "lib.rs" {
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
        let deps = g.entry(module.clone()).or_default();
        for d in imports(&std::fs::read_to_string(&f).unwrap()) {
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
    let text = "use crate::api::X;\n// crate::cli in a comment\nlet x = mega_mount::fs::Y;";
    let got = imports(text);
    assert!(got.contains("api") && got.contains("fs") && !got.contains("cli"));
}
