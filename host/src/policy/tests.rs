use std::collections::BTreeMap;

use plugin_api::provenance::{Dependency, Profile, Rustc};

use super::*;

pub(crate) fn record(deps: &[&str]) -> Provenance {
    Provenance {
        name: "p".into(),
        version: "0.1.0".parse().unwrap(),
        plugin_api: "0.1.0".parse().unwrap(),
        abi_stable: "0.11.3".parse().unwrap(),
        rustc: Rustc {
            release: "1.95.0".into(),
            commit_hash: "59807616e1fa2540724bfbac14d7976d7e4a3860".into(),
            commit_date: "2026-04-14".into(),
            channel: "stable".into(),
            llvm: None,
        },
        target: "x86_64-unknown-linux-gnu".into(),
        profile: Profile {
            name: "debug".into(),
            opt_level: "0".into(),
            debug_assertions: true,
            panic: "unwind".into(),
        },
        features: vec![],
        dependencies: deps.iter().map(|d| Dependency::parse(d).unwrap()).collect(),
        digests: BTreeMap::new(),
        capabilities: None,
    }
}

fn strict() -> Policy {
    Policy::preset("strict").unwrap()
}

fn check(verdict: &Verdict, kind: CheckKind) -> &Check {
    verdict.checks.iter().find(|c| c.check == kind).unwrap()
}

#[test]
fn unsorted_dependency_lists_group_by_name() {
    let host = record(&["foo 1.0.0", "foo 2.0.0", "bar 1.0.0", "log 0.4.29"]);
    // Not sorted, with a duplicate: the versions of `foo` are apart.
    let plugin = record(&[
        "foo 2.0.0",
        "bar 1.0.0",
        "log 0.4.29",
        "foo 1.0.0",
        "bar 1.0.0",
    ]);
    let verdict = judge(&host, &plugin, &strict());
    let c = check(&verdict, CheckKind::Dependencies);
    assert_eq!(c.status, CheckStatus::Pass, "{c:?}");
    assert!(c.plugin.contains("3 shared with the host"), "{c:?}");
    assert!(verdict.differences().is_empty());
}

#[test]
fn every_differing_crate_is_named_with_one_command_aligning_them_all() {
    let host = record(&["a 1.0.1", "b 0.3.4", "c 2.0.0", "same 1.0.0"]);
    let plugin = record(&["c 2.1.0", "same 1.0.0", "a 1.0.2", "b 0.3.9"]);
    let verdict = judge(&host, &plugin, &strict());
    let c = check(&verdict, CheckKind::Dependencies);
    assert_eq!(c.status, CheckStatus::Fail);
    assert_eq!(&*c.host, "a 1.0.1, b 0.3.4, c 2.0.0");
    assert_eq!(&*c.plugin, "a 1.0.2, b 0.3.9, c 2.1.0");
    assert!(
        c.message.contains(
            "`cargo update -p a@1.0.2 --precise 1.0.1 && cargo update -p b@0.3.9 --precise 0.3.4 \
             && cargo update -p c@2.1.0 --precise 2.0.0`"
        ),
        "{}",
        c.message
    );
    assert!(
        c.message.starts_with("links 3 of 4 crate(s)"),
        "{}",
        c.message
    );
    let names: Vec<&str> = verdict
        .differences()
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(!verdict.differences()[0].content_only);
}

#[test]
fn another_series_cannot_be_aligned_by_cargo_update() {
    let host = record(&["semver 1.0.28"]);
    let plugin = record(&["semver 0.9.0"]);
    let c = check(&judge(&host, &plugin, &strict()), CheckKind::Dependencies).clone();
    assert!(!c.message.contains("cargo update"), "{}", c.message);
    assert!(
        c.message.contains("`semver = \"=1.0.28\"`"),
        "{}",
        c.message
    );
}

#[test]
fn path_crates_are_pointed_at_the_hosts_copy() {
    let host = record(&["plugin-api 0.1.2 (/host/plugin-api)", "log 0.4.29"]);
    let plugin = record(&["plugin-api 0.1.0 (/else/plugin-api)", "log 0.4.28"]);
    let c = check(&judge(&host, &plugin, &strict()), CheckKind::Dependencies).clone();
    assert!(
        !c.message.contains("cargo update -p plugin-api"),
        "cargo update does nothing for a path crate: {}",
        c.message
    );
    assert!(
        c.message
            .contains("`plugin-api = { path = \"/host/plugin-api\" }`"),
        "{}",
        c.message
    );
    assert!(
        c.message
            .contains("`cargo update -p log@0.4.28 --precise 0.4.29`"),
        "{}",
        c.message
    );
}

