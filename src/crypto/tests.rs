//! Known-answer tests against `tests/data/mega-vectors.json` (loaded, never retyped). The file
//! is a copy, kept in the repository, of the project's known-answer vectors.

use serde_json::Value;
use sha1::Digest;

use super::aes::{cbc_decrypt_zero_iv, cbc_encrypt_zero_iv, cipher, ctr_apply};
use super::fingerprint::Fingerprint;
use super::keys::{FileKey, Key128};
use super::mac::{self, chunks};
use super::rsa::RsaPrivateKey;
use super::{attr, b64, kdf};

fn vectors() -> Value {
    let path = format!(
        "{}/tests/data/mega-vectors.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read test vectors at {path}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

/// `test_buffer(n, start, step)[i] = (start + i*step) % 255`.
fn test_buffer(spec: &Value) -> Vec<u8> {
    let a = spec["test_buffer"].as_array().expect("test_buffer spec");
    let (n, start, step) = (
        a[0].as_u64().unwrap(),
        a[1].as_u64().unwrap(),
        a[2].as_u64().unwrap(),
    );
    (0..n).map(|i| ((start + i * step) % 255) as u8).collect()
}

fn hex(s: &Value) -> Vec<u8> {
    hex::decode(s.as_str().expect("hex string")).expect("valid hex")
}

fn sha1_hex(d: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(d))
}

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    v.try_into().expect("length")
}

#[test]
fn prepare_key_vectors() {
    let v = vectors();
    for case in v["prepare_key"].as_array().unwrap() {
        let pw = test_buffer(&case["password"]);
        assert_eq!(kdf::prepare_key(&pw).0.to_vec(), hex(&case["key_hex"]));
    }
}

#[test]
fn stringhash_vectors() {
    let v = vectors();
    let key = kdf::prepare_key(&test_buffer(&serde_json::json!({"test_buffer": [8, 0, 1]})));
    assert_eq!(
        v["stringhash"]["aes_key"].as_str(),
        Some("prepare_key(test_buffer(8))")
    );
    for case in v["stringhash"]["cases"].as_array().unwrap() {
        let h = kdf::stringhash(&test_buffer(&case["input"]), &key);
        assert_eq!(h.to_vec(), hex(&case["hash_hex"]));
    }
}

#[test]
fn cbc_zero_iv_vector() {
    let v = &vectors()["aes_cbc_zero_iv"];
    let key = arr::<16>(&test_buffer(&v["key"]));
    let plain = test_buffer(&v["plaintext"]);
    let mut data = plain.clone();
    cbc_encrypt_zero_iv(&key, &mut data);
    assert_eq!(sha1_hex(&data), v["ciphertext_sha1"].as_str().unwrap());
    cbc_decrypt_zero_iv(&key, &mut data);
    assert_eq!(data, plain);
}

#[test]
fn ctr_vectors_and_unaligned_offsets() {
    let v = &vectors()["aes_ctr"];
    let km = test_buffer(&v["key_material"]);
    let (key, nonce) = (arr::<16>(&km[..16]), arr::<8>(&km[16..24]));
    let c = cipher(&key);
    for case in v["cases"].as_array().unwrap() {
        let plain = test_buffer(&case["plaintext"]);
        let mut data = plain.clone();
        ctr_apply(&c, &nonce, 0, &mut data);
        if let Some(h) = case.get("ciphertext_hex") {
            assert_eq!(data, hex(h));
        } else {
            assert_eq!(sha1_hex(&data), case["ciphertext_sha1"].as_str().unwrap());
        }
        // Any offset, aligned or not, gives the same bytes as the whole-stream run.
        for off in [0usize, 1, 15, 16, 17, 31, 4095, 131071] {
            if off >= plain.len() {
                continue;
            }
            let mut part = plain[off..].to_vec();
            ctr_apply(&c, &nonce, off as u64, &mut part);
            assert_eq!(part, data[off..], "offset {off}");
        }
    }
}

#[test]
fn encrypt_and_mac_vector() {
    let v = &vectors()["encrypt_and_mac"];
    let km = test_buffer(&v["key_material"]);
    let plain = test_buffer(&v["plaintext"]);
    let mut key = FileKey {
        aes: arr(&km[..16]),
        nonce: arr(&km[16..24]),
        meta_mac: [0; 8],
    };
    let c = cipher(&key.aes);
    let mut data = plain.clone();
    let macs = mac::encrypt_piece(&c, &key.nonce, 0, &mut data);
    key.meta_mac = mac::condense(&c, &macs);
    assert_eq!(key.meta_mac.to_vec(), hex(&v["meta_mac_hex"]));
    assert_eq!(key.pack().to_vec(), hex(&v["packed_node_key_hex"]));
    assert_eq!(sha1_hex(&data), v["ciphertext_sha1"].as_str().unwrap());
    // And back, in pieces of one chunk each (pieces start on chunk boundaries).
    let mut back = Vec::new();
    for (start, len) in chunks(data.len() as u64) {
        let (s, e) = (start as usize, (start + len) as usize);
        back.extend(mac::decrypt_piece(&c, &key.nonce, start, &mut data[s..e]));
    }
    assert_eq!(back, macs);
    assert_eq!(data, plain);
    assert_eq!(FileKey::unpack(&key.pack()), key);
}

