//! Append-only records as JSON lines (transfer journals): one `write` per line, so that a
//! process killed in mid-write can tear only the last line, which readers then ignore.

use std::io::Write;

use serde_json::Value;

/// The complete lines of `text`, parsed: a last line without its newline (torn in
/// mid-write) is dropped; any other line that is not JSON makes the whole text unusable.
pub fn read(text: &str) -> Option<Vec<Value>> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    // Empty when the text ends with a newline, else the torn last line.
    lines.pop();
    lines
        .into_iter()
        .map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Appends `v` as one line, in one write.
pub fn append(file: &mut std::fs::File, v: &Value) -> std::io::Result<()> {
    file.write_all(format!("{v}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_one_before_it_spoils_the_text() {
        assert_eq!(read("{\"a\":1}\n{\"b\":").unwrap().len(), 1);
        assert_eq!(read("{\"a\":1}\n{\"b\":2}\n").unwrap().len(), 2);
        assert_eq!(read("{\"a\":1}").unwrap().len(), 0);
        assert!(read("x\n{\"a\":1}\n").is_none());
        assert_eq!(read("").unwrap().len(), 0);
    }
}
