//! Skewed plugins that still run: a plugin built by nightly, refused in-process under
//! `strict`, runs isolated in a worker built with nightly (`--worker`), and only there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
            "plugin-host builder worker --toolchain nightly-",
            &format!("--worker DIR/{expected_worker}"),
        ],
    );
    assert!(e["worker"].is_null(), "{e:#}");

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
