//! What a person sets on files and folders in MEGA's apps, kept in the node's encrypted
//! attributes (`MEGA-FILES-TRANSFERS.md` §6.3): a colour label (`lbl`), favourite (`fav`),
//! sensitive (`sen`), a description (`des`) and tags (`t`). Read in both the SDK's form
//! (strings) and the web client's (numbers); written in the SDK's. A label, favourite or
//! sensitive flag set on a file is set on its previous versions too, as the SDK does.

use serde_json::{json, Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::Client;
use crate::error::{Error, Result};
use crate::tree::{Node, NodeHandle};

/// The longest description, and the most tag bytes (the SDK's limits).
const MAX_TEXT: usize = 3000;
/// The most tags on one node.
const MAX_TAGS: usize = 10;

/// MEGA's label colours, in their wire order (1–7).
pub const LABELS: [&str; 7] = ["red", "orange", "yellow", "green", "blue", "purple", "grey"];

/// The marks of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Marks {
    /// The colour's name (`red` … `grey`).
    pub label: Option<&'static str>,
    pub favourite: bool,
    pub sensitive: bool,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

/// A flag as either client writes it: `1` or `"1"`.
fn flag(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Marks {
    /// Reads them from decrypted attributes (anything malformed counts as absent; a
    /// numeric `t` is a legacy mtime, not tags).
    pub fn of(attrs: &Map<String, Value>) -> Marks {
        let label = flag(attrs.get("lbl"))
            .filter(|l| (1..=7).contains(l))
            .map(|l| LABELS[l as usize - 1]);
        let tags = match attrs.get("t") {
            Some(Value::String(s)) => s
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Marks {
            label,
            favourite: flag(attrs.get("fav")) == Some(1),
            sensitive: flag(attrs.get("sen")) == Some(1),
            description: attrs
                .get("des")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            tags,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Marks::default()
    }
}

/// Changes to make; `None` leaves a mark as it is.
#[derive(Debug, Clone, Default)]
pub struct MarkChanges {
    /// `Some(None)` removes the label.
    pub label: Option<Option<String>>,
    pub favourite: Option<bool>,
    pub sensitive: Option<bool>,
    /// `Some("")` removes the description.
    pub description: Option<String>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
}

fn invalid(what: String) -> Error {
    Error::Invalid { what, code: None }
}

/// Applies the changes to attributes (checked against MEGA's limits first).
fn apply(attrs: &mut Map<String, Value>, c: &MarkChanges) -> Result<()> {
    let set = |attrs: &mut Map<String, Value>, k: &str, v: Option<Value>| match v {
        Some(v) => {
            attrs.insert(k.into(), v);
        }
        None => {
            attrs.remove(k);
        }
    };
    if let Some(label) = &c.label {
        let v = match label {
            None => None,
            Some(name) => {
                let i = LABELS
                    .iter()
                    .position(|l| l.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{name}: not a label (one of {}, or none)",
                            LABELS.join(", ")
                        ))
                    })?;
                Some(json!((i + 1).to_string()))
            }
        };
        set(attrs, "lbl", v);
    }
    if let Some(f) = c.favourite {
        set(attrs, "fav", f.then(|| json!("1")));
    }
    if let Some(s) = c.sensitive {
        set(attrs, "sen", s.then(|| json!("1")));
    }
    if let Some(d) = &c.description {
        let d: String = d.nfc().collect();
        if d.len() > MAX_TEXT {
            return Err(invalid(format!(
                "a description of {} bytes (at most {MAX_TEXT})",
                d.len()
            )));
        }
        set(attrs, "des", (!d.is_empty()).then(|| json!(d)));
    }
    if !c.add_tags.is_empty() || !c.remove_tags.is_empty() {
        let mut tags = Marks::of(attrs).tags;
        for t in &c.add_tags {
            let t: String = t.nfc().collect();
            if t.is_empty() || t.contains(',') {
                return Err(invalid(format!(
                    "{t:?}: a tag is not empty and has no comma"
                )));
            }
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        tags.retain(|t| !c.remove_tags.contains(t));
        let joined = tags.join(",");
        if tags.len() > MAX_TAGS || joined.len() > MAX_TEXT {
            return Err(invalid(format!(
                "{} tags, {} bytes (at most {MAX_TAGS} tags, {MAX_TEXT} bytes)",
                tags.len(),
                joined.len()
            )));
        }
        set(attrs, "t", (!tags.is_empty()).then(|| json!(joined)));
    }
    Ok(())
}

impl Client {
    /// Changes a node's marks; answers them as they are now. Label, favourite and sensitive
    /// go onto the file's previous versions too.
    pub async fn set_marks(&self, h: &NodeHandle, c: &MarkChanges) -> Result<Marks> {
        let n = self.mutable(h)?;
        let mut attrs = n.attrs().ok_or_else(|| Error::Undecryptable {
            what: n.name.clone(),
        })?;
        apply(&mut attrs, c)?;
        let marks = Marks::of(&attrs);
        self.put_attrs(&n, attrs).await?;
        let flags = MarkChanges {
            label: c.label.clone(),
            favourite: c.favourite,
            sensitive: c.sensitive,
            ..MarkChanges::default()
        };
        if flags.label.is_some() || flags.favourite.is_some() || flags.sensitive.is_some() {
            let versions: Vec<Node> = self.view(|t| t.versions(h).into_iter().cloned().collect());
            for v in versions {
                let Some(mut a) = v.attrs() else { continue };
                apply(&mut a, &flags)?;
                if let Err(e) = self.put_attrs(&v, a).await {
                    tracing::warn!("a previous version keeps its old marks: {e}");
                }
            }
        }
        Ok(marks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn both_clients_forms_are_read() {
        let m = Marks::of(&attrs(
            json!({"lbl": "3", "fav": 1, "des": "x", "t": "a,b"}),
        ));
        assert_eq!(m.label, Some("yellow"));
        assert!(m.favourite && !m.sensitive);
        assert_eq!(m.tags, ["a", "b"]);
        let m = Marks::of(&attrs(json!({"lbl": 7, "sen": "1", "t": 1700000000})));
        assert_eq!(m.label, Some("grey"));
        assert!(m.sensitive);
        assert!(m.tags.is_empty(), "a numeric t is a legacy mtime");
        assert!(Marks::of(&attrs(json!({"lbl": 9, "fav": "x"}))).is_empty());
    }

    #[test]
    fn changes_are_written_in_the_sdks_form_and_checked() {
        let mut a = attrs(json!({"n": "f", "t": "keep"}));
        let c = MarkChanges {
            label: Some(Some("Blue".into())),
            favourite: Some(true),
            description: Some("cafe\u{301}".into()),
            add_tags: vec!["x".into()],
            ..Default::default()
        };
        apply(&mut a, &c).unwrap();
        assert_eq!(a["lbl"], json!("5"));
        assert_eq!(a["fav"], json!("1"));
        assert_eq!(a["des"], json!("caf\u{e9}"), "NFC");
        assert_eq!(a["t"], json!("keep,x"));
        let c = MarkChanges {
            label: Some(None),
            favourite: Some(false),
            description: Some(String::new()),
            remove_tags: vec!["keep".into(), "x".into()],
            ..Default::default()
        };
        apply(&mut a, &c).unwrap();
        assert_eq!(a, attrs(json!({"n": "f"})));
        for bad in [
            MarkChanges {
                label: Some(Some("pink".into())),
                ..Default::default()
            },
            MarkChanges {
                add_tags: vec!["a,b".into()],
                ..Default::default()
            },
            MarkChanges {
                add_tags: (0..11).map(|i| i.to_string()).collect(),
                ..Default::default()
            },
            MarkChanges {
                description: Some("x".repeat(3001)),
                ..Default::default()
            },
        ] {
            assert!(apply(&mut a.clone(), &bad).is_err(), "{bad:?}");
        }
    }
}
