//! Thumbnails and previews (file attributes 0 and 1): made on upload from images as MEGA's
//! SDK makes them, stored encrypted through `ufa`, attached in `p` or by `pfa`, listed in
//! `fa`, kept by copies, and read back decrypted.

#![allow(clippy::unwrap_used)]

mod common;

use common::{picture, Env};
use image::ImageFormat;
use mega_mount::client::nodes::Target;
use mega_mount::transfer::fileattr::{self, PREVIEW, THUMBNAIL};

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
        mode: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megacmd_saves_thumbnails_and_previews_and_lists_them() {
    use common::megacmd::Cmd;
    let env = Env::start().await;
    env.user("cli@example.com", Default::default()).await;
    let m = Cmd::new(&env, "cli@example.com");
    let dir = env.dir.path().join("w");
    std::fs::create_dir_all(dir.join("album")).unwrap();
    std::fs::write(dir.join("album/a.png"), picture(640, 480, ImageFormat::Png)).unwrap();
    std::fs::write(
        dir.join("album/b.webp"),
        picture(300, 900, ImageFormat::WebP),
    )
    .unwrap();
    std::fs::write(dir.join("album/c.txt"), b"text").unwrap();
    let album = dir.join("album").to_string_lossy().into_owned();
    m.ok(&["put", "-r", &album, "mega:/"]).await;

    let listed = m.ok(&["ls", "--json", "mega:/album"]).await.json();
    let attrs = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["attributes"].clone())
            .unwrap()
    };
    assert_eq!(attrs("a.png"), serde_json::json!(["thumbnail", "preview"]));
    assert_eq!(attrs("b.webp"), serde_json::json!(["thumbnail", "preview"]));
    assert_eq!(attrs("c.txt"), serde_json::json!([]));
    let long = m.ok(&["ls", "-l", "mega:/album"]).await.stdout;
    assert!(long.contains("a.png  (thumbnail, preview)"), "{long}");

    let out = dir.join("t.jpg");
    m.ok(&["thumbnail", "mega:/album/a.png", &out.to_string_lossy()])
        .await;
    assert_eq!(
        decoded(&std::fs::read(&out).unwrap()),
        (200, 200, ImageFormat::Jpeg)
    );
    // Into a folder: NAME.preview.jpg.
    m.ok(&["preview", "mega:/album/b.webp", &dir.to_string_lossy()])
        .await;
    let p = std::fs::read(dir.join("b.webp.preview.jpg")).unwrap();
    assert_eq!(decoded(&p), (300, 900, ImageFormat::Jpeg));
    m.fails(
        &["thumbnail", "mega:/album/c.txt", &out.to_string_lossy()],
        5,
    )
    .await;

    // `--no-graphics` (MEGAcmd's `graphics off`).
    std::fs::write(dir.join("d.png"), picture(64, 64, ImageFormat::Png)).unwrap();
    let d = dir.join("d.png").to_string_lossy().into_owned();
    m.ok(&["put", "--no-graphics", &d, "mega:/"]).await;
    let listed = m.ok(&["ls", "--json", "mega:/d.png"]).await.json();
    assert_eq!(listed[0]["attributes"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_damaged_on_the_server_is_an_integrity_error() {
    let env = Env::start().await;
    let c = env.account("tamper@example.com").await;
    let root = c.root().unwrap().handle;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.jpg");
    std::fs::write(&p, picture(500, 400, ImageFormat::Jpeg)).unwrap();
    let n = c.upload_path(&root, &p, None, None).await.unwrap();
    let e = fileattr::find(n.fa.as_deref().unwrap(), THUMBNAIL).unwrap();
    let h = mega_mount::crypto::b64::encode(&e.handle);
    // Flip one bit in the stored ciphertext's first block (CBC: the first block of the
    // image, its JPEG header, decrypts to noise).
    {
        let db = env.server.store().lock();
        let mut data: Vec<u8> = db
            .query_row("SELECT data FROM file_attrs WHERE handle = ?1", [&h], |r| {
                r.get(0)
            })
            .unwrap();
        data[3] ^= 1;
        db.execute(
            "UPDATE file_attrs SET data = ?1 WHERE handle = ?2",
            rusqlite::params![data, h],
        )
        .unwrap();
    }
    let r = c.file_attribute(&n.handle, THUMBNAIL).await;
    assert!(
        matches!(r, Err(mega_mount::Error::Integrity { .. })),
        "{r:?}"
    );
    // The preview is untouched.
    assert!(c
        .file_attribute(&n.handle, PREVIEW)
        .await
        .unwrap()
        .is_some());
}

/// `pfa` from another session reaches a watching client (the `fa` action packet), and the
/// tree cache keeps file attributes: a warm start (no `f`) still lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_pictures_reach_other_sessions_and_survive_the_tree_cache() {
    use mega_mount::api::commands::AttachFileAttr;
    use mega_mount::client::Options;
    use mega_mount::crypto::NodeKey;
    use mega_mount::transfer::TransferConfig;
    use std::sync::Arc;
    let env = Env::start().await;
    env.user("fa-ev@example.com", Default::default()).await;
    let cache = env.dir.path().join("cache");
    let cached = || async {
        mega_mount::Client::login_with(
            env.api_config(),
            "fa-ev@example.com",
            common::PASSWORD,
            None,
            Options {
                tree_cache: Some(cache.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
    };
    let a = Arc::new(cached().await);
    let _watching = a.watch().unwrap();
    let b = env.login("fa-ev@example.com").await;
    b.set_graphics(None);
    let root = b.root().unwrap().handle;
    let n = b
        .upload(&root, "later.jpg", &mut &b"xyz"[..], 3, 0, None)
        .await
        .unwrap();
    let Some(NodeKey::File(key)) = n.key.clone() else {
        panic!("a file key")
    };
    let thumb = picture(200, 200, ImageFormat::Jpeg);
    let h = fileattr::store(b.api(), &TransferConfig::default(), &key, &thumb)
        .await
        .unwrap();
    let fa = format!("0*{}", mega_mount::crypto::b64::encode(&h));
    let listed: String = b
        .api()
        .run(&AttachFileAttr {
            n: &n.handle.0,
            fa: &fa,
        })
        .await
        .unwrap();
    assert!(listed.ends_with(&fa) && listed.contains(':'), "{listed}");
    let a2 = a.clone();
    let want = listed.clone();
    common::eventually(5, "the fa packet applied", move || {
        a2.resolve("/later.jpg")
            .is_ok_and(|n| n.fa.as_deref() == Some(want.as_str()))
    })
    .await;
    assert_eq!(
        a.file_attribute(&n.handle, THUMBNAIL).await.unwrap(),
        Some(thumb)
    );
    // Another account's attribute handle cannot be attached here.
    env.user("other@example.com", Default::default()).await;
    let o = env.login("other@example.com").await;
    let r = o
        .api()
        .run(&AttachFileAttr {
            n: &o
                .upload(
                    &o.root().unwrap().handle,
                    "o.jpg",
                    &mut &b"o"[..],
                    1,
                    0,
                    None,
                )
                .await
                .unwrap()
                .handle
                .0,
            fa: &fa,
        })
        .await;
    assert!(r.is_err(), "{r:?}");

    // Warm start: no `f`, and the list is still there.
    drop(_watching);
    a.finish_cache_write().await;
    drop(a);
    let fetches = env.server.stats().commands("f");
    let warm = cached().await;
    assert_eq!(env.server.stats().commands("f"), fetches, "a warm start");
    assert_eq!(warm.resolve("/later.jpg").unwrap().fa, Some(listed));
}

/// A test video made by FFmpeg (which the CI installs; the test fails without it).
fn video(dir: &std::path::Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let st = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("ffmpeg runs (scripts/test.sh installs it)");
    assert!(st.success());
    out
}

/// Videos get a thumbnail and a preview of a frame and MEGA's media attributes (what the
/// web player needs), read by path (`put`) and through a pipe (the mount's staged file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_get_a_frame_and_media_attributes() {
    let env = Env::start().await;
    let c = env.account("video@example.com").await;
    let root = c.root().unwrap().handle;
    let dir = tempfile::tempdir().unwrap();
    let mp4 = video(
        dir.path(),
        "clip.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=3:size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=3",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    let webm = video(
        dir.path(),
        "clip.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=2:size=160x120:rate=24",
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "100k",
        ],
    );
    let n = c.upload_path(&root, &mp4, None, None).await.unwrap();
    let fa = n.fa.clone().expect("file attributes");
    assert_eq!(
        fileattr::kinds(&fa),
        ["thumbnail", "preview", "media"],
        "{fa}"
    );
    let m = c.media_properties(&n.handle).unwrap();
    assert_eq!(
        (m.width, m.height, m.fps, m.playtime, m.shortformat),
        (320, 240, 25, 3, 2),
        "{m:?}"
    );
    let thumb = c.file_attribute(&n.handle, THUMBNAIL).await.unwrap();
    assert_eq!(decoded(&thumb.unwrap()), (200, 200, ImageFormat::Jpeg));
    let preview = c.file_attribute(&n.handle, PREVIEW).await.unwrap();
    assert_eq!(decoded(&preview.unwrap()).0, 320);
    assert_eq!(env.server.stats().commands("mc"), 1);
    // `list -l`/`--json` show them.
    env.user("video-cli@example.com", Default::default()).await;
    let m = common::megacmd::Cmd::new(&env, "video-cli@example.com");
    m.ok(&["put", &mp4.to_string_lossy(), "mega:/"]).await;
    let listed = m.ok(&["ls", "--json", "mega:/clip.mp4"]).await.json();
    assert_eq!(
        listed[0]["media"],
        serde_json::json!({"width": 320, "height": 240, "fps": 25, "duration": 3})
    );
    let long = m.ok(&["ls", "-l", "mega:/clip.mp4"]).await.stdout;
    assert!(
        long.contains("(thumbnail, preview, media 320×240 25 fps 3 s)"),
        "{long}"
    );

    // Through the mount: the staged plaintext goes to FFmpeg through a pipe.
    let (fs, client) = common::mount::fs_core(&env, "video@example.com").await;
    let fh = fs
        .create(mega_mount::fs::ROOT_INO, "mounted.webm", None)
        .await
        .unwrap()
        .1;
    fs.write(fh, 0, &std::fs::read(&webm).unwrap())
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    client.fetch().await.unwrap();
    let w = client.resolve("/mounted.webm").unwrap();
    assert_eq!(
        fileattr::kinds(w.fa.as_deref().unwrap()),
        ["thumbnail", "preview", "media"]
    );
    let m = client.media_properties(&w.handle).unwrap();
    assert_eq!(
        (m.width, m.height, m.fps, m.playtime, m.shortformat),
        (160, 120, 24, 2, 6),
        "{m:?}"
    );
}

/// File attribute POSTs that fail transiently (HTTP 503) are retried: both pictures are
/// stored and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_file_attribute_servers_are_retried() {
    let env = Env::start().await;
    let mut c = env.account("fa-busy@example.com").await;
    c.set_transfer_config(mega_mount::transfer::TransferConfig {
        retry: common::fast_retry(),
        ..Default::default()
    });
    let root = c.root().unwrap().handle;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("busy.png");
    std::fs::write(&p, picture(300, 300, ImageFormat::Png)).unwrap();
    env.server.faults().set(mega_testserver::FaultConfig {
        fa_http503: 3,
        ..Default::default()
    });
    let n = c.upload_path(&root, &p, None, None).await.unwrap();
    assert_eq!(env.server.faults().get().fa_http503, 0, "the fault fired");
    assert_eq!(
        fileattr::kinds(n.fa.as_deref().unwrap()),
        ["thumbnail", "preview"]
    );
    env.server.faults().set(mega_testserver::FaultConfig {
        fa_http503: 1,
        ..Default::default()
    });
    let t = c.file_attribute(&n.handle, THUMBNAIL).await.unwrap();
    assert_eq!(decoded(&t.unwrap()).0, 200);
}
