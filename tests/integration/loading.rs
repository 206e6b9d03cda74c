//! What the loader maps: a sealed private copy of the verified file (so writing to the plugin
//! file later cannot reach the host), under a name whose `$ORIGIN` is the plugin's own
//! directory, with no descriptor kept per plugin.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fixtures::{cargo, fixtures, root};
use crate::support::*;

#[test]
fn overwriting_a_loaded_plugin_in_place_does_not_reach_the_host() {
    let dir = plugin_dir(&["redact"]);
    let plugin = dir.path().join(file_name("redact"));
    let (child, mut input, mut output) = transform_redact(dir.path(), None);
    redacts_one_line(&mut input, &mut output);
    overwrite_while_redacting(&plugin, child, input, output);
}

/// `plugin-host transform --plugins DIR [--keep-copies=STORE] redact`, with its input and
/// output.
fn transform_redact(
    plugins: &Path,
    store: Option<&Path>,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    BufReader<std::process::ChildStdout>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args(["transform", "--plugins", plugins.to_str().unwrap()])
        .args(store.map(|store| format!("--keep-copies={}", store.display())))
        .arg("redact")
        .env("PLUGIN_HOST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    let output = BufReader::new(child.stdout.take().unwrap());
    (child, input, output)
}

/// One line with a mail address through a running `transform redact`: it comes back
/// without the address.
fn redacts_one_line(
    input: &mut std::process::ChildStdin,
    output: &mut BufReader<std::process::ChildStdout>,
) {
    writeln!(input, "mail ada@example.com now").unwrap();
    input.flush().unwrap();
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert!(!line.contains("ada@example.com"), "{line}");
}

/// `cp other.so plugins/libredact.so` (the same inode, truncated and rewritten, at last with
/// garbage) while `child` redacts: 1000 more lines are all redacted, and the host exits
/// cleanly.
fn overwrite_while_redacting(
    plugin: &Path,
    mut child: std::process::Child,
    mut input: std::process::ChildStdin,
    mut output: BufReader<std::process::ChildStdout>,
) {
    fs::write(plugin, fs::read(fixtures().lib("hello")).unwrap()).unwrap();
    fs::write(plugin, b"garbage").unwrap();
    for _ in 0..1000 {
        writeln!(input, "mail bob@example.org from 10.1.2.3").unwrap();
    }
    drop(input);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the host died: {status:?}");
    assert_eq!(rest.lines().count(), 1000);
    assert!(
        !rest.contains("bob@example.org") && !rest.contains("10.1.2.3"),
        "{rest}"
    );
}

#[test]
fn a_write_while_loading_is_refused_before_any_of_it_runs() {
    let dir = plugin_dir(&["hello"]);
    let plugin = dir.path().join(file_name("hello"));
    let mut host = builder()
        .before_load(move |path| {
            // Verified, not yet loaded: an in-place write (same inode) lands now.
            let mut bytes = fs::read(path).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0xff;
            fs::write(path, bytes).unwrap();
        })
        .build();
    let report = host.load(&plugin);
    assert_eq!(report.status, host::Status::Failed, "{report:?}");
    assert_eq!(report.reason, Some(host::ReasonCode::LoadFailed));
    let message = report.message.unwrap();
    assert!(
        message.contains("written to while it was being loaded"),
        "{message}"
    );
    assert!(host.plugins().is_empty() && host.registry().list().is_empty());
}

/// Builds `libdep.so` (C, no SONAME) and a plugin whose RUNPATH is `$ORIGIN` that links it.
fn plugin_with_origin_dependency() -> (std::path::PathBuf, std::path::PathBuf) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("origin");
    let _ = fs::remove_dir_all(&tmp);
    let dep = tmp.join("dep");
    fs::create_dir_all(&dep).unwrap();
    fs::write(dep.join("dep.c"), "int dep_value(void) { return 42; }\n").unwrap();
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dep.join("libdep.so"))
        .arg(dep.join("dep.c"))
        .status()
        .expect("a C compiler (cc)");
    assert!(cc.success());

    let krate = tmp.join("origin-plugin");
    fs::create_dir_all(krate.join("src")).unwrap();
    let api = root().join("plugin-api");
    fs::write(
        krate.join("Cargo.toml"),
        format!(
            r#"[workspace]

[package]
name = "origin-plugin"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
plugin-api = {{ path = "{api}" }}

[build-dependencies]
plugin-api = {{ path = "{api}", default-features = false, features = ["build"] }}
"#,
            api = api.display()
        ),
    )
    .unwrap();
    fs::write(
        krate.join("build.rs"),
        format!(
            r#"fn main() {{
    plugin_api::build::record();
    println!("cargo:rustc-link-search=native={}");
    println!("cargo:rustc-link-lib=dylib=dep");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN");
}}
"#,
            dep.display()
        ),
    )
    .unwrap();
    fs::write(
        krate.join("src/lib.rs"),
        r#"use plugin_api::{export_plugin, Initializer, RegisterResult};

extern "C" {
    fn dep_value() -> i32;
}

fn register(init: &mut Initializer<'_>) -> RegisterResult {
    init.add_command("dep", |_: &[&str]| {
        // SAFETY: `dep_value` takes nothing and returns an int (libdep.so, dep.c).
        Ok(unsafe { dep_value() }.to_string())
    })?;
    Ok(())
}
export_plugin!(register);
"#,
    )
    .unwrap();
    fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = fixtures().libs.parent().unwrap();
    cargo(&krate, &["build", "--target-dir", target.to_str().unwrap()]);
    (fixtures().lib("origin-plugin"), dep.join("libdep.so"))
}

