//! What installing the tools needs from their command lines: shell completions (`megacmd
//! completion SHELL [--for mega-mount]`) and man pages (`megacmd man-pages DIR`, hidden; run
//! by `scripts/package.sh`), both generated from the clap definitions the binaries parse with
//! (`clap_complete`, `clap_mangen`), so they cannot drift from them.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::exit::{CliError, OTHER};
use super::Cli;
use crate::mount::MountArgs;

/// Which program's completions to print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Program {
    Megacmd,
    MegaMount,
}

fn command(p: Program) -> clap::Command {
    match p {
        Program::Megacmd => Cli::command(),
        Program::MegaMount => MountArgs::command(),
    }
}

/// Writes the completion script of `program` for `shell` to `out`.
pub fn completion(shell: clap_complete::Shell, program: Program, out: &mut dyn Write) {
    let mut cmd = command(program);
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

fn io_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::new(OTHER, format!("{}: {e}", path.display()))
}

/// Renders one page to `dir/NAME.1`.
fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<(), CliError> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| io_error(&path, e))?;
    std::fs::write(&path, buf).map_err(|e| io_error(&path, e))
}

/// Files and environment variables megacmd reads (for its man page).
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_CONFIG_HOME/megacmd/config.toml",
        "settings (mode 0600 if it holds a password; refused if others can read it)",
    ),
    (
        "$XDG_CONFIG_HOME/megacmd/session.json",
        "the saved session (mode 0600)",
    ),
    (
        "$XDG_CACHE_HOME/mega-mount/trees",
        "the tree cache, shared with mega-mount",
    ),
    (
        "$XDG_STATE_HOME/megacmd/sync",
        "two-way sync state databases",
    ),
];
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "MEGA_EMAIL, MEGA_PASSWORD",
        "the account, when there is no saved session",
    ),
    (
        "MEGA_API_URL",
        "the API server (default https://g.api.mega.co.nz/)",
    ),
    ("MEGACMD_LOG", "log filter, e.g. mega_mount=debug"),
];

/// Roff text: escapes what roff would read as markup.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    match t.chars().next() {
        Some('.') | Some('\'') => format!("\\&{t}"),
        _ => t,
    }
}

/// A section of tagged paragraphs.
fn section(title: &str, items: impl IntoIterator<Item = (String, String)>) -> String {
    let mut out = format!(".SH \"{title}\"\n");
    for (tag, text) in items {
        out.push_str(&format!(".TP\n{}\n{}\n", roff(&tag), roff(&text)));
    }
    out
}

/// `megacmd.1`: clap's sections, with EXIT STATUS, FILES and ENVIRONMENT of its own in
/// place of the `--help` epilogue.
fn write_main_page(dir: &Path, cmd: clap::Command) -> Result<(), CliError> {
    let path = dir.join("megacmd.1");
    let man = clap_mangen::Man::new(cmd.after_long_help(None::<&str>));
    let mut buf = Vec::new();
    let mut render = || -> std::io::Result<()> {
        man.render_title(&mut buf)?;
        man.render_name_section(&mut buf)?;
        man.render_synopsis_section(&mut buf)?;
        man.render_description_section(&mut buf)?;
        man.render_options_section(&mut buf)?;
        man.render_subcommands_section(&mut buf)?;
        let codes = super::exit::MEANINGS
            .iter()
            .map(|(c, m)| (c.to_string(), m.to_string()));
        buf.extend(section("EXIT STATUS", codes).as_bytes());
        let files = FILES.iter().map(|(f, m)| (f.to_string(), m.to_string()));
        buf.extend(section("FILES", files).as_bytes());
        let env = ENVIRONMENT
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()));
        buf.extend(section("ENVIRONMENT", env).as_bytes());
        buf.extend(b".SH \"SEE ALSO\"\n\\fBmega\\-mount\\fR(1)\n");
        man.render_version_section(&mut buf)
    };
    render().map_err(|e| io_error(&path, e))?;
    std::fs::write(&path, buf).map_err(|e| io_error(&path, e))
}

/// Writes `megacmd.1`, `megacmd-SUBCOMMAND.1` for every visible subcommand, and
/// `mega-mount.1` into `dir` (created if missing). Returns the pages written.
pub fn man_pages(dir: &Path) -> Result<Vec<String>, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut written = Vec::new();
    let mut megacmd = Cli::command();
    megacmd.build();
    // `help` is clap's own (`megacmd help CMD` prints what the page says).
    for sub in megacmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("megacmd-{}", sub.get_name());
        // The page's title names the command as typed ("megacmd get").
        let page = sub
            .clone()
            .name(name.clone())
            .display_name(format!("megacmd {}", sub.get_name()))
            .version(crate::VERSION);
        write_page(dir, &name, page)?;
        written.push(name);
    }
    write_main_page(dir, megacmd)?;
    written.push("megacmd".into());
    write_page(dir, "mega-mount", MountArgs::command())?;
    written.push("mega-mount".into());
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_every_subcommand_and_global_flag() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completion(shell, Program::Megacmd, &mut out);
            let text = String::from_utf8(out).unwrap();
            // fish names a long flag `-l json`.
            for word in ["list", "get", "put", "sync", "share", "recursive", "json"] {
                assert!(text.contains(word), "{shell:?} completion lacks {word}");
            }
            let mut out = Vec::new();
            completion(shell, Program::MegaMount, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("mega-mount") && text.contains("cache-dir"));
        }
    }

    #[test]
    fn man_pages_cover_every_command() {
        let d = tempfile::tempdir().unwrap();
        let pages = man_pages(d.path()).unwrap();
        let visible = Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .count();
        assert_eq!(pages.len(), visible + 2);
        let get = std::fs::read_to_string(d.path().join("megacmd-get.1")).unwrap();
        assert!(get.starts_with(".ie") || get.contains(".TH"), "roff");
        assert!(get.contains("megacmd\\-get") || get.contains("megacmd get"));
        assert!(
            get.contains("\\-\\-version"),
            "its own options are described"
        );
        let mount = std::fs::read_to_string(d.path().join("mega-mount.1")).unwrap();
        assert!(mount.contains("foreground"));
        assert!(mount.contains(env!("CARGO_PKG_VERSION")));
        assert!(!d.path().join("megacmd-man-pages.1").exists(), "hidden");
        let main = std::fs::read_to_string(d.path().join("megacmd.1")).unwrap();
        assert!(main.contains(".SH \"EXIT STATUS\"") && main.contains("integrity failure"));
        assert!(main.contains("session.json") && !main.contains("EXTRA"));
    }
}
