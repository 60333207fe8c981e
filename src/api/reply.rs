//! Decoding a `/cs` reply straight from its bytes into the typed replies of its commands: an
//! array with one element per command (a negative number is that command's error) or a bare
//! negative number for the whole request. Nothing is built in between, so an `f` reply of
//! hundreds of megabytes is read once, element by element, into its final types.

use std::marker::PhantomData;

use serde::de::value::{
    BoolDeserializer, F64Deserializer, I64Deserializer, MapAccessDeserializer,
    SeqAccessDeserializer, StrDeserializer, StringDeserializer, U64Deserializer, UnitDeserializer,
};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

use super::{ApiError, ErrorCode};

/// One command's result: its reply, or its (negative) error code.
struct Item<T>(Result<T, i64>);

struct ItemVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemVisitor<T> {
    type Value = Item<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a command result")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if v < 0 {
            return Ok(Item(Err(v)));
        }
        T::deserialize(I64Deserializer::<E>::new(v)).map(|t| Item(Ok(t)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::deserialize(U64Deserializer::<E>::new(v)).map(|t| Item(Ok(t)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        T::deserialize(F64Deserializer::<E>::new(v)).map(|t| Item(Ok(t)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        T::deserialize(BoolDeserializer::<E>::new(v)).map(|t| Item(Ok(t)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        T::deserialize(StrDeserializer::<E>::new(v)).map(|t| Item(Ok(t)))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        T::deserialize(StringDeserializer::<E>::new(v)).map(|t| Item(Ok(t)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        T::deserialize(UnitDeserializer::<E>::new()).map(|t| Item(Ok(t)))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        T::deserialize(SeqAccessDeserializer::new(a)).map(|t| Item(Ok(t)))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(a)).map(|t| Item(Ok(t)))
    }
}

/// The whole reply: the results, or one error code for the request.
enum Top<T> {
    Code(i64),
    Items(Vec<Item<T>>),
}

struct TopVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Top<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for TopVisitor<T> {
    type Value = Top<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of results or an error code")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Top::Code(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Top::Code(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Item<T>>()? {
            items.push(item);
        }
        Ok(Top::Items(items))
    }
}

/// Decodes the reply to `n` commands that all answer a `T` (`name` is for messages).
pub(super) fn parse_typed<T: DeserializeOwned>(
    bytes: &[u8],
    n: usize,
    name: &str,
) -> Result<Vec<Result<T, ApiError>>, ApiError> {
    let top: Top<T> = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadResponse(format!("`{name}` reply: {e}")))?;
    match top {
        Top::Code(code) if code < 0 => Err(ApiError::Mega(ErrorCode::from_code(code))),
        Top::Code(_) => Err(ApiError::BadResponse(
            "reply is neither array nor error".into(),
        )),
        Top::Items(items) if items.len() != n => Err(ApiError::BadResponse(format!(
            "{} results for {} commands",
            items.len(),
            n
        ))),
        Top::Items(items) => Ok(items
            .into_iter()
            .map(|Item(r)| match r {
                Ok(t) => Ok(t),
                Err(code) => match ErrorCode::from_code(code) {
                    ErrorCode::Sid => Err(ApiError::SessionLost),
                    c => Err(ApiError::Mega(c)),
                },
            })
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Today's `f` carries sets and albums (`aesp`) and chats (`mcf`, `mcna`, `mcpna`,
    /// `mcsm`) beside the nodes (`MEGA-FILES-TRANSFERS.md` §6.2), and `p` with `v:4` answers
    /// file ids (`fh`): read past, the rest of the reply as it is.
    #[test]
    fn todays_additions_to_f_and_p_are_read_past() {
        use crate::api::commands::{FetchReply, PutNodesReply};
        let f = br#"[{"f": [{"h": "ROOT0000", "p": "", "u": "U1", "t": 2, "a": "", "ts": 1}],
            "aesp": {"s": [{"id": "SET1", "at": "x", "k": "y", "u": "U1", "ts": 1, "cts": 1}],
                     "e": [{"id": "EL1", "s": "SET1", "h": "ROOT0000", "o": 1, "ts": 1, "k": "z"}],
                     "p": [{"s": "SET1", "ph": "PH", "ts": 1}]},
            "mcf": {"c": [{"id": "CHAT", "u": [{"u": "U1", "p": 3}]}], "pc": []},
            "mcna": [], "mcpna": [], "mcsm": [{"id": "M"}], "ok": [], "s": [], "u": [],
            "sn": "SN000001"}]"#;
        let r = parse_typed::<FetchReply>(f, 1, "f").unwrap();
        let reply = r.into_iter().next().unwrap().unwrap();
        assert_eq!(reply.f.len(), 1);
        assert_eq!(reply.sn.as_deref(), Some("SN000001"));
        let p = br#"[{"f": [{"h": "NODE0001", "p": "ROOT0000", "u": "U1", "t": 1, "a": "", "k": "U1:AAAA", "ts": 2}],
            "fh": ["NODE0001:FILEID01"]}]"#;
        let r = parse_typed::<PutNodesReply>(p, 1, "p").unwrap();
        assert_eq!(r.into_iter().next().unwrap().unwrap().f.len(), 1);
    }

    #[test]
    fn results_errors_and_shapes() {
        let r = parse_typed::<Value>(br#"[0, -9, {"x": 1}, "s", [1]]"#, 5, "t").unwrap();
        assert!(matches!(r[0], Ok(ref v) if v == &serde_json::json!(0)));
        assert!(matches!(r[1], Err(ApiError::Mega(ErrorCode::NotFound))));
        assert!(matches!(r[2], Ok(ref v) if v["x"] == 1));
        assert!(matches!(r[3], Ok(ref v) if v == "s"));
        assert!(matches!(r[4], Ok(ref v) if v[0] == 1));
        assert!(matches!(
            parse_typed::<Value>(b"-3", 1, "t"),
            Err(ApiError::Mega(ErrorCode::Again))
        ));
        assert!(matches!(
            parse_typed::<Value>(b"[-15]", 1, "t").unwrap()[0],
            Err(ApiError::SessionLost)
        ));
        assert!(matches!(
            parse_typed::<Value>(b"[1, 2]", 1, "t"),
            Err(ApiError::BadResponse(_))
        ));
        assert!(matches!(
            parse_typed::<Value>(b"{\"a\": 1}", 1, "t"),
            Err(ApiError::BadResponse(_))
        ));
        assert!(matches!(
            parse_typed::<Value>(b"[1", 1, "t"),
            Err(ApiError::BadResponse(_))
        ));
        // A typed reply of the wrong shape is a protocol error naming the command.
        #[derive(Debug, serde::Deserialize)]
        struct Need {
            #[allow(dead_code)]
            x: u32,
        }
        match parse_typed::<Need>(br#"[{"y": 1}]"#, 1, "zz") {
            Err(ApiError::BadResponse(m)) => assert!(m.contains("`zz` reply"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
