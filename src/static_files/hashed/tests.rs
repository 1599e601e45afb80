use super::{Manifest, Patterns, is_hashed_name};

#[test]
fn hashed_names() {
    let hashed = [
        // Vite / Rollup: `[name]-[hash:8]`, base64url.
        "index-DiwrgTda.js",
        "index-B3kDlQx9.css",
        "vendor-Cq8_xY2z.js",
        "index-B_3kDl-x.js",
        "index-B_3kDl-x.js.map",
        // webpack / CRA / Parcel / Angular: hex.
        "main.3f9a8c1b.css",
        "main.3f9a8c1b.chunk.js.map",
        "787.c4e7f8f5.js",
        "787.c4e7f8f5.chunk.js",
        "app.3f9a8c1b.min.js",
        "runtime.0123456789abcdef.js",
        "polyfills.0123456789abcdef0123.js",
        "logo.6ce24c58023cc2f8fd88fe9d2f.svg",
        "app.3F9A8C1B.js",
        // esbuild: base32 upper case.
        "app-5XQJ2K7D.js",
        "chunk-ZQ3HK4UO.js",
        // 64 hex characters.
        "data.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.json",
    ];
    for name in hashed {
        assert!(is_hashed_name(name), "{name} should be hashed");
    }
    let not_hashed = [
        "logo-small.png",
        "release-2024.pdf",
        "normalize-override.css",
        "settings-userdata.json",
        "index.html",
        "robots.txt",
        "favicon.ico",
        "favicon-32x32.png",
        "jquery-3.6.0.min.js",
        "bootstrap.bundle.min.js",
        "OpenSans-Bold.ttf",
        "Roboto-MediumItalic.woff2",
        "report-20240101.pdf",
        "backup-12345678.sql",
        "deadbeef.js",
        "3f9a8c1b.css",
        "app.3f9a8c1b",
        "app-abcdefgh.js",
        "app-ABCDEFGH.js",
        "app-userdata1.js",
        "my-app-v2-beta1.js",
        "Button-MyComponent.js",
        "README",
        ".3f9a8c1b.js",
        "-DiwrgTda.js",
        "app.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0.js",
        "app.3f9a8c1b.j$",
        "",
    ];
    for name in not_hashed {
        assert!(!is_hashed_name(name), "{name} should not be hashed");
    }
}

#[test]
fn patterns_match_names_or_paths() {
    let patterns = Patterns::new(&[
        "*.woff2".to_owned(),
        "fonts/*".to_owned(),
        "img/*-v*.png".to_owned(),
        "exact.txt".to_owned(),
    ]);
    for path in [
        "a.woff2",
        "deep/dir/b.woff2",
        "fonts/x.ttf",
        "img/logo-v3.png",
        "exact.txt",
        "sub/exact.txt",
    ] {
        assert!(patterns.matches(path), "{path}");
    }
    for path in [
        "a.woff",
        "fonts/sub/x.ttf",
        "other/fonts/x.ttf",
        "img/logo.png",
        "img/a/b-v1.png",
        "exact.txt.bak",
    ] {
        assert!(!patterns.matches(path), "{path}");
    }
    assert!(!Patterns::default().matches("anything.js"));
}

fn manifest(files: &[(&str, &str)]) -> Manifest {
    Manifest::load(|path| {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, text)| text.as_bytes().to_vec())
    })
}

#[test]
fn vite_manifest_lists_emitted_files() {
    let m = manifest(&[(
        ".vite/manifest.json",
        r#"{
          "index.html": { "file": "assets/index-abc.js", "isEntry": true,
                          "css": ["assets/index-def.css"], "assets": ["assets/logo-ghi.svg"] },
          "src/plain.ts": { "file": "assets/plain.js" }
        }"#,
    )]);
    for path in [
        "assets/index-abc.js",
        "assets/index-def.css",
        "assets/logo-ghi.svg",
    ] {
        assert!(m.contains(path), "{path}");
    }
    assert!(
        !m.contains("assets/plain.js"),
        "kept its source's stem: not hashed"
    );
    assert!(!m.contains("index.html"));
}

#[test]
fn webpack_and_cra_manifests() {
    let m = manifest(&[
        (
            "manifest.json",
            r#"{ "main.js": "/static/main.3f.js", "index.html": "/index.html",
                 "logo.svg": "https://cdn.example.com/build/media/logo.a1.svg?x=1" }"#,
        ),
        (
            "asset-manifest.json",
            r#"{ "files": { "main.css": "/static/css/main.css", "index.html": "/index.html" },
                 "entrypoints": ["static/css/main.css"] }"#,
        ),
    ]);
    for path in [
        "static/main.3f.js",
        "main.3f.js",
        "build/media/logo.a1.svg",
        "media/logo.a1.svg",
        "static/css/main.css",
    ] {
        assert!(m.contains(path), "{path}");
    }
    assert!(!m.contains("index.html"));
}

#[test]
fn a_web_app_manifest_or_garbage_names_nothing() {
    let m = manifest(&[(
        "manifest.json",
        r#"{ "name": "App", "short_name": "app", "start_url": "/index.html",
             "icons": [{ "src": "icon-192.png", "sizes": "192x192" }] }"#,
    )]);
    assert!(m.is_empty(), "{m:?}");
    let m = manifest(&[(".vite/manifest.json", "{ not json")]);
    assert!(m.is_empty());
    assert!(manifest(&[]).is_empty());
}