#[test]
fn same_version_other_content_is_a_difference() {
    let mut host = record(&["kinds 0.1.0 (/app/kinds)", "log 0.4.29"]);
    host.digests
        .insert("kinds 0.1.0".into(), format!("sha256:{}", "a".repeat(64)));
    let mut plugin = record(&["kinds 0.1.0 (/elsewhere/kinds)", "log 0.4.29"]);

    // Same content in another directory: the same crate.
    plugin.digests = host.digests.clone();
    let verdict = judge(&host, &plugin, &strict());
    assert!(verdict.failure().is_none(), "{verdict:?}");

    // A record without digests (an older recorder) is compared by version alone.
    plugin.digests.clear();
    assert!(judge(&host, &plugin, &strict()).failure().is_none());

    plugin
        .digests
        .insert("kinds 0.1.0".into(), format!("sha256:{}", "b".repeat(64)));
    let verdict = judge(&host, &plugin, &strict());
    let c = verdict.failure().expect("a changed copy fails strict");
    assert_eq!(c.check, CheckKind::Dependencies);
    assert_eq!(
        &*c.plugin,
        "kinds 0.1.0 (content differs from the host's copy)"
    );
    assert_eq!(&*c.host, "kinds 0.1.0 (sha256:aaaaaaaaaaaa)");
    assert!(
        c.message
            .contains("host's copy of `kinds`: `kinds = { path = \"/app/kinds\" }`"),
        "{}",
        c.message
    );
    assert_eq!(
        verdict.differences(),
        [CrateDifference {
            name: "kinds".into(),
            host: "0.1.0 (sha256:aaaaaaaaaaaa)".into(),
            plugin: "0.1.0 (sha256:bbbbbbbbbbbb)".into(),
            content_only: true,
        }]
    );
    // Default warns, and still reports the difference.
    let verdict = judge(&host, &plugin, &Policy::default());
    assert_eq!(
        check(&verdict, CheckKind::Dependencies).status,
        CheckStatus::Warn
    );
    assert_eq!(verdict.differences().len(), 1);
}

#[test]
fn git_crates_differ_by_commit() {
    let host = record(&["kinds 0.1.0 (https://x.test/kinds?branch=main#1111111111)"]);
    let plugin = record(&["kinds 0.1.0 (https://x.test/kinds?branch=main#2222222222)"]);
    let c = judge(&host, &plugin, &strict()).failure().cloned().unwrap();
    assert!(
        c.message
            .contains("`kinds = { git = \"https://x.test/kinds\", rev = \"1111111111\" }`"),
        "{}",
        c.message
    );
    assert!(judge(&host, &host, &strict()).failure().is_none());
}

#[test]
fn rustc_fix_builds_with_the_hosts_toolchain() {
    let mut host = record(&[]);
    let mut plugin = record(&[]);
    plugin.rustc.release = "1.97.0-nightly".into();
    plugin.rustc.commit_hash = "e50aa6fba".into();
    plugin.rustc.channel = "nightly".into();
    let message = |host: &Provenance| {
        judge(host, &plugin, &strict())
            .failure()
            .map(|c| c.message.clone())
            .unwrap()
    };
    let m = message(&host);
    assert!(m.contains("`cargo +1.95.0 build`"), "{m}");
    assert!(!m.contains("rustup install"), "{m}");
    // One command, not advice to "pin" a toolchain (a user who typed `cargo +nightly` has).
    assert!(!m.contains("pin"), "{m}");

    host.profile.name = "release".into();
    assert!(message(&host).contains("`cargo +1.95.0 build --release`"));

    host.rustc.release = "1.98.0-nightly".into();
    host.rustc.channel = "nightly".into();
    host.rustc.commit_date = "2026-06-30".into();
    let m = message(&host);
    assert!(
        m.contains("`cargo +nightly-2026-07-01 build --release`"),
        "{m}"
    );
    assert!(m.contains("name guessed"), "{m}");
    assert!(!m.contains("pin"), "{m}");
    // Short enough to read: it was about 700 characters.
    assert!(
        m.chars().count() <= 320,
        "{} characters: {m}",
        m.chars().count()
    );
}

