//! Skewed plugins that still run: a plugin built by nightly, refused in-process under
//! `strict`, runs isolated in a worker built with nightly (`--worker`), and only there; a
//! reload keeps it in a worker of its toolchain.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use abi_stable::std_types::{RSlice, RStr};
use host::{Host, Policy, ScanMode, Status};
use plugin_api::CommandKind;

use crate::fixtures::{root, run_suggested, scratch_workspace, tmp};
use crate::support::*;

/// The nightly worker and a plugin directory holding the nightly-built `skewed` plugin, built
/// once; `None` (after printing why) when no nightly toolchain is installed.
fn nightly_build() -> Option<&'static (PathBuf, PathBuf)> {
    static BUILT: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let nightly = Command::new("rustup")
                .args(["run", "nightly", "rustc", "-V"])
                .output();
            if !nightly.is_ok_and(|o| o.status.success()) {
                return None;
            }
            // The existing nightly test's target directory: the compiled dependencies are
            // shared.
            let target = tmp().join("nightly-target");
            // The worker, through the command a user runs (the source is found from the
            // CLI's own provenance).
            let workers = tmp().join("skew-workers");
            let out = cli(&[
                "builder",
                "worker",
                "--toolchain",
                "nightly",
                "--out",
                workers.to_str().unwrap(),
                "--target-dir",
                target.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "builder worker: {}", stderr(&out));
            let worker = PathBuf::from(stdout(&out).trim());
            assert!(
                worker.starts_with(&workers) && worker.is_file(),
                "builder worker printed {worker:?}"
            );
            let name = worker.file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with("plugin-host-worker-nightly-"), "{name}");

            // The plugin, as the existing nightly test builds one.
            let ws = tmp().join("ws-skewed");
            scratch_workspace(&ws, "skewed", None);
            run_suggested(
                &ws,
                "cargo +nightly build",
                &["--target-dir", target.to_str().unwrap()],
            );
            let lib = lib_name();
            let plugins = tmp().join("skewed-plugins");
            let _ = std::fs::remove_dir_all(&plugins);
            std::fs::create_dir_all(&plugins).unwrap();
            std::fs::copy(target.join("debug").join(&lib), plugins.join(&lib)).unwrap();
            Some((worker, plugins))
        })
        .as_ref()
}

/// Runs the `plugin-host builder worker …` command `message` prints, as printed but for its
/// `DIR` (a directory here) and the build directory shared with [`nightly_build`] (so that
/// the worker is not compiled twice); asserts that it writes the worker `file` the message
/// names for `--worker DIR/…`.
fn run_printed_worker_command(message: &str, file: &str) {
    let start = message
        .find("`plugin-host builder worker ")
        .unwrap_or_else(|| panic!("no worker command in: {message}"));
    let command = &message[start + 1..];
    let command = &command[..command.find('`').unwrap()];
    let out_dir = tempfile::tempdir().unwrap();
    let target = tmp().join("nightly-target");
    let mut args: Vec<&str> = command
        .split_whitespace()
        .skip(1)
        .map(|w| {
            if w == "DIR" {
                out_dir.path().to_str().unwrap()
            } else {
                w
            }
        })
        .collect();
    args.extend(["--target-dir", target.to_str().unwrap()]);
    let out = cli(&args);
    assert!(out.status.success(), "`{command}` failed: {}", stderr(&out));
    let built = PathBuf::from(stdout(&out).trim());
    assert_eq!(built, out_dir.path().join(file), "`{command}`");
    assert!(built.is_file());
}

fn skip(test: &str) {
    eprintln!(
        "\n======== SKIPPED {test}: `rustup run nightly rustc -V` failed (no nightly toolchain \
         here) ========\n"
    );
}

