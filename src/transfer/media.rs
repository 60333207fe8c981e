//! Videos: a frame for the thumbnail and preview (FFmpeg), and MEGA's media attributes
//! (file attribute types 8 and 9: width, height, frame rate, duration and codecs, packed and
//! encrypted as MEGA's SDK and webclient do, `MEGA-FILES-TRANSFERS.md` §1.9), from
//! `ffprobe`. MEGA's web player streams a video only when type 8 says what it holds.
//!
//! FFmpeg is optional: without `ffmpeg` and `ffprobe` on the `PATH`, videos upload without
//! any of this. Both run as child processes with a time limit and bounded output, reading
//! the local file by path (with `file:`, so no name is taken for a protocol) or, for the
//! mount's staged files, the plaintext through a pipe (never a plaintext copy on disk); no
//! other protocol is allowed (a playlist posing as a video cannot reach the network).
//!
//! Codec ids come from the server (`mc`): names are matched the way the SDK matches
//! MediaInfo's, the codec id first (`avc1`, `mp4a-40-2`, `V_VP9`…), then the format name
//! (`AVC`, `AAC`, `Matroska`…).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::crypto::{b64, FileKey};

/// File attribute type of the media properties.
pub const MEDIA: u32 = 8;
/// File attribute type of the codec ids of an uncommon combination.
pub const MEDIA_EXT: u32 = 9;

/// How long one ffprobe or ffmpeg run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// The most output taken from one run (a PNG frame, ffprobe's JSON).
const MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// Extensions we treat as videos (those FFmpeg reads and MEGA's apps play or show).
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "qt", "mkv", "webm", "avi", "wmv", "flv", "mpg", "mpeg", "ts", "mts",
    "m2ts", "3gp", "3g2", "ogv",
];

/// True if a file called `name` is a video (by extension, as the SDK decides).
pub fn is_video(name: &str) -> bool {
    super::graphics::extension(name).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.as_str()))
}

