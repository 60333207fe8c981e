//! Remote names as local file names. A MEGA name may contain `/` or NUL or be `.`/`..`, which
//! cannot be one Linux file name: such names are escaped (`%2F`, `%00`, `%2E`) and unescaped on
//! the way back. Ordinary names, `%` included, are left as they are. Shared by the CLI, the
//! mount and sync, so a remote name can never address anything outside its folder. Also the
//! one way local copies of user content (staging files, partial downloads) are created: private
//! to their owner, never over an existing file ([`create_private`]).

/// Makes a remote name safe as one local file name: `/` and NUL would split or end it, and
/// `.`/`..` would point elsewhere; they become `%2F`, `%00` and `%2E`. Other characters,
/// including `%`, are kept, so ordinary names look the same on both sides. [`unescape_name`]
/// reverses it (a local name that literally contains `%2F` uploads as `/`).
pub fn escape_name(name: &str) -> String {
    match name {
        "" => "%00".into(),
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => name.replace('/', "%2F").replace('\0', "%00"),
    }
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
}