#[test]
fn the_advice_to_accept_a_difference_is_one_that_would_help() {
    let mut host = record(&[]);
    let mut plugin = host.clone();
    host.profile.opt_level = "3".into();
    plugin.profile.opt_level = "0".into();
    plugin.rustc.commit_hash = "1".repeat(40);
    let failure = |policy: &Policy| judge(&host, &plugin, policy).failure().cloned().unwrap();
    // Failed by the strict preset, which `default` relaxes.
    let c = failure(&strict());
    assert_eq!(c.check, CheckKind::Rustc);
    assert!(
        c.message.ends_with(" or use --policy default"),
        "{}",
        c.message
    );
    // Failed by an override (`--set CHECK=fail`, or `[policy.checks]`): `--policy default`
    // would still fail it; `--set CHECK=warn` (applied last) would not.
    for (preset, kind) in [
        ("default", CheckKind::Profile),
        ("strict", CheckKind::Rustc),
    ] {
        let mut policy = Policy::preset(preset).unwrap();
        policy.set(kind, Severity::Fail).unwrap();
        let c = failure(&policy);
        assert_eq!(c.check, kind);
        let hint = format!(" or accept it with `--set {kind}=warn`");
        assert!(c.message.ends_with(&hint), "{}", c.message);
    }
}

#[test]
fn api_fix_names_the_hosts_source() {
    let host = record(&["plugin-api 0.1.0 (/host/plugin-api)"]);
    let mut plugin = record(&["plugin-api 2.0.0 (/else/plugin-api)"]);
    plugin.plugin_api = "2.0.0".parse().unwrap();
    let c = judge(&host, &plugin, &Policy::default())
        .failure()
        .cloned()
        .unwrap();
    assert_eq!(c.check, CheckKind::PluginApi);
    assert!(
        c.message
            .contains("`plugin-api = { path = \"/host/plugin-api\" }`"),
        "{}",
        c.message
    );
    assert!(!c.message.contains("plugin-api = \"0.1\""), "{}", c.message);

    // A host from crates.io: the exact version.
    let host = record(&["plugin-api 0.1.0"]);
    let c = judge(&host, &plugin, &Policy::default())
        .failure()
        .cloned()
        .unwrap();
    assert!(
        c.message.contains("`plugin-api = \"=0.1.0\"`"),
        "{}",
        c.message
    );
}

#[test]
fn plugin_api_compatibility_is_semver_caret() {
    let versions = [
        "0.0.3",
        "0.0.4",
        "0.1.0",
        "0.1.1",
        "0.2.0",
        "1.0.0",
        "1.2.3",
        "1.3.0",
        "2.0.0",
        "0.1.0+b1",
        "1.2.3+b1",
        "1.2.3-rc.1",
        "1.3.0-rc.1",
        "0.1.1-alpha",
    ];
    for host in versions {
        for plugin in versions {
            let (h, p): (Version, Version) = (host.parse().unwrap(), plugin.parse().unwrap());
            let req = VersionReq::parse(&format!("^{p}")).unwrap();
            assert_eq!(
                api_compatible(&h, &p),
                req.matches(&h),
                "host {h}, plugin {p}"
            );
        }
    }
}

#[test]
fn a_plugin_built_like_the_host_shows_the_same_values() {
    let host = record(&["log 0.4.35", "plugin-api 0.1.0", "abi_stable 0.11.3"]);
    let mut plugin = host.clone();
    let verdict = judge(&host, &plugin, &strict());
    let same = |c: &&Check| c.check != CheckKind::Dependencies;
    assert!(
        verdict
            .checks
            .iter()
            .filter(same)
            .all(|c| c.host == c.plugin),
        "{verdict:#?}"
    );
    assert_eq!(
        &*check(&verdict, CheckKind::Profile).plugin,
        "debug (opt-level 0, debug-assertions on)"
    );
    // Built otherwise: the plugin's own values, not the host's.
    plugin.plugin_api = "0.1.0+b2".parse().unwrap(); // differs in build metadata only
    plugin.rustc.commit_hash = "0123456789abcdef".into();
    plugin.profile.name = "dev".into();
    let verdict = judge(&host, &plugin, &strict());
    assert_eq!(&*check(&verdict, CheckKind::PluginApi).plugin, "0.1.0+b2");
    assert_eq!(
        &*check(&verdict, CheckKind::Rustc).plugin,
        "1.95.0 (012345678)"
    );
    assert_eq!(
        &*check(&verdict, CheckKind::Profile).plugin,
        "dev (opt-level 0, debug-assertions on)"
    );
}

