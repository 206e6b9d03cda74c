//! Really skewed builds and rewritten provenance, judged under both presets.

use crate::fixtures::fixtures;
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
