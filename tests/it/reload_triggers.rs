//! Each reload trigger leads to exactly one applied reload: a plain write, an editor's
//! write-and-rename, a Kubernetes ConfigMap `..data` swap, SIGHUP, and `POST /admin/reload`;
//! a touch of an unchanged file is skipped.

use std::path::{Path, PathBuf};

use crate::harness::*;
use crate::reload_helpers::*;

/// Asserts one applied reload, no failure, and that `GET /` now shows `tag`.
async fn assert_applied_once(gw: &Gateway, tag: &str) {
    let r = settled(gw, 1).await;
    assert_eq!(count(&r, "applied"), 1, "{r}");
    assert_eq!(count(&r, "failed"), 0, "{r}");
    assert_eq!(r["generation"], 2, "{r}");
    assert_eq!(served_tag(gw.addr("http")).await, tag);
}

#[tokio::test]
async fn an_in_place_write_reloads_once() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", "")).await;
    assert_eq!(served_tag(gw.addr("http")).await, "a");
    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"a\"", "\"b\"")).unwrap();
    assert_applied_once(&gw, "b").await;
    assert_eq!(report(&gw).await["last"]["trigger"], "watch");
}

#[tokio::test]
async fn an_editor_rename_over_the_file_reloads_once() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", "")).await;
    let text = edited(&gw.config_path, "\"a\"", "\"b\"");
    // As vim and most editors save: a temporary file beside it, renamed over the original.
    let tmp = gw.config_path.with_file_name(".edgeward.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.config_path).unwrap();
    assert_applied_once(&gw, "b").await;

    // The watch survives the rename: a second save is seen too.
    let text = edited(&gw.config_path, "\"b\"", "\"c\"");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &gw.config_path).unwrap();
    let r = settled(&gw, 2).await;
    assert_eq!(count(&r, "applied"), 2, "{r}");
    assert_eq!(served_tag(gw.addr("http")).await, "c");
}

const STAMP_1: &str = "..2026_01_01_00_00_00.000";
const STAMP_2: &str = "..2026_01_01_00_01_00.000";

/// The layout kubelet makes for a mounted ConfigMap: the real file in a timestamped
/// directory, `..data` pointing at it, and the visible name a symlink through `..data`.
fn configmap(dir: &Path, text: &str) -> PathBuf {
    let mount = dir.join("config");
    std::fs::create_dir_all(mount.join(STAMP_1)).unwrap();
    std::fs::write(mount.join(STAMP_1).join("edgeward.toml"), text).unwrap();
    std::os::unix::fs::symlink(STAMP_1, mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/edgeward.toml", mount.join("edgeward.toml")).unwrap();
    mount.join("edgeward.toml")
}

#[tokio::test]
async fn a_configmap_data_swap_reloads_once() {
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&tagged_config(up.addr, "a", ""))
        .layout(configmap)
        .start()
        .await;
    assert_eq!(served_tag(gw.addr("http")).await, "a");
    let mount = gw.config_path.parent().unwrap().to_path_buf();

    // kubelet's update: a new timestamped directory, a new symlink renamed over `..data`
    // atomically, later the old directory removed. The file's own symlink never changes, and
    // the old file is still there when the reload must happen.
    let text = edited(&gw.config_path, "\"a\"", "\"b\"");
    std::fs::create_dir(mount.join(STAMP_2)).unwrap();
    std::fs::write(mount.join(STAMP_2).join("edgeward.toml"), text).unwrap();
    std::os::unix::fs::symlink(STAMP_2, mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    assert_applied_once(&gw, "b").await;

    // The next update is watched in the new directory: the watch was re-armed.
    std::fs::remove_dir_all(mount.join(STAMP_1)).unwrap();
    let text = edited(&gw.config_path, "\"b\"", "\"c\"");
    std::fs::create_dir(mount.join(STAMP_1)).unwrap();
    std::fs::write(mount.join(STAMP_1).join("edgeward.toml"), text).unwrap();
    std::os::unix::fs::symlink(STAMP_1, mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    let r = settled(&gw, 2).await;
    assert_eq!((count(&r, "applied"), count(&r, "failed")), (2, 0), "{r}");
    assert_eq!(served_tag(gw.addr("http")).await, "c");
}

#[tokio::test]
async fn sighup_reloads_once() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", NO_WATCH)).await;
    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"a\"", "\"b\"")).unwrap();
    gw.signal(rustix::process::Signal::HUP);
    assert_applied_once(&gw, "b").await;
    assert_eq!(report(&gw).await["last"]["trigger"], "signal");
}

#[tokio::test]
async fn post_admin_reload_reloads_once_and_answers_the_outcome() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", NO_WATCH)).await;
    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"a\"", "\"b\"")).unwrap();
    let (status, answer) = post(&gw).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "applied");
    assert_eq!(answer["trigger"], "admin");
    assert_eq!(answer["generation"], 2);
    assert_applied_once(&gw, "b").await;

    // Unchanged: skipped, not applied again.
    let (status, answer) = post(&gw).await;
    assert_eq!((status, &answer["result"]), (200, &"skipped".into()));
    let r = report(&gw).await;
    assert_eq!((count(&r, "applied"), count(&r, "skipped")), (1, 1), "{r}");

    // Only POST changes anything.
    let got = crate::clients::status(gw.admin, "PUT", "/admin/reload", &[]).await;
    assert_eq!(got, Some(405));
    // A cross-site page cannot make a browser reload the gateway.
    let got = crate::clients::status(
        gw.admin,
        "POST",
        "/admin/reload",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(got, Some(403));
}

#[tokio::test]
async fn a_touch_of_an_unchanged_file_is_skipped() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", "")).await;
    let file = std::fs::File::options()
        .append(true)
        .open(&gw.config_path)
        .unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    drop(file);
    eventually_async("the touch is seen and skipped", || async {
        count(&report(&gw).await, "skipped") >= 1
    })
    .await;
    let r = settled(&gw, 0).await;
    assert_eq!(count(&r, "applied"), 0, "{r}");
    assert_eq!(count(&r, "failed"), 0, "{r}");
    assert_eq!(r["generation"], 1, "{r}");
}

/// The config in a directory of its own, `<dir>/conf/edgeward.toml`.
fn in_conf_dir(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir(dir.join("conf")).unwrap();
    let path = dir.join("conf").join("edgeward.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_replaced_config_directory_is_watched_again() {
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&tagged_config(up.addr, "a", ""))
        .layout(in_conf_dir)
        .start()
        .await;
    let conf = gw.config_path.parent().unwrap().to_path_buf();

    // The whole directory replaced (as a deploy tool swapping a release directory does):
    // the watch on the old one follows it away, so the new one must be found and watched.
    let staged = conf.with_file_name("conf.new");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(
        staged.join("edgeward.toml"),
        edited(&gw.config_path, "\"a\"", "\"b\""),
    )
    .unwrap();
    std::fs::rename(&conf, conf.with_file_name("conf.old")).unwrap();
    std::fs::rename(&staged, &conf).unwrap();
    assert_applied_once(&gw, "b").await;

    // And the new directory's file is watched.
    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"b\"", "\"c\"")).unwrap();
    let r = settled(&gw, 2).await;
    assert_eq!((count(&r, "applied"), count(&r, "failed")), (2, 0), "{r}");
    assert_eq!(served_tag(gw.addr("http")).await, "c");
}
