//! One `.megaignore` file, read as MEGA's SDK reads it: the line syntax, the size filter,
//! the `sync:.megaignore` flag, and the two matchers (MEGA's wildcard glob and full-match
//! regular expressions). Pure functions over bytes; the folder walk and inheritance are in
//! the parent module.
//!
//! Line syntax (the SDK's `syncfilter.cpp`):
//!
//! * An optional UTF-8 byte-order mark; lines split on any run of CR/LF; lines of blanks only
//!   are skipped; every other line is NFC-normalised. Leading blanks are kept.
//! * `#…` is a comment. A line starting with `e` is a size filter:
//!   `exclude-larger:N[k|m|g|t]` or `exclude-smaller:N[k|m|g|t]` (binary units).
//! * `+sync:.megaignore` / `-sync:.megaignore` (exactly) decide whether this file is synced.
//! * Anything else is `CLASS[TARGET][TYPE][STRATEGY]:PATTERN` with class `+`/`-`, target
//!   `a`/`d`/`f`/`s` (all, folders, files, symbolic links), type `N` (name, this folder only),
//!   `n` (name, here and below) or `p` (path relative to this folder; the default when the
//!   pattern has a `/`), strategy `g`/`G` (glob, case-insensitive/sensitive) or `r`/`R`
//!   (regular expression matching the whole name or path). Trailing blanks of the pattern
//!   are dropped.
//!
//! Any other line is an error for the whole file, as in MEGA's apps.

use unicode_normalization::UnicodeNormalization;

/// What a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
    Symlink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    All,
    Folders,
    Files,
    Symlinks,
}

impl Target {
    fn applies(self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Target::All, _)
                | (Target::Folders, Kind::Folder)
                | (Target::Files, Kind::File)
                | (Target::Symlinks, Kind::Symlink)
        )
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    /// MEGA's wildcard: `*` any run of bytes (also `/`), `?` one byte; no classes, no escapes.
    Glob {
        pattern: Vec<u8>,
        case: bool,
    },
    Regex(regex::Regex),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Glob {
                pattern,
                case: true,
            } => wildcard(s.as_bytes(), pattern),
            Matcher::Glob { pattern, .. } => {
                wildcard(&s.to_ascii_uppercase().into_bytes(), pattern)
            }
            Matcher::Regex(r) => r.is_match(s),
        }
    }
}

/// One name or path rule.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    include: bool,
    target: Target,
    /// Matches the path relative to the folder of the file, not the name.
    path: bool,
    /// `N` rules act only in the folder of their file.
    inheritable: bool,
    matcher: Matcher,
}

impl Rule {
    /// `Some(include)` if the rule decides about an item of `kind` with this name and path.
    pub(super) fn decide(&self, kind: Kind, name: &str, path: &str) -> Option<bool> {
        (self.target.applies(kind) && self.matcher.matches(if self.path { path } else { name }))
            .then_some(self.include)
    }

    pub(super) fn inheritable(&self) -> bool {
        self.inheritable
    }
}

/// `exclude-smaller` (lower) and `exclude-larger` (upper) of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeFilter {
    lower: u64,
    upper: u64,
}

impl SizeFilter {
    fn included(self, size: u64) -> bool {
        if self.lower > self.upper {
            // A band: sizes from upper to lower are excluded.
            size < self.upper || size > self.lower
        } else {
            self.lower <= size && size <= self.upper
        }
    }
}

/// The rules of one `.megaignore`.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub(super) rules: Vec<Rule>,
    size: Option<SizeFilter>,
    /// `+sync:.megaignore`: the file itself is synced.
    pub sync_self: bool,
}

/// A line that is not a rule: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// The file MEGA's apps write into a sync's root that has none (the SDK's built-in defaults:
/// a byte-order mark, then one exclusion per line, not synced itself).
pub const DEFAULT_FILE: &str = "\u{feff}-:Thumbs.db\n-:desktop.ini\n-:~*\n-:.*\n-:*~.*\n-:*.crdownload\n-:*.sb-????????-??????\n-:*.tmp\n";

