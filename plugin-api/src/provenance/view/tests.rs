use std::borrow::Cow;

use super::*;
use std::collections::BTreeMap;

/// A record as the recorder wrote it before digests and declared capabilities (a plugin
/// built by an older plugin-api), with unknown fields a newer recorder might add.
const OLD_RECORD: &str = r#"{"name":"hello","version":"0.1.0","plugin_api":"0.1.0","abi_stable":"0.11.3","rustc":{"release":"1.95.0","commit_hash":"59807616e1fa2540724bfbac14d7976d7e4a3860","commit_date":"2026-04-14","channel":"stable","llvm":"22.1.2"},"target":"x86_64-unknown-linux-gnu","profile":{"name":"release","opt_level":"3","debug_assertions":false,"panic":"unwind"},"features":[],"dependencies":["abi_stable 0.11.3","log 0.4.35","plugin-api 0.1.0 (/w/plugin-api)"],"later":{"x":[1,2]}}"#;

/// The same with escapes in strings of every kind: a quote and a backslash in a path, a
/// `\u` escape in a name and a capability, an escaped map key.
const ESCAPED_RECORD: &str = r#"{"name":"hel\u006co","version":"0.1.0-rc.1+b7","plugin_api":"0.1.0","abi_stable":"0.11.3","rustc":{"release":"1.95.0","commit_hash":"59807616e","commit_date":"2026-04-14","channel":"stable","llvm":null},"target":"x86_64-unknown-linux-gnu","profile":{"name":"debug","opt_level":"0","debug_assertions":true,"panic":"unwind"},"features":["a","b\/c"],"dependencies":["kinds 0.1.0 (C:\\w\\\"kinds\")","log 0.4.35"],"digests":{"kinds 0.1.0":"sha256:00","k\u0069nds 0.2.0":"sha256:01"},"capabilities":{"command":["hello","by\u0065"],"tr\u0061nsform":[]}}"#;

fn both(
    json: &str,
) -> (
    Result<ProvenanceRef<'_>, String>,
    Result<Provenance, String>,
) {
    let blob = frame::encode(json.as_bytes());
    let owned = Provenance::decode(&blob).map_err(|e| e.to_string());
    // Decoded in place from the JSON itself (the framing is checked by `frame`'s tests).
    let view = serde_json::from_str::<ProvenanceRef<'_>>(json).map_err(|e| e.to_string());
    let framed = ProvenanceRef::decode(&blob).map(|v| v.to_owned());
    assert_eq!(
        framed.map_err(|e| e.to_string()),
        owned,
        "framed decode of {json}"
    );
    (view, owned)
}

#[test]
fn a_record_of_an_older_recorder_reads_the_same_in_place() {
    let (view, owned) = both(OLD_RECORD);
    let (view, owned) = (view.unwrap(), owned.unwrap());
    assert_eq!(view.to_owned(), owned);
    assert_eq!(view, owned.view());
    assert!(view.digests.is_empty() && view.capabilities.is_none());
    assert_eq!(view.declares("command", "hello"), None);
    // Nothing was copied: every string points into the JSON.
    assert!(matches!(view.name.0, Cow::Borrowed(_)));
    assert!(matches!(view.rustc.commit_hash.0, Cow::Borrowed(_)));
    let d = &view.dependencies[2];
    assert_eq!(
        (d.name(), d.version(), d.source(), d.key()),
        (
            "plugin-api",
            "0.1.0",
            Some("/w/plugin-api"),
            "plugin-api 0.1.0"
        )
    );
    assert_eq!(d.source_kind(), SourceKind::Path("/w/plugin-api"));
    assert!(matches!(d.spec.0, Cow::Borrowed(_)));
    assert_eq!(view.rustc.short(), owned.rustc.short());
}

#[test]
fn escaped_strings_are_unescaped_as_the_owned_decode_does() {
    let (view, owned) = both(ESCAPED_RECORD);
    let (view, owned) = (view.unwrap(), owned.unwrap());
    assert_eq!(view.to_owned(), owned);
    assert_eq!(view, owned.view());
    assert_eq!(&*view.name, "hello");
    assert!(matches!(view.name.0, Cow::Owned(_)), "escaped: copied");
    assert!(matches!(view.target.0, Cow::Borrowed(_)), "plain: borrowed");
    assert_eq!(&*view.features[1], "b/c");
    let kinds = &view.dependencies[0];
    assert_eq!(kinds.source(), Some("C:\\w\\\"kinds\""));
    assert_eq!(kinds.source_kind(), owned.dependencies[0].source_kind());
    assert_eq!(
        view.digests.get("kinds 0.2.0").map(|d| &**d),
        Some("sha256:01")
    );
    assert_eq!(view.declares("command", "bye"), Some(true));
    assert_eq!(view.declares("transform", "x"), Some(false));
    assert_eq!(view.rustc.llvm, None);
    assert_eq!(view.version.to_string(), "0.1.0-rc.1+b7");
}

