//! What a plugin file or plugin code says is untrusted: huge or hostile names, control
//! characters, bytes that are not UTF-8, absurd capability lists. The safe commands never
//! panic on them, never print them raw, and refuse them with a reason code.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::fixtures::fixtures;
use crate::support::*;

/// A copy of `hello` in `dir` whose provenance was edited by `edit` (any length: the note is
/// moved to the end of the file).
fn edited_hello(dir: &tempfile::TempDir, file: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = copy_into(dir, "hello", file);
    let mut json = provenance_json("hello");
    edit(&mut json);
    relocate_provenance(&path, &framed(&serde_json::to_vec(&json).unwrap()));
}

/// Output a terminal would interpret: an escape or another control character other than the
/// newlines that end lines.
fn raw_controls(text: &[u8]) -> bool {
    text.iter().any(|&b| {
        (b < 0x20 && b != b'\n') || b == 0x7f || text.windows(2).any(|w| w == [0xc2, 0x9b])
    })
}

#[test]
fn huge_names_and_versions_are_refused_not_a_panic() {
    let dir = plugin_dir(&["hello"]);
    let long = "n".repeat(70_000);
    edited_hello(&dir, "liblong_name.so", |j| j["name"] = long.clone().into());
    edited_hello(&dir, "liblong_version.so", |j| {
        j["version"] = format!("1.0.0-{}", "a".repeat(70_000)).into()
    });
    for args in [&["--no-load"][..], &[]] {
        let mut all = vec!["scan", dir.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let out = cli(&all);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.lines().all(|l| l.len() < 2000),
            "a row ran wide: {text}"
        );
        assert!(
            text.contains("hello"),
            "the good plugin is reported: {text}"
        );
        let scan = scan_json(dir.path(), args);
        assert_outcome(
            entry(&scan, "liblong_name.so"),
            "rejected",
            "malformed-provenance",
            &["not a Cargo package name"],
        );
        assert_outcome(
            entry(&scan, "liblong_version.so"),
            "rejected",
            "malformed-provenance",
            &["version", "more than 512"],
        );
        assert!(entry(&scan, &file_name("hello"))["status"]
            .as_str()
            .is_some_and(|s| s == "loaded" || s == "verified"));
    }
    let check = cli(&[
        "check",
        dir.path().join("liblong_name.so").to_str().unwrap(),
    ]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
}

#[test]
fn control_characters_are_escaped_in_human_output() {
    let dir = plugin_dir(&[]);
    edited_hello(&dir, "libtitle.so", |j| {
        j["rustc"]["release"] = "1.95.0\u{1b}]0;pwned\u{7}".into()
    });
    edited_hello(&dir, "libforge.so", |j| {
        j["target"] = "x\nloaded    forged".into()
    });
    // A file name that clears the screen, and one that is not UTF-8.
    let evil = OsStr::from_bytes(b"lib\x1b[2Jevil.so");
    std::fs::copy(fixtures().lib("hello"), dir.path().join(evil)).unwrap();
    let latin1 = OsStr::from_bytes(b"libcaf\xe9.so");
    std::fs::copy(fixtures().lib("hello"), dir.path().join(latin1)).unwrap();

    for args in [
        vec!["scan", dir.path().to_str().unwrap(), "--no-load"],
        vec!["scan", dir.path().to_str().unwrap()],
        vec!["check", dir.path().join("libtitle.so").to_str().unwrap()],
        vec!["inspect", dir.path().join("libforge.so").to_str().unwrap()],
    ] {
        let out = cli(&args);
        assert!(!raw_controls(&out.stdout), "{args:?}: {:?}", stdout(&out));
        assert!(!raw_controls(&out.stderr), "{args:?}: {}", stderr(&out));
    }
    let out = cli(&["scan", dir.path().to_str().unwrap(), "--no-load"]);
    let text = stdout(&out);
    assert!(text.contains("lib\\u{1b}[2Jevil.so"), "{text}");
    assert!(!text.contains("\nloaded    forged"), "{text}");

    // JSON keeps the exact text, and stays valid (the Latin-1 name is reported, lossily).
    let scan = scan_json(dir.path(), &["--no-load"]);
    let paths = paths(&scan);
    assert!(
        paths.iter().any(|p| p.ends_with("lib\u{1b}[2Jevil.so")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("libcaf\u{fffd}.so")),
        "{paths:?}"
    );
    assert_outcome(
        entry(&scan, "libtitle.so"),
        "rejected",
        "malformed-provenance",
        &["control characters"],
    );
}

fn unruly_scan(mode: &str) -> (std::process::Output, serde_json::Value) {
    let dir = plugin_dir(&["unruly", "hello"]);
    let config = format!("unruly={mode}");
    let human = cli(&[
        "scan",
        dir.path().to_str().unwrap(),
        "--plugin-config",
        &config,
    ]);
    let scan = scan_json(dir.path(), &["--plugin-config", &config]);
    (human, scan)
}

#[test]
fn invalid_capability_names_are_refused() {
    for (mode, needle) in [
        ("empty-name", "empty name"),
        ("control-name", "control or whitespace"),
        ("long-name", "200 bytes"),
        ("bad-utf8-name", "not UTF-8"),
        ("many", "more than 4096 capabilities"),
    ] {
        let (human, scan) = unruly_scan(mode);
        assert!(human.status.success(), "{mode}: {}", stderr(&human));
        assert!(!raw_controls(&human.stdout), "{mode}: {}", stdout(&human));
        assert!(stdout(&human).lines().all(|l| l.len() < 2000), "{mode}");
        let e = entry(&scan, &file_name("unruly"));
        assert_outcome(e, "failed", "invalid-capability", &["unruly", needle]);
        assert_eq!(e["capabilities"].as_array().unwrap().len(), 0, "{mode}");
        assert_eq!(
            entry(&scan, &file_name("hello"))["status"],
            "loaded",
            "{mode}"
        );
    }
}

#[test]
fn a_name_registered_twice_is_the_plugins_own_conflict() {
    let (_, scan) = unruly_scan("twice");
    assert_outcome(
        entry(&scan, &file_name("unruly")),
        "failed",
        "capability-conflict",
        &["registers command `dup` twice"],
    );
}

#[test]
fn invalid_utf8_and_control_characters_from_plugin_code() {
    let (human, scan) = unruly_scan("bad-utf8-log");
    assert!(human.status.success(), "{}", stderr(&human));
    let e = entry(&scan, &file_name("unruly"));
    assert_outcome(
        e,
        "failed",
        "register-failed",
        &["bad \u{fffd}\u{fffd} bytes"],
    );
    assert!(
        stderr(&human).contains("bad \u{fffd}\u{fffd} bytes"),
        "the log line arrives, made valid: {}",
        stderr(&human)
    );
    // With logging off, the JSON report is still valid UTF-8 (scan_json parses it).
    let dir = plugin_dir(&["unruly"]);
    let out = cli_with(
        &[
            "scan",
            dir.path().to_str().unwrap(),
            "--json",
            "--plugin-config",
            "unruly=bad-utf8-log",
        ],
        &[("PLUGIN_HOST_LOG", std::path::Path::new("off"))],
        None,
    );
    assert!(std::str::from_utf8(&out.stdout).is_ok());

    let (human, _) = unruly_scan("control-log");
    assert!(!raw_controls(&human.stderr), "{}", stderr(&human));
    assert!(
        stderr(&human).contains("\\u{1b}[2J\\u{1b}[Hforged\\nINFO"),
        "{}",
        stderr(&human)
    );
}

#[test]
fn each_file_is_judged_once_per_scan() {
    // 200 hard links to one file: one judgement, reported for every path.
    let dir = plugin_dir(&[]);
    let first = copy_into(&dir, "hello", "liba.so");
    rewrite_provenance(&first, |j| j["target"] = "sparc-sun-solaris".into());
    for i in 0..200 {
        std::fs::hard_link(&first, dir.path().join(format!("libz{i:03}.so"))).unwrap();
    }
    let scan = scan_json(dir.path(), &["--no-load"]);
    assert_outcome(
        entry(&scan, "liba.so"),
        "rejected",
        "target-mismatch",
        &["sparc-sun-solaris"],
    );
    let later = entry(&scan, "libz199.so");
    assert_outcome(
        later,
        "rejected",
        "target-mismatch",
        &["the same file as", "liba.so", "sparc-sun-solaris"],
    );
    assert!(
        later["checks"].as_array().unwrap().is_empty(),
        "not judged again"
    );

    // A link to a loaded plugin is shadowed by the first path to it, and not loaded twice.
    let dir = plugin_dir(&["hello"]);
    let hello = dir.path().join(file_name("hello"));
    std::fs::hard_link(&hello, dir.path().join("libzz.so")).unwrap();
    let scan = scan_json(dir.path(), &[]);
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
    assert_outcome(
        entry(&scan, "libzz.so"),
        "shadowed",
        "duplicate-plugin",
        &["the same file as"],
    );
}