#[test]
fn names_alike_in_their_first_eight_bytes_and_crates_of_several_versions_are_told_apart() {
    // The walk passes host crates over on their first eight bytes: names that share them
    // are still compared whole, and a crate at several versions is matched version by version.
    let host = record(&[
        "parking_lot 0.12.5",
        "parking_lot_core 0.9.12",
        "parking_lots 1.0.0",
        "z 1.0.0",
        "z 2.0.0",
    ]);
    let plugin = record(&[
        "parking_lot_core 0.9.11",
        "parking_lot 0.12.5",
        "parking_lot_x 1.0.0",
        "parking_lots 1.0.0",
        "z 2.0.0",
        "z 1.0.0",
    ]);
    let verdict = judge(&host, &plugin, &strict());
    let c = check(&verdict, CheckKind::Dependencies);
    assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
    assert_eq!(&*c.host, "parking_lot_core 0.9.12");
    assert_eq!(&*c.plugin, "parking_lot_core 0.9.11");
    assert!(
        c.message.starts_with("links 1 of 4 crate(s)"),
        "{}",
        c.message
    );
    // The same versions from crates.io and from another registry: not the same crate.
    for (host_z, plugin_z) in [
        ("z 2.0.0", "z 2.0.0 (sparse+https://other.test/)"),
        ("z 2.0.0 (sparse+https://other.test/)", "z 2.0.0"),
    ] {
        let verdict = judge(&record(&[host_z]), &record(&[plugin_z]), &strict());
        let c = check(&verdict, CheckKind::Dependencies);
        assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
        assert!(verdict.differences()[0].content_only, "{verdict:?}");
    }
    let verdict = judge(&record(&["z 2.0.0"]), &record(&["z 2.0.0"]), &strict());
    assert_eq!(
        check(&verdict, CheckKind::Dependencies).status,
        CheckStatus::Pass
    );
}

#[test]
fn a_name_and_version_from_two_sources_is_checked_from_each() {
    // Two crates of one name and version, one of them not the host's copy: in either order,
    // neither hides the other.
    let host = record(&["serde 1.0.200"]);
    let other = "serde 1.0.200 (sparse+https://other.test/)";
    for plugin in [
        record(&["serde 1.0.200", other]),
        record(&[other, "serde 1.0.200"]),
        record(&[other, "serde 1.0.200", other]),
    ] {
        let verdict = judge(&host, &plugin, &strict());
        let c = check(&verdict, CheckKind::Dependencies);
        assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
        assert_eq!(verdict.differences().len(), 1, "{verdict:?}");
        assert!(verdict.differences()[0].content_only, "{verdict:?}");
        assert!(
            c.message
                .contains("serde 1.0.200 (content differs from the host's copy)"),
            "{}",
            c.message
        );
    }
    // At another version from both sources: that version is named, and aligned, once.
    let plugin = record(&[
        "serde 1.0.199",
        "serde 1.0.199 (sparse+https://other.test/)",
    ]);
    let verdict = judge(&host, &plugin, &strict());
    let c = check(&verdict, CheckKind::Dependencies);
    assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
    assert_eq!(&*c.plugin, "serde 1.0.199", "{c:?}");
    assert_eq!(
        c.message.matches("cargo update").count(),
        1,
        "{}",
        c.message
    );
}

#[test]
fn identities_beyond_ascii_are_shortened_at_a_character_boundary() {
    // A git commit and a digest are shortened for messages: a multi-byte character where
    // the cut falls must neither panic nor be split.
    let host = {
        let mut host = record(&["g 0.1.0 (git+https://x.test/g#abc)", "p 0.1.0 (/w/p)"]);
        host.digests
            .insert("p 0.1.0".into(), "sha256:0123456789abcdef".into());
        host
    };
    let mut plugin = record(&[
        "g 0.1.0 (git+https://x.test/g#aaaaaaaa\u{20ac}b)",
        "p 0.1.0 (/w/p)",
    ]);
    plugin
        .digests
        .insert("p 0.1.0".into(), "sha256:01234567890\u{e9}\u{e9}".into());
    let verdict = judge(&host, &plugin, &strict());
    let c = check(&verdict, CheckKind::Dependencies);
    assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
    let plugin_side: Vec<&str> = verdict
        .differences()
        .iter()
        .map(|d| d.plugin.as_str())
        .collect();
    assert_eq!(
        plugin_side,
        [
            "0.1.0 (git aaaaaaaa\u{20ac})",
            "0.1.0 (sha256:01234567890\u{e9})"
        ],
        "{verdict:?}"
    );
}