/// The SDK's `is_space` (C `isspace` in the "C" locale).
fn blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl Rules {
    /// Parses a whole file; the first bad line fails it.
    pub fn parse(bytes: &[u8]) -> Result<Rules, LineError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut out = Rules::default();
        // Line numbers as an editor shows them: `\n` ends a line, a lone `\r` too.
        let mut number = 0;
        for raw in bytes.split(|&b| b == b'\n') {
            number += 1;
            for (i, part) in raw.split(|&b| b == b'\r').enumerate() {
                if i > 0 && !part.is_empty() {
                    number += 1;
                }
                if part.iter().all(|&b| blank(b)) {
                    continue;
                }
                let err = |reason: String| LineError {
                    line: number,
                    reason,
                };
                let text = std::str::from_utf8(part)
                    .map_err(|_| err("not UTF-8".into()))?
                    .nfc()
                    .collect::<String>();
                out.add_line(&text).map_err(err)?;
            }
        }
        Ok(out)
    }

    fn add_line(&mut self, line: &str) -> Result<(), String> {
        match line.as_bytes()[0] {
            b'#' => Ok(()),
            b'e' => self.add_size(line),
            _ => self.add_rule(line),
        }
    }

    fn add_size(&mut self, line: &str) -> Result<(), String> {
        let bad = || {
            format!(
                "a size filter is exclude-larger:N or exclude-smaller:N, N in bytes or with k, m, g, t: {line:?}"
            )
        };
        let (directive, rest) = line.split_once(':').ok_or_else(bad)?;
        let larger = match directive {
            "exclude-larger" => true,
            "exclude-smaller" => false,
            _ => return Err(bad()),
        };
        let rest = rest.trim_start_matches(|c: char| c.is_ascii() && blank(c as u8));
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let mut limit: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("size too large: {line:?}"))?;
        let unit = &rest[digits..];
        if let Some(u) = unit.chars().next() {
            let shift = match u.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return Err(bad()),
            };
            if !unit[1..].bytes().all(blank) {
                return Err(bad());
            }
            if limit.leading_zeros() < shift {
                return Err(format!("size too large: {line:?}"));
            }
            limit <<= shift;
        }
        let f = self.size.get_or_insert(SizeFilter {
            lower: 0,
            upper: u64::MAX,
        });
        if larger {
            f.upper = limit;
        } else {
            f.lower = limit;
        }
        if f.lower == f.upper {
            return Err(format!(
                "exclude-smaller and exclude-larger are both {}: nothing would be kept",
                f.lower
            ));
        }
        Ok(())
    }

    fn add_rule(&mut self, line: &str) -> Result<(), String> {
        let bad = |why: &str| format!("{why}: {line:?} (a rule is [+-][adfs][Nnp][gGrR]:PATTERN)");
        let mut rest = line.as_bytes();
        let include = match rest[0] {
            b'+' => true,
            b'-' => false,
            _ => return Err(bad("a rule starts with + or -")),
        };
        rest = &rest[1..];
        if rest == b"sync:.megaignore" {
            self.sync_self = include;
            return Ok(());
        }
        let mut take = |letters: &[u8]| -> Option<u8> {
            let c = *rest.first()?;
            letters.contains(&c).then(|| {
                rest = &rest[1..];
                c
            })
        };
        let target = match take(b"adfs") {
            Some(b'd') => Target::Folders,
            Some(b'f') => Target::Files,
            Some(b's') => Target::Symlinks,
            _ => Target::All,
        };
        let kind = take(b"Nnp");
        let strategy = take(b"gGrR").unwrap_or(b'g');
        let Some(pattern) = rest.strip_prefix(b":") else {
            return Err(bad("expected : before the pattern"));
        };
        // The pattern is valid UTF-8: the line was, and ':' is ASCII.
        let pattern = String::from_utf8_lossy(pattern);
        let pattern = pattern.trim_end_matches(|c: char| c.is_ascii() && blank(c as u8));
        if pattern.is_empty() {
            return Err(bad("empty pattern"));
        }
        let (path, inheritable) = match kind {
            Some(b'N') => (false, false),
            Some(b'n') => (false, true),
            Some(_) => (true, true),
            None => (pattern.contains('/'), true),
        };
        let case = strategy.is_ascii_uppercase();
        let matcher = if strategy.eq_ignore_ascii_case(&b'g') {
            Matcher::Glob {
                pattern: if case {
                    pattern.as_bytes().to_vec()
                } else {
                    pattern.to_ascii_uppercase().into_bytes()
                },
                case,
            }
        } else {
            Matcher::Regex(
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .case_insensitive(!case)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| bad(&format!("bad regular expression ({e})")))?,
            )
        };
        self.rules.push(Rule {
            include,
            target,
            path,
            inheritable,
            matcher,
        });
        Ok(())
    }

    /// `Some(included)` if this file has a size filter.
    pub(super) fn size_decides(&self, size: u64) -> Option<bool> {
        self.size.map(|f| f.included(size))
    }
}

