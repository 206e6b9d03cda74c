//! `plugin-host builder`: the builder image, plugin builds in it with the network off
//! (named, strict-checked, byte-identical twice), builds on this machine with the pinned
//! toolchain, and the errors that leave `--out` untouched.
//!
//! The tests that need a container engine run when podman works here; with
//! `PLUGIN_HOST_TEST_ENGINE` set (CI sets it) they must run, and fail when it does not work.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixtures::{plugin_crate, root};
use crate::support::{cli, cli_with, stderr, stdout};

/// The engine the image tests use, or `None` (test skipped) when none works and none is
/// required.
fn engine() -> Option<String> {
    let required = std::env::var("PLUGIN_HOST_TEST_ENGINE").ok();
    let name = required.clone().unwrap_or_else(|| "podman".into());
    let works = Command::new(&name)
        .args(["--runtime", "runc", "info"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, required) {
        (true, _) => Some(name),
        (false, Some(name)) => {
            panic!("PLUGIN_HOST_TEST_ENGINE={name} but `{name} info` fails here")
        }
        (false, None) => {
            eprintln!("skipped: no working podman (set PLUGIN_HOST_TEST_ENGINE to require it)");
            None
        }
    }
}

/// Serializes the tests that make or need the builder image: one `builder image` at a time.
static IMAGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes (or brings up to date) the base and builder images: `builder image` rebuilds one made
/// from other sources (an earlier checkout's plugin-api would make every build here a
/// `dependency-mismatch`) and says "up to date" otherwise, at the cost of a check.
fn ensure_image(engine: &str) {
    let _one = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
    for step in [
        &["builder", "base", "--engine", engine][..],
        &["builder", "image", "--engine", engine],
    ] {
        let o = cli(step);
        assert!(o.status.success(), "{step:?} failed: {}", stderr(&o));
    }
}

/// A standalone plugin crate (its own `[workspace]`, the host's Cargo.lock) in a fresh dir.
fn standalone_plugin(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join(name);
    plugin_crate(
        &krate,
        name,
        root().join("plugin-api").to_str().unwrap(),
        &format!("{name}-command"),
    );
    let manifest = krate.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, format!("{text}\n[workspace]\n")).unwrap();
    fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    (dir, krate)
}

fn expected_name(plugin: &str) -> String {
    let record = crate::support::host_info();
    format!(
        "{plugin}-{}+{}-{}-{}.so",
        "0.1.0",
        record["name"].as_str().unwrap(),
        record["version"].as_str().unwrap(),
        record["target"].as_str().unwrap()
    )
}

fn build(krate: &Path, out: &Path, engine: &str) -> (PathBuf, String) {
    let o = cli(&[
        "builder",
        "build",
        krate.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--engine",
        engine,
    ]);
    assert!(o.status.success(), "builder build failed: {}", stderr(&o));
    let line = stdout(&o);
    let (path, sha) = line
        .trim()
        .split_once("  sha256:")
        .expect("PATH  sha256:HEX");
    (PathBuf::from(path), sha.to_owned())
}

fn assert_strict_accepts(file: &Path) {
    let o = cli(&["check", "--policy", "strict", file.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "strict refused {}: {}",
        file.display(),
        stdout(&o)
    );
}

#[test]
fn image_builds_named_strict_accepted_byte_identical_plugins_offline() {
    let Some(engine) = engine() else { return };
    let one = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
    for step in [
        &["builder", "base", "--engine", &engine][..],
        &["builder", "image", "--engine", &engine],
    ] {
        let o = cli(step);
        assert!(o.status.success(), "{step:?} failed: {}", stderr(&o));
    }
    // Kept between runs: a second `image` reuses it.
    let o = cli(&["builder", "image", "--engine", &engine]);
    assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));
    drop(one);

    let (_dir, krate) = standalone_plugin("boxed");
    let (out_a, out_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, sha_a) = build(&krate, out_a.path(), &engine);
    assert_eq!(
        first.file_name().unwrap().to_str().unwrap(),
        expected_name("boxed")
    );
    assert_strict_accepts(&first);
    // The build ran with the network off and recorded no path of this machine.
    let inspect = stdout(&cli(&["inspect", first.to_str().unwrap(), "--json"]));
    assert!(
        inspect.contains("plugin-api 0.1.0 (/opt/plugin-builder/crates/plugin-api)"),
        "{inspect}"
    );
    assert!(!inspect.contains(root().to_str().unwrap()), "{inspect}");

    let (second, sha_b) = build(&krate, out_b.path(), &engine);
    assert_eq!(sha_a, sha_b, "two builds of one crate differ");
    assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
}

