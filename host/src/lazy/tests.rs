//! The index: path order, shadowing, declarations and the errors that name the fix.

use super::*;
use plugin_api::provenance::Provenance;

pub(crate) fn provenance(name: &str, declared: Option<&[(&str, &[&str])]>) -> Provenance {
    let blob = r#"{"name":"x","version":"0.1.0","plugin_api":"0.1.0","abi_stable":"0.11.3",
        "rustc":{"release":"1.95.0","commit_hash":"h","commit_date":"d","channel":"stable","llvm":null},
        "target":"t","profile":{"name":"debug","opt_level":"0","debug_assertions":true,"panic":"unwind"},
        "features":[],"dependencies":[]}"#;
    let mut p: Provenance = serde_json::from_str(blob).unwrap();
    p.name = name.to_owned();
    p.capabilities = declared.map(|kinds| {
        kinds
            .iter()
            .map(|(k, names)| (k.to_string(), names.iter().map(|n| n.to_string()).collect()))
            .collect()
    });
    p
}

#[test]
fn first_in_path_order_wins_and_later_names_are_shadowed() {
    let mut index = Index::default();
    let a = provenance("hello", Some(&[("command", &["hello"])]));
    let b = provenance(
        "redact",
        Some(&[("transform", &["redact"]), ("command", &["hello"])]),
    );
    let old = provenance("wc", None);
    assert_eq!(
        index.add(
            Path::new("/1/libhello.so"),
            &a.name,
            a.capabilities.as_ref()
        ),
        Placed::Indexed
    );
    assert_eq!(
        index.add(
            Path::new("/1/libredact.so"),
            &b.name,
            b.capabilities.as_ref()
        ),
        Placed::Indexed
    );
    assert_eq!(
        index.add(
            Path::new("/1/libwc.so"),
            &old.name,
            old.capabilities.as_ref()
        ),
        Placed::Undeclared
    );
    assert_eq!(
        index.add(
            Path::new("/2/libhello.so"),
            &a.name,
            a.capabilities.as_ref()
        ),
        Placed::Shadowed(PathBuf::from("/1/libhello.so"))
    );
    assert_eq!(
        index.add(
            Path::new("/2/libwc.so"),
            &old.name,
            old.capabilities.as_ref()
        ),
        Placed::Shadowed(PathBuf::from("/1/libwc.so")),
        "an undeclared plugin shadows later files of its name too"
    );
    // Two plugins declare `command hello`: both are candidates, in path order.
    assert_eq!(index.candidates("command", "hello"), [0, 1]);
    assert_eq!(index.candidates("transform", "redact"), [1]);
    assert!(index.candidates("transform", "hello").is_empty());
    assert_eq!(index.plugins.len(), 2, "only declaring plugins are indexed");
    let mut names = index.names("command");
    names.sort();
    assert_eq!(names, ["hello", "hello"]);
    index.plugins[0].state = IndexedState::Refused(ReasonCode::RustcMismatch, "x".into());
    assert_eq!(
        index.names("command"),
        ["hello"],
        "refused ones are not offered"
    );
}

#[test]
fn declaring_nothing_is_indexed_under_nothing() {
    let mut index = Index::default();
    let none = provenance("quiet", Some(&[]));
    assert_eq!(
        index.add(
            Path::new("/1/libquiet.so"),
            &none.name,
            none.capabilities.as_ref()
        ),
        Placed::Indexed
    );
    assert!(index.candidates("command", "quiet").is_empty());
    assert!(index.names("command").is_empty());
}

#[test]
fn errors_name_the_capability_and_the_fix() {
    let refused = LazyError::Refused {
        kind: "command".into(),
        name: "hello".into(),
        plugin: "hello".into(),
        path: "/p/libhello.so".into(),
        reason: ReasonCode::RustcMismatch,
        message: "built by another rustc".into(),
    };
    assert_eq!(refused.reason(), Some(ReasonCode::RustcMismatch));
    assert!(refused
        .to_string()
        .contains("command `hello` is declared by plugin `hello`"));
    let missing = LazyError::NotRegistered {
        kind: "command".into(),
        name: "ghost".into(),
        plugin: "liar".into(),
        path: "/p/libliar.so".into(),
        registered: vec!["command:real".into()],
    };
    let text = missing.to_string();
    assert!(
        text.contains("declares command `ghost` but did not register it"),
        "{text}"
    );
    assert!(text.contains("command:real"), "{text}");
    assert_eq!(missing.reason(), None);
}
