//! Test photographs for `scripts/bench.sh graphics`: N JPEGs of W×H (default 200 of
//! 4032×3024, a phone camera's 12 megapixels) with a fine texture, so that they compress like
//! photographs (a few MB each), not like flat colour.
//!
//! `cargo run --release --example photos -- DIR [N] [W] [H]`

use image::{ImageEncoder, Rgb, RgbImage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: photos DIR [N] [W] [H]")?);
    let n: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let w: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4032);
    let h: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3024);
    std::fs::create_dir_all(&dir)?;
    for i in 0..n {
        // A gradient per photo with per-pixel noise from a small LCG.
        let mut state = 0x9E37_79B9u32.wrapping_mul(i + 1);
        let img = RgbImage::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 28) as u8;
            Rgb([
                ((x * 255 / w) as u8).wrapping_add(noise),
                ((y * 255 / h) as u8).wrapping_add(noise / 2),
                ((i * 37) as u8).wrapping_add(noise),
            ])
        });
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("IMG_{i:04}.jpg")))?);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).write_image(
            img.as_raw(),
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?;
    }
    Ok(())
}
