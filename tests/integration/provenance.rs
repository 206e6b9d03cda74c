//! Provenance is recorded at build time, embedded, and read back without loading.

use std::collections::BTreeSet;
use std::process::Command;

use crate::fixtures::{cargo, fixtures, root};
use crate::support::*;

/// `cargo tree -e normal` for `package`, minus proc-macros and what only they pull in (they
/// run inside the compiler and are not linked into the artifact), minus the package itself.
fn cargo_tree_linked(package: &str) -> BTreeSet<(String, String)> {
    let tree = cargo(
        root(),
        &[
            "tree", "-e", "normal", "-p", package, "--prefix", "depth", "--format", "{p}",
        ],
    );
    let mut linked = BTreeSet::new();
    let mut skip_below: Option<usize> = None;
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let depth: usize = line[..digits].parse().unwrap();
        let rest = &line[digits..];
        if skip_below.is_some_and(|d| depth > d) {
            continue;
        }
        skip_below = None;
        if rest.contains("(proc-macro)") {
            skip_below = Some(depth);
            continue;
        }
        let mut words = rest.split_whitespace();
        let name = words.next().unwrap().to_owned();
        let version = words.next().unwrap().trim_start_matches('v').to_owned();
        if depth > 0 {
            linked.insert((name, version));
        }
    }
    linked
}

#[test]
fn recorded_dependencies_match_cargo_tree() {
    let provenance = host::read_provenance(&fixtures().lib("hello")).unwrap();
    let recorded: BTreeSet<(String, String)> = provenance
        .dependencies
        .iter()
        .map(|d| (d.name().to_owned(), d.version().to_owned()))
        .collect();
    assert_eq!(recorded, cargo_tree_linked("hello"));
    let names: Vec<&str> = recorded.iter().map(|(n, _)| n.as_str()).collect();
    for linked in ["abi_stable", "log", "plugin-api"] {
        assert!(names.contains(&linked), "{linked} missing from {names:?}");
    }
    // Compile-time only: proc-macro machinery and the build-script recorder's own needs.
    assert!(
        !names.contains(&"syn") && !names.contains(&"abi_stable_derive"),
        "{names:?}"
    );
}

#[test]
fn provenance_records_the_build() {
    let p = host::read_provenance(&fixtures().lib("hello")).unwrap();
    let rustc_vv = Command::new("rustc").arg("-vV").output().unwrap();
    let rustc_vv = String::from_utf8(rustc_vv.stdout).unwrap();
    assert!(
        rustc_vv.contains(&format!("commit-hash: {}", p.rustc.commit_hash)),
        "{rustc_vv}"
    );
    assert!(rustc_vv.contains(&format!("release: {}", p.rustc.release)));
    assert_eq!(
        (p.name.as_str(), p.version.to_string().as_str()),
        ("hello", "0.1.0")
    );
    assert_eq!(p.plugin_api.to_string(), plugin_api::API_VERSION);
    assert_eq!(p.profile.panic, "unwind");
    assert_eq!(p.profile.name, "debug");
    assert!(p.profile.debug_assertions);
    assert_eq!(p.target, host_info()["target"]);
}

#[test]
fn provenance_is_readable_by_a_person() {
    // Plain UTF-8 JSON in its own section, framed by a visible magic.
    let data = std::fs::read(fixtures().lib("hello")).unwrap();
    let (offset, size) = provenance_range(&fixtures().lib("hello"));
    let section = &data[offset..offset + size];
    assert!(section.starts_with(b"PLGPROV\0"));
    let text = std::str::from_utf8(&section[16..]).unwrap();
    assert!(text.starts_with("{\"name\":\"hello\""), "{text}");
}

#[test]
fn inspect_and_host_info() {
    let out = cli(&["inspect", fixtures().lib("redact").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("redact 0.1.0\n"), "{text}");
    assert!(text.contains("regex "), "linked regex is listed: {text}");
    let json = cli(&[
        "inspect",
        "--json",
        fixtures().lib("redact").to_str().unwrap(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["name"], "redact");
    let host = host_info();
    assert_eq!(host["name"], "plugin-host");
    assert_eq!(host["plugin_api"], plugin_api::API_VERSION);
    // A non-plugin: exit 1 with the reason code.
    let out = cli(&["inspect", fixtures().lib("not-a-plugin").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error[no-provenance]"),
        "{}",
        stderr(&out)
    );
}
