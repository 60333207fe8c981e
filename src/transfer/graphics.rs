//! Thumbnails and previews as MEGA's SDK makes them (`MEGA-FILES-TRANSFERS.md` §1.3), so
//! that MEGA's web and mobile apps show a picture instead of a generic icon:
//!
//! * thumbnail (file attribute 0): 200×200, the image scaled so its short side is 200 and
//!   cropped from the middle horizontally and from a third of the way down vertically; JPEG
//!   quality 85, or PNG if the image has transparency;
//! * preview (file attribute 1): the whole image fitted inside 1000×1000, never enlarged;
//!   always JPEG quality 85, transparency composited on black.
//!
//! EXIF orientation is applied first and no metadata is carried over (the encoders write
//! none). Decoding is bounded: a file over [`Limits::max_bytes`] is not read, an image over
//! [`Limits::max_pixels`] is refused from its header before any pixel is decoded, and the
//! decoder's allocations are capped, so a decompression bomb costs a header read. JPEGs are
//! decoded at the smallest DCT scale that still gives full-size pictures (1/2, 1/4, 1/8),
//! several at once (one per core); any other image is decoded whole, alone (the peak memory
//! of a large image is then paid once).
//! Everything here blocks: callers run it on a blocking thread.

use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};

use crate::crypto::fingerprint::ReadAt;

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageReader};

/// The thumbnail's side.
pub const THUMBNAIL_SIDE: u32 = 200;
/// The preview's longest side at most.
pub const PREVIEW_SIDE: u32 = 1000;
/// JPEG quality of both.
const QUALITY: u8 = 85;

/// How much work one image may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Files larger than this are not read (bytes).
    pub max_bytes: u64,
    /// Images with more pixels than this are not decoded.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 100 * 1024 * 1024,
            // A 100-megapixel camera's frames; 400 MB as RGBA while decoding.
            max_pixels: 100_000_000,
        }
    }
}

/// A thumbnail and a preview, encoded (JPEG or PNG bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub thumbnail: Vec<u8>,
    pub preview: Vec<u8>,
}

/// Why no images were made.
#[derive(Debug, thiserror::Error)]
pub enum GraphicsError {
    #[error("{0} bytes is over the limit for making a thumbnail")]
    TooLarge(u64),
    #[error("{0}×{1} pixels is over the limit for making a thumbnail")]
    TooManyPixels(u32, u32),
    #[error("cannot decode the image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Extensions of the still images we make thumbnails for (those MEGA's apps show and the
/// decoders here read).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "gif", "webp", "bmp", "dib", "tif", "tiff",
];

