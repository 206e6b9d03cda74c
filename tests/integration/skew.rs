//! Really skewed builds and rewritten provenance, judged under both presets.

use std::path::Path;
use std::process::Command;

use crate::fixtures::{
    cargo, fixtures, fixtures_target, root, run_suggested, scratch_workspace, tmp,
};
use crate::support::*;

#[test]
fn plugin_api_of_another_major_is_refused() {
    let dir = plugin_dir(&["api-two"]);
    for policy in ["default", "strict"] {
        let scan = scan_json(dir.path(), &["--policy", policy]);
        let e = entry(&scan, &file_name("api-two"));
        assert_outcome(
            e,
            "rejected",
            "api-incompatible",
            &["plugin-api 2.0.0", "plugin-api 0.1.0", "rebuild"],
        );
        assert_eq!(check(e, "plugin-api")["plugin"], "2.0.0");
        assert_eq!(check(e, "plugin-api")["host"], plugin_api::API_VERSION);
    }
}

#[test]
fn panic_abort_plugin_warns_by_default_and_fails_strict() {
    let dir = plugin_dir(&["abortive"]);
    let scan = scan_json(dir.path(), &[]);
    let e = entry(&scan, &file_name("abortive"));
    assert_eq!(e["status"], "loaded", "{e:#}");
    let c = check(e, "panic-strategy");
    assert_eq!(
        (
            c["status"].as_str(),
            c["host"].as_str(),
            c["plugin"].as_str()
        ),
        (Some("warn"), Some("unwind"), Some("abort"))
    );

    let scan = scan_json(dir.path(), &["--policy", "strict"]);
    let e = entry(&scan, &file_name("abortive"));
    assert_outcome(
        e,
        "rejected",
        "panic-strategy-mismatch",
        &[
            "panic = \"abort\"",
            "panic = \"unwind\"",
            "--policy default",
        ],
    );
}

#[test]
fn other_version_of_a_shared_crate() {
    let dir = plugin_dir(&["old-semver"]);
    let scan = scan_json(dir.path(), &["--policy", "strict", "--no-load"]);
    let e = entry(&scan, &file_name("old-semver"));
    let host_semver = host_info()["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str()?.strip_prefix("semver "))
        .map(str::to_owned)
        .next()
        .expect("the host links semver");
    let host_side = format!("semver {host_semver}");
    assert_outcome(
        e,
        "rejected",
        "dependency-mismatch",
        &["semver 1.0.20", &host_side],
    );

    let scan = scan_json(dir.path(), &[]);
    let e = entry(&scan, &file_name("old-semver"));
    assert_eq!(e["status"], "loaded");
    let c = check(e, "dependencies");
    assert_eq!(c["status"], "warn");
    assert_eq!(c["plugin"], "semver 1.0.20");
    assert_eq!(c["host"], host_side.as_str());
}

#[test]
fn rewritten_rustc_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_into(&dir, "hello", "libhello-other-rustc.so");
    rewrite_provenance(&path, |p| {
        p["rustc"]["commit_hash"] = "1111111111111111111111111111111111111111".into()
    });
    let host_rustc = host_info()["rustc"].clone();
    let host_short = format!("({})", &host_rustc["commit_hash"].as_str().unwrap()[..9]);

    let scan = scan_json(dir.path(), &["--policy", "strict"]);
    let e = entry(&scan, "libhello-other-rustc.so");
    assert_outcome(
        e,
        "rejected",
        "rustc-mismatch",
        &["(111111111)", &host_short, "or use --policy default"],
    );

    let scan = scan_json(dir.path(), &[]);
    let e = entry(&scan, "libhello-other-rustc.so");
    assert_eq!(
        e["status"], "loaded",
        "another rustc only warns by default: {e:#}"
    );
    assert_eq!(check(e, "rustc")["status"], "warn");
}