#[test]
fn bad_records_fail_with_the_owned_decode_s_message() {
    let mut bad = vec![
        r#"{"name":"x"}"#.to_owned(),
        "[1,2]".to_owned(),
        "{".to_owned(),
        String::new(),
        // Not an object: the error names the struct it expected, as the owned decode does.
        r#""hello""#.to_owned(),
        // A struct as a list too short for it (found by the fuzz target): the same message.
        "[]".to_owned(),
    ];
    for (from, to) in [
        (r#""debug_assertions":false"#, r#""debug_assertions":"no""#),
        (r#""name":"hello""#, r#""name":5"#),
        (r#""log 0.4.35""#, r#""log""#),
        (r#""log 0.4.35""#, r#"7"#),
        (r#""features":[]"#, r#""features":[1]"#),
        (r#""features":[]"#, r#""features":{}"#),
        (r#""version":"0.1.0""#, r#""version":"1""#),
        (r#""llvm":"22.1.2""#, r#""llvm":3"#),
        (r#""rustc":{"#, r#""rustc":7,"x":{"#),
        (r#""profile":{"#, r#""profile":true,"x":{"#),
        (r#""rustc":{"#, r#""rustc":[],"x":{"#),
        (r#""profile":{"#, r#""profile":[],"x":{"#),
        (r#""profile":{"#, r#""profile":["release"],"x":{"#),
        (r#""name":"hello""#, r#""name":"hello","name":"again""#),
        (r#""later""#, r#""digests":{"a":1},"later""#),
        (r#""later""#, r#""capabilities":{"command":"x"},"later""#),
        (
            r#""later""#,
            r#""capabilities":{"command":["x",null]},"later""#,
        ),
    ] {
        assert!(OLD_RECORD.contains(from), "{from}");
        bad.push(OLD_RECORD.replacen(from, to, 1));
    }
    for json in &bad {
        let (view, owned) = both(json);
        let (view, owned) = (view.unwrap_err(), owned.unwrap_err());
        assert!(
            owned.starts_with("provenance payload is not a valid record: "),
            "{owned}"
        );
        assert_eq!(
            format!("provenance payload is not a valid record: {view}"),
            owned,
            "{json}"
        );
    }
    assert!(matches!(
        ProvenanceRef::decode(&frame::encode(&[0xff, 0xfe])),
        Err(DecodeError::Utf8(_))
    ));
}

#[test]
fn an_owned_record_viewed_and_copied_back_is_unchanged() {
    let mut p = Provenance::decode(&frame::encode(ESCAPED_RECORD.as_bytes())).unwrap();
    assert_eq!(p.view().to_owned(), p);
    p.capabilities = None;
    p.digests.clear();
    assert_eq!(p.view().to_owned(), p);
    assert_eq!(
        DependencyRef::parse("x 1.0 (/a path)").map(|d| d.to_owned()),
        Dependency::parse("x 1.0 (/a path)")
    );
    assert_eq!(DependencyRef::parse("log  (x)"), None);
}

/// Records as [`Provenance::encode`] writes them: with and without digests, declared
/// capabilities (none, or some), an LLVM version, features.
fn written_records() -> Vec<String> {
    let json = |p: &Provenance| String::from_utf8(serde_json::to_vec(p).unwrap()).unwrap();
    let old = OLD_RECORD.replacen(r#","later":{"x":[1,2]}"#, "", 1);
    let mut p = Provenance::decode(&frame::encode(old.as_bytes())).unwrap();
    let mut records = vec![old, json(&p)];
    p.rustc.llvm = None;
    p.features = vec!["a".into(), "b".into()];
    p.digests
        .insert("plugin-api 0.1.0".into(), "sha256:6b34".into());
    p.capabilities = Some(BTreeMap::new());
    records.push(json(&p));
    p.capabilities = Some(BTreeMap::from([
        ("command".into(), vec!["hello".into(), "bye".into()]),
        ("transform".into(), vec![]),
    ]));
    p.version = "1.2.3-rc.1+b7".parse().unwrap();
    p.profile.debug_assertions = true;
    records.push(json(&p));
    records
}

#[test]
fn a_record_as_the_recorder_writes_it_is_read_in_one_pass() {
    for json in written_records() {
        let fast = canonical::parse(json.as_bytes());
        assert!(fast.is_some(), "not read by the fast path: {json}");
        assert_eq!(fast, Some(serde_json::from_str(&json).unwrap()), "{json}");
        let (view, owned) = both(&json);
        assert_eq!(view.unwrap().to_owned(), owned.unwrap());
    }
    // Not in that form: left to serde_json, which reads it all the same.
    for json in [OLD_RECORD, ESCAPED_RECORD] {
        assert_eq!(canonical::parse(json.as_bytes()), None);
        let (view, owned) = both(json);
        assert_eq!(view.unwrap().to_owned(), owned.unwrap());
    }
}

/// Whatever the fast path accepts, serde_json reads the same: every record written, with each
/// byte deleted or replaced by a byte that matters to JSON.
#[test]
fn the_fast_path_accepts_nothing_serde_json_reads_otherwise() {
    let mut accepted = 0;
    for json in written_records() {
        let bytes = json.as_bytes();
        for at in 0..bytes.len() {
            let mut variants = vec![[&bytes[..at], &bytes[at + 1..]].concat()];
            for b in *b"\"\\ ,:{}[]()0ax\x01\x7f\x80\xc3\xff" {
                variants.push([&bytes[..at], &[b][..], &bytes[at + 1..]].concat());
                variants.push([&bytes[..at], &[b][..], &bytes[at..]].concat());
            }
            for variant in variants {
                // Bytes that are not UTF-8 are never accepted (nor read by serde_json).
                let Some(fast) = canonical::parse(&variant) else {
                    continue;
                };
                let text = std::str::from_utf8(&variant).expect("accepted bytes are UTF-8");
                accepted += 1;
                let slow = serde_json::from_str::<ProvenanceRef<'_>>(text);
                assert_eq!(Some(fast), slow.ok(), "{text}");
            }
        }
    }
    // Variants inside strings, and of equal meaning, are read by the fast path too.
    assert!(accepted > 1000, "{accepted}");
}

#[test]
fn a_record_read_in_place_is_the_owned_record_only_if_every_field_is() {
    for json in [OLD_RECORD, ESCAPED_RECORD] {
        let (view, owned) = both(json);
        let (view, owned) = (view.unwrap(), owned.unwrap());
        assert!(view.is(&owned), "{json}");
        // Each field changed in turn, on the owned side: no longer the same record.
        let changes: Vec<fn(&mut Provenance)> = vec![
            |p| p.name.push('x'),
            |p| p.version = semver::Version::new(9, 9, 9),
            |p| p.plugin_api = semver::Version::new(9, 9, 9),
            |p| p.abi_stable = semver::Version::new(9, 9, 9),
            |p| p.rustc.release.push('x'),
            |p| p.rustc.commit_hash.push('x'),
            |p| p.rustc.commit_date.push('x'),
            |p| p.rustc.channel.push('x'),
            |p| p.rustc.llvm = Some("other".into()),
            |p| p.target.push('x'),
            |p| p.profile.name.push('x'),
            |p| p.profile.opt_level.push('x'),
            |p| p.profile.debug_assertions = !p.profile.debug_assertions,
            |p| p.profile.panic.push('x'),
            |p| p.features.push("extra".into()),
            |p| {
                p.dependencies.pop();
            },
            |p| p.dependencies[0] = Dependency::new("other", "1.0.0", None),
            |p| {
                p.digests.insert("zz 1.0.0".into(), "sha256:ff".into());
            },
            |p| p.capabilities = Some(BTreeMap::new()),
            |p| {
                p.capabilities
                    .get_or_insert_with(BTreeMap::new)
                    .insert("kind".into(), vec!["name".into()]);
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let mut other = owned.clone();
            change(&mut other);
            if other == owned {
                continue; // (a change that changes nothing in this record)
            }
            assert!(!view.is(&other), "change {i} of {json}");
        }
    }
}