/// True if a file called `name` is an image we make a thumbnail for (by its extension, as
/// the SDK decides).
pub fn is_image(name: &str) -> bool {
    extension(name).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// A file name's extension, lower-case (none for `.hidden`).
pub(crate) fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// Where an image is read from: read as the decoder goes, never held whole.
pub trait Source: BufRead + Seek + Send {}
impl<T: BufRead + Seek + Send> Source for T {}

/// A `Read + Seek` view of the first `len` bytes of something read by offset: a file an
/// upload reads by offset at the same time (no shared position), a staged file's plaintext.
pub struct ByOffset<T> {
    src: T,
    pos: u64,
    len: u64,
}

impl<T: ReadAt> ByOffset<T> {
    pub fn new(src: T, len: u64) -> Self {
        ByOffset { src, pos: 0, len }
    }
}

impl<T: ReadAt> Read for ByOffset<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        self.src.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T> Seek for ByOffset<T> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Makes a thumbnail and a preview of the image in `data`.
pub fn make(data: &[u8], limits: &Limits) -> Result<Made, GraphicsError> {
    make_from(Cursor::new(data), data.len() as u64, limits)
}

/// Makes them from `len` bytes read from `src`.
pub fn make_from(mut src: impl Source, len: u64, limits: &Limits) -> Result<Made, GraphicsError> {
    if len > limits.max_bytes {
        return Err(GraphicsError::TooLarge(len));
    }
    let mut magic = [0u8; 3];
    let is_jpeg = src.read_exact(&mut magic).is_ok() && magic == [0xFF, 0xD8, 0xFF];
    src.seek(SeekFrom::Start(0))?;
    if is_jpeg {
        // A scaled JPEG holds a preview's worth of pixels: one of several at a time.
        let _one = Gate::global().enter(1);
        if let Some(img) = decode_jpeg_scaled(&mut src, limits)? {
            return Ok(from_image(&img)?);
        }
        src.seek(SeekFrom::Start(0))?;
    }
    // A whole image decoded at full size: alone.
    let _all = Gate::global().enter(Gate::global().size);
    let img = decode(src, limits)?;
    Ok(from_image(&img)?)
}

/// Waits until no other picture is being made in this process and holds that off until the
/// guard drops: for work of unknown size outside this module (FFmpeg on a video).
pub fn alone() -> impl Drop {
    let g = Gate::global();
    g.enter(g.size)
}

/// Bounds the decoding done at once in this process: `size` slots, one per core (at most
/// four); a small decode takes one, a full-size one all of them, so that the memory of
/// one large image is never paid twice at once.
struct Gate {
    size: usize,
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

struct Entered<'a>(&'a Gate, usize);

impl Gate {
    fn global() -> &'static Gate {
        static GATE: std::sync::OnceLock<Gate> = std::sync::OnceLock::new();
        GATE.get_or_init(|| {
            let size = std::thread::available_parallelism()
                .map_or(1, usize::from)
                .clamp(1, 4);
            Gate {
                size,
                free: std::sync::Mutex::new(size),
                freed: std::sync::Condvar::new(),
            }
        })
    }

    fn enter(&self, n: usize) -> Entered<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < n {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= n;
        Entered(self, n)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += self.1;
        self.0.freed.notify_all();
    }
}

/// The scale (1, 2, 4 or 8) a JPEG of `w`×`h` can be decoded at and still give a full
/// preview (its long side at least [`PREVIEW_SIDE`], or whole) and thumbnail (its short side
/// at least [`THUMBNAIL_SIDE`]).
fn jpeg_scale(w: u32, h: u32) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|s| w.max(h) / s >= PREVIEW_SIDE && w.min(h) / s >= THUMBNAIL_SIDE)
        .unwrap_or(1)
}

/// Decodes a JPEG at the smallest DCT scale that still gives full-size pictures (a quarter
/// of the work, or less, for a camera's photo), with the pixel limit checked on the header
/// and EXIF orientation applied; `None` for what this decoder does not turn into RGB or
/// grey (CMYK, 16-bit), which the general decoder then takes.
fn decode_jpeg_scaled(
    src: &mut impl Source,
    limits: &Limits,
) -> Result<Option<DynamicImage>, GraphicsError> {
    let decode_err = |e: jpeg_decoder::Error| {
        GraphicsError::Decode(image::ImageError::IoError(std::io::Error::other(e)))
    };
    // The decoder panics on some malformed frames: contained here, and reported as such.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut d = jpeg_decoder::Decoder::new(&mut *src);
        d.read_info().map_err(decode_err)?;
        let Some(info) = d.info() else {
            return Ok(None);
        };
        let (w, h) = (u32::from(info.width), u32::from(info.height));
        if u64::from(w) * u64::from(h) > limits.max_pixels || w == 0 || h == 0 {
            return Err(GraphicsError::TooManyPixels(w, h));
        }
        let s = jpeg_scale(w, h);
        let (sw, sh) = d
            .scale(
                u16::try_from(w.div_ceil(s)).unwrap_or(u16::MAX),
                u16::try_from(h.div_ceil(s)).unwrap_or(u16::MAX),
            )
            .map_err(decode_err)?;
        d.set_max_decoding_buffer_size(
            usize::try_from(limits.max_pixels.saturating_mul(4)).unwrap_or(usize::MAX),
        );
        let pixels = d.decode().map_err(decode_err)?;
        let (sw, sh) = (u32::from(sw), u32::from(sh));
        let img = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => {
                image::RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8)
            }
            jpeg_decoder::PixelFormat::L8 => {
                image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8)
            }
            _ => None,
        };
        let Some(mut img) = img else {
            return Ok(None);
        };
        if let Some(o) = d
            .exif_data()
            .and_then(image::metadata::Orientation::from_exif_chunk)
        {
            img.apply_orientation(o);
        }
        Ok(Some(img))
    }));
    match run {
        Ok(r) => r,
        Err(_) => Err(GraphicsError::Decode(image::ImageError::IoError(
            std::io::Error::other("the JPEG decoder failed on this file"),
        ))),
    }
}