#[test]
fn origin_in_runpath_is_the_plugins_own_directory() {
    let (plugin, dep) = plugin_with_origin_dependency();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(&plugin, dir.path().join(plugin.file_name().unwrap())).unwrap();
    fs::copy(&dep, dir.path().join("libdep.so")).unwrap();
    for extra in [&[][..], &["--load-in-place"]] {
        let mut args = vec!["run", "--plugins", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push("dep");
        let out = cli(&args);
        assert_eq!(stdout(&out), "42\n", "{extra:?}: {}", stderr(&out));
    }
    // Locked: the loader maps the copy that was hashed, and stages it by what that copy
    // holds (its $ORIGIN dependency), not by the file, emptied after the hash.
    let file = dir.path().join(plugin.file_name().unwrap());
    let mut lock = host::Lock::new(dir.path().join("plugin-host.lock"));
    assert!(lock.lock_report(&builder().digests(true).build().verify(&file)));
    let emptied = file.clone();
    let mut host = builder()
        .lock(lock, true)
        .before_load(move |_| {
            fs::OpenOptions::new()
                .write(true)
                .open(&emptied)
                .unwrap()
                .set_len(0)
                .unwrap();
        })
        .build();
    let report = host.load(&file);
    assert_eq!(report.status, host::Status::Loaded, "{:?}", report.message);
    let dep_command = host
        .registry()
        .get::<plugin_api::CommandKind>("dep")
        .unwrap();
    let answer = dep_command.call(abi_stable::std_types::RSlice::from_slice(&[]));
    assert_eq!(answer.into_result().unwrap().as_str(), "42");
    drop(host);
    fs::copy(&plugin, &file).unwrap();
    // Without the library beside it, the failure names what is missing.
    fs::remove_file(dir.path().join("libdep.so")).unwrap();
    let scan = scan_json(dir.path(), &[]);
    assert_outcome(
        entry(&scan, plugin.file_name().unwrap().to_str().unwrap()),
        "failed",
        "load-failed",
        &["libdep.so", "$ORIGIN"],
    );
}

/// Runs `plugin-host ARGS` with at most `limit` open file descriptors.
fn cli_with_descriptor_limit(args: &[&str], limit: u64) -> std::process::Output {
    cli_with_rlimit(args, libc::RLIMIT_NOFILE, limit)
}

#[test]
fn no_descriptor_is_kept_per_plugin() {
    // 100 distinct plugins (each a `hello` renamed), under a limit of 64 descriptors: one
    // loads, the others fail on the capability they all claim — none for lack of descriptors.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..100 {
        let path = copy_into(&dir, "hello", &format!("libh{i}.so"));
        rewrite_provenance(&path, |j| j["name"] = format!("h{i}").into());
    }
    let out = cli_with_descriptor_limit(&["scan", dir.path().to_str().unwrap(), "--json"], 64);
    assert!(out.status.success(), "{}", stderr(&out));
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plugins = scan["plugins"].as_array().unwrap();
    let count = |reason: &str| plugins.iter().filter(|p| p["reason"] == reason).count();
    assert_eq!(
        plugins.iter().filter(|p| p["status"] == "loaded").count(),
        1
    );
    assert_eq!(count("capability-conflict"), 99, "{scan:#}");

    // And when descriptors do run out, the report says so plainly.
    let out = cli_with_descriptor_limit(&["scan", dir.path().to_str().unwrap(), "--json"], 4);
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("EMFILE"), "{text}");
}

