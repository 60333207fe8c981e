//! Mount options: the `-o` options of the `mega-mount` command line, which are also what
//! `mount.fuse3` passes from an fstab line (`mega-mount SOURCE MOUNTPOINT -o opts`), and
//! sizes such as `512M`. Pure parsing: the binary hands the strings over.

use std::path::PathBuf;

/// Parsed `-o` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: Option<u32>,
    pub config: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub cache_size: Option<u64>,
    pub hard_delete: bool,
    /// `no_cache`: fetch the whole tree at start instead of using the tree cache.
    pub no_cache: bool,
    /// `tree_nodes=N`: unchanged nodes of the cached tree kept in memory.
    pub tree_nodes: Option<usize>,
    /// HTTPS transfer URLs only.
    pub https: bool,
    /// `verify=full` (true) or `verify=stream` (false, the default).
    pub verify_full: Option<bool>,
    /// `shares=NAME`: the virtual folder of other users' shares (`shares=` hides it).
    pub shares_dir: Option<String>,
    /// `rubbish=NAME`: the Rubbish Bin's name in the root (`rubbish=` hides it).
    pub rubbish_dir: Option<String>,
    /// `versions=NAME`: the previous versions' folder in the root (`versions=` hides it).
    pub versions_dir: Option<String>,
    /// `backups=NAME`: the Vault's "My backups" in the root (`backups=` hides it).
    pub backups_dir: Option<String>,
    /// `list_special`: the root's listing names the Rubbish Bin and the versions folder.
    pub list_special: bool,
    /// `xattr`: the `user.mega.*` extended attributes.
    pub xattr: bool,
    /// `writeback`: `close()` returns once the writes are staged; uploads run behind.
    pub writeback: bool,
    /// `no_graphics`: no thumbnails or previews of images on upload.
    pub no_graphics: bool,
    /// `writeback_delay=SECS`: how long a closed file waits before its upload starts.
    pub writeback_delay: Option<std::time::Duration>,
    /// `quota_wait=SECS`: how long a read waits for MEGA's transfer quota to come back.
    pub quota_wait: Option<u64>,
    /// `bwlimit=RATE` or `bwlimit=UP:DOWN`.
    pub bwlimit: Option<String>,
    /// `connections=N`: requests in flight per file transferred.
    pub connections: Option<usize>,
    /// Options accepted for fstab compatibility but without effect here.
    pub ignored: Vec<String>,
}

pub use crate::local::units::parse_size;

/// The value of an option naming a folder in the root (empty: hidden).
fn folder_name(k: &str, v: Option<&str>) -> Result<String, String> {
    let name = v.unwrap_or("");
    if name.contains('/') || name == "." || name == ".." {
        return Err(format!("{k}={name}: not a folder name"));
    }
    Ok(name.to_string())
}