/// Checks that `data` is a whole image this module could have made (JPEG or PNG, at most
/// [`PREVIEW_SIDE`] on a side) and decodes; returns its size. File attributes carry no MAC
/// in MEGA's format: a blob damaged or swapped on the server decrypts to noise, which this
/// refuses rather than hands out.
pub fn check(data: &[u8]) -> Result<(u32, u32), GraphicsError> {
    let fmt = image::guess_format(data)?;
    if !matches!(fmt, image::ImageFormat::Jpeg | image::ImageFormat::Png) {
        return Err(GraphicsError::Decode(image::ImageError::Unsupported(
            image::error::UnsupportedError::from(image::error::ImageFormatHint::Exact(fmt)),
        )));
    }
    let limits = Limits {
        max_bytes: 16 * 1024 * 1024,
        // Other producers (the webclient: 240×240, ≤ 1000 on the long side) stay inside too.
        max_pixels: u64::from(PREVIEW_SIDE) * u64::from(PREVIEW_SIDE),
    };
    if data.len() as u64 > limits.max_bytes {
        return Err(GraphicsError::TooLarge(data.len() as u64));
    }
    let img = decode(Cursor::new(data), &limits)?;
    Ok(img.dimensions())
}

/// Decodes with the pixel limit checked on the header, the allocation capped, and the EXIF
/// orientation applied.
fn decode(src: impl Source, limits: &Limits) -> Result<DynamicImage, GraphicsError> {
    let reader = ImageReader::new(src).with_guessed_format()?;
    let mut decoder = reader.into_decoder()?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > limits.max_pixels || w == 0 || h == 0 {
        return Err(GraphicsError::TooManyPixels(w, h));
    }
    let mut caps = image::Limits::default();
    caps.max_image_width = Some(w);
    caps.max_image_height = Some(h);
    // The decoded frame (at most 16 bytes a pixel) and its working buffers.
    caps.max_alloc = Some(limits.max_pixels.saturating_mul(16).max(64 << 20));
    decoder.set_limits(caps)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The two images of a decoded picture.
fn from_image(img: &DynamicImage) -> Result<Made, image::ImageError> {
    let preview = preview_of(img);
    // The thumbnail comes from the (smaller) preview when that keeps 200 pixels on its short
    // side; a very long panorama is cut from the original.
    let (pw, ph) = preview.dimensions();
    let source = if pw.min(ph) >= THUMBNAIL_SIDE {
        &preview
    } else {
        img
    };
    let thumb = thumbnail_of(source);
    let thumbnail = if has_transparency(&thumb) {
        encode_png(&thumb)?
    } else {
        encode_jpeg(&thumb)?
    };
    Ok(Made {
        thumbnail,
        preview: encode_jpeg(&preview)?,
    })
}

/// Fitted inside 1000×1000, never enlarged.
fn preview_of(img: &DynamicImage) -> DynamicImage {
    let (w, h) = img.dimensions();
    if w <= PREVIEW_SIDE && h <= PREVIEW_SIDE {
        return img.clone();
    }
    img.resize(PREVIEW_SIDE, PREVIEW_SIDE, FilterType::Triangle)
}

/// Scaled so the short side is 200, then 200×200 cut at x = (w−200)/2, y = (h−200)/3.
fn thumbnail_of(img: &DynamicImage) -> DynamicImage {
    let (w, h) = img.dimensions();
    let side = u64::from(THUMBNAIL_SIDE);
    let (nw, nh) = if w <= h {
        (side, (u64::from(h) * side).div_ceil(u64::from(w)))
    } else {
        ((u64::from(w) * side).div_ceil(u64::from(h)), side)
    };
    let (nw, nh) = (
        u32::try_from(nw).unwrap_or(u32::MAX),
        u32::try_from(nh).unwrap_or(u32::MAX),
    );
    let scaled = img.resize_exact(nw, nh, FilterType::Triangle);
    let x = (nw - THUMBNAIL_SIDE) / 2;
    let y = (nh - THUMBNAIL_SIDE) / 3;
    scaled.crop_imm(x, y, THUMBNAIL_SIDE, THUMBNAIL_SIDE)
}

fn has_transparency(img: &DynamicImage) -> bool {
    img.color().has_alpha() && img.to_rgba8().pixels().any(|p| p.0[3] != 255)
}

/// JPEG, 24-bit; transparent pixels composited on black.
fn encode_jpeg(img: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let rgb = if img.color().has_alpha() {
        let mut rgba = img.to_rgba8();
        for p in rgba.pixels_mut() {
            let a = u16::from(p.0[3]);
            for c in &mut p.0[..3] {
                *c = ((u16::from(*c) * a + 127) / 255) as u8;
            }
        }
        DynamicImage::ImageRgba8(rgba).to_rgb8()
    } else {
        img.to_rgb8()
    };
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY);
    rgb.write_with_encoder(enc)?;
    Ok(out)
}