#[test]
fn mac_verify_vector() {
    let v = &vectors()["mac_verify"];
    let key = FileKey::from_b64(v["node_key_b64"].as_str().unwrap()).unwrap();
    let plain = test_buffer(&v["plaintext"]);
    let m = mac::meta_mac(&key.aes, &key.nonce, &plain);
    assert_eq!(m.to_vec(), hex(&v["meta_mac_hex"]));
    assert_eq!(m, key.meta_mac);
}

#[test]
fn meta_mac_reference_and_megajs_variant() {
    let v = &vectors()["meta_mac_reference_algorithm"];
    let key = arr::<16>(&hex(&v["aes_key_hex"]));
    let nonce = arr::<8>(&hex(&v["nonce_hex"]));
    let c = cipher(&key);
    // megajs' values for the same inputs (MEGA-PROTOCOL.md §12.6); the vectors file only
    // carries the SDK ones.
    let megajs: [(usize, &str); 3] = [
        (0, "c3575856721d9a95"),
        (131072, "b853a249a7d66a12"),
        (393216, "a20d144062e7bd8e"),
    ];
    for case in v["cases"].as_array().unwrap() {
        let plain = test_buffer(&case["plaintext"]);
        let expected = arr::<8>(&hex(&case["meta_mac_hex"]));
        assert_eq!(mac::meta_mac(&key, &nonce, &plain), expected);
        let macs: Vec<_> = chunks(plain.len() as u64)
            .map(|(s, l)| mac::chunk_mac(&c, &nonce, &plain[s as usize..(s + l) as usize]))
            .collect();
        assert!(mac::verify(
            &c,
            &nonce,
            plain.len() as u64,
            &macs,
            &expected
        ));
        if let Some((_, js)) = megajs.iter().find(|(n, _)| *n == plain.len()) {
            let js = arr::<8>(&hex::decode(js).unwrap());
            assert_eq!(
                mac::megajs_variant(&c, &nonce, plain.len() as u64, &macs),
                Some(js)
            );
            assert!(mac::verify(&c, &nonce, plain.len() as u64, &macs, &js));
        } else {
            assert_eq!(
                mac::megajs_variant(&c, &nonce, plain.len() as u64, &macs),
                None
            );
        }
        // A wrong MAC is never accepted.
        let mut bad = expected;
        bad[0] ^= 1;
        assert!(!mac::verify(&c, &nonce, plain.len() as u64, &macs, &bad));
    }
}