/// Whether `ffmpeg` and `ffprobe` can be run (looked up once per process).
pub fn available() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        ["ffmpeg", "ffprobe"].iter().all(|p| {
            Command::new(p)
                .arg("-version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Where a video is read from.
pub enum Input<'a> {
    /// A local file, by path.
    Path(&'a Path),
    /// Plaintext from a fresh reader for each run, written to the child's stdin.
    Pipe(&'a (dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Sync)),
}

/// What ffprobe says of a video, in the names MEGA's codec list uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Whole seconds.
    pub playtime: u32,
    /// Candidate names of the container, the video and the audio codec, best first.
    pub container: Vec<String>,
    pub video: Vec<String>,
    pub audio: Vec<String>,
}

/// Runs a child with `input` on its stdin (or none), within [`RUN_LIMIT`]; its stdout.
fn run(mut cmd: Command, input: &Input<'_>) -> std::io::Result<Vec<u8>> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    cmd.stdin(match input {
        Input::Path(_) => Stdio::null(),
        Input::Pipe(_) => Stdio::piped(),
    });
    let mut child = cmd.spawn()?;
    let feeder = match (input, child.stdin.take()) {
        (Input::Pipe(open), Some(mut stdin)) => {
            let mut src = open()?;
            Some(std::thread::spawn(move || {
                // The child stops reading once it has what it needs: a broken pipe is normal.
                let _ = std::io::copy(&mut src, &mut stdin);
            }))
        }
        _ => None,
    };
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = (&mut stdout)
            .take(MAX_OUTPUT as u64 + 1)
            .read_to_end(&mut out);
        r.map(|_| out)
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "ffmpeg took too long",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let out = reader
        .join()
        .map_err(|_| std::io::Error::other("reader panicked"))??;
    if !status.success() {
        return Err(std::io::Error::other(format!("exited with {status}")));
    }
    if out.len() > MAX_OUTPUT {
        return Err(std::io::Error::other("too much output"));
    }
    Ok(out)
}

/// The only protocol a run may open: the file itself, or the pipe. A file that is really a
/// playlist or a reference (HLS, concat…) then cannot make FFmpeg reach the network.
fn protocols(input: &Input<'_>) -> [&'static str; 2] {
    match input {
        Input::Path(_) => ["-protocol_whitelist", "file"],
        Input::Pipe(_) => ["-protocol_whitelist", "pipe"],
    }
}

fn source_arg(input: &Input<'_>) -> std::ffi::OsString {
    match input {
        Input::Path(p) => {
            let mut s = std::ffi::OsString::from("file:");
            s.push(p.as_os_str());
            s
        }
        Input::Pipe(_) => "pipe:0".into(),
    }
}

/// Probes a video with ffprobe.
pub fn probe(input: &Input<'_>, name: &str) -> std::io::Result<Probe> {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ])
    .args(protocols(input))
    .arg(source_arg(input));
    let out = run(cmd, input)?;
    let v: Value = serde_json::from_slice(&out).map_err(std::io::Error::other)?;
    Ok(read_probe(&v, name))
}

/// The frame a fifth of the way in (as the SDK takes it), as PNG, rotated as it is shown.
pub fn frame(input: &Input<'_>, playtime: u32) -> std::io::Result<Vec<u8>> {
    let at = format!("{:.3}", f64::from(playtime) / 5.0);
    let mut cmd = Command::new("ffmpeg");
    if let Input::Path(_) = input {
        cmd.arg("-nostdin");
    }
    cmd.args(["-v", "error", "-ss", &at])
        .args(protocols(input))
        .arg("-i")
        .arg(source_arg(input))
        .args([
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "pipe:1",
        ]);
    let png = run(cmd, input)?;
    if png.is_empty() {
        return Err(std::io::Error::other("no frame"));
    }
    Ok(png)
}

/// ffprobe's JSON as [`Probe`]: the first video and audio streams, names as MediaInfo gives
/// them (codec id, then format).
fn read_probe(v: &Value, name: &str) -> Probe {
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let of = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind).cloned();
    let (video, audio) = (of("video"), of("audio"));
    let text = |s: &Value, k: &str| s[k].as_str().unwrap_or("").to_string();
    let format = &v["format"];
    let mut p = Probe {
        playtime: format["duration"]
            .as_str()
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(|d| d as u32)
            .unwrap_or(0),
        ..Default::default()
    };
    let matroska = text(format, "format_name").starts_with("matroska");
    let mp4 = text(format, "format_name").starts_with("mov,mp4");
    let webm = name.to_ascii_lowercase().ends_with(".webm");
    p.container = match text(format, "format_name").as_str() {
        f if f.starts_with("mov,mp4") => {
            let brand = format["tags"]["major_brand"].as_str().unwrap_or("");
            let mut c = vec![brand.to_string(), "MPEG-4".to_string()];
            if brand.starts_with("qt") {
                c.push("QuickTime".into());
            }
            c
        }
        f if f.starts_with("matroska") && webm => vec!["WebM".into(), "Matroska".into()],
        f if f.starts_with("matroska") => vec!["Matroska".into()],
        "avi" => vec!["AVI".into()],
        "mpegts" => vec!["MPEG-TS".into()],
        "mpeg" => vec!["MPEG-PS".into()],
        "ogg" => vec!["Ogg".into()],
        "flv" => vec!["Flash Video".into()],
        "asf" => vec!["Windows Media".into()],
        other => vec![other.to_string()],
    };
    p.container.retain(|c| !c.is_empty());
    if let Some(s) = &video {
        let (w, h) = (
            s["width"].as_u64().unwrap_or(0) as u32,
            s["height"].as_u64().unwrap_or(0) as u32,
        );
        let rotation = rotation_of(s);
        (p.width, p.height) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
        p.fps = rate(&text(s, "avg_frame_rate"))
            .or_else(|| rate(&text(s, "r_frame_rate")))
            .unwrap_or(0);
        let codec = text(s, "codec_name");
        let tag = text(s, "codec_tag_string");
        let mut names = Vec::new();
        if mp4 && !tag.starts_with('[') {
            names.push(tag);
        }
        if matroska {
            names.extend(
                match codec.as_str() {
                    "h264" => Some("V_MPEG4/ISO/AVC"),
                    "hevc" => Some("V_MPEGH/ISO/HEVC"),
                    "vp8" => Some("V_VP8"),
                    "vp9" => Some("V_VP9"),
                    "av1" => Some("V_AV1"),
                    _ => None,
                }
                .map(str::to_string),
            );
        }
        names.extend(
            match codec.as_str() {
                "h264" => Some("AVC"),
                "hevc" => Some("HEVC"),
                "vp8" => Some("VP8"),
                "vp9" => Some("VP9"),
                "av1" => Some("AV1"),
                "mpeg4" => Some("MPEG-4 Visual"),
                "mpeg2video" | "mpeg1video" => Some("MPEG Video"),
                "wmv3" | "vc1" => Some("VC-1"),
                _ => None,
            }
            .map(str::to_string),
        );
        p.video = names;
    }
    if let Some(s) = &audio {
        let codec = text(s, "codec_name");
        let profile = text(s, "profile");
        let mut names = Vec::new();
        if mp4 {
            names.extend(
                match (codec.as_str(), profile.as_str()) {
                    ("aac", "HE-AAC") => Some("mp4a-40-5"),
                    ("aac", "HE-AACv2") => Some("mp4a-40-29"),
                    ("aac", _) => Some("mp4a-40-2"),
                    ("mp3", _) => Some("mp4a-6B"),
                    ("opus", _) => Some("Opus"),
                    ("ac3", _) => Some("ac-3"),
                    ("eac3", _) => Some("ec-3"),
                    _ => None,
                }
                .map(str::to_string),
            );
        }
        if matroska {
            names.extend(
                match codec.as_str() {
                    "aac" => Some("A_AAC-2"),
                    "opus" => Some("A_OPUS"),
                    "vorbis" => Some("A_VORBIS"),
                    "mp3" => Some("A_MPEG/L3"),
                    "ac3" => Some("A_AC3"),
                    "flac" => Some("A_FLAC"),
                    _ => None,
                }
                .map(str::to_string),
            );
        }
        names.extend(
            match codec.as_str() {
                "aac" => Some("AAC"),
                "opus" => Some("Opus"),
                "vorbis" => Some("Vorbis"),
                "mp3" | "mp2" => Some("MPEG Audio"),
                "ac3" => Some("AC-3"),
                "eac3" => Some("E-AC-3"),
                "flac" => Some("FLAC"),
                c if c.starts_with("pcm_") => Some("PCM"),
                _ => None,
            }
            .map(str::to_string),
        );
        p.audio = names;
    }
    p
}

