//! The plugin builder: `new` scaffolds a crate whose first build passes `--policy strict`, and
//! `preflight` predicts — without building — what `check` then says about the built file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::fixtures::{fixtures_target, run_suggested, tmp};
use crate::support::{stderr, stdout};

/// Runs `plugin-host ARGS` in `dir` as a user's shell would: rustup picks the toolchain from
/// the directory (no `RUSTUP_TOOLCHAIN`, `RUSTC` or `CARGO` from the test run), plus `env`.
pub(crate) fn cli_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugin-host"));
    cmd.args(args)
        .current_dir(dir)
        .env("PLUGIN_HOST_LOG", "warn")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("CARGO");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run plugin-host")
}

/// A fresh scaffold `name` (of `kind`) under the test's scratch directory.
pub(crate) fn scaffold(name: &str, kind: &str) -> PathBuf {
    let parent = tmp().join("builder");
    fs::create_dir_all(&parent).unwrap();
    let dir = parent.join(name);
    let _ = fs::remove_dir_all(&dir);
    let out = cli_in(&parent, &["new", name, "--kind", kind], &[]);
    assert_eq!(out.status.code(), Some(0), "new: {}", stderr(&out));
    assert!(
        stdout(&out).contains("would be accepted"),
        "{}",
        stdout(&out)
    );
    dir
}

/// `preflight DIR --policy strict --json [EXTRA]` and its exit code.
fn preflight(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let mut args = vec![
        "preflight",
        dir.to_str().unwrap(),
        "--policy",
        "strict",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = cli_in(dir, &args, env);
    let code = out.status.code().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}), exit {code}: {}{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (code, json)
}

/// `check --policy strict --json LIB`: exit code and the plugin's entry.
fn check_strict(lib: &Path) -> (i32, Value) {
    let out = cli_in(
        Path::new("/"),
        &[
            "check",
            "--policy",
            "strict",
            "--json",
            lib.to_str().unwrap(),
        ],
        &[],
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("check JSON");
    (out.status.code().unwrap(), json["plugins"][0].clone())
}

/// Preflight's verdict and `check`'s on the built file agree: exit code, reason, and the
/// status of every check.
fn assert_agree(predicted: &(i32, Value), checked: &(i32, Value)) {
    let ((pc, p), (cc, c)) = (predicted, checked);
    assert_eq!(pc, cc, "exit codes differ:\npreflight {p:#}\ncheck {c:#}");
    let reason = |v: &Value| v["reason"].as_str().map(str::to_owned);
    assert_eq!(reason(p), reason(c), "reasons differ");
    let statuses = |v: &Value| -> Vec<(String, String)> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["check"].to_string(), c["status"].to_string()))
            .collect()
    };
    assert_eq!(statuses(p), statuses(c), "check statuses differ");
}

