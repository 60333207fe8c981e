//! Thumbnails and previews (file attributes 0 and 1): made on upload from images as MEGA's
//! SDK makes them, stored encrypted through `ufa`, attached in `p` or by `pfa`, listed in
//! `fa`, kept by copies, and read back decrypted.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Cursor;

use common::Env;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use mega_mount::client::nodes::Target;
use mega_mount::transfer::fileattr::{self, PREVIEW, THUMBNAIL};

/// An encoded picture of `w`×`h` (a gradient, so the JPEG encoder has work to do).
pub fn picture(w: u32, h: u32, fmt: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, fmt)
        .unwrap();
    out.into_inner()
}

fn decoded(data: &[u8]) -> (u32, u32, ImageFormat) {
    let fmt = image::guess_format(data).unwrap();
    let img = image::load_from_memory(data).unwrap();
    (img.width(), img.height(), fmt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_photo_has_a_thumbnail_and_a_preview_that_decrypt() {
    let env = Env::start().await;
    let c = env.account("pics@example.com").await;
    let root = c.root().unwrap().handle;
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("Holiday.JPG");
    std::fs::write(&photo, picture(1600, 1200, ImageFormat::Jpeg)).unwrap();
    let node = c.upload_path(&root, &photo, None, None).await.unwrap();
    let fa = node
        .fa
        .clone()
        .expect("the new node lists its file attributes");
    assert_eq!(fileattr::kinds(&fa), ["thumbnail", "preview"], "{fa}");
    // Stored as the service lists them: `cluster:type*handle`.
    assert!(fileattr::parse(&fa).iter().all(|e| !e.cluster.is_empty()));

    let thumb = c.file_attribute(&node.handle, THUMBNAIL).await.unwrap();
    assert_eq!(decoded(&thumb.unwrap()), (200, 200, ImageFormat::Jpeg));
    let preview = c.file_attribute(&node.handle, PREVIEW).await.unwrap();
    assert_eq!(decoded(&preview.unwrap()), (1000, 750, ImageFormat::Jpeg));

    // Another session sees them in `f`; a copy keeps them without uploading new ones.
    let other = env.login("pics@example.com").await;
    let seen = other.resolve("/Holiday.JPG").unwrap();
    assert_eq!(seen.fa.as_deref(), Some(fa.as_str()));
    let stored_before = env.server.stats().commands("ufa");
    let target = Target {
        parent: &root,
        name: "copy.jpg",
        replaces: None,
    };
    let copy = other.copy(&seen.handle, target).await.unwrap();
    assert_eq!(copy.fa.as_deref(), Some(fa.as_str()));
    assert_eq!(env.server.stats().commands("ufa"), stored_before);
    let thumb = other.file_attribute(&copy.handle, THUMBNAIL).await.unwrap();
    assert_eq!(decoded(&thumb.unwrap()).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_images_or_cannot_be_decoded_upload_without_them() {
    let env = Env::start().await;
    let c = env.account("nopics@example.com").await;
    let root = c.root().unwrap().handle;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("notes.txt", picture(300, 200, ImageFormat::Png)),
        ("broken.jpg", b"\xFF\xD8 not really a jpeg".to_vec()),
        ("empty.png", Vec::new()),
    ];
    for (name, body) in &cases {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        let n = c.upload_path(&root, &p, None, None).await.unwrap();
        assert_eq!(n.fa, None, "{name}");
        assert_eq!(c.download_to_vec(&n.handle).await.unwrap(), *body, "{name}");
    }
    assert_eq!(env.server.stats().commands("ufa"), 0);

    // Graphics off (MEGAcmd's `graphics off`, our `graphics = false`): none made.
    c.set_graphics(None);
    let p = dir.path().join("photo.png");
    std::fs::write(&p, picture(300, 200, ImageFormat::Png)).unwrap();
    let n = c.upload_path(&root, &p, None, None).await.unwrap();
    assert_eq!(n.fa, None);
    assert_eq!(env.server.stats().commands("ufa"), 0);
    // Over the size limit: none made either.
    c.set_graphics(Some(mega_mount::transfer::graphics::Limits {
        max_bytes: 100,
        ..Default::default()
    }));
    let n = c
        .upload_path(&root, &p, Some("big.png"), None)
        .await
        .unwrap();
    assert_eq!(n.fa, None);
    c.set_graphics(Some(Default::default()));
    let n = c
        .upload_path(&root, &p, Some("ok.png"), None)
        .await
        .unwrap();
    assert_eq!(
        fileattr::kinds(n.fa.as_deref().unwrap()),
        ["thumbnail", "preview"]
    );
}