/// MEGA's wildcard match of a whole byte string: `*` any run (also across `/`), `?` one byte.
pub(super) fn wildcard(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was, and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Rule {
        let r = Rules::parse(line.as_bytes()).unwrap();
        assert_eq!(r.rules.len(), 1, "{line}");
        r.rules[0].clone()
    }

    #[test]
    fn wildcard_is_megas() {
        assert!(wildcard(b"a.tmp", b"*.tmp"));
        assert!(wildcard(b"x/y/z", b"x/*"));
        assert!(wildcard(b"", b"*"));
        assert!(!wildcard(b"", b"?"));
        assert!(wildcard(b"abc", b"a?c"));
        assert!(!wildcard(b"a.tmp.bak", b"*.tmp"));
        assert!(wildcard(b"[x]", b"[x]"), "no classes: brackets are literal");
        assert!(!wildcard(b"x", b"[x]"));
        assert!(wildcard(b"mississippi", b"*iss*ppi"));
        assert!(wildcard(b"f.sb-12345678-abcdef", b"*.sb-????????-??????"));
    }

    #[test]
    fn letters_and_defaults() {
        let r = one("-:*.tmp");
        assert_eq!(
            (r.include, r.target, r.path, r.inheritable),
            (false, Target::All, false, true)
        );
        let r = one("+fN:x");
        assert_eq!(
            (r.include, r.target, r.path, r.inheritable),
            (true, Target::Files, false, false)
        );
        assert!(one("-:docs/drafts").path, "a / makes a path rule");
        assert!(!one("-n:docs/drafts").path, "unless the type says name");
        assert!(one("-dp:build").path);
        assert_eq!(one("-s:*").target, Target::Symlinks);
        // Case: g and r ignore it, G and R do not.
        assert_eq!(one("-G:*.JPG").decide(Kind::File, "img.jpg", ""), None);
        assert_eq!(
            one("-G:*.JPG").decide(Kind::File, "IMG.JPG", ""),
            Some(false)
        );
        assert_eq!(
            one("-:*.JPG").decide(Kind::File, "img.jpg", ""),
            Some(false)
        );
        assert_eq!(
            one("-nr:.*foo.*").decide(Kind::File, "xFoo", ""),
            Some(false)
        );
        assert_eq!(one("-R:.*foo.*").decide(Kind::File, "xFoo", ""), None);
        assert_eq!(
            one("-r:fo").decide(Kind::File, "foo", ""),
            None,
            "a regex matches the whole name"
        );
        // Leading blanks of the pattern are kept, trailing ones dropped.
        assert_eq!(one("-: a  \t").decide(Kind::File, " a", ""), Some(false));
        assert_eq!(one("-: a").decide(Kind::File, "a", ""), None);
        // Targets.
        assert_eq!(one("-d:x").decide(Kind::File, "x", ""), None);
        assert_eq!(one("-f:x").decide(Kind::Folder, "x", ""), None);
        assert_eq!(one("-s:x").decide(Kind::Symlink, "x", ""), Some(false));
    }

    #[test]
    fn file_level_syntax() {
        let r = Rules::parse(b"\xEF\xBB\xBF# c\r\n\r\n   \n-:a\r-:b\n+sync:.megaignore\n").unwrap();
        assert_eq!(r.rules.len(), 2);
        assert!(r.sync_self);
        let r = Rules::parse(b"+sync:.megaignore\n-sync:.megaignore\n").unwrap();
        assert!(!r.sync_self, "the last one wins");
        assert!(!Rules::parse(DEFAULT_FILE.as_bytes()).unwrap().sync_self);
        assert_eq!(
            Rules::parse(DEFAULT_FILE.as_bytes()).unwrap().rules.len(),
            8
        );
        // NFC: a decomposed é in the rule matches a composed name.
        let r = Rules::parse("-:cafe\u{301}".as_bytes()).unwrap();
        assert_eq!(r.rules[0].decide(Kind::File, "caf\u{e9}", ""), Some(false));
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, line) in [
            ("-:a\n*.tmp\n", 2),
            ("-:a\n\n\nbuild/\n", 4),
            ("-x:a", 1),
            ("-:", 1),
            ("-:   ", 1),
            ("-r:(", 1),
            ("+sync:.megaignore \n", 1),
            ("-:a\r\n-:b\r\n-q:c\r\n", 3),
            ("-:a\r-:b\r?", 3),
            ("exclude-larger:", 1),
            ("exclude-larger:x", 1),
            ("exclude-larger:-1", 1),
            ("exclude-larger:100 ", 1),
            ("exclude-larger:100q", 1),
            ("exclude-larger:100kb", 1),
            ("exclude-bigger:100", 1),
            ("exclude-larger:99999999999999999999", 1),
            ("exclude-larger:17179869184t", 1),
            ("exclude-larger:0", 1),
            ("exclude-smaller:5\nexclude-larger:5", 2),
        ] {
            let e = Rules::parse(text.as_bytes()).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e:?}");
        }
        assert_eq!(Rules::parse(b"-:\xff").unwrap_err().line, 1);
    }

    #[test]
    fn size_filters() {
        let r = Rules::parse(b"exclude-larger:100M\nexclude-smaller: 1k").unwrap();
        assert_eq!(r.size_decides(104_857_600), Some(true));
        assert_eq!(r.size_decides(104_857_601), Some(false));
        assert_eq!(r.size_decides(1024), Some(true));
        assert_eq!(r.size_decides(1023), Some(false));
        let r = Rules::parse(b"exclude-larger:100").unwrap();
        assert_eq!(r.size_decides(100), Some(true), "the limit itself is kept");
        assert_eq!(r.size_decides(101), Some(false));
        // A band: smaller than 16 and larger than 8 excludes 8..=16.
        let r = Rules::parse(b"exclude-smaller:16\nexclude-larger:8").unwrap();
        assert_eq!(
            (0..20)
                .filter(|&s| r.size_decides(s) == Some(false))
                .count(),
            9
        );
        assert_eq!(r.size_decides(7), Some(true));
        assert_eq!(r.size_decides(17), Some(true));
        let r = Rules::parse(b"exclude-larger:2G \t").unwrap();
        assert_eq!(r.size_decides(2 << 30), Some(true));
        assert_eq!(Rules::parse(b"-:a").unwrap().size_decides(5), None);
    }
}