fn lib_in(target: &Path, name: &str) -> PathBuf {
    target.join("debug").join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

fn target_arg(target: &Path) -> [&str; 2] {
    ["--target-dir", target.to_str().unwrap()]
}

#[test]
fn scaffold_builds_and_passes_strict() {
    let target = fixtures_target();
    for (name, kind) in [("scaffold-cmd", "command"), ("scaffold-tr", "transform")] {
        let dir = scaffold(name, kind);
        for file in [
            "Cargo.toml",
            "Cargo.lock",
            "build.rs",
            "src/lib.rs",
            "README.md",
        ] {
            assert!(dir.join(file).is_file(), "{name}: no {file}");
        }
        let toolchain = fs::read_to_string(dir.join("rust-toolchain.toml")).unwrap();
        let host_release = crate::support::host_info()["rustc"]["release"].clone();
        assert!(
            toolchain.contains(&format!("channel = {host_release}")),
            "{toolchain}"
        );
        let predicted = preflight(&dir, &[], &[]);
        assert_eq!(predicted.0, 0, "{:#}", predicted.1);

        // The test host is a debug build: a plain `cargo build` matches its profile.
        run_suggested(&dir, "cargo build", &target_arg(&target));
        let checked = check_strict(&lib_in(&target, name));
        assert_eq!(checked.0, 0, "{name}: {:#}", checked.1);
        assert_agree(&predicted, &checked);
        // The scaffold's own unit test passes.
        run_suggested(&dir, "cargo test", &target_arg(&target));
        // Predicted for another profile, the fix is the host's build command: run as
        // printed, its build is accepted.
        let other = if crate::support::host_info()["profile"]["name"] == "release" {
            "dev"
        } else {
            "release"
        };
        let (_, report) = preflight(&dir, &["--profile", other], &[]);
        let command = report["fixes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "profile")
            .and_then(|f| f["command"].as_str())
            .unwrap_or_else(|| panic!("no profile fix command: {report:#}"))
            .to_owned();
        run_suggested(&dir, &command, &target_arg(&target));
        assert_eq!(check_strict(&lib_in(&target, name)).0, 0);
    }
}

#[test]
fn older_shared_crate_is_predicted_then_fixed() {
    let target = fixtures_target();
    let dir = scaffold("scaffold-old-itoa", "command");
    let host_itoa = crate::support::host_info()["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d.as_str()?.strip_prefix("itoa ").map(str::to_owned))
        .expect("the host links itoa");
    let older = "1.0.10";
    assert_ne!(host_itoa, older);
    let pin = format!("cargo update -p itoa --precise {older}");
    // Offline when cached, else online.
    let offline = Command::new("cargo")
        .args(pin.split(' ').skip(1))
        .arg("--offline")
        .current_dir(&dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .unwrap();
    if !offline.success() {
        run_suggested(&dir, &pin, &[]);
    }

    let predicted = preflight(&dir, &[], &[]);
    assert_eq!(predicted.0, 1, "{:#}", predicted.1);
    assert_eq!(predicted.1["reason"], "dependency-mismatch");
    let deps = predicted.1["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "dependencies")
        .unwrap()
        .clone();
    assert_eq!(deps["plugin"], format!("itoa {older}"));
    assert_eq!(deps["host"], format!("itoa {host_itoa}"));
    let fix = format!("cargo update -p itoa@{older} --precise {host_itoa}");
    assert!(
        predicted.1["fixes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["command"] == fix.as_str()),
        "no `{fix}` in {:#}",
        predicted.1["fixes"]
    );
    // Text output names the crate, both versions and the command.
    let text = cli_in(&dir, &["preflight", "--policy", "strict"], &[]);
    assert_eq!(text.status.code(), Some(1));
    for needle in [&format!("itoa {older}"), &format!("itoa {host_itoa}"), &fix] {
        assert!(
            stdout(&text).contains(needle.as_str()),
            "{needle}: {}",
            stdout(&text)
        );
    }

    run_suggested(&dir, "cargo build", &target_arg(&target));
    let lib = lib_in(&target, "scaffold-old-itoa");
    assert_agree(&predicted, &check_strict(&lib));

    let fixed = preflight(&dir, &["--fix"], &[]);
    assert_eq!(fixed.0, 0, "{:#}", fixed.1);
    assert!(
        fixed.1["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == fix.as_str()),
        "{:#}",
        fixed.1["applied"]
    );
    run_suggested(&dir, "cargo build", &target_arg(&target));
    let checked = check_strict(&lib);
    assert_eq!(checked.0, 0, "{:#}", checked.1);
    assert_agree(&fixed, &checked);
    assert!(
        !fs::read_dir(dir.parent().unwrap()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            // This crate's (other tests scaffold beside it at the same time).
            .starts_with(".scaffold-old-itoa.plugin-host-")),
        "--fix left its scratch copy behind"
    );
}

#[test]
fn another_rustc_is_predicted_and_refused() {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-V"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "\n======== SKIPPED another_rustc_is_predicted_and_refused: `rustup run nightly \
             rustc -V` failed (no nightly toolchain here) ========\n"
        );
        return;
    }
    let dir = scaffold("scaffold-nightly", "command");
    let target = tmp().join("nightly-target");
    run_suggested(&dir, "cargo +nightly build", &target_arg(&target));
    let checked = check_strict(&lib_in(&target, "scaffold-nightly"));
    assert_eq!(checked.0, 1, "{:#}", checked.1);
    assert_eq!(checked.1["reason"], "rustc-mismatch");

    // With the nightly chosen by the environment…
    let by_env = preflight(&dir, &[], &[("RUSTUP_TOOLCHAIN", "nightly")]);
    assert_eq!(by_env.1["reason"], "rustc-mismatch", "{:#}", by_env.1);
    assert_agree(&by_env, &checked);

    // …and by the toolchain file; `--fix` pins the host's compiler again.
    let file = dir.join("rust-toolchain.toml");
    let pinned = fs::read_to_string(&file).unwrap();
    fs::write(&file, "[toolchain]\nchannel = \"nightly\"\n").unwrap();
    let by_file = preflight(&dir, &[], &[]);
    assert_agree(&by_file, &checked);
    let rustc_fix = by_file.1["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "rustc")
        .expect("a rustc fix")
        .clone();
    let command = rustc_fix["command"].as_str().unwrap();
    assert!(command.starts_with("rustup override set "), "{command}");
    // The command, run as printed (against a copy of rustup's settings: an override is
    // machine-wide state), makes the build accepted, and preflight says the override decides.
    let rustup_home = rustup_home_copy();
    let home = rustup_home.path().to_str().unwrap();
    let mut words = command.split_whitespace();
    let ran = Command::new(words.next().unwrap())
        .args(words)
        .current_dir(&dir)
        .env("RUSTUP_HOME", home)
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .unwrap();
    assert!(ran.status.success(), "{command}: {}", stderr(&ran));
    let overridden = preflight(&dir, &[], &[("RUSTUP_HOME", home)]);
    assert_eq!(overridden.0, 0, "{:#}", overridden.1);
    assert_eq!(overridden.1["crate"]["toolchain"]["by"], "override");
    assert_eq!(overridden.1["crate"]["toolchain_file"], Value::Null);
    let fixed = preflight(&dir, &["--fix"], &[]);
    assert_eq!(fixed.0, 0, "{:#}", fixed.1);
    let now = fs::read_to_string(&file).unwrap();
    let channel = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("channel"))
            .map(str::to_owned)
    };
    assert_eq!(channel(&now), channel(&pinned));
}

/// A rustup home of this test's own: rustup's settings copied, its toolchains linked.
fn rustup_home_copy() -> tempfile::TempDir {
    let real = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".rustup"));
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(&real).unwrap() {
        let entry = entry.unwrap();
        let to = copy.path().join(entry.file_name());
        if entry.file_name() == "settings.toml" {
            fs::copy(entry.path(), to).unwrap();
        } else {
            std::os::unix::fs::symlink(entry.path(), to).unwrap();
        }
    }
    copy
}

#[test]
fn bad_input_is_an_error_with_exit_2() {
    let parent = tmp().join("builder-bad");
    let _ = fs::remove_dir_all(&parent);
    fs::create_dir_all(parent.join("occupied")).unwrap();
    fs::write(parent.join("occupied/notes.txt"), "mine").unwrap();

    let out = cli_in(&parent, &["new", "p", "--path", "occupied"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not empty") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert!(!parent.join("occupied/Cargo.toml").exists());
    let scratch_left = fs::read_dir(&parent).unwrap().count();
    assert_eq!(
        scratch_left, 1,
        "a refused `new` left files beside the target"
    );

    // --force replaces files only in real directories: a link planted in the directory (a
    // cloned repository's `src` leading elsewhere) is refused, and nothing is replaced.
    fs::create_dir_all(parent.join("victim")).unwrap();
    fs::write(parent.join("victim/lib.rs"), "precious").unwrap();
    std::os::unix::fs::symlink("../victim", parent.join("occupied/src")).unwrap();
    let out = cli_in(&parent, &["new", "p", "--path", "occupied", "--force"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a symbolic link"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(parent.join("victim/lib.rs")).unwrap(),
        "precious"
    );
    assert!(!parent.join("occupied/Cargo.toml").exists());
    fs::remove_file(parent.join("occupied/src")).unwrap();
    fs::remove_dir_all(parent.join("victim")).unwrap();

    let out = cli_in(&parent, &["new", "2bad"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid plugin name"),
        "{}",
        stderr(&out)
    );

    let out = cli_in(&parent, &["preflight", "occupied"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no Cargo.toml"), "{}", stderr(&out));

    // --force writes the scaffold beside what is there.
    let out = cli_in(&parent, &["new", "p", "--path", "occupied", "--force"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = parent.join("occupied");
    assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
    let (code, _) = preflight(&dir, &[], &[]);
    assert_eq!(code, 0);

    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        manifest.replace("[\"cdylib\", \"rlib\"]", "[\"rlib\"]"),
    )
    .unwrap();
    let out = cli_in(&dir, &["preflight"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a plugin") && stderr(&out).contains("cdylib"),
        "{}",
        stderr(&out)
    );
    fs::write(dir.join("Cargo.toml"), &manifest).unwrap();

    fs::write(dir.join("build.rs"), "fn main() {}\n").unwrap();
    let out = cli_in(&dir, &["preflight", "--fix"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("plugin_api::build::record()"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fix_refuses_a_fifo_in_the_crate_at_once_and_leaves_no_scratch_copy() {
    use std::time::{Duration, Instant};
    let dir = scaffold("scaffold-fifo", "command");
    let pipe = dir.join("src/pipe");
    let c = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();

    // Copying the crate used to open the FIFO and wait for a writer forever: a guard, not a
    // measurement.
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args(["preflight", "--fix"])
        .current_dir(&dir)
        .env("PLUGIN_HOST_LOG", "warn")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("CARGO")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("preflight --fix on a crate with a FIFO did not end in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}: a FIFO, not a regular file", pipe.display()))
            && err.contains("remove it"),
        "{err}"
    );
    assert!(
        !fs::read_dir(dir.parent().unwrap()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".scaffold-fifo.plugin-host-")),
        "--fix left its scratch copy behind"
    );
    assert_eq!(
        fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        manifest
    );
}

/// A program at `path` that appends its name to `marker` and fails.
fn marker_program(path: &Path, marker: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        path,
        format!("#!/bin/sh\necho \"$0\" >> '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn preflight_runs_no_rustc_wrapper_the_crate_configures() {
    let dir = scaffold("scaffold-wrapper", "command");
    let marker = dir.join("wrapper-ran");
    marker_program(&dir.join("wrapper.sh"), &marker);
    fs::create_dir_all(dir.join(".cargo")).unwrap();
    fs::write(
        dir.join(".cargo/config.toml"),
        format!(
            "[build]\nrustc-wrapper = \"{}\"\n",
            dir.join("wrapper.sh").display()
        ),
    )
    .unwrap();
    let (code, report) = preflight(&dir, &[], &[]);
    assert_eq!(code, 0, "{report:#}");
    let out = cli_in(&dir, &["preflight", "--fix"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("a build would be accepted"),
        "{}",
        stdout(&out)
    );
    assert!(
        !marker.exists(),
        "preflight ran the crate's rustc-wrapper: {}",
        fs::read_to_string(&marker).unwrap_or_default()
    );
}

#[test]
fn preflight_refuses_a_toolchain_named_by_path_without_running_it() {
    let dir = scaffold("scaffold-path-toolchain", "command");
    let file = dir.join("rust-toolchain.toml");
    let pinned = fs::read_to_string(&file).unwrap();
    let channel = pinned
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let marker = dir.join("toolchain-ran");
    let toolchain = dir.join("own-toolchain");
    for program in ["cargo", "rustc"] {
        marker_program(&toolchain.join("bin").join(program), &marker);
    }
    fs::write(
        &file,
        format!("[toolchain]\npath = \"{}\"\n", toolchain.display()),
    )
    .unwrap();
    for args in [&["preflight"][..], &["preflight", "--fix"]] {
        let out = cli_in(&dir, args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let message = stderr(&out);
        for needle in [
            "rust-toolchain.toml names its toolchain by path",
            "preflight runs no program a crate names",
            "RUSTUP_TOOLCHAIN=NAME",
        ] {
            assert!(message.contains(needle), "{args:?} {needle}: {message}");
        }
    }
    assert!(
        !marker.exists(),
        "preflight ran the crate's toolchain: {}",
        fs::read_to_string(&marker).unwrap_or_default()
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("[toolchain]\npath = \"{}\"\n", toolchain.display()),
        "--fix changed a crate it refused"
    );
    // The way out the message names: a toolchain chosen for the run decides over the file.
    let out = cli_in(&dir, &["preflight"], &[("RUSTUP_TOOLCHAIN", &channel)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("toolchain from RUSTUP_TOOLCHAIN={channel}")),
        "{}",
        stdout(&out)
    );
    assert!(!marker.exists());
}

#[test]
fn fix_reports_only_real_changes_and_names_what_decides_the_toolchain() {
    let dir = scaffold("scaffold-decides", "command");
    // The file decides: the header names it.
    let out = cli_in(&dir, &["preflight"], &[]);
    let header = stdout(&out);
    assert!(
        header.contains(&format!(
            "toolchain from {}",
            dir.join("rust-toolchain.toml").display()
        )),
        "{header}"
    );
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-V"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "\n======== SKIPPED the RUSTUP_TOOLCHAIN half of \
             fix_reports_only_real_changes_and_names_what_decides_the_toolchain: no nightly \
             toolchain here ========\n"
        );
        return;
    }
    let before = fs::read_to_string(dir.join("rust-toolchain.toml")).unwrap();
    let env = [("RUSTUP_TOOLCHAIN", "nightly")];
    let out = cli_in(&dir, &["preflight", "--fix", "--policy", "strict"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("toolchain from RUSTUP_TOOLCHAIN=nightly)"),
        "{text}"
    );
    assert!(!text.contains("fixed: rust-toolchain.toml"), "{text}");
    assert!(
        text.contains("NOT aligned [rustc]")
            && text.contains("RUSTUP_TOOLCHAIN=nightly decides the toolchain here")
            && text.contains("unset RUSTUP_TOOLCHAIN"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("rust-toolchain.toml")).unwrap(),
        before
    );
}

/// The (name, version, source) of every `[[package]]` of a Cargo.lock.
pub(crate) fn locked(lock: &Path) -> Vec<(String, String, Option<String>)> {
    let text = fs::read_to_string(lock).unwrap();
    let mut out = Vec::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(&format!("{key} = \""))
                    .map(|v| v.trim_end_matches('"').to_owned())
            })
        };
        out.push((
            field("name").unwrap(),
            field("version").unwrap(),
            field("source"),
        ));
    }
    out
}

/// The registry crates of the lock in `dir` that the host's Cargo.lock (so the builder
/// image) does not have at that version, as `name version`.
pub(crate) fn off_the_hosts_lock(dir: &Path) -> Vec<String> {
    let host = locked(&crate::fixtures::root().join("Cargo.lock"));
    locked(&dir.join("Cargo.lock"))
        .into_iter()
        .filter(|(name, version, source)| {
            source.is_some() && !host.iter().any(|(n, v, _)| n == name && v == version)
        })
        .map(|(name, version, _)| format!("{name} {version}"))
        .collect()
}

/// Moves the newest `syn` of the lock in `dir` (a proc-macro crate: linked into no plugin,
/// so `check` does not see it, but the builder image holds only the host's version) to its
/// newest release, fetched; returns (host's version, new version).
pub(crate) fn move_syn_off_the_hosts_version(dir: &Path) -> (String, String) {
    let newest = |dir: &Path| {
        locked(&dir.join("Cargo.lock"))
            .into_iter()
            .filter(|(n, _, _)| n == "syn")
            .map(|(_, v, _)| v)
            .max_by_key(|v| {
                v.split('.')
                    .map(|p| p.parse::<u64>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .expect("syn in the lock")
    };
    let host = newest(dir);
    run_suggested(dir, &format!("cargo update -p syn@{host}"), &[]);
    run_suggested(dir, "cargo fetch", &[]);
    let moved = newest(dir);
    assert_ne!(
        moved, host,
        "no release of syn newer than the host's {host} to test with"
    );
    (host, moved)
}

#[test]
fn new_starts_from_the_hosts_lock_and_preflight_predicts_and_fixes_the_image() {
    let dir = scaffold("scaffold-image-a", "command");
    assert_eq!(off_the_hosts_lock(&dir), Vec::<String>::new());
    // A newer syn in cargo's cache: a lock resolved anew (not from the host's) would take it.
    let (host_syn, newer) = move_syn_off_the_hosts_version(&dir);
    let fresh = scaffold("scaffold-image-b", "command");
    assert_eq!(
        off_the_hosts_lock(&fresh),
        Vec::<String>::new(),
        "`new` left crates off the host's lock"
    );

    // The moved crate is linked into no plugin: `check` would accept the build, but the
    // builder image does not hold it.
    let command = format!("cargo update -p syn@{newer} --precise {host_syn}");
    let (code, report) = preflight(&dir, &[], &[]);
    assert_eq!(code, 0, "{report:#}");
    let missing = &report["builder_image"]["missing"];
    assert_eq!(missing[0]["name"], "syn", "{report:#}");
    assert_eq!(missing[0]["version"], newer.as_str());
    assert_eq!(missing[0]["command"], command.as_str());
    let text = stdout(&cli_in(&dir, &["preflight", "--policy", "strict"], &[]));
    for needle in [
        "builder image: a build there would fail",
        &format!("syn {newer}"),
        &command,
        "a build in the builder image would fail",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    // The printed command, run as printed, repairs it…
    run_suggested(&dir, &command, &[]);
    let (_, report) = preflight(&dir, &[], &[]);
    assert_eq!(report["builder_image"]["missing"], serde_json::json!([]));
    assert_eq!(off_the_hosts_lock(&dir), Vec::<String>::new());

    // …and so does --fix.
    move_syn_off_the_hosts_version(&dir);
    let (code, fixed) = preflight(&dir, &["--fix"], &[]);
    assert_eq!(code, 0, "{fixed:#}");
    assert!(
        fixed["applied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == command.as_str()),
        "{:#}",
        fixed["applied"]
    );
    assert_eq!(fixed["builder_image"]["missing"], serde_json::json!([]));
    assert_eq!(off_the_hosts_lock(&dir), Vec::<String>::new());
}