/// A stream's rotation in degrees (0, 90, 180, 270), from its display matrix or `rotate` tag.
fn rotation_of(s: &Value) -> u32 {
    let side = s["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| d["rotation"].as_f64());
    let tag = s["tags"]["rotate"]
        .as_str()
        .and_then(|r| r.parse::<f64>().ok());
    let deg = side.or(tag).unwrap_or(0.0).round() as i64;
    deg.rem_euclid(360) as u32
}

/// A frame rate `num/den`, rounded.
fn rate(s: &str) -> Option<u32> {
    let (n, d) = s.split_once('/')?;
    let (n, d): (u64, u64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0 && d > 0).then(|| ((n + d / 2) / d) as u32)
}

/// MEGA's codec list (`mc`): ids by name, and the short formats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codecs {
    pub version: u32,
    containers: HashMap<String, u32>,
    video: HashMap<String, u32>,
    audio: HashMap<String, u32>,
    /// (short format, container, video, audio).
    short: Vec<(u8, u32, u32, u32)>,
}

impl Codecs {
    /// Reads `[version, [containers, videocodecs, audiocodecs, shortformats]]`; `None` if it
    /// is not that.
    pub fn parse(v: &Value) -> Option<Codecs> {
        let version = u32::try_from(v.get(0)?.as_u64()?).ok()?;
        let lists = v.get(1)?.as_array()?;
        let ids = |i: usize| -> Option<HashMap<String, u32>> {
            let mut m = HashMap::new();
            for e in lists.get(i)?.as_array()? {
                let id = e.get(0).and_then(Value::as_u64).filter(|id| *id > 0);
                if let (Some(id), Some(name)) = (id, e.get(1).and_then(Value::as_str)) {
                    m.insert(name.to_string(), u32::try_from(id).ok()?);
                }
            }
            Some(m)
        };
        let num = |x: &Value| -> Option<u32> {
            match x {
                Value::Number(n) => u32::try_from(n.as_u64()?).ok(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
        };
        let mut short = Vec::new();
        for e in lists.get(3)?.as_array()? {
            let e = e.as_array()?;
            let f = e.iter().map(num).collect::<Option<Vec<u32>>>()?;
            if let [sf, c, vi, a] = f[..] {
                short.push((u8::try_from(sf).ok()?, c, vi, a));
            }
        }
        Some(Codecs {
            version,
            containers: ids(0)?,
            video: ids(1)?,
            audio: ids(2)?,
            short,
        })
    }

    fn lookup(map: &HashMap<String, u32>, names: &[String]) -> u32 {
        names
            .iter()
            .flat_map(|n| n.split(" / "))
            .find_map(|n| map.get(n).copied())
            .unwrap_or(0)
    }
}

/// Media properties as packed into types 8 and 9.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaProps {
    pub shortformat: u8,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub playtime: u32,
    pub container: u32,
    pub video: u32,
    pub audio: u32,
}

/// The properties of a probed file if the codec list identifies it (a container and either
/// a video codec with a size, or an audio codec alone); `None` otherwise (no media attribute
/// is written then: a client with a better reader may add one).
pub fn identify(p: &Probe, codecs: &Codecs) -> Option<MediaProps> {
    let container = Codecs::lookup(&codecs.containers, &p.container);
    let video = Codecs::lookup(&codecs.video, &p.video);
    let audio = Codecs::lookup(&codecs.audio, &p.audio);
    let no_audio = p.audio.is_empty();
    let known = container != 0
        && ((video != 0 && p.width > 0 && p.height > 0 && (audio != 0 || no_audio))
            || (audio != 0 && video == 0 && p.video.is_empty()));
    if !known {
        return None;
    }
    let shortformat = codecs
        .short
        .iter()
        .rev()
        .find(|(_, c, v, a)| (*c, *v, *a) == (container, video, audio))
        .map_or(0, |s| s.0);
    Some(MediaProps {
        shortformat,
        width: p.width,
        height: p.height,
        fps: p.fps,
        playtime: p.playtime,
        container,
        video,
        audio,
    })
}

/// The XXTEA key: bytes 16..32 of the packed node key (nonce and condensed MAC) as four
/// big-endian words, as the webclient reads them.
fn media_key(key: &FileKey) -> [u32; 4] {
    let packed = key.pack();
    let mut k = [0u32; 4];
    for (i, w) in k.iter_mut().enumerate() {
        let o = 16 + 4 * i;
        *w = u32::from_be_bytes([packed[o], packed[o + 1], packed[o + 2], packed[o + 3]]);
    }
    k
}

const DELTA: u32 = 0x9E37_79B9;

fn mx(sum: u32, y: u32, z: u32, p: usize, e: u32, k: &[u32; 4]) -> u32 {
    (((z >> 5) ^ (y << 2)).wrapping_add((y >> 3) ^ (z << 4)))
        ^ ((sum ^ y).wrapping_add(k[(p & 3) ^ e as usize] ^ z))
}

/// Corrected block TEA over two words (32 rounds).
fn xxtea_encrypt(v: &mut [u32; 2], k: &[u32; 4]) {
    let n = v.len() - 1;
    let mut z = v[n];
    let mut sum: u32 = 0;
    for _ in 0..(6 + 52 / v.len()) {
        sum = sum.wrapping_add(DELTA);
        let e = (sum >> 2) & 3;
        for p in 0..n {
            let y = v[p + 1];
            v[p] = v[p].wrapping_add(mx(sum, y, z, p, e, k));
            z = v[p];
        }
        let y = v[0];
        v[n] = v[n].wrapping_add(mx(sum, y, z, n, e, k));
        z = v[n];
    }
}

fn xxtea_decrypt(v: &mut [u32; 2], k: &[u32; 4]) {
    let n = v.len() - 1;
    let rounds = (6 + 52 / v.len()) as u32;
    let mut sum = rounds.wrapping_mul(DELTA);
    let mut y = v[0];
    while sum != 0 {
        let e = (sum >> 2) & 3;
        for p in (1..=n).rev() {
            let z = v[p - 1];
            v[p] = v[p].wrapping_sub(mx(sum, y, z, p, e, k));
            y = v[p];
        }
        let z = v[n];
        v[0] = v[0].wrapping_sub(mx(sum, y, z, 0, e, k));
        y = v[0];
        sum = sum.wrapping_sub(DELTA);
    }
}

fn seal(bytes: [u8; 8], key: &FileKey) -> String {
    let mut v = [
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    ];
    xxtea_encrypt(&mut v, &media_key(key));
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&v[0].to_le_bytes());
    out[4..].copy_from_slice(&v[1].to_le_bytes());
    b64::encode(&out)
}

