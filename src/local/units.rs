//! Sizes and rates as people write them: `512M`, `2G`, `256MiB`, `10M:1M` (binary units).

/// Parses a size like `512M`, `2G`, `1048576`, `256MiB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a bandwidth limit: `RATE` for both directions or `UP:DOWN`, each a size per second
/// (`512K`, `10M`, `10M/s`) or `off`/empty for none. Zero is refused (use `off`).
pub fn parse_rates(s: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let one = |v: &str| -> Result<Option<u64>, String> {
        let v = v.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let v = v.strip_suffix("/s").unwrap_or(v);
        parse_size(v)
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("{v}: not a rate (e.g. 512K, 10M, off)"))
    };
    match s.split_once(':') {
        Some((u, d)) => Ok((one(u)?, one(d)?)),
        None => {
            let r = one(s)?;
            Ok((r, r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rates("1M"), Ok((Some(1 << 20), Some(1 << 20))));
        assert_eq!(parse_rates("512K:off"), Ok((Some(512 << 10), None)));
        assert_eq!(parse_rates(":10M/s"), Ok((None, Some(10 << 20))));
        assert_eq!(parse_rates("off"), Ok((None, None)));
        assert!(parse_rates("fast").is_err());
        assert!(parse_rates("0").is_err());
    }
}
