//! Files that are not plugins, or whose provenance is damaged: refused with a reason, and the
//! scan goes on.

use std::fs;

use crate::support::*;

#[test]
fn not_plugins_are_refused_and_the_scan_goes_on() {
    let dir = plugin_dir(&["hello", "not-a-plugin"]);
    fs::write(dir.path().join("empty.so"), b"").unwrap();
    fs::write(
        dir.path().join("garbage.so"),
        b"this is not an ELF file at all",
    )
    .unwrap();
    let hello = fs::read(crate::fixtures::fixtures().lib("hello")).unwrap();
    // Cut inside its loadable segments (a debug build's second half is only debug info,
    // which the loader never reads: a cut there leaves a loadable library).
    fs::write(dir.path().join("truncated.so"), &hello[..64 * 1024]).unwrap();
    fs::write(dir.path().join("ignored.txt"), b"not a candidate").unwrap();
    fs::create_dir(dir.path().join("directory.so")).unwrap();

    let scan = scan_json(dir.path(), &[]);
    assert_outcome(
        entry(&scan, &file_name("not-a-plugin")),
        "rejected",
        "no-provenance",
        &["without plugin-host provenance", "export_plugin!"],
    );
    assert_outcome(
        entry(&scan, "empty.so"),
        "rejected",
        "not-a-library",
        &["empty"],
    );
    assert_outcome(
        entry(&scan, "garbage.so"),
        "rejected",
        "not-a-library",
        &["unrecognised file format"],
    );
    assert_outcome(
        entry(&scan, "truncated.so"),
        "rejected",
        "not-a-library",
        &["truncated or corrupt ELF"],
    );
    assert_outcome(
        entry(&scan, "directory.so"),
        "rejected",
        "not-a-library",
        &["a directory"],
    );
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
    let paths = paths(&scan);
    assert!(!paths.iter().any(|p| p.ends_with(".txt")), "{paths:?}");
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "deterministic order");
}

#[test]
fn damaged_provenance_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    type Damage<'a> = &'a dyn Fn(&std::path::Path);
    let cases: [(&str, Damage<'_>, &str); 8] = [
        (
            "bad-magic.so",
            &|p| patch_section(p, 0, b"XXXXXXXX"),
            "expected magic",
        ),
        (
            "future-format.so",
            &|p| patch_section(p, 8, &99u32.to_le_bytes()),
            "format version 99",
        ),
        (
            "huge-length.so",
            &|p| patch_section(p, 12, &u32::MAX.to_le_bytes()),
            "claims 4294967295 bytes",
        ),
        (
            "not-json.so",
            &|p| patch_section(p, 16, b"{{{{"),
            "not a valid record",
        ),
        (
            "missing-field.so",
            &|p| {
                rewrite_provenance(p, |v| {
                    v.as_object_mut().unwrap().remove("target");
                })
            },
            "missing field `target`",
        ),
        // A record that lists no crates would pass every dependency check: the recorder
        // always lists plugin-api and abi_stable, at the versions the record states.
        (
            "no-dependencies.so",
            &|p| rewrite_provenance(p, |v| v["dependencies"] = serde_json::json!([])),
            "`plugin_api` field says plugin-api 0.1.0, but its dependency list lists no crates",
        ),
        (
            "no-plugin-api.so",
            &|p| {
                rewrite_provenance(p, |v| {
                    let deps = v["dependencies"].as_array_mut().unwrap();
                    deps.retain(|d| !d.as_str().unwrap().starts_with("plugin-api "));
                })
            },
            "dependency list does not list plugin-api",
        ),
        (
            "other-abi-stable.so",
            &|p| rewrite_provenance(p, |v| v["abi_stable"] = "0.11.0".into()),
            "`abi_stable` field says abi_stable 0.11.0, but its dependency list lists abi_stable 0.11.",
        ),
    ];
    for (file, damage, _) in &cases {
        let path = copy_into(&dir, "hello", file);
        damage(&path);
    }
    for policy in ["default", "strict"] {
        let scan = scan_json(dir.path(), &["--policy", policy]);
        for (file, _, needle) in &cases {
            assert_outcome(
                entry(&scan, file),
                "rejected",
                "malformed-provenance",
                &[needle, "rebuild the plugin"],
            );
        }
    }
}