fn open(sealed: &[u8; 8], key: &FileKey) -> [u8; 8] {
    let mut v = [
        u32::from_le_bytes([sealed[0], sealed[1], sealed[2], sealed[3]]),
        u32::from_le_bytes([sealed[4], sealed[5], sealed[6], sealed[7]]),
    ];
    xxtea_decrypt(&mut v, &media_key(key));
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&v[0].to_le_bytes());
    out[4..].copy_from_slice(&v[1].to_le_bytes());
    out
}

/// Reduces a value to its field: doubled, and past `limit` coarse (`(v - base) >> shift | 1`,
/// or `/ div`), capped.
fn field(v: u32, limit: u32, coarse: impl Fn(u32) -> u32) -> u32 {
    let v = v.saturating_mul(2);
    let v = if v >= limit { coarse(v) | 1 } else { v };
    v.min(limit - 1)
}

/// The entries for `p`: `8*<11 chars>`, and `/9*<11 chars>` for an uncommon combination.
pub fn encode(m: &MediaProps, key: &FileKey) -> String {
    let w = u64::from(field(m.width, 32768, |v| (v - 32768) >> 3));
    let h = u64::from(field(m.height, 32768, |v| (v - 32768) >> 3));
    let f = u64::from(field(m.fps, 256, |v| (v - 256) >> 3));
    let p = u64::from(field(m.playtime, 262_144, |v| {
        v.saturating_sub(262_200) / 60
    }));
    let packed = w | h << 15 | f << 30 | p << 38 | u64::from(m.shortformat) << 56;
    let mut out = format!("{MEDIA}*{}", seal(packed.to_le_bytes(), key));
    if m.shortformat == 0 {
        let ext = [
            m.container as u8,
            m.video as u8,
            ((m.video >> 8) & 15) as u8 | ((m.audio & 15) << 4) as u8,
            (m.audio >> 4) as u8,
            0,
            0,
            0,
            0,
        ];
        out.push_str(&format!("/{MEDIA_EXT}*{}", seal(ext, key)));
    }
    out
}