#[test]
fn without_a_private_directory_plugins_still_load() {
    let dir = plugin_dir(&["hello"]);
    let out = cli_with(
        &[
            "run",
            "--plugins",
            dir.path().to_str().unwrap(),
            "hello",
            "Ada",
        ],
        &[("TMPDIR", Path::new("/nonexistent-plugin-host-tmp"))],
        None,
    );
    assert!(stdout(&out).starts_with("hello, Ada!"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot make a private directory under /nonexistent-plugin-host-tmp"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_private_directory_left_by_a_crashed_host_is_removed_by_the_next() {
    // A host killed by its plugin cannot remove its private directory; a file system in
    // memory (here /dev/shm's tmpfs, the only kind a host reaps) keeps it until the machine
    // restarts, unless the next host takes it.
    let temp = tempfile::tempdir_in("/dev/shm").unwrap();
    let left = || -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let unruly = plugin_dir(&["unruly"]);
    let out = cli_with(
        &[
            "scan",
            unruly.path().to_str().unwrap(),
            "--plugin-config",
            "unruly=segfault",
        ],
        &[("TMPDIR", temp.path())],
        None,
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    let crashed = left();
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    assert!(
        crashed[0].starts_with("plugin-host-") && crashed[0].ends_with(".held"),
        "{crashed:?}"
    );

    let hello = plugin_dir(&["hello"]);
    let out = cli_with(
        &[
            "run",
            "--plugins",
            hello.path().to_str().unwrap(),
            "hello",
            "Ada",
        ],
        &[("TMPDIR", temp.path())],
        None,
    );
    assert!(stdout(&out).starts_with("hello, Ada!"), "{}", stderr(&out));
    // The crashed host's directory is gone, and the second host removed its own.
    assert_eq!(left(), Vec::<String>::new());
}

/// Whether this process maps the file at `path` itself (not a copy of it).
fn maps_file(path: &Path) -> bool {
    let path = fs::canonicalize(path).unwrap();
    let path = path.to_str().unwrap();
    fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|line| line.ends_with(path))
}

#[test]
fn a_plugin_file_that_cannot_change_is_loaded_without_a_copy_and_others_from_one() {
    let scratch = crate::fixtures::tmp().join("immutable");
    fs::create_dir_all(&scratch).unwrap();
    let (plain, fixed) = (
        tempfile::tempdir_in(&scratch).unwrap(),
        tempfile::tempdir_in(&scratch).unwrap(),
    );
    let plain_file = copy_into(&plain, "hello", &file_name("hello"));
    let fixed_file = copy_into(&fixed, "hello", &file_name("hello"));
    let _guard = crate::immutable::Immutable(&fixed_file);
    crate::immutable::set_immutable(&fixed_file, true)
        .expect("setting the immutable attribute (needs root: CAP_LINUX_IMMUTABLE)");

    // An ordinary file: loaded from a sealed copy, so the file itself is not mapped.
    let mut host = builder().build();
    let report = host.load(&plain_file);
    assert_eq!(report.status, host::Status::Loaded, "{report:?}");
    assert!(!maps_file(&plain_file));

    // Immutable: nothing can write it, so it is mapped as it is, and stays what was verified.
    let mut host = builder().build();
    let report = host.load(&fixed_file);
    assert_eq!(report.status, host::Status::Loaded, "{report:?}");
    assert!(maps_file(&fixed_file));
    let write = fs::OpenOptions::new().write(true).open(&fixed_file);
    assert_eq!(
        write.unwrap_err().kind(),
        std::io::ErrorKind::PermissionDenied
    );
    let hello = host
        .registry()
        .get::<plugin_api::CommandKind>("hello")
        .unwrap();
    let out = hello
        .call(abi_stable::std_types::RSlice::from_slice(&["ada".into()]))
        .into_result()
        .unwrap();
    assert!(out.as_str().contains("ada"), "{out}");
}

/// A host that, while it loads `liba.so`, gives the copy made ahead of the next file time to
/// be made, then rewrites `target` in place with the plugin at `replacement`.
fn rewriting_while_liba_loads(target: PathBuf, replacement: PathBuf) -> host::Host {
    let replacement = fs::read(replacement).unwrap();
    builder()
        .before_load(move |path| {
            if path.ends_with("liba.so") {
                std::thread::sleep(std::time::Duration::from_millis(300));
                fs::write(&target, &replacement).unwrap();
            }
        })
        .build()
}

#[test]
fn past_a_file_that_needs_no_copy_the_copies_made_ahead_still_hold_what_was_verified() {
    // Three files: the first needs a copy (and starts copying ahead), the second cannot
    // change (mapped as it is: the scan does not wait for the thread to pass it), the third
    // is copied ahead — and then rewritten in place with another plugin, while the first
    // loads.
    let scratch = crate::fixtures::tmp().join("immutable");
    fs::create_dir_all(&scratch).unwrap();
    let dir = tempfile::tempdir_in(&scratch).unwrap();
    copy_into(&dir, "hello", "liba.so");
    let fixed = copy_into(&dir, "redact", "libb.so");
    let third = copy_into(&dir, "wc", "libc.so");
    let _guard = crate::immutable::Immutable(&fixed);
    crate::immutable::set_immutable(&fixed, true)
        .expect("setting the immutable attribute (needs root: CAP_LINUX_IMMUTABLE)");
    let mut host = rewriting_while_liba_loads(third, fixtures().lib("calls"));
    let reports = host.scan(&[dir.path()], host::ScanMode::Load).unwrap();
    let names: Vec<_> = reports.iter().map(|r| r.name.as_deref()).collect();
    assert_eq!(
        names,
        [Some("hello"), Some("redact"), Some("calls")],
        "{reports:?}"
    );
    assert!(
        reports.iter().all(|r| r.status == host::Status::Loaded),
        "{reports:?}"
    );
    assert!(maps_file(&fixed), "the immutable file is mapped as it is");
    let registry = host.registry();
    assert!(registry.get::<plugin_api::CommandKind>("echo").is_ok());
    assert!(registry.get::<plugin_api::CommandKind>("wc").is_err());
}

#[test]
fn only_a_read_only_file_system_not_a_read_only_mount_saves_the_copy() {
    // A private mount namespace (root): a read-only tmpfs, a read-only bind mount of a
    // writable directory, and a read-only overlay over it (its superblock is read-only, but
    // its lower directory can still change), each holding `hello`.
    let scratch = tempfile::tempdir_in(crate::fixtures::tmp()).unwrap();
    let (ro_fs, writable, ro_bind, ro_overlay) = (
        scratch.path().join("ro-fs"),
        scratch.path().join("writable"),
        scratch.path().join("ro-bind"),
        scratch.path().join("ro-overlay"),
    );
    for dir in [&ro_fs, &writable, &ro_bind, &ro_overlay] {
        fs::create_dir(dir).unwrap();
    }
    let plugin = fixtures().lib("hello");
    fs::copy(&plugin, writable.join(file_name("hello"))).unwrap();
    let script = r#"set -e
mount -t tmpfs plugin-host-test "$1"
cp "$4" "$1/"
mount -o remount,ro "$1"
mount --bind "$2" "$3"
mount -o remount,ro,bind "$3"
mount -t overlay -o ro,lowerdir="$2:$1" plugin-host-test "$6"
for dir in "$1" "$3" "$6"; do
  echo "== $dir"
  "$5" run --plugins "$dir" hello from-"$(basename "$dir")" 2>&1
done
"#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args([&ro_fs, &writable, &ro_bind, &plugin])
        .arg(env!("CARGO_BIN_EXE_plugin-host"))
        .arg(&ro_overlay)
        .env("PLUGIN_HOST_LOG", "debug")
        .env("XDG_CACHE_HOME", scratch.path().join("cache"))
        .output()
        .expect("unshare (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert!(out.status.success(), "needs root for mounts: {text}");
    let runs: Vec<&str> = text.split("== ").skip(1).collect();
    let [on_ro_fs, on_ro_bind, on_ro_overlay] = runs[..] else {
        panic!("three runs: {text}");
    };
    assert!(on_ro_fs.contains("from-ro-fs"), "{text}");
    assert!(
        on_ro_fs.contains("without a copy: its file system is read-only"),
        "{text}"
    );
    assert!(on_ro_bind.contains("from-ro-bind"), "{text}");
    assert!(!on_ro_bind.contains("without a copy"), "{text}");
    assert!(on_ro_overlay.contains("from-ro-overlay"), "{text}");
    assert!(!on_ro_overlay.contains("without a copy"), "{text}");
}

#[test]
fn a_copy_made_ahead_is_loaded_only_if_it_holds_what_was_verified() {
    // A scan of two files: while the first loads, the second is copied ahead. Loading the
    // first rewrites the second in place with another plugin, after that copy was made.
    let dir = tempfile::tempdir().unwrap();
    let first = copy_into(&dir, "hello", "liba.so");
    let second = copy_into(&dir, "wc", "libb.so");
    let mut host = rewriting_while_liba_loads(second.clone(), fixtures().lib("redact"));
    let reports = host.scan(&[dir.path()], host::ScanMode::Load).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(
        reports.iter().all(|r| r.status == host::Status::Loaded),
        "{reports:?}"
    );
    // What runs is what was verified: the plugin the file held when it was verified.
    assert_eq!(reports[1].name.as_deref(), Some("redact"), "{reports:?}");
    let registry = host.registry();
    assert!(registry.get::<plugin_api::TransformKind>("redact").is_ok());
    assert!(registry.get::<plugin_api::CommandKind>("wc").is_err());
    assert!(registry.get::<plugin_api::CommandKind>("hello").is_ok());
    let _ = first;
}

#[test]
fn a_plugin_with_a_long_file_name_keeps_no_descriptor_once_loaded() {
    // A file name of 255 bytes: staged with a counter before it, it was too long, and the
    // plugin was loaded by its descriptor's name instead, that descriptor kept open.
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{}.so", "a".repeat(252));
    let file = dir.path().join(&long);
    fs::copy(fixtures().lib("hello"), &file).unwrap();
    rewrite_provenance(&file, |j| j["name"] = "hellz".into());
    let mut host = builder().build();
    let report = host.load(&file);
    assert_eq!(report.status, host::Status::Loaded, "{:?}", report.message);
    let held: Vec<String> = fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.contains("plugin:hellz"))
        .collect();
    assert!(held.is_empty(), "descriptors kept: {held:?}");
}

/// The entries of a store of kept copies, by name: (inode, mode).
fn kept_copies(store: &Path) -> Vec<(String, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut copies: Vec<_> = fs::read_dir(store)
        .unwrap()
        .filter(|e| !layout_mark(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, meta.ino(), meta.mode() & 0o7777)
        })
        .collect();
    copies.sort();
    copies
}

/// Whether a name in a store of kept copies is a layout mark's.
fn layout_mark(name: &str) -> bool {
    name.starts_with("checked-")
}

/// The layout marks in a store of kept copies, sorted.
fn layout_marks(store: &Path) -> Vec<String> {
    let mut marks: Vec<_> = fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| layout_mark(name))
        .collect();
    marks.sort();
    marks
}