#[test]
fn build_publish_puts_the_built_file_in_a_registry() {
    let Some(registry) = crate::registry::Registry::start() else {
        return;
    };
    let (_dir, krate) = standalone_plugin("published");
    let out = tempfile::tempdir().unwrap();
    let to = registry.reference("team/published:1");
    let build_publishing = |to: &str| {
        let out = out.path().to_str().unwrap();
        let args = [
            "builder",
            "build",
            krate.to_str().unwrap(),
            "--out",
            out,
            "--engine",
            "none",
            "--publish",
            to,
        ];
        cli(&args)
    };
    let o = build_publishing(&to);
    assert!(
        o.status.success(),
        "builder build --publish failed: {}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("published published 0.1.0 for"),
        "{}",
        stdout(&o)
    );
    // What was published is what was built: pulled back, byte for byte.
    let back = tempfile::tempdir().unwrap();
    let pulled = cli(&[
        "pull",
        &to,
        "--dir",
        back.path().to_str().unwrap(),
        "--lock-file",
        back.path().join("l.lock").to_str().unwrap(),
    ]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let built = fs::read(out.path().join(expected_name("published"))).unwrap();
    let name = plugin_registry::library_file_name("published");
    assert_eq!(fs::read(back.path().join(name)).unwrap(), built);
    // A bad reference is refused before any building.
    let o = build_publishing("docker://x/y:1");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("must start with `oci://`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn engine_none_builds_with_the_pinned_toolchain_and_is_accepted() {
    let (_dir, krate) = standalone_plugin("unboxed");
    let out = tempfile::tempdir().unwrap();
    let (file, _) = build(&krate, out.path(), "none");
    assert_eq!(
        file.file_name().unwrap().to_str().unwrap(),
        expected_name("unboxed")
    );
    assert_strict_accepts(&file);
    let inspect = stdout(&cli(&["inspect", file.to_str().unwrap(), "--json"]));
    assert!(
        !inspect.contains(root().to_str().unwrap()),
        "the build recorded this machine's paths: {inspect}"
    );
    // Only the final file: no temporary left beside it.
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 1);
}

#[test]
fn a_missing_engine_is_an_error_with_the_fix() {
    let (_dir, krate) = standalone_plugin("no-engine");
    let out = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let o = cli_with(
        &[
            "builder",
            "build",
            krate.to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--engine",
            "docker",
        ],
        &[("PATH", empty.path())],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let message = stderr(&o);
    assert!(message.contains("docker is not installed"), "{message}");
    assert!(message.contains("--engine none"), "{message}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

/// Runs `builder build` of `krate` into an --out holding one file, expects exit 2 with
/// `needle` in the message, and the directory as it was.
fn assert_refused_untouched(krate: &Path, needle: &str) -> std::process::Output {
    assert_refused_untouched_by(krate, "none", &[needle])
}

/// [`assert_refused_untouched`] with `engine`, and every one of `needles` in the message.
fn assert_refused_untouched_by(
    krate: &Path,
    engine: &str,
    needles: &[&str],
) -> std::process::Output {
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("keep.txt"), "kept").unwrap();
    let o = cli(&[
        "builder",
        "build",
        krate.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--engine",
        engine,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for needle in needles {
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["keep.txt"]);
    o
}

#[test]
fn a_crate_that_is_not_a_cdylib_is_refused_and_out_untouched() {
    let (_dir, krate) = standalone_plugin("not-cdylib");
    let manifest = krate.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("[\"cdylib\"]", "[\"rlib\"]")).unwrap();
    assert_refused_untouched(&krate, "add `[lib] crate-type = [\"cdylib\", \"rlib\"]`");
}

#[test]
fn a_crate_without_the_recorder_is_refused_and_out_untouched() {
    let (_dir, krate) = standalone_plugin("unrecorded");
    fs::remove_file(krate.join("build.rs")).unwrap();
    assert_refused_untouched(&krate, "plugin_api::build::record()");
}

/// A FIFO at `path`.
fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_fifo_in_the_crate_is_refused_by_name_and_out_untouched() {
    // Copying the crate into the build's stage used to open the FIFO and wait forever.
    let (_dir, krate) = standalone_plugin("fifo");
    let pipe = krate.join("src/pipe");
    make_fifo(&pipe);
    assert_refused_untouched(
        &krate,
        &format!("{}: a FIFO, not a regular file", pipe.display()),
    );
}

#[test]
fn a_file_name_in_the_crate_is_shown_escaped_never_as_terminal_control() {
    // A FIFO whose name writes the clipboard (OSC 52) and clears the line when printed raw.
    let (_dir, krate) = standalone_plugin("fifo-named");
    make_fifo(&krate.join("src/\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2Kpipe"));
    let escaped = "src/\\u{1b}]52;c;cHduZWQ=\\u{7}\\u{1b}[2Kpipe: a FIFO, not a regular file";
    let o = assert_refused_untouched(&krate, escaped);
    assert!(!stderr(&o).contains('\u{1b}'), "{:?}", stderr(&o));
}

#[test]
fn a_build_that_fails_is_reported_with_its_errors() {
    let (_dir, krate) = standalone_plugin("broken");
    fs::write(krate.join("src/lib.rs"), "fn oops( {}\n").unwrap();
    assert_refused_untouched(&krate, "failed");
}

#[test]
fn a_build_that_leaves_a_symlink_to_a_host_file_is_refused_and_nothing_is_copied() {
    let Some(engine) = engine() else { return };
    ensure_image(&engine);
    let (dir, krate) = standalone_plugin("linker");
    let secret = dir.path().join("host-secret.txt");
    fs::write(&secret, "a file of this machine").unwrap();
    // In the container: the library's place in /build/out becomes a link to a path of this
    // machine (which it creates in the container, so the copy there succeeds).
    fs::write(
        krate.join("build.rs"),
        format!(
            r#"fn main() {{
    plugin_api::build::record();
    let secret = std::path::Path::new({secret:?});
    let _ = std::fs::create_dir_all(secret.parent().unwrap());
    let _ = std::fs::write(secret, "");
    let _ = std::os::unix::fs::symlink(secret, "/build/out/liblinker.so");
}}
"#
        ),
    )
    .unwrap();
    assert_refused_untouched_by(&krate, &engine, &["liblinker.so", "symbolic link"]);
    assert_eq!(
        fs::read_to_string(&secret).unwrap(),
        "a file of this machine"
    );
}

#[test]
fn a_build_has_no_capability_to_leave_files_the_user_cannot_remove() {
    let Some(engine) = engine() else { return };
    ensure_image(&engine);
    let (_dir, krate) = standalone_plugin("chowner");
    // Root in the container, but without CAP_CHOWN: a directory in the mounted output given
    // to another user (one the user could then not remove) is refused.
    fs::write(
        krate.join("build.rs"),
        r#"fn main() {
    plugin_api::build::record();
    std::fs::create_dir_all("/build/out/keep").unwrap();
    std::os::unix::fs::chown("/build/out/keep", Some(1), Some(1)).expect("the build may chown");
}
"#,
    )
    .unwrap();
    assert_refused_untouched_by(&krate, &engine, &["the build may chown", "not permitted"]);
}

#[test]
fn a_crate_made_by_new_builds_in_the_image_and_a_lock_off_the_hosts_is_told_the_commands() {
    let Some(engine) = engine() else { return };
    ensure_image(&engine);
    let krate = crate::builder::scaffold("image-new", "command");
    let out = tempfile::tempdir().unwrap();
    let (file, _) = build(&krate, out.path(), &engine);
    assert_strict_accepts(&file);

    // A proc-macro crate at a release the image does not hold: the build fails there, and
    // says which commands bring the lock back to the host's versions.
    let (host_syn, newer) = crate::builder::move_syn_off_the_hosts_version(&krate);
    let failed = tempfile::tempdir().unwrap();
    let o = cli(&[
        "builder",
        "build",
        krate.to_str().unwrap(),
        "--out",
        failed.path().to_str().unwrap(),
        "--engine",
        &engine,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let message = stderr(&o);
    let command = format!("cargo update -p syn@{newer} --precise {host_syn}");
    assert!(
        message.contains(&format!("\n  {command}")),
        "{command}: {message}"
    );
    assert_eq!(fs::read_dir(failed.path()).unwrap().count(), 0);
    // Every command it prints, run as printed, and the build succeeds.
    for printed in message.lines().filter_map(|l| l.strip_prefix("  cargo ")) {
        crate::fixtures::run_suggested(&krate, &format!("cargo {printed}"), &[]);
    }
    let (file, _) = build(&krate, failed.path(), &engine);
    assert_strict_accepts(&file);
}

#[test]
fn build_runs_no_toolchain_the_crate_names_on_this_machine() {
    let Some(engine) = engine() else { return };
    ensure_image(&engine);
    let (dir, krate) = standalone_plugin("own-toolchain");
    // A toolchain "by path" whose cargo and rustc leave a marker: rustup's proxy would run
    // them for any cargo started in the crate's directory.
    let marker = dir.path().join("ran");
    for program in ["cargo", "rustc"] {
        let path = dir.path().join("toolchain/bin").join(program);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            format!("#!/bin/sh\necho \"$0\" >> '{}'\nexit 1\n", marker.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(
        krate.join("rust-toolchain.toml"),
        format!(
            "[toolchain]\npath = \"{}\"\n",
            dir.path().join("toolchain").display()
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    // Started in the crate's directory, as an author would.
    let o = crate::builder::cli_in(
        &krate,
        &[
            "builder",
            "build",
            ".",
            "--out",
            out.path().to_str().unwrap(),
            "--engine",
            &engine,
        ],
        &[],
    );
    assert!(
        !marker.exists(),
        "the crate's own toolchain ran on this machine: {}",
        fs::read_to_string(&marker).unwrap_or_default()
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 1);
}
