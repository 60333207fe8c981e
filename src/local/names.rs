//! Remote names as local file names. A MEGA name may contain `/` or NUL or be `.`/`..`, which
//! cannot be one Linux file name: such names are escaped (`%2F`, `%00`, `%2E`) and unescaped on
//! the way back. Ordinary names, `%` included, are left as they are. Shared by the CLI, the
//! mount and sync, so a remote name can never address anything outside its folder. Also the
//! one way local copies of user content (staging files, partial downloads) are created: private
//! to their owner, never over an existing file ([`create_private`]).
//!
//! A name longer than a Linux file name may be ([`NAME_MAX`] bytes) is shortened: its start,
//! then `%~` and 12 hex digits of a hash of the whole name, then its extension. That form is
//! unique per name, so a shortened name still finds its node among a folder's names
//! (`Tree::child_by_local_name` compares it with [`escape_name`] of each node's name, and
//! `Tree::remote_name` gives uploads the long name back); it cannot be unescaped on its own.

use sha2::{Digest, Sha256};

/// The longest file name Linux filesystems take, in bytes.
pub const NAME_MAX: usize = 255;

/// Makes a remote name safe as one local file name: `/` and NUL would split or end it, and
/// `.`/`..` would point elsewhere; they become `%2F`, `%00` and `%2E`. Other characters,
/// including `%`, are kept, so ordinary names look the same on both sides. [`unescape_name`]
/// reverses it (a local name that literally contains `%2F` uploads as `/`). Names too long
/// for a file name are shortened (see the module doc).
pub fn escape_name(name: &str) -> String {
    let escaped = match name {
        "" => "%00".into(),
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => name.replace('/', "%2F").replace('\0', "%00"),
    };
    if escaped.len() <= NAME_MAX {
        return escaped;
    }
    let digest = Sha256::digest(name.as_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    // Keep a short extension (it tells programs what the file is).
    let ext = escaped
        .rfind('.')
        .map(|i| &escaped[i..])
        .filter(|e| e.len() <= 16 && !e.contains("%2F"))
        .unwrap_or("");
    let keep = NAME_MAX - ext.len() - 2 - tag.len();
    format!("{}%~{tag}{ext}", truncate_at_char(&escaped, keep))
}

/// Whether `name` may be the shortened form of a longer name (`…%~` and 12 hex digits,
/// then an extension): only such names are looked up by [`escape_name`] of each candidate.
pub fn is_shortened(name: &str) -> bool {
    name.match_indices("%~").any(|(i, _)| {
        let tag = &name.as_bytes()[i + 2..];
        tag.len() >= 12 && tag[..12].iter().all(u8::is_ascii_hexdigit)
    })
}

/// `stem (tag).ext`: a name marked as a variant of `name` (conflict copies, recovered
/// writes), keeping the extension. A leading dot is not an extension (`.bashrc (tag)`).
pub fn tagged_name(name: &str, tag: &str) -> String {
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{} ({tag}){}", &name[..i], &name[i..]),
        _ => format!("{name} ({tag})"),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reverses [`escape_name`].
pub fn unescape_name(name: &str) -> String {
    match name {
        "%00" => String::new(),
        "%2E" => ".".into(),
        "%2E%2E" => "..".into(),
        _ => name.replace("%2F", "/").replace("%00", "\0"),
    }
}

/// Creates a new file readable and writable by its owner only (0600), failing if it exists:
/// for staging files, partial downloads and other temporary copies of user content.
pub fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Opens a file for reading and writing, creating it 0600 if it does not exist (an existing
/// file keeps its mode).
pub fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_escaped_reversibly() {
        for name in [
            "a/b",
            "..",
            ".",
            "nul\0byte",
            "",
            "plain",
            "100%",
            "ünï/cödé",
        ] {
            let e = escape_name(name);
            assert!(
                !e.contains('/') && !e.contains('\0') && e != "." && e != ".." && !e.is_empty(),
                "{name:?} -> {e:?}"
            );
            assert_eq!(unescape_name(&e), name, "{e}");
        }
        assert_eq!(escape_name("100%"), "100%", "ordinary names are unchanged");
    }

    #[test]
    fn names_too_long_for_a_file_name_are_shortened_uniquely() {
        let fits = "a".repeat(255);
        assert_eq!(escape_name(&fits), fits);
        for long in [
            format!("{}.pdf", "b".repeat(300)),
            "ü".repeat(200),
            format!("{}/x", "c".repeat(260)),
        ] {
            let e = escape_name(&long);
            assert!(e.len() <= NAME_MAX, "{} bytes", e.len());
            assert!(!e.contains('/') && e.contains("%~"), "{e}");
            assert!(is_shortened(&e), "{e}");
            assert_eq!(e, escape_name(&long), "deterministic");
        }
        assert!(escape_name(&format!("{}.pdf", "b".repeat(300))).ends_with(".pdf"));
        let (a, b) = ("d".repeat(300) + "1", "d".repeat(300) + "2");
        assert_ne!(
            escape_name(&a),
            escape_name(&b),
            "same start, different names"
        );
        assert_eq!(truncate_at_char("üü", 3), "ü");
        for plain in ["a%~b.txt", "%~12345", "x%~0123456789ag", "ordinary.txt"] {
            assert!(!is_shortened(plain), "{plain}");
        }
    }
}