#[test]
fn rewritten_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_into(&dir, "hello", "libhello-i686.so");
    rewrite_provenance(&path, |p| p["target"] = "i686-unknown-linux-gnu".into());
    let host_target = host_info()["target"].as_str().unwrap().to_owned();
    for policy in ["default", "strict"] {
        let scan = scan_json(dir.path(), &["--policy", policy]);
        let e = entry(&scan, "libhello-i686.so");
        assert_outcome(
            e,
            "rejected",
            "target-mismatch",
            &["i686-unknown-linux-gnu", &host_target],
        );
    }
    // `check` agrees, with its exit code.
    let out = cli(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("error[target-mismatch]"),
        "{}",
        stdout(&out)
    );
    let ok = cli(&["check", fixtures().lib("hello").to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let missing = cli(&["check", "/no/such/plugin.so"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn no_code_runs_before_verification() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("loaded");

    // Rejected by provenance: the constructor never runs.
    let dir = tempfile::tempdir().unwrap();
    let path = copy_into(&dir, "ctor-marker", "libctor_marker.so");
    rewrite_provenance(&path, |p| p["target"] = "i686-unknown-linux-gnu".into());
    let out = cli_with(
        &["scan", dir.path().to_str().unwrap(), "--json"],
        &[("PLUGIN_HOST_TEST_MARKER", &marker)],
        None,
    );
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_outcome(
        entry(&scan, "libctor_marker.so"),
        "rejected",
        "target-mismatch",
        &[],
    );
    assert!(!marker.exists(), "a rejected plugin's constructor ran");

    // A --no-load scan of a compatible plugin runs nothing either.
    let good = plugin_dir(&["ctor-marker"]);
    let out = cli_with(
        &["scan", "--no-load", good.path().to_str().unwrap()],
        &[("PLUGIN_HOST_TEST_MARKER", &marker)],
        None,
    );
    assert!(out.status.success());
    assert!(!marker.exists(), "--no-load ran plugin code");

    // Control: the same plugin, accepted and loaded, does write the marker.
    let out = cli_with(
        &["scan", good.path().to_str().unwrap()],
        &[("PLUGIN_HOST_TEST_MARKER", &marker)],
        None,
    );
    assert!(out.status.success());
    assert!(
        marker.exists(),
        "the constructor should run once the plugin is loaded"
    );
}

/// The verdict on the library at `lib` under `policy`, read without loading it (a `--no-load`
/// scan of a directory holding a copy).
fn verdict(lib: &Path, policy: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let name = lib.file_name().unwrap().to_str().unwrap();
    std::fs::copy(lib, dir.path().join(name)).unwrap();
    let scan = scan_json(dir.path(), &["--policy", policy, "--no-load"]);
    entry(&scan, name).clone()
}

/// The text between `start` (included) and the next backquote in `message`.
fn quoted<'a>(message: &'a str, start: &str) -> &'a str {
    let at = message
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}…` in: {message}"));
    let rest = &message[at..];
    &rest[..rest.find('`').unwrap()]
}

/// Points every `plugin-api` dependency in `manifest` (a plugin crate as `plugin_crate` writes
/// it) at `line`'s source, as the fix says: `plugin-api = { … }` for [dependencies], the same
/// source with the build feature for [build-dependencies].
fn repoint_plugin_api(manifest: &Path, line: &str) {
    let table = line
        .strip_prefix("plugin-api = ")
        .unwrap_or_else(|| panic!("not a plugin-api line: {line}"));
    let inner = table
        .strip_prefix("{ ")
        .and_then(|t| t.strip_suffix(" }"))
        .unwrap_or_else(|| panic!("not an inline table: {table}"));
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut out = String::new();
    let mut build = false;
    for l in text.lines() {
        if l.starts_with('[') {
            build = l == "[build-dependencies]";
        }
        if l.starts_with("plugin-api = ") {
            if build {
                out.push_str(&format!(
                    "plugin-api = {{ {inner}, default-features = false, features = [\"build\"] }}"
                ));
            } else {
                out.push_str(line);
            }
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    std::fs::write(manifest, out).unwrap();
}

#[test]
fn api_fix_rebuilds_against_the_hosts_plugin_api() {
    fixtures();
    let ws = tmp().join("ws-fix-api");
    scratch_workspace(&ws, "fix-api", Some("2.0.0"));
    let target = fixtures_target();
    let target = target.to_str().unwrap();
    cargo(&ws, &["build", "-p", "fix-api", "--target-dir", target]);
    let lib = fixtures().lib("fix-api");
    let e = verdict(&lib, "strict");
    assert_outcome(&e, "rejected", "api-incompatible", &["plugin-api 2.0.0"]);
    let message = e["message"].as_str().unwrap();
    assert!(
        !message.contains("plugin-api = \"0."),
        "crates.io has no plugin-api: {message}"
    );

    repoint_plugin_api(
        &ws.join("fix-api/Cargo.toml"),
        quoted(message, "plugin-api = "),
    );
    cargo(&ws, &["build", "-p", "fix-api", "--target-dir", target]);
    let e = verdict(&lib, "strict");
    assert_eq!(e["status"], "verified", "{e:#}");
}

#[test]
fn changed_copy_of_a_shared_crate_is_named_and_fixed() {
    fixtures();
    let ws = tmp().join("ws-fix-content");
    scratch_workspace(&ws, "fix-content", Some("0.1.0"));
    let target = fixtures_target();
    let target = target.to_str().unwrap();
    let build = || cargo(&ws, &["build", "-p", "fix-content", "--target-dir", target]);

    // An unchanged copy elsewhere on disk is the same crate.
    build();
    let lib = fixtures().lib("fix-content");
    let e = verdict(&lib, "strict");
    assert_eq!(e["status"], "verified", "{e:#}");

    // The same version with other contents is not.
    let lib_rs = ws.with_extension("api").join("plugin-api/src/lib.rs");
    let mut source = std::fs::read_to_string(&lib_rs).unwrap();
    source.push_str("\n/// A change the host's copy does not have.\npub const CHANGED: u32 = 1;\n");
    std::fs::write(&lib_rs, source).unwrap();
    build();
    let e = verdict(&lib, "strict");
    assert_outcome(
        &e,
        "rejected",
        "dependency-mismatch",
        &["plugin-api 0.1.0 (content differs from the host's copy)"],
    );
    let c = check(&e, "dependencies");
    assert_eq!(
        c["plugin"],
        "plugin-api 0.1.0 (content differs from the host's copy)"
    );
    let message = e["message"].as_str().unwrap();
    assert!(!message.contains("cargo update"), "{message}");
    let line = quoted(message, "plugin-api = ");
    let host_copy = root().join("plugin-api");
    assert_eq!(
        line,
        format!("plugin-api = {{ path = \"{}\" }}", host_copy.display())
    );

    repoint_plugin_api(&ws.join("fix-content/Cargo.toml"), line);
    build();
    let e = verdict(&lib, "strict");
    assert_eq!(e["status"], "verified", "{e:#}");
}

#[test]
fn plugin_built_by_another_compiler_is_fixed_by_the_suggested_command() {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-V"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "\n======== SKIPPED plugin_built_by_another_compiler_is_fixed_by_the_suggested_command: \
             `rustup run nightly rustc -V` failed (no nightly toolchain here) ========\n"
        );
        return;
    }
    fixtures();
    let ws = tmp().join("ws-fix-rustc");
    scratch_workspace(&ws, "fix-rustc", None);
    let nightly_target = tmp().join("nightly-target");
    run_suggested(
        &ws,
        "cargo +nightly build",
        &["--target-dir", nightly_target.to_str().unwrap()],
    );
    let built = nightly_target.join("debug").join(file_name_of("fix-rustc"));
    let e = verdict(&built, "strict");
    assert_outcome(&e, "rejected", "rustc-mismatch", &["nightly"]);
    let message = e["message"].as_str().unwrap();
    let command = quoted(message, "cargo +");

    let target = fixtures_target();
    run_suggested(&ws, command, &["--target-dir", target.to_str().unwrap()]);
    let e = verdict(&fixtures().lib("fix-rustc"), "strict");
    assert_eq!(e["status"], "verified", "after `{command}`: {e:#}");
}