/// Parses comma-separated `-o` options (repeatable).
pub fn parse_options(list: &[String]) -> Result<MountOptions, String> {
    let mut o = MountOptions::default();
    for opt in list
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (k, v) = opt
            .split_once('=')
            .map_or((opt, None), |(k, v)| (k, Some(v)));
        fn need<'a>(k: &str, v: Option<&'a str>) -> Result<&'a str, String> {
            v.ok_or_else(|| format!("mount option {k} needs a value"))
        }
        match k {
            "ro" => o.read_only = true,
            "rw" => o.read_only = false,
            "allow_other" => o.allow_other = true,
            "allow_root" => o.allow_root = true,
            "uid" => {
                o.uid = Some(
                    need(k, v)?
                        .parse()
                        .map_err(|_| format!("uid={}: not a number", v.unwrap_or("")))?,
                )
            }
            "gid" => {
                o.gid = Some(
                    need(k, v)?
                        .parse()
                        .map_err(|_| format!("gid={}: not a number", v.unwrap_or("")))?,
                )
            }
            "umask" => {
                o.umask = Some(
                    u32::from_str_radix(need(k, v)?, 8)
                        .map_err(|_| "umask= takes an octal number".to_string())?,
                )
            }
            "config" => o.config = Some(PathBuf::from(need(k, v)?)),
            "cache_dir" => o.cache_dir = Some(PathBuf::from(need(k, v)?)),
            "cache_size" => {
                o.cache_size = Some(
                    parse_size(need(k, v)?)
                        .ok_or_else(|| format!("cache_size={}: not a size", v.unwrap_or("")))?,
                )
            }
            "hard_delete" => o.hard_delete = true,
            "no_cache" => o.no_cache = true,
            "tree_nodes" => {
                o.tree_nodes = Some(
                    need(k, v)?
                        .parse()
                        .map_err(|_| format!("tree_nodes={}: not a number", v.unwrap_or("")))?,
                )
            }
            "shares" => o.shares_dir = Some(folder_name(k, v)?),
            "rubbish" => o.rubbish_dir = Some(folder_name(k, v)?),
            "versions" => o.versions_dir = Some(folder_name(k, v)?),
            "backups" => o.backups_dir = Some(folder_name(k, v)?),
            "list_special" => o.list_special = true,
            "xattr" => o.xattr = true,
            "writeback" => o.writeback = true,
            "writeback_delay" => {
                let v = need(k, v)?;
                let secs = v
                    .parse::<f64>()
                    .map_err(|_| format!("writeback_delay={v}: not a number of seconds"))?;
                o.writeback_delay = Some(
                    crate::config::writeback_delay(secs)
                        .map_err(|e| format!("writeback_delay={v}: {e}"))?,
                );
            }
            "no_graphics" => o.no_graphics = true,
            "bwlimit" => {
                let v = need(k, v)?;
                crate::local::units::parse_rates(v).map_err(|e| format!("bwlimit={v}: {e}"))?;
                o.bwlimit = Some(v.to_string());
            }
            "connections" => {
                o.connections = Some(
                    need(k, v)?
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("connections={}: not a number", v.unwrap_or("")))?,
                )
            }
            "quota_wait" => {
                o.quota_wait = Some(need(k, v)?.parse().map_err(|_| {
                    format!("quota_wait={}: not a number of seconds", v.unwrap_or(""))
                })?)
            }
            "https" => o.https = true,
            "verify" => {
                o.verify_full = Some(match need(k, v)? {
                    "full" => true,
                    "stream" => false,
                    other => {
                        return Err(format!("verify={other}: use verify=full or verify=stream"))
                    }
                })
            }
            // Handled by mount(8)/systemd or meaningless for a network filesystem.
            "_netdev"
            | "nofail"
            | "noauto"
            | "auto"
            | "user"
            | "users"
            | "nouser"
            | "defaults"
            | "dev"
            | "nodev"
            | "suid"
            | "nosuid"
            | "exec"
            | "noexec"
            | "atime"
            | "noatime"
            | "relatime"
            | "async"
            | "default_permissions"
            | "x-systemd.automount" => o.ignored.push(opt.to_string()),
            other if other.starts_with("x-") => o.ignored.push(opt.to_string()),
            other => return Err(format!("unknown mount option {other}")),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_options() {
        let o = parse_options(&[
            "rw,_netdev,allow_other,uid=1000,gid=100,umask=022".into(),
            "config=/etc/mega.toml,cache_dir=/var/cache/mega,cache_size=512M".into(),
        ])
        .unwrap();
        assert!(!o.read_only && o.allow_other);
        assert_eq!(
            (o.uid, o.gid, o.umask),
            (Some(1000), Some(100), Some(0o022))
        );
        assert_eq!(o.config, Some("/etc/mega.toml".into()));
        assert_eq!(o.cache_size, Some(512 << 20));
        assert_eq!(o.ignored, vec!["_netdev".to_string()]);
        assert!(parse_options(&["ro".into()]).unwrap().read_only);
        assert!(parse_options(&["bogus".into()]).is_err());
        let o = parse_options(&["writeback,writeback_delay=0.5".into()]).unwrap();
        assert!(o.writeback);
        assert_eq!(
            o.writeback_delay,
            Some(std::time::Duration::from_millis(500))
        );
        for bad in [
            "writeback_delay=-1",
            "writeback_delay=x",
            "writeback_delay=4000",
        ] {
            assert!(parse_options(&[bad.into()]).is_err(), "{bad}");
        }
        let o = parse_options(&["bwlimit=1M:10M,connections=8,quota_wait=5".into()]).unwrap();
        assert_eq!(o.bwlimit.as_deref(), Some("1M:10M"));
        assert_eq!((o.connections, o.quota_wait), (Some(8), Some(5)));
        assert!(parse_options(&["bwlimit=fast".into()]).is_err());
        assert!(parse_options(&["connections=0".into()]).is_err());
        assert!(parse_options(&["uid=abc".into()]).is_err());
        assert!(parse_options(&["umask=9".into()]).is_err());
        assert_eq!(
            parse_options(&["tree_nodes=0".into()]).unwrap().tree_nodes,
            Some(0)
        );
        assert!(parse_options(&["tree_nodes=many".into()]).is_err());
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