#[test]
fn one_series_is_told_as_its_written_form_tells_it() {
    let versions = [
        "0.0.1",
        "0.0.2",
        "0.1.0",
        "0.1.9",
        "0.11.3",
        "0.12.0",
        "1.0.0",
        "1.9.3",
        "2.0.0",
        "10.0.0",
        "0.11.3-rc.1",
        "1.0.0+b",
    ];
    for a in versions {
        for b in versions {
            let (a, b): (Version, Version) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(
                fix::one_series(&a, &b),
                fix::series(&a) == fix::series(&b),
                "{a} {b}"
            );
        }
    }
}

/// Each of `blobs` with every byte deleted, replaced by, or preceded by a byte that matters
/// to JSON or to the frame.
fn one_byte_variants(blobs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut variants = Vec::new();
    for bytes in blobs {
        variants.push(bytes.clone());
        for at in 0..bytes.len() {
            variants.push([&bytes[..at], &bytes[at + 1..]].concat());
            for b in *b"\"\\ ,:{}[]0.ax\x00\x01\x7f\xff" {
                variants.push([&bytes[..at], &[b][..], &bytes[at + 1..]].concat());
                variants.push([&bytes[..at], &[b][..], &bytes[at..]].concat());
            }
        }
    }
    variants
}

/// What `fuzz/fuzz_targets/provenance.rs` checks, over a corpus: the record decoded in place
/// (`ProvenanceRef::decode`, what the host judges) and the owned one (`Provenance::decode`)
/// agree on every mutated record — both fail with the same message, or both succeed with the
/// same fields — and `judge_in_place` of the one gives the verdict `judge` gives of the other,
/// against two hosts under both presets.
#[test]
fn in_place_and_owned_decodes_and_verdicts_agree_on_mutated_records() {
    let mut plugin = record(&[
        "abi_stable 0.11.3",
        "log 0.4.35",
        "plugin-api 0.1.0 (/w/plugin-api)",
    ]);
    plugin.rustc.llvm = Some("22.1.2".into());
    plugin.features = vec!["a".into(), "b".into()];
    plugin
        .digests
        .insert("log 0.4.35".into(), "sha256:6b34".into());
    plugin.capabilities = Some(BTreeMap::from([
        ("command".into(), vec!["hello".into(), "bye".into()]),
        ("transform".into(), vec![]),
    ]));
    let mut other = record(&["abi_stable 0.11.3", "log 0.4.29"]);
    other.profile.name = "release".into();
    other.profile.debug_assertions = false;
    let hosts = [plugin.clone(), other.clone()];
    let prepared: Vec<PreparedHost> = hosts.iter().map(PreparedHost::new).collect();
    let policies = [Policy::default(), strict()];
    let (mut decoded, mut refused) = (0, 0);
    for blob in one_byte_variants(&[plugin.encode(), other.encode()]) {
        match (ProvenanceRef::decode(&blob), Provenance::decode(&blob)) {
            (Ok(view), Ok(owned)) => {
                decoded += 1;
                assert_eq!(view.to_owned(), owned, "{}", String::from_utf8_lossy(&blob));
                for (host, prepared) in hosts.iter().zip(&prepared) {
                    for policy in &policies {
                        assert_eq!(
                            judge_in_place(host, prepared, &view, policy),
                            judge(host, &owned, policy),
                            "{}",
                            String::from_utf8_lossy(&blob)
                        );
                    }
                }
            }
            (Err(in_place), Err(owned)) => {
                refused += 1;
                assert_eq!(
                    in_place.to_string(),
                    owned.to_string(),
                    "{}",
                    String::from_utf8_lossy(&blob)
                );
            }
            (in_place, owned) => panic!(
                "in place {:?}, owned {:?}: {}",
                in_place.map(|v| v.to_owned()),
                owned,
                String::from_utf8_lossy(&blob)
            ),
        }
    }
    // Both sides of the comparison were exercised.
    assert!(
        decoded > 1000 && refused > 1000,
        "{decoded} decoded, {refused} refused"
    );
}