/// A private directory for a store of kept copies.
fn private_store(dir: &tempfile::TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let store = dir.path().join("copies");
    fs::create_dir(&store).unwrap();
    fs::set_permissions(&store, fs::Permissions::from_mode(0o700)).unwrap();
    store
}

/// The name a kept copy of the file at `path` has: its device, inode, size and times.
fn kept_name(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap();
    format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}-{:x}.{:x}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Whether the process `pid` maps a file whose path ends with `end`.
fn pid_maps(pid: u32, end: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .any(|line| line.ends_with(end))
}

#[test]
fn a_kept_copy_is_made_once_shared_by_later_runs_and_immune_to_writes() {
    let dir = plugin_dir(&["redact"]);
    let plugin = dir.path().join(file_name("redact"));
    let scratch = tempfile::tempdir().unwrap();
    let store = private_store(&scratch);
    let name = kept_name(&plugin);
    // The first run copies the plugin into the store, and maps the copy.
    let (first, mut first_in, mut first_out) = transform_redact(dir.path(), Some(&store));
    redacts_one_line(&mut first_in, &mut first_out);
    let copies = kept_copies(&store);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!((copies[0].0.as_str(), copies[0].2), (name.as_str(), 0o400));
    assert!(pid_maps(first.id(), &name), "the copy is not mapped");
    assert!(
        !pid_maps(first.id(), &file_name("redact")),
        "the file is mapped"
    );

    // A second run maps the same copy: nothing copied, the pages shared.
    let (mut second, mut second_in, mut second_out) = transform_redact(dir.path(), Some(&store));
    redacts_one_line(&mut second_in, &mut second_out);
    assert_eq!(kept_copies(&store), copies);
    assert!(pid_maps(second.id(), &name));
    drop(second_in);
    assert!(second.wait().unwrap().success());

    // `cp other.so plugins/libredact.so` reaches neither the running host nor the copy.
    overwrite_while_redacting(&plugin, first, first_in, first_out);
    assert_eq!(kept_copies(&store), copies);

    // The file written again is another file to the store: a new copy, holding the new
    // bytes (hello's, which has no `redact`).
    fs::write(&plugin, fs::read(fixtures().lib("hello")).unwrap()).unwrap();
    let out = cli(&[
        "scan",
        &format!("--keep-copies={}", store.display()),
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello"), "{}", stdout(&out));
    let now = kept_copies(&store);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().any(|(n, _, _)| *n == kept_name(&plugin)));
}

#[test]
fn a_kept_copys_layout_is_checked_once_by_each_build_of_the_host() {
    let dir = plugin_dir(&["hello"]);
    let plugin = dir.path().join(file_name("hello"));
    let scratch = tempfile::tempdir().unwrap();
    let store = private_store(&scratch);
    const NOT_AGAIN: &str = "was checked by an earlier run of this build of the host";
    let scan = || {
        let out = cli_with(
            &[
                "scan",
                &format!("--keep-copies={}", store.display()),
                dir.path().to_str().unwrap(),
            ],
            &[("PLUGIN_HOST_LOG", Path::new("debug"))],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("loaded"), "{}", stdout(&out));
        stderr(&out)
    };
    let copy = kept_name(&plugin);

    // The first run checks the copy's layout, and marks the copy so.
    let first = scan();
    assert!(!first.contains(NOT_AGAIN), "{first}");
    let marks = layout_marks(&store);
    assert_eq!(marks.len(), 1, "{marks:?}");
    let mark = &marks[0];
    assert!(
        mark.contains(&format!("-{copy}-")),
        "{mark} is not {copy}'s"
    );

    // A later run of the same build maps the same copy and does not check it again.
    let second = scan();
    assert!(second.contains(NOT_AGAIN), "{second}");
    assert_eq!(layout_marks(&store), marks);

    // Another build of the host (the mark names another build ID) checks it.
    let build = mark
        .strip_prefix("checked-")
        .and_then(|rest| rest.split_once('-'))
        .unwrap()
        .0;
    let other_build = mark.replacen(build, &"0".repeat(build.len()), 1);
    fs::rename(store.join(mark), store.join(&other_build)).unwrap();
    let third = scan();
    assert!(!third.contains(NOT_AGAIN), "{third}");
    assert_eq!(layout_marks(&store).len(), 2);

    // Another file under the copy's name (the copy removed, and made again) is checked: a
    // mark names the very copy, and the marks of the one that went go too.
    fs::remove_file(store.join(&copy)).unwrap();
    let fourth = scan();
    assert!(!fourth.contains(NOT_AGAIN), "{fourth}");
    assert!(store.join(&copy).exists());
    let now = layout_marks(&store);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(&now[0], mark);
    assert!(scan().contains(NOT_AGAIN));
}

#[test]
fn the_cli_keeps_copies_in_a_private_runtime_directory_and_nowhere_else_unless_told() {
    use std::os::unix::fs::PermissionsExt;
    let dir = plugin_dir(&["hello"]);
    let copy = kept_name(&dir.path().join(file_name("hello")));
    // A scan with `XDG_RUNTIME_DIR` set to `runtime` and the flags `extra`; the store it
    // would make there.
    let scan = |runtime: &Path, extra: &[&str]| {
        let mut args = vec!["scan", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = cli_with(&args, &[("XDG_RUNTIME_DIR", runtime)], None);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("loaded"), "{}", stdout(&out));
        runtime.join("plugin-host-copies")
    };
    let runtime = |mode: u32| {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        dir
    };

    // A private runtime directory, as a login session has: the copy is kept in it, by
    // default.
    let private = runtime(0o700);
    let store = scan(private.path(), &[]);
    assert!(
        store.join(&copy).is_file(),
        "no kept copy in {}",
        store.display()
    );
    assert_eq!(layout_marks(&store).len(), 1);

    // Told not to: a sealed copy, nothing kept.
    let told = runtime(0o700);
    assert!(!scan(told.path(), &["--sealed-copies"]).exists());

    // A runtime directory others may write in, or that is not this user's to begin with,
    // is not used unless asked for by `--keep-copies`.
    let shared = runtime(0o777);
    assert!(!scan(shared.path(), &[]).exists());
    let (target, elsewhere) = (runtime(0o700), tempfile::tempdir().unwrap());
    let link = elsewhere.path().join("runtime");
    std::os::unix::fs::symlink(target.path(), &link).unwrap();
    scan(&link, &[]);
    let mut slashed = link.into_os_string();
    slashed.push("/");
    scan(Path::new(&slashed), &[]);
    assert!(!target.path().join("plugin-host-copies").exists());
    let relative = scan(Path::new("relative-runtime"), &[]);
    assert!(!relative.exists() && !Path::new("relative-runtime").exists());

    // The flags that choose a mode exclude each other.
    for flags in [
        ["--sealed-copies", "--keep-copies"],
        ["--sealed-copies", "--load-in-place"],
        ["--load-in-place", "--keep-copies"],
    ] {
        let out = cli(&["scan", dir.path().to_str().unwrap(), flags[0], flags[1]]);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn kept_copies_made_ahead_go_in_only_for_files_that_verify() {
    use std::os::unix::fs::PermissionsExt;
    // In scan order: the first copy is made by the scan itself, which then starts copying
    // ahead; the plugin-api 2.0 plugin is copied ahead, then refused; `redact`'s copy made
    // ahead is put in place once it is verified.
    let dir = tempfile::tempdir().unwrap();
    let hello = copy_into(&dir, "hello", "liba_hello.so");
    let refused = copy_into(&dir, "api-two", "libb_api_two.so");
    let redact = copy_into(&dir, "redact", "libc_redact.so");
    let runtime = tempfile::tempdir().unwrap();
    fs::set_permissions(runtime.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let out = cli_with(
        &["scan", dir.path().to_str().unwrap(), "--json"],
        &[
            ("XDG_RUNTIME_DIR", runtime.path()),
            ("PLUGIN_HOST_LOG", Path::new("debug")),
        ],
        None,
    );
    let scan: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(
        entry(&scan, "liba_hello.so")["status"],
        "loaded",
        "{scan:#}"
    );
    assert_eq!(
        entry(&scan, "libb_api_two.so")["status"],
        "rejected",
        "{scan:#}"
    );
    assert_eq!(
        entry(&scan, "libc_redact.so")["status"],
        "loaded",
        "{scan:#}"
    );
    let log = stderr(&out);
    assert!(
        log.lines().any(|l| l.contains("kept a copy of")
            && l.contains("libc_redact.so")
            && l.contains("(made ahead)")),
        "{log}"
    );
    let store = runtime.path().join("plugin-host-copies");
    let mut names: Vec<String> = fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !layout_mark(name))
        .collect();
    names.sort();
    let mut expected = vec![kept_name(&hello), kept_name(&redact)];
    expected.sort();
    assert_eq!(
        names,
        expected,
        "the refused file's copy ({}) or a partial one left",
        kept_name(&refused)
    );
}

#[test]
fn a_kept_copy_sharing_a_crate_with_other_contents_is_checked_at_every_load_and_refused_if_skewed()
{
    use crate::fixtures::{fixtures_target, scratch_workspace, tmp};
    fixtures();
    let ws = tmp().join("ws-layout-skew");
    scratch_workspace(&ws, "layout-skew", Some("0.1.0"));
    let error_rs = ws.with_extension("api").join("plugin-api/src/error.rs");
    let original = fs::read_to_string(&error_rs).unwrap();
    let target = fixtures_target();
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = private_store(&scratch);
    // Builds the plugin against the plugin-api copy holding `source`, puts it in the plugin
    // directory, and scans that twice with kept copies: the scans' entries and logs.
    let build_and_scan_twice = |source: &str| {
        fs::write(&error_rs, source).unwrap();
        cargo(
            &ws,
            &[
                "build",
                "-p",
                "layout-skew",
                "--target-dir",
                target.to_str().unwrap(),
            ],
        );
        let file = file_name("layout-skew");
        let _ = fs::remove_file(dir.path().join(&file));
        fs::copy(fixtures().lib("layout-skew"), dir.path().join(&file)).unwrap();
        (0..2)
            .map(|_| {
                let out = cli_with(
                    &[
                        "scan",
                        "--json",
                        &format!("--keep-copies={}", store.display()),
                        dir.path().to_str().unwrap(),
                    ],
                    &[("PLUGIN_HOST_LOG", Path::new("debug"))],
                    None,
                );
                assert!(out.status.success(), "{}", stderr(&out));
                let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                (entry(&scan, &file).clone(), stderr(&out))
            })
            .collect::<Vec<_>>()
    };

    // plugin-api with other contents, the same layout (a constant added): the default policy
    // lets it load (a warning), its kept copy is mapped, and its layout is checked at every
    // load, never remembered: its types could have fields the host's do not.
    let added = format!(
        "{original}\n/// A change the host's copy does not have.\npub const CHANGED: u32 = 1;\n"
    );
    for (run, (e, log)) in build_and_scan_twice(&added).into_iter().enumerate() {
        assert_eq!(e["status"], "loaded", "run {run}: {e:#}");
        assert!(!log.contains("not checked again"), "run {run}: {log}");
        assert!(
            layout_marks(&store).is_empty(),
            "run {run}: {:?}",
            layout_marks(&store)
        );
    }
    assert_eq!(kept_copies(&store).len(), 1);

    // Its error type with its two fields in the other order: the same names and types,
    // another layout of what `register` returns. Refused at every load, never marked.
    let kind = "    /// Whether it failed or panicked.\n    pub kind: CallErrorKind,\n";
    let message = "    /// The error's message (with its `source()` chain), or the panic message.\n    pub message: RString,\n";
    let both = format!("{kind}{message}");
    assert!(
        original.contains(&both),
        "plugin-api's CallError changed shape"
    );
    let swapped = original.replacen(&both, &format!("{message}{kind}"), 1);
    for (run, (e, _)) in build_and_scan_twice(&swapped).into_iter().enumerate() {
        assert_eq!(e["status"], "failed", "run {run}: {e:#}");
        assert_eq!(e["reason"], "layout-mismatch", "run {run}: {e:#}");
        let text = e["message"].as_str().unwrap();
        assert!(
            text.contains("layout check of the root module failed"),
            "run {run}: {text}"
        );
        assert!(
            layout_marks(&store).is_empty(),
            "run {run}: {:?}",
            layout_marks(&store)
        );
    }
    // The new file's copy beside the first one's.
    assert_eq!(kept_copies(&store).len(), 2);
}

#[test]
fn a_kept_copy_that_is_not_what_was_verified_or_that_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = plugin_dir(&["hello"]);
    let plugin = dir.path().join(file_name("hello"));
    let scratch = tempfile::tempdir().unwrap();
    let store = private_store(&scratch);
    let planted = store.join(kept_name(&plugin));
    // Planted under the name of hello's copy: another plugin's bytes, padded to hello's
    // size, that no one may write.
    let mut other = fs::read(fixtures().lib("redact")).unwrap();
    other.resize(fs::metadata(&plugin).unwrap().len() as usize, 0);
    fs::write(&planted, &other).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o400)).unwrap();
    let mut host = builder()
        .load_from(host::LoadFrom::KeptCopy)
        .copy_store(&store)
        .build();
    let report = host.load(&plugin);
    assert_eq!(report.status, host::Status::Loaded, "{report:?}");
    assert!(host
        .registry()
        .get::<plugin_api::CommandKind>("hello")
        .is_ok());
    // Its provenance is not the record verified: replaced by a copy of hello, which is
    // what was mapped.
    let kept = host::read_provenance(&planted).unwrap();
    assert_eq!(kept.name, "hello");
    assert!(maps_file(&planted));

    // A copy others may write is not mapped either: a sealed copy is made.
    let dir = plugin_dir(&["hello"]);
    let plugin = dir.path().join(file_name("hello"));
    let planted = store.join(kept_name(&plugin));
    fs::copy(&plugin, &planted).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o644)).unwrap();
    let before = kept_copies(&store);
    let mut host = builder()
        .load_from(host::LoadFrom::KeptCopy)
        .copy_store(&store)
        .build();
    let report = host.load(&plugin);
    assert_eq!(report.status, host::Status::Loaded, "{report:?}");
    // Replaced by a copy no one may write.
    let after = kept_copies(&store);
    assert_ne!(before, after);
    assert!(after.iter().all(|(_, _, mode)| *mode == 0o400), "{after:?}");
}

#[test]
fn a_store_that_is_not_the_users_alone_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = plugin_dir(&["hello"]);
    let plugin = dir.path().join(file_name("hello"));
    let scratch = tempfile::tempdir().unwrap();
    let store = private_store(&scratch);
    fs::set_permissions(&store, fs::Permissions::from_mode(0o777)).unwrap();
    let mut host = builder()
        .load_from(host::LoadFrom::KeptCopy)
        .copy_store(&store)
        .build();
    let report = host.load(&plugin);
    assert_eq!(report.status, host::Status::Loaded, "{report:?}");
    assert_eq!(kept_copies(&store), vec![]);
    // Loaded from a sealed copy all the same, not from the file.
    assert!(!maps_file(&plugin));
}