/// The media properties in a node's `fa` list, decrypted; `None` if it has none.
pub fn decode(fa: &str, key: &FileKey) -> Option<MediaProps> {
    let entries = super::fileattr::parse(fa);
    let main = entries.iter().find(|e| e.kind == MEDIA)?;
    let b = open(&main.handle, key);
    let u = u64::from_le_bytes(b);
    let part = |shift: u32, bits: u32| ((u >> shift) & ((1 << bits) - 1)) as u32;
    let (w, h, f, p) = (part(0, 15), part(15, 15), part(30, 8), part(38, 18));
    let mut m = MediaProps {
        width: if w & 1 == 1 {
            ((w >> 1) << 3) + 16384
        } else {
            w >> 1
        },
        height: if h & 1 == 1 {
            ((h >> 1) << 3) + 16384
        } else {
            h >> 1
        },
        fps: if f & 1 == 1 {
            ((f >> 1) << 3) + 128
        } else {
            f >> 1
        },
        playtime: if p & 1 == 1 {
            (p >> 1) * 60 + 131_100
        } else {
            p >> 1
        },
        shortformat: b[7],
        ..Default::default()
    };
    if m.shortformat == 0 {
        if let Some(ext) = entries.iter().find(|e| e.kind == MEDIA_EXT) {
            let x = open(&ext.handle, key);
            m.container = u32::from(x[0]);
            m.video = u32::from(x[1]) | (u32::from(x[2]) & 15) << 8;
            m.audio = u32::from(x[2]) >> 4 | u32::from(x[3]) << 4;
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The webclient's own test vector (`MediaAttribute.test`).
    #[test]
    fn the_webclients_vector_decodes_and_encodes_back() {
        let key = FileKey::from_b64("xQGamdCUgxeDwwY-Wk2yPf-x3cEN6qBO1JzTkHA3L90").unwrap();
        let m = decode("470:8*COXwfdF5an8", &key).expect("a media attribute");
        assert_eq!(
            (m.width, m.height, m.fps, m.playtime, m.shortformat),
            (1280, 720, 25, 228, 2)
        );
        assert_eq!(encode(&m, &key), "8*COXwfdF5an8");
    }

    #[test]
    fn large_values_go_coarse_and_exotic_combinations_get_type_9() {
        let key = FileKey::random();
        let m = MediaProps {
            shortformat: 0,
            width: 20000,
            height: 480,
            fps: 240,
            playtime: 200_000,
            container: 200,
            video: 4000,
            audio: 3000,
        };
        let fa = encode(&m, &key);
        assert!(fa.contains("/9*"), "{fa}");
        let listed = fa.replace("8*", "1:8*").replace("9*", "1:9*");
        let back = decode(&listed, &key).unwrap();
        assert_eq!((back.container, back.video, back.audio), (200, 4000, 3000));
        assert_eq!(back.height, 480);
        // Coarse fields round down to their step.
        assert!(
            back.width <= 20000 && back.width + 8 > 20000,
            "{}",
            back.width
        );
        assert!(back.fps <= 240 && back.fps + 8 > 240, "{}", back.fps);
        assert!(back.playtime <= 200_000 && back.playtime + 60 > 200_000);
    }

    #[test]
    fn xxtea_round_trips() {
        let k = [1, 2, 3, 4];
        let mut v = [0xDEAD_BEEF, 0x0123_4567];
        xxtea_encrypt(&mut v, &k);
        assert_ne!(v, [0xDEAD_BEEF, 0x0123_4567]);
        xxtea_decrypt(&mut v, &k);
        assert_eq!(v, [0xDEAD_BEEF, 0x0123_4567]);
    }

    fn codecs() -> Codecs {
        Codecs::parse(&serde_json::json!([
            3,
            [
                [[1, "mp42"], [2, "isom"], [3, "WebM"], [4, "Matroska"]],
                [[1, "avc1"], [2, "V_VP9"], [3, "VP9"]],
                [[1, "mp4a-40-2"], [2, "A_OPUS"]],
                [["1", "1", "1", "1"], [2, 2, 1, 1], [3, 3, 2, 0]]
            ]
        ]))
        .unwrap()
    }

    #[test]
    fn probes_map_to_mediainfo_names_and_the_short_format() {
        let mp4 = serde_json::json!({
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "3.000000",
                       "tags": {"major_brand": "isom"}},
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "codec_tag_string": "avc1",
                 "width": 320, "height": 240, "avg_frame_rate": "30000/1001",
                 "side_data_list": [{"rotation": -90}]},
                {"codec_type": "audio", "codec_name": "aac", "codec_tag_string": "mp4a",
                 "profile": "LC"}
            ]
        });
        let p = read_probe(&mp4, "clip.mp4");
        assert_eq!((p.width, p.height, p.fps, p.playtime), (240, 320, 30, 3));
        assert_eq!(p.audio[0], "mp4a-40-2");
        let m = identify(&p, &codecs()).unwrap();
        assert_eq!(m.shortformat, 2);
        let webm = serde_json::json!({
            "format": {"format_name": "matroska,webm", "duration": "2.0"},
            "streams": [{"codec_type": "video", "codec_name": "vp9",
                         "codec_tag_string": "[0][0][0][0]", "width": 64, "height": 48,
                         "r_frame_rate": "24/1"}]
        });
        let p = read_probe(&webm, "a.webm");
        assert_eq!(p.container, ["WebM", "Matroska"]);
        let m = identify(&p, &codecs()).unwrap();
        assert_eq!((m.shortformat, m.container, m.video, m.audio), (3, 3, 2, 0));
        // Unknown codecs: not identified, nothing written.
        let mut odd = p.clone();
        odd.video = vec!["theora".into()];
        assert_eq!(identify(&odd, &codecs()), None);
        // Known but uncommon: short format 0 (type 9 carries the ids).
        let mut mkv = p;
        mkv.container = vec!["Matroska".into()];
        assert_eq!(identify(&mkv, &codecs()).unwrap().shortformat, 0);
    }
}