fn encode_png(img: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    img.to_rgba8()
        .write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

    fn encoded(img: DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).expect("encode");
        out.into_inner()
    }

    fn dims(data: &[u8]) -> (u32, u32, ImageFormat) {
        let fmt = image::guess_format(data).expect("format");
        let img = image::load_from_memory(data).expect("decode");
        (img.width(), img.height(), fmt)
    }

    /// A picture whose left third is red, the rest blue.
    fn picture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            if x < w / 3 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
    }

    #[test]
    fn sizes_and_formats_follow_the_sdk() {
        let jpg = encoded(
            DynamicImage::ImageRgb8(picture(3000, 2000)),
            ImageFormat::Jpeg,
        );
        let m = make(&jpg, &Limits::default()).expect("made");
        assert_eq!(dims(&m.thumbnail), (200, 200, ImageFormat::Jpeg));
        assert_eq!(dims(&m.preview), (1000, 667, ImageFormat::Jpeg));
        // Small images are not enlarged for the preview; the thumbnail is always 200×200.
        let png = encoded(DynamicImage::ImageRgb8(picture(120, 80)), ImageFormat::Png);
        let m = make(&png, &Limits::default()).expect("made");
        assert_eq!(dims(&m.thumbnail), (200, 200, ImageFormat::Jpeg));
        assert_eq!(dims(&m.preview), (120, 80, ImageFormat::Jpeg));
        // A panorama keeps 200 pixels of height in its thumbnail.
        let wide = encoded(
            DynamicImage::ImageRgb8(picture(8000, 300)),
            ImageFormat::Png,
        );
        let m = make(&wide, &Limits::default()).expect("made");
        assert_eq!(dims(&m.thumbnail), (200, 200, ImageFormat::Jpeg));
        assert_eq!(dims(&m.preview), (1000, 38, ImageFormat::Jpeg));
    }

    #[test]
    fn every_listed_format_decodes() {
        let img = DynamicImage::ImageRgb8(picture(300, 240));
        for fmt in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::Gif,
            ImageFormat::WebP,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
        ] {
            let data = match fmt {
                ImageFormat::Gif | ImageFormat::WebP => {
                    encoded(DynamicImage::ImageRgba8(img.to_rgba8()), fmt)
                }
                _ => encoded(img.clone(), fmt),
            };
            let m = make(&data, &Limits::default()).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
            assert_eq!(dims(&m.preview).0, 300, "{fmt:?}");
        }
    }

    #[test]
    fn transparency_makes_a_png_thumbnail_and_a_black_backed_preview() {
        let img = RgbaImage::from_fn(400, 400, |x, _| {
            if x < 200 {
                Rgba([255, 255, 255, 0])
            } else {
                Rgba([0, 255, 0, 255])
            }
        });
        let png = encoded(DynamicImage::ImageRgba8(img), ImageFormat::Png);
        let m = make(&png, &Limits::default()).expect("made");
        assert_eq!(dims(&m.thumbnail).2, ImageFormat::Png);
        let preview = image::load_from_memory(&m.preview)
            .expect("decode")
            .to_rgb8();
        let left = preview.get_pixel(20, 200).0;
        assert!(
            left.iter().all(|c| *c < 16),
            "composited on black: {left:?}"
        );
    }

    #[test]
    fn the_crop_is_centred_across_and_a_third_down() {
        // 600×200 → scaled to 600×200 (short side already 200), cut at x = 200: the red
        // left third is entirely outside.
        let png = encoded(DynamicImage::ImageRgb8(picture(600, 200)), ImageFormat::Png);
        let m = make(&png, &Limits::default()).expect("made");
        let t = image::load_from_memory(&m.thumbnail)
            .expect("decode")
            .to_rgb8();
        let p = t.get_pixel(5, 100).0;
        assert!(p[2] > 200 && p[0] < 60, "blue at the left edge: {p:?}");
        assert_eq!(
            thumbnail_of(&DynamicImage::new_rgb8(200, 900)).height(),
            200
        );
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 300×200 JPEG marked "rotate 90° clockwise" (orientation 6) is a 200×300 picture.
        let jpg = encoded(
            DynamicImage::ImageRgb8(picture(300, 200)),
            ImageFormat::Jpeg,
        );
        let rotated = with_exif_orientation(&jpg, 6);
        let m = make(&rotated, &Limits::default()).expect("made");
        assert_eq!(dims(&m.preview).0, 200);
        assert_eq!(dims(&m.preview).1, 300);
    }

    /// Inserts an APP1 Exif segment holding only the orientation after the SOI marker.
    fn with_exif_orientation(jpg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08"); // big-endian, IFD at 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut seg = b"Exif\x00\x00".to_vec();
        seg.extend_from_slice(&tiff);
        let mut out = jpg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((seg.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&seg);
        out.extend_from_slice(&jpg[2..]);
        out
    }

    /// Small (scaled JPEG) and whole (PNG) decodes and videos' exclusive holds from many
    /// threads at once all finish (no deadlock between a held exclusive and a waiting one).
    #[test]
    fn the_decoding_gate_lets_every_mix_through() {
        let jpg = encoded(
            DynamicImage::ImageRgb8(picture(2400, 1600)),
            ImageFormat::Jpeg,
        );
        let png = encoded(DynamicImage::ImageRgb8(picture(300, 200)), ImageFormat::Png);
        std::thread::scope(|s| {
            for i in 0..12 {
                let (jpg, png) = (&jpg, &png);
                s.spawn(move || match i % 3 {
                    0 => assert!(make(jpg, &Limits::default()).is_ok()),
                    1 => assert!(make(png, &Limits::default()).is_ok()),
                    _ => drop(alone()),
                });
            }
        });
        // (The gate is shared with the other tests running beside this one: its count is
        // not checked here, only that everyone got through.)
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        // 12000×12000 (144 megapixels) in a small PNG.
        let bomb = bomb_png(12_000, 12_000);
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        let e = make(&bomb, &Limits::default()).expect_err("refused");
        assert!(
            matches!(e, GraphicsError::TooManyPixels(12_000, 12_000)),
            "{e}"
        );
        let small = Limits {
            max_bytes: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            make(&bomb, &small),
            Err(GraphicsError::TooLarge(_))
        ));
    }

    /// A valid greyscale PNG of `w`×`h` black pixels, deflated (a classic decompression
    /// bomb: 12000×12000 is 144 MB decoded from about 140 KB).
    pub(crate) fn bomb_png(w: u32, h: u32) -> Vec<u8> {
        use std::io::Write;
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut c = crc32fast::Hasher::new();
            c.update(kind);
            c.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&c.finalize().to_be_bytes());
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let row = vec![0u8; w as usize + 1]; // filter byte + pixels
        for _ in 0..h {
            z.write_all(&row).expect("deflate");
        }
        let idat = z.finish().expect("deflate");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &idat);
        chunk(&mut png, b"IEND", &[]);
        png
    }
}