/// The file name of crate `name`'s library.
fn file_name_of(name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

#[test]
fn unsorted_dependency_list_counts_each_shared_crate_once() {
    let shared = |e: &serde_json::Value| {
        let plugin = check(e, "dependencies")["plugin"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, rest) = plugin.split_once(", ").unwrap();
        rest.split_once(" shared").unwrap().0.to_owned()
    };
    let original = verdict(&fixtures().lib("hello"), "strict");

    // A hand-written record need not be sorted: reversed, with a crate listed twice, apart.
    let dir = tempfile::tempdir().unwrap();
    let path = copy_into(&dir, "hello", "libhello-unsorted.so");
    let mut json = provenance_json("hello");
    let deps = json["dependencies"].as_array_mut().unwrap();
    deps.reverse();
    let again = deps[0].clone();
    deps.push(again);
    relocate_provenance(&path, &framed(&serde_json::to_vec(&json).unwrap()));

    let e = verdict(&path, "strict");
    assert_eq!(e["status"], "verified", "{e:#}");
    assert_eq!(shared(&e), shared(&original), "{e:#}");
}

#[test]
fn strict_lists_every_failed_check_and_json_keeps_every_message() {
    // Built with panic = "abort" and (rewritten) by another rustc commit: two checks fail
    // under strict, and the table names both, so one rebuild can fix both.
    let dir = plugin_dir(&["abortive"]);
    let path = dir.path().join(file_name("abortive"));
    rewrite_provenance(&path, |j| j["rustc"]["commit_hash"] = "0".repeat(40).into());
    let out = cli(&["scan", dir.path().to_str().unwrap(), "--policy", "strict"]);
    let text = stdout(&out);
    assert!(
        text.contains("error[rustc-mismatch]") && text.contains("error[panic-strategy-mismatch]"),
        "{text}"
    );
    let scan = scan_json(dir.path(), &["--policy", "strict"]);
    let e = entry(&scan, &file_name("abortive"));
    assert_eq!(
        e["reason"], "rustc-mismatch",
        "the first failure is the reason"
    );
    for c in e["checks"].as_array().unwrap() {
        assert!(c["message"].is_string(), "every check has a message: {c:#}");
    }
    assert_eq!(check(e, "target")["message"], "");
}
