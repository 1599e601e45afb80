use std::borrow::Cow;
use std::io::Read;
use std::os::unix::fs::symlink;

use rustix::fs::OFlags;

use super::{PathError, Resolver, Target, is_not_found, target};

#[test]
fn request_paths_become_relative_paths() {
    let ok: &[(&str, &str, bool)] = &[
        ("/", "", true),
        ("/a.txt", "a.txt", false),
        ("/docs/", "docs", true),
        ("/docs//page.html", "docs/page.html", false),
        ("//a", "a", false),
        ("/with%20space.txt", "with space.txt", false),
        ("/caf%C3%A9.txt", "caf\u{e9}.txt", false),
        ("/.well-known/x", ".well-known/x", false),
        ("/a%25b", "a%b", false),
    ];
    for (rel, path, dir) in ok {
        let t = target(rel, false).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
        assert_eq!((t.path.as_ref(), t.dir), (*path, *dir), "{rel}");
    }
    assert!(matches!(
        target("/a/b.txt", false),
        Ok(Target {
            path: Cow::Borrowed(_),
            ..
        })
    ));
    let refused: &[(&str, PathError)] = &[
        ("/a%2Fb", PathError::Malformed),
        ("/..%2Fetc", PathError::Malformed),
        ("/a%5Cb", PathError::Malformed),
        ("/a%00", PathError::Malformed),
        ("/a%0A", PathError::Malformed),
        ("/a%7F", PathError::Malformed),
        ("/%C3", PathError::Malformed),
        ("/..", PathError::Malformed),
        ("/a/./b", PathError::Malformed),
        ("/a%", PathError::Malformed),
        ("/.env", PathError::Hidden),
        ("/.git/config", PathError::Hidden),
        ("/a/.hidden/b", PathError::Hidden),
        ("/%2Eenv", PathError::Hidden),
    ];
    for (rel, err) in refused {
        assert_eq!(target(rel, false), Err(*err), "{rel}");
    }
    assert_eq!(target("/.env", true).unwrap().path, ".env");
}

fn read(resolver: &Resolver, path: &str) -> std::io::Result<String> {
    let mut text = String::new();
    resolver.open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

#[test]
fn opens_stay_beneath_the_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("dir")).unwrap();
    std::fs::write(root.path().join("dir/file"), "inside").unwrap();
    symlink("dir/file", root.path().join("rel-link")).unwrap();
    symlink(outside.path(), root.path().join("out-dir")).unwrap();
    symlink(outside.path().join("secret"), root.path().join("out-abs")).unwrap();
    symlink("../../../../../../../../tmp", root.path().join("dir/up")).unwrap();
    symlink("/proc/self/root", root.path().join("magic")).unwrap();

    let strict = Resolver::new(root.path(), false).unwrap();
    assert_eq!(read(&strict, "dir/file").unwrap(), "inside");
    assert_eq!(read(&strict, "rel-link").unwrap(), "inside");
    for path in [
        "out-dir/secret",
        "out-abs",
        "dir/up",
        "magic/etc/passwd",
        "missing",
        "dir/file/x",
    ] {
        let err = strict.open(path).unwrap_err();
        assert!(is_not_found(&err), "{path}: {err}");
    }
    assert!(strict.open("").unwrap().metadata().unwrap().is_dir());

    // The fallback walk refuses every symlink, inside ones included.
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    assert!(strict.open_walk("dir/file", flags).is_ok());
    for path in ["rel-link", "out-dir/secret", "out-abs", "dir/up"] {
        let err = strict.open_walk(path, flags).unwrap_err();
        assert!(is_not_found(&err), "{path}: {err}");
    }

    let loose = Resolver::new(root.path(), true).unwrap();
    assert_eq!(read(&loose, "out-dir/secret").unwrap(), "secret");
    assert_eq!(read(&loose, "out-abs").unwrap(), "secret");
}

#[test]
fn read_small_reads_whole_files_under_a_limit() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("m.json"), "{}").unwrap();
    let resolver = Resolver::new(root.path(), false).unwrap();
    assert_eq!(resolver.read_small("m.json", 10).unwrap(), b"{}");
    assert!(resolver.read_small("m.json", 1).is_none());
    assert!(resolver.read_small("none.json", 10).is_none());
    assert!(resolver.read_small("", 10).is_none());
}
