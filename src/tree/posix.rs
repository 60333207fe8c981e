//! POSIX metadata mega-mount keeps on a node: its mode (type and permission bits), as the
//! node attribute [`crate::crypto::attr::POSIX`] holds it, `st_mode` in octal. A file node
//! is a regular file (`S_IFREG`) or a symbolic link (`S_IFLNK`, its content the link's
//! target); a folder is `S_IFDIR`. A value that does not parse, or whose type does not fit the
//! node, counts as absent: the node then gets the defaults it would have without one.

/// The file type bits of a mode.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFLNK: u32 = 0o120_000;
/// The permission bits kept: rwx for owner, group and others, set-user-ID, set-group-ID,
/// sticky.
pub const PERM: u32 = 0o7777;
/// The longest symbolic link target kept (Linux's `PATH_MAX` less its terminating zero).
pub const MAX_TARGET: u64 = 4095;

/// The mode an attribute value states for a node of this kind (`folder`), if it is one.
pub fn parse(v: &str, folder: bool) -> Option<u32> {
    if v.is_empty() || v.len() > 7 || !v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let mode = u32::from_str_radix(v, 8).ok()?;
    let fits = match mode & S_IFMT {
        S_IFDIR => folder,
        S_IFREG | S_IFLNK => !folder,
        _ => false,
    };
    fits.then_some(mode & (S_IFMT | PERM))
}

/// The attribute value of a mode.
pub fn encode(mode: u32) -> String {
    format!("{:o}", mode & (S_IFMT | PERM))
}

/// A mode of type `kind` (one of the `S_IF…`) with `mode`'s permission bits.
pub fn with_type(kind: u32, mode: u32) -> u32 {
    kind | (mode & PERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_misfits_count_as_absent() {
        for (m, folder) in [(0o100_755, false), (0o120_777, false), (0o040_700, true)] {
            assert_eq!(parse(&encode(m), folder), Some(m));
        }
        assert_eq!(encode(0o100_644), "100644");
        // A folder's mode on a file, a file's on a folder, devices, junk.
        assert_eq!(parse("40755", false), None);
        assert_eq!(parse("100644", true), None);
        assert_eq!(parse("20644", false), None);
        for junk in ["", "abc", "-100644", "9", "1006444444", "+100644"] {
            assert_eq!(parse(junk, false), None, "{junk}");
        }
    }
}