fn lib_name() -> String {
    format!(
        "{}skewed{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

#[test]
fn nightly_plugin_runs_isolated_in_a_nightly_worker() {
    let Some((worker, plugins)) = nightly_build() else {
        return skip("nightly_plugin_runs_isolated_in_a_nightly_worker");
    };
    let worker_arg = worker.to_str().unwrap();
    // In-process, under strict: refused, with how to build a worker that would run it.
    let scan = scan_json(plugins, &["--policy", "strict"]);
    let e = entry(&scan, &lib_name());
    let expected_worker = worker.file_name().unwrap().to_str().unwrap();
    assert_outcome(
        e,
        "rejected",
        "rustc-mismatch",
        &[
            "nightly",
            "`plugin-host builder worker --toolchain ",
            &format!("--worker DIR/{expected_worker}"),
        ],
    );
    assert!(e["worker"].is_null(), "{e:#}");
    let message = e["message"].as_str().unwrap();
    // The toolchain is the installed one that holds the plugin's compiler (not a name guessed
    // from its date), so the printed command runs as printed.
    assert!(!message.contains("no installed toolchain has"), "{message}");
    run_printed_worker_command(message, expected_worker);

    // With the nightly worker: loaded, isolated, and the report says where and why.
    let scan = scan_json(plugins, &["--policy", "strict", "--worker", worker_arg]);
    let e = entry(&scan, &lib_name());
    assert_eq!(e["status"], "loaded", "{e:#}");
    assert_eq!(e["isolated"], true, "{e:#}");
    assert_eq!(e["worker"]["path"], worker_arg, "{e:#}");
    assert!(
        e["worker"]["why"]
            .as_str()
            .unwrap()
            .contains("built by another rustc than the host"),
        "{e:#}"
    );
    assert_eq!(
        check(e, "rustc")["status"],
        "pass",
        "judged against the worker: {e:#}"
    );
    let text = stdout(&cli(&[
        "scan",
        plugins.to_str().unwrap(),
        "--policy",
        "strict",
        "--worker",
        worker_arg,
    ]));
    assert!(
        text.contains(&format!("note: runs in worker {worker_arg} (rustc "))
            && text.contains("[isolated]"),
        "{text}"
    );

    // And its command serves calls there.
    let out = cli(&[
        "run",
        "--plugins",
        plugins.to_str().unwrap(),
        "--policy",
        "strict",
        "--worker",
        worker_arg,
        "skewed-command",
    ]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "skewed", "stderr: {}", stderr(&out));
}

#[test]
fn a_worker_of_another_toolchain_is_not_chosen() {
    let Some((nightly_worker, plugins)) = nightly_build() else {
        return skip("a_worker_of_another_toolchain_is_not_chosen");
    };
    // The CLI under test was built by the host's own (stable) compiler: a real worker, but
    // not of the plugin's toolchain.
    let stable_worker = Path::new(env!("CARGO_BIN_EXE_plugin-host"));
    let stable = stable_worker.to_str().unwrap();
    let scan = scan_json(plugins, &["--policy", "strict", "--worker", stable]);
    let e = entry(&scan, &lib_name());
    assert_outcome(
        e,
        "rejected",
        "rustc-mismatch",
        &["no registered worker fits", stable, "[rustc-mismatch]"],
    );
    let out = cli(&[
        "run",
        "--plugins",
        plugins.to_str().unwrap(),
        "--policy",
        "strict",
        "--worker",
        stable,
        "skewed-command",
    ]);
    assert!(
        !out.status.success(),
        "ran in the wrong worker: {}",
        stdout(&out)
    );

    // Among several, the one that fits is chosen, whatever the order.
    let nightly = nightly_worker.to_str().unwrap();
    let scan = scan_json(
        plugins,
        &[
            "--policy", "strict", "--worker", stable, "--worker", nightly,
        ],
    );
    let e = entry(&scan, &lib_name());
    assert_eq!(e["status"], "loaded", "{e:#}");
    assert_eq!(e["worker"]["path"], nightly, "{e:#}");

    // A file that is not a worker (no provenance note) is never chosen, and the refusal says
    // why.
    let not_a_worker = root().join("Cargo.toml");
    let scan = scan_json(
        plugins,
        &[
            "--policy",
            "strict",
            "--worker",
            not_a_worker.to_str().unwrap(),
        ],
    );
    let e = entry(&scan, &lib_name());
    assert_outcome(e, "rejected", "rustc-mismatch", &["unreadable"]);
}

#[test]
fn the_worker_reader_accepts_executables_only_for_workers() {
    let exe = Path::new(env!("CARGO_BIN_EXE_plugin-host"));
    let p = host::read_worker_provenance(exe).expect("the CLI carries its provenance note");
    assert_eq!(p.name, "plugin-host");
    // A plugin reader still refuses it.
    let e = host::read_provenance(exe).unwrap_err();
    assert_eq!(e.reason(), host::ReasonCode::NotALibrary, "{e}");
}

/// The executable process `pid` runs, as the kernel names it.
fn exe_of(pid: u32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// The plugin's worker: its pid and the executable it runs.
fn worker_of(host: &Host, plugin: &str) -> (u32, PathBuf) {
    let state = plugin_isolate::isolated(host)
        .into_iter()
        .find(|p| p.name == plugin)
        .unwrap_or_else(|| panic!("`{plugin}` is not isolated"));
    let pid = state.pid.expect("a worker runs");
    (pid, exe_of(pid))
}

fn call(host: &Host, command: &str) -> String {
    let cmd = host.registry().get::<CommandKind>(command).unwrap();
    let args = [RStr::from("Ada")];
    cmd.call(RSlice::from_slice(&args))
        .into_result()
        .unwrap_or_else(|e| panic!("{command}: {e}"))
        .into()
}

fn strict() -> Policy {
    Policy::preset("strict").unwrap()
}

#[test]
fn a_reloaded_nightly_plugin_stays_in_its_nightly_worker_and_serves() {
    let Some((worker, plugins)) = nightly_build() else {
        return skip("a_reloaded_nightly_plugin_stays_in_its_nightly_worker_and_serves");
    };
    // A directory of its own: the test installs a "new build" over the plugin.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(lib_name());
    fs::copy(plugins.join(lib_name()), &file).unwrap();
    let mut host = builder()
        .policy(strict())
        .placement(plugin_isolate::Isolation::new().worker(worker))
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let r = reports
        .iter()
        .find(|r| r.name.as_deref() == Some("skewed"))
        .unwrap_or_else(|| panic!("{reports:#?}"));
    assert_eq!(r.status, Status::Loaded, "{r:#?}");
    assert_eq!(r.worker.as_ref().map(|w| &w.path), Some(worker), "{r:#?}");
    let handle = host
        .registry()
        .get::<CommandKind>("skewed-command")
        .unwrap();
    assert_eq!(call(&host, "skewed-command"), "skewed");
    let nightly = worker.canonicalize().unwrap();
    let (first, exe) = worker_of(&host, "skewed");
    assert_eq!(exe, nightly);

    // A new build installed at the path (the same nightly build, a new file), then reloads.
    let staging = dir.path().join("staging");
    fs::copy(&file, &staging).unwrap();
    fs::rename(&staging, &file).unwrap();
    let mut pids = vec![first];
    for i in 0..2 {
        let report = host
            .reload("skewed")
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
        assert_eq!(report.status, Status::Loaded, "{report:#?}");
        assert!(report.isolated, "{report:#?}");
        assert_eq!(
            report.worker.as_ref().map(|w| &w.path),
            Some(worker),
            "{report:#?}"
        );
        let (pid, exe) = worker_of(&host, "skewed");
        assert!(!pids.contains(&pid), "reload {i} started no new worker");
        assert_eq!(exe, nightly, "reload {i} left the nightly worker");
        pids.push(pid);
        // Served by the new worker, through the handle taken before the reloads too.
        assert_eq!(call(&host, "skewed-command"), "skewed");
        let args = [RStr::from("Ada")];
        assert_eq!(
            handle.call(RSlice::from_slice(&args)).unwrap().as_str(),
            "skewed"
        );
    }
    assert_eq!(plugin_isolate::isolated(&host)[0].consecutive_failures, 0);
}

/// Two copies of the CLI claiming compiler commits `a` and `b`: workers of two "other"
/// toolchains, without installing any.
fn claimed_workers(dir: &Path, a: &str, b: &str) -> (PathBuf, PathBuf) {
    let cli = Path::new(env!("CARGO_BIN_EXE_plugin-host"));
    let out = |name: &str, commit: &str| {
        let path = dir.join(name);
        fs::copy(cli, &path).unwrap();
        claim_rustc_commit(&path, commit);
        path
    };
    (out("worker-a", a), out("worker-b", b))
}

/// `hello`, claiming compiler commit `commit`, installed at `dest` by a rename.
fn install_hello_claiming(dest: &Path, commit: Option<&str>) {
    let staging = dest.with_extension("new");
    fs::copy(crate::fixtures::fixtures().lib("hello"), &staging).unwrap();
    if let Some(commit) = commit {
        claim_rustc_commit(&staging, commit);
    }
    fs::rename(&staging, dest).unwrap();
}

#[test]
fn a_reload_runs_the_new_file_in_the_worker_that_fits_it() {
    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let dir = tempfile::tempdir().unwrap();
    let (worker_a, worker_b) = claimed_workers(dir.path(), A, B);
    let plugins = dir.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let file = plugins.join(file_name("hello"));
    install_hello_claiming(&file, Some(A));
    let isolation = plugin_isolate::Isolation::new()
        .worker_command(env!("CARGO_BIN_EXE_plugin-host"), ["__worker"])
        .worker(&worker_a)
        .worker(&worker_b);
    let mut host = builder().policy(strict()).placement(isolation).build();
    let reports = host.scan(&[&plugins], ScanMode::Load).unwrap();
    let r = reports
        .iter()
        .find(|r| r.name.as_deref() == Some("hello"))
        .unwrap_or_else(|| panic!("{reports:#?}"));
    assert_eq!(r.status, Status::Loaded, "{r:#?}");
    assert_eq!(
        worker_of(&host, "hello").1,
        worker_a.canonicalize().unwrap()
    );
    assert!(call(&host, "hello").starts_with("hello, Ada!"));

    // A new build by the other compiler: reloaded, it runs in the worker of that compiler.
    install_hello_claiming(&file, Some(B));
    let report = host.reload("hello").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.worker.as_ref().map(|w| &w.path),
        Some(&worker_b),
        "{report:#?}"
    );
    assert_eq!(
        worker_of(&host, "hello").1,
        worker_b.canonicalize().unwrap()
    );
    assert!(call(&host, "hello").starts_with("hello, Ada!"));

    // A new build by the host's own compiler: it still runs isolated (a reload never moves
    // a plugin into the host), in the host's worker.
    install_hello_claiming(&file, None);
    let report = host.reload("hello").unwrap_or_else(|e| panic!("{e}"));
    assert!(report.worker.is_none(), "{report:#?}");
    assert_eq!(
        worker_of(&host, "hello").1,
        Path::new(env!("CARGO_BIN_EXE_plugin-host"))
            .canonicalize()
            .unwrap()
    );
    assert!(call(&host, "hello").starts_with("hello, Ada!"));
}

#[test]
fn the_worker_hint_says_what_to_install_when_no_toolchain_holds_the_compiler() {
    let dir = plugin_dir(&["hello"]);
    let path = dir.path().join(file_name("hello"));
    rewrite_provenance(&path, |p| {
        p["rustc"]["release"] = "1.97.0-nightly".into();
        p["rustc"]["channel"] = "nightly".into();
        // Shorter than a real hash: the rewritten provenance must fit where the old one was.
        p["rustc"]["commit_hash"] = "0123456789abcdef0123456789ab".into();
        p["rustc"]["commit_date"] = "2026-05-19".into();
    });
    let scan = scan_json(dir.path(), &["--policy", "strict"]);
    let e = entry(&scan, &file_name("hello"));
    assert_outcome(
        e,
        "rejected",
        "rustc-mismatch",
        &[
            "`plugin-host builder worker --toolchain nightly-2026-05-20 --out DIR` (no installed \
             toolchain has rustc 1.97.0-nightly (012345678): install it first, `rustup \
             toolchain install nightly-2026-05-20`",
            "`rustc +nightly-2026-05-20 -vV` must show commit-hash 0123456789abcdef0123456789ab",
        ],
    );
}