#[test]
fn chunk_schedule_vectors() {
    let v = vectors();
    for case in v["chunk_schedule"].as_array().unwrap() {
        let size = case["size"].as_u64().unwrap();
        let expected: Vec<(u64, u64)> = case["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap()))
            .collect();
        assert_eq!(chunks(size).collect::<Vec<_>>(), expected, "size {size}");
        assert_eq!(mac::chunk_count(size), expected.len() as u64);
        for (i, (start, _)) in expected.iter().enumerate() {
            assert_eq!(mac::chunk_start(i as u64), *start);
            assert_eq!(mac::chunk_index(*start), i as u64);
            assert!(mac::is_chunk_boundary(*start));
        }
    }
    assert!(!mac::is_chunk_boundary(131073));
    assert_eq!(mac::chunk_index(131071), 0);
}

#[test]
fn attribute_vector_and_bad_input() {
    let v = &vectors()["attribute_encryption"];
    let key = arr::<16>(&hex(&v["aes_key_hex"]));
    let attrs: serde_json::Map<String, Value> =
        serde_json::from_str(v["json"].as_str().unwrap()).unwrap();
    let enc = attr::encrypt(&key, &attrs);
    assert_eq!(b64::encode(&enc), v["ciphertext_b64"].as_str().unwrap());
    assert_eq!(attr::decrypt(&key, &enc).unwrap(), attrs);
    // Wrong key, truncated and empty blobs are errors, not panics.
    assert!(attr::decrypt(&[1; 16], &enc).is_err());
    assert!(attr::decrypt(&key, &enc[..15]).is_err());
    assert!(attr::decrypt(&key, &[]).is_err());
}

/// The name-only decoder agrees with the full one on every shape, hostile ones included.
#[test]
fn name_decoder_agrees_with_the_full_decoder() {
    let key = [7u8; 16];
    let raw = |json: &str| {
        let mut plain = format!("MEGA{json}").into_bytes();
        plain.resize(plain.len().div_ceil(16) * 16, 0);
        crate::crypto::aes::cbc_encrypt_zero_iv(&key, &mut plain);
        plain
    };
    for json in [
        r#"{"n":"a.txt","c":"fp"}"#,
        r#"{"c":"x","n":"\u00e9t\u00e9 \"q\"","extra":{"deep":[1,2,{"n":"no"}]}}"#,
        r#"{"n":"first","n":"second"}"#,
        r#"{"n":5,"c":null}"#,
        r#"{"x":1}"#,
        r#"{"n":"a"} trailing"#,
        r#"{"n":"a""#,
        r#"{"n":"a"}"#,
        r#"{"n":"x","_posix":"100755","_posix2":"1"}"#,
        r#"{"n":"x","_posix":7}"#,
    ] {
        let enc = raw(json);
        let full = attr::decrypt(&key, &enc).ok().map(|m| {
            let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            attr::Known {
                name: s("n"),
                fingerprint: s("c"),
                posix: s(attr::POSIX),
            }
        });
        assert_eq!(attr::decrypt_name(&key, &enc).ok(), full, "{json}");
    }
}

#[test]
fn v2_kdf_vector() {
    let v = &vectors()["v2_kdf"];
    let salt = b64::decode(v["salt_b64"].as_str().unwrap(), "salt").unwrap();
    let (pw, auth) = kdf::derive_v2(v["password"].as_str().unwrap().as_bytes(), &salt);
    assert_eq!(pw.0.to_vec(), hex(&v["password_key_hex"]));
    let mut full = pw.0.to_vec();
    full.extend(auth);
    assert_eq!(full, hex(&v["pbkdf2_sha512_100000_32_hex"]));
    assert_eq!(b64::encode(&auth), v["uh"].as_str().unwrap());
}

#[test]
fn full_v1_login_vector() {
    let v = &vectors()["v1_login_mega_mock_account"];
    let email = v["email"].as_str().unwrap();
    let pwkey = kdf::prepare_key(v["password"].as_str().unwrap().as_bytes());
    assert_eq!(pwkey.0.to_vec(), hex(&v["password_key_hex"]));
    let uh = kdf::stringhash(email.as_bytes(), &pwkey);
    assert_eq!(b64::encode(&uh), v["uh"].as_str().unwrap());
    let k = b64::decode(v["k"].as_str().unwrap(), "k").unwrap();
    let mk = pwkey.unwrap_key(&k, "k").unwrap();
    assert_eq!(mk, hex(&v["master_key_hex"]));
    let mk = Key128(arr(&mk));
    let privk = b64::decode(v["privk"].as_str().unwrap(), "privk").unwrap();
    let blob = mk.unwrap_key(&privk, "privk").unwrap();
    let rsa = RsaPrivateKey::from_blob(&blob).unwrap();
    assert_eq!(rsa.modulus().bits(), 2048);
    let csid = b64::decode(v["csid"].as_str().unwrap(), "csid").unwrap();
    let sid = rsa.decrypt_sid(&csid).unwrap();
    assert_eq!(b64::encode(&sid), v["sid"].as_str().unwrap());
    // CRT matches plain exponentiation with d.
    let (c, _) = super::rsa::read_mpi(&csid).unwrap();
    let (_, rest) = super::rsa::read_mpi(&blob).unwrap();
    let (_, rest) = super::rsa::read_mpi(rest).unwrap();
    let (d, _) = super::rsa::read_mpi(rest).unwrap();
    assert_eq!(rsa.decrypt(&c), c.modpow(&d, &rsa.modulus()));
    // A truncated blob is an error, not a panic.
    assert!(RsaPrivateKey::from_blob(&blob[..100]).is_err());
}

#[test]
fn fingerprint_vectors() {
    let v = vectors();
    for case in v["fingerprint_c_attribute"].as_array().unwrap() {
        let data: Vec<u8> = match case["data"].as_str().unwrap() {
            "100 bytes 00..63" => (0..100u8).collect(),
            "ascii 'hello'" => b"hello".to_vec(),
            "20000 bytes i % 256" => (0..20000u32).map(|i| (i % 256) as u8).collect(),
            other => panic!("unknown fingerprint data spec {other}"),
        };
        let mtime = case["mtime"].as_i64().unwrap();
        let fp = Fingerprint::of_bytes(&data, mtime);
        assert_eq!(fp.encode(), case["c"].as_str().unwrap());
        assert_eq!(
            Fingerprint::decode(case["c"].as_str().unwrap()).unwrap(),
            fp
        );
    }
    assert!(Fingerprint::decode("AAAA").is_err());
    assert!(Fingerprint::decode("!!!").is_err());
}

#[test]
fn public_link_keys() {
    let v = vectors();
    for link in v["public_links"].as_array().unwrap() {
        if link["kind"] == "file" {
            let url = link["link"].as_str().unwrap();
            let key_b64 = url.rsplit('#').next().unwrap();
            let k = FileKey::from_b64(key_b64).unwrap();
            assert_eq!(k.pack().to_vec(), hex(&link["node_key_hex"]));
            // 16 zero bytes, as the vector says, verify under this key.
            assert_eq!(mac::meta_mac(&k.aes, &k.nonce, &[0u8; 16]), k.meta_mac);
        }
    }
}

#[test]
fn upload_checksum_vector() {
    let v = &vectors()["upload_chunk_checksum"];
    let body: Vec<u8> = (0..32u8).collect();
    assert_eq!(
        b64::encode(&super::upload_checksum(&body)),
        v["checksum_b64"].as_str().unwrap()
    );
}

/// The word-wise fold is the byte-wise XOR of the protocol, for every tail length.
#[test]
fn upload_checksum_is_the_bytewise_fold() {
    let body: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    for len in (0..200).chain([999, 1000]) {
        let mut want = [0u8; 12];
        for (i, b) in body[..len].iter().enumerate() {
            want[i % 12] ^= b;
        }
        assert_eq!(super::upload_checksum(&body[..len]), want, "length {len}");
    }
}

#[test]
fn base64_accepts_both_alphabets() {
    assert_eq!(
        b64::decode("-_8", "x").unwrap(),
        b64::decode("+/8=", "x").unwrap()
    );
    assert!(b64::decode("*", "x").is_err());
    assert_eq!(b64::encode(&[0xfb, 0xff]), "-_8");
}

#[test]
fn interleaved_lanes_equal_one_chain_at_a_time() {
    let c = cipher(&[5; 16]);
    let nonce = [9; 8];
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    // Uneven lengths, more chunks than lanes, empty and short chunks.
    let mut lens = vec![0usize, 0, 1, 17, 4096, 131072, 131073, 1 << 20];
    lens.extend((0..12).map(|i| 1000 + i * 37));
    let mut views = Vec::new();
    let mut off = 0;
    for len in lens {
        views.push(&data[off..off + len]);
        off += len;
    }
    let lanes = mac::chunk_macs(&c, &nonce, &views);
    assert_eq!(lanes.len(), views.len());
    for (p, m) in views.iter().zip(&lanes) {
        // Reference: a plain serial CBC-MAC with IV nonce || nonce, zero-padded.
        let mut st = [0u8; 16];
        st[..8].copy_from_slice(&nonce);
        st[8..].copy_from_slice(&nonce);
        for b in p.chunks(16) {
            for (x, y) in st.iter_mut().zip(b) {
                *x ^= y;
            }
            crate::crypto::aes::encrypt_block(&c, &mut st);
        }
        assert_eq!(&st, m);
    }
}

/// A local file is proved equal to a node by its MAC alone: same content matches, any
/// change, a shorter or a longer file does not; megajs' MAC form counts too.
#[test]
fn content_matches_a_file_key_without_downloading() {
    use super::aes::cipher;
    use super::keys::FileKey;
    use super::mac::{chunks, content_matches, megajs_variant, meta_mac};
    for size in [0usize, 1, 131_072, 1_000_000, 3 * 1_048_576 + 17] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 255) as u8).collect();
        let (aes, nonce) = ([7u8; 16], [9u8; 8]);
        let key = FileKey {
            aes,
            nonce,
            meta_mac: meta_mac(&aes, &nonce, &data),
        };
        let m = |d: &[u8], s: u64| content_matches(&mut &d[..], s, &key).unwrap();
        assert!(m(&data, size as u64), "{size}");
        if size > 0 {
            let mut other = data.clone();
            other[size / 2] ^= 1;
            assert!(!m(&other, size as u64), "changed, {size}");
            assert!(!m(&data[..size - 1], size as u64), "shorter, {size}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(!m(&longer, size as u64), "longer, {size}");
        // megajs' form, for sizes that end on a chunk boundary.
        let c = cipher(&aes);
        let macs: Vec<[u8; 16]> = chunks(size as u64)
            .map(|(s, l)| super::mac::chunk_mac(&c, &nonce, &data[s as usize..(s + l) as usize]))
            .collect();
        if let Some(mj) = megajs_variant(&c, &nonce, size as u64, &macs) {
            let key = FileKey {
                aes,
                nonce,
                meta_mac: mj,
            };
            assert!(content_matches(&mut &data[..], size as u64, &key).unwrap());
        }
    }
}
