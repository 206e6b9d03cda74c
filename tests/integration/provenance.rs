//! Provenance is recorded at build time, embedded, and read back without loading.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use serde_json::Value;

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

/// A minimal PE32+ DLL for x86-64 whose one section, `.plgprov`, holds `blob`: what
/// `export_plugin!` leaves in a Windows build, without a Windows toolchain.
fn pe_dll(blob: &[u8]) -> Vec<u8> {
    const HEADERS: usize = 0x200;
    let raw = blob.len().next_multiple_of(0x200);
    let mut pe = vec![0u8; HEADERS + raw];
    let put =
        |pe: &mut Vec<u8>, at: usize, bytes: &[u8]| pe[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut pe, 0, b"MZ");
    put(&mut pe, 0x3c, &0x40u32.to_le_bytes());
    put(&mut pe, 0x40, b"PE\0\0");
    // COFF header: x86-64, one section, a 240-byte optional header, an executable DLL.
    let coff = 0x44;
    put(&mut pe, coff, &0x8664u16.to_le_bytes());
    put(&mut pe, coff + 2, &1u16.to_le_bytes());
    put(&mut pe, coff + 16, &240u16.to_le_bytes());
    put(&mut pe, coff + 18, &0x2022u16.to_le_bytes());
    // Optional header (PE32+): alignments, sizes, 16 empty data directories.
    let opt = coff + 20;
    put(&mut pe, opt, &0x20bu16.to_le_bytes());
    put(&mut pe, opt + 24, &0x1_8000_0000u64.to_le_bytes());
    put(&mut pe, opt + 32, &0x1000u32.to_le_bytes());
    put(&mut pe, opt + 36, &0x200u32.to_le_bytes());
    let image = 0x1000 + blob.len().next_multiple_of(0x1000);
    put(&mut pe, opt + 56, &(image as u32).to_le_bytes());
    put(&mut pe, opt + 60, &(HEADERS as u32).to_le_bytes());
    put(&mut pe, opt + 68, &3u16.to_le_bytes());
    put(&mut pe, opt + 108, &16u32.to_le_bytes());
    // The section: initialized, readable data.
    let section = opt + 240;
    put(&mut pe, section, plugin_api::frame::SECTION_PE.as_bytes());
    put(&mut pe, section + 8, &(blob.len() as u32).to_le_bytes());
    put(&mut pe, section + 12, &0x1000u32.to_le_bytes());
    put(&mut pe, section + 16, &(raw as u32).to_le_bytes());
    put(&mut pe, section + 20, &(HEADERS as u32).to_le_bytes());
    put(&mut pe, section + 36, &0x4000_0040u32.to_le_bytes());
    put(&mut pe, HEADERS, blob);
    pe
}

#[test]
fn inspect_reads_a_dll_here_and_check_refuses_it_by_its_headers() {
    let mut windows = host::read_provenance(&fixtures().lib("hello")).unwrap();
    windows.target = "x86_64-pc-windows-gnu".into();
    let dir = tempfile::tempdir().unwrap();
    let dll = dir.path().join("hello.dll");
    fs::write(&dll, pe_dll(&windows.encode())).unwrap();
    let dll = dll.to_str().unwrap();

    let out = cli(&["inspect", "--json", dll]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, serde_json::to_value(&windows).unwrap());
    let text = stdout(&cli(&["inspect", dll]));
    assert!(text.contains("x86_64-pc-windows-gnu"), "{text}");

    // Loading is another matter: a PE file is not for this host, told by its headers.
    let out = cli(&["check", dll]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("target-mismatch"), "{said}");
    assert!(said.contains("a PE (Windows) file"), "{said}");
}

/// A plugin whose record is not in the form this recorder writes — an older recorder's (no
/// digests, no declared capabilities), with escapes in its strings — is read by the general
/// decoder and judged exactly as the same plugin read by the fast one; it verifies and loads.
#[test]
fn a_record_in_an_older_form_is_judged_as_the_same_record_in_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let current = copy_into(&dir, "hello", "current.so");
    let older = copy_into(&dir, "hello", "older.so");
    let mut json = provenance_json("hello");
    let record = json.as_object_mut().unwrap();
    record.remove("digests");
    record.remove("capabilities");
    let text = serde_json::to_string(&json).unwrap();
    // `\u005f` is `_`, `\u006c` is `l`, `\u0069` is `i`: the same strings, escaped.
    let escaped = text
        .replacen("\"target\":\"x86_64", "\"target\":\"x86\\u005f64", 1)
        .replacen("\"name\":\"hello\"", "\"name\":\"hel\\u006co\"", 1)
        .replacen("\"panic\":\"unwind\"", "\"panic\":\"unw\\u0069nd\"", 1);
    assert_ne!(escaped, text);
    relocate_provenance(&older, &framed(escaped.as_bytes()));
    let verifier = host();
    let (current, older) = (verifier.verify(&current), verifier.verify(&older));
    assert_eq!(older.status, host::Status::Verified, "{:?}", older.message);
    assert_eq!(older.name.as_deref(), Some("hello"));
    assert_eq!(older.version, current.version);
    let values = |r: &host::PluginReport| -> Vec<(String, String, String)> {
        r.checks
            .iter()
            .map(|c| {
                (
                    c.check.to_string(),
                    c.host.to_string(),
                    c.plugin.to_string(),
                )
            })
            .collect()
    };
    assert_eq!(values(&older), values(&current));
    let read = |file: &str| host::read_provenance(&dir.path().join(file)).unwrap();
    let (mut older_record, current_record) = (read("older.so"), read("current.so"));
    older_record.digests = current_record.digests.clone();
    older_record.capabilities = current_record.capabilities.clone();
    assert_eq!(older_record, current_record);
    let loaded = host().load(&dir.path().join("older.so"));
    assert_eq!(loaded.status, host::Status::Loaded, "{:?}", loaded.message);
}
