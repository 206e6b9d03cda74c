//! Registration: failures, panics and conflicts are reported and the others still load.

use abi_stable::std_types::RString;
use host::ScanMode;
use host::{Kinds, ReasonCode, Status};
use plugin_api::{CapabilityKind, CommandKind};

use crate::support::*;

#[test]
fn register_errors_and_panics_are_contained() {
    let dir = plugin_dir(&["bad-register", "panic-register", "hello", "wc"]);
    let out = cli(&["scan", dir.path().to_str().unwrap(), "--json"]);
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_outcome(
        entry(&scan, &file_name("bad-register")),
        "failed",
        "register-failed",
        &["bad-register", "no API token configured"],
    );
    assert_outcome(
        entry(&scan, &file_name("panic-register")),
        "failed",
        "register-panicked",
        &["deliberate panic during register", "contained"],
    );
    assert_eq!(
        entry(&scan, &file_name("panic-register"))["capabilities"],
        serde_json::json!([])
    );
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
    assert_eq!(
        entry(&scan, &file_name("wc"))["capabilities"],
        serde_json::json!([{"kind": "command", "name": "wc"}])
    );
    // The plugin's own log line made it to the host's output, with its name.
    assert!(
        stderr(&out)
            .lines()
            .any(|l| l.contains("plugin{name=bad-register}") && l.contains("no token configured")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn capability_conflict_is_reported() {
    let dir = plugin_dir(&["hello", "hello-twin"]);
    let scan = scan_json(dir.path(), &[]);
    // `libhello.so` sorts before `libhello_twin.so`, so the twin is the one refused.
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
    let twin = entry(&scan, &file_name("hello-twin"));
    assert_outcome(
        twin,
        "failed",
        "capability-conflict",
        &[
            "command `hello`",
            "plugin `hello` already provides",
            "hello-twin",
        ],
    );
    assert_eq!(
        twin["capabilities"],
        serde_json::json!([]),
        "all-or-nothing: twin-only is not registered either"
    );
    let out = cli(&[
        "run",
        "--plugins",
        dir.path().to_str().unwrap(),
        "twin-only",
    ]);
    // Refused (`capability-conflict`): exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // Lazily too: loading the twin for `twin-only` loads `hello` first (it declares `hello`
    // too, earlier in path order), so the conflict is reported, not hidden.
    let err = stderr(&out);
    assert!(
        err.contains("command `twin-only` is declared by plugin `hello-twin`")
            && err.contains("capability-conflict")
            && err.contains("plugin `hello` already provides"),
        "{err}"
    );
}

#[test]
fn same_plugin_twice_is_shadowed_by_the_first() {
    let dir = plugin_dir(&["hello"]);
    copy_into(&dir, "hello", "libhello-copy.so");
    std::os::unix::fs::symlink(
        dir.path().join(file_name("hello")),
        dir.path().join("libhello-link.so"),
    )
    .unwrap();
    for (extra, ok) in [(&[][..], "loaded"), (&["--no-load"][..], "verified")] {
        let scan = scan_json(dir.path(), extra);
        // Sorted by file name, `libhello-copy.so` comes first and wins.
        assert_eq!(entry(&scan, "libhello-copy.so")["status"], ok);
        for file in ["libhello-link.so", &file_name("hello")] {
            assert_outcome(
                entry(&scan, file),
                "shadowed",
                "duplicate-plugin",
                &[
                    "shadowed by",
                    "libhello-copy.so (earlier in the search path)",
                    "plugin `hello`",
                ],
            );
        }
    }
}

#[test]
fn unknown_kind_is_refused_to_the_plugin() {
    let dir = plugin_dir(&["hello"]);
    let mut host = builder().kinds(Kinds::new()).build();
    let report = host.load(&dir.path().join(file_name("hello")));
    assert_eq!(report.status, Status::Failed);
    assert_eq!(report.reason, Some(ReasonCode::RegisterFailed));
    let message = report.message.unwrap();
    assert!(
        message.contains("this host has no capability kind `command`")
            && message.contains("probably written for another application"),
        "{message}"
    );
}

/// A host kind that claims the name `command` with another object type.
struct WrongCommand;

impl CapabilityKind for WrongCommand {
    const KIND: &'static str = "command";
    type Object = RString;
}

#[test]
fn capability_layout_is_checked_across_the_boundary() {
    let dir = plugin_dir(&["hello"]);
    let mut host = builder().kinds(Kinds::new().with::<WrongCommand>()).build();
    let report = host.load(&dir.path().join(file_name("hello")));
    assert_eq!(report.status, Status::Loaded, "{:?}", report.message);
    // The host asks for `hello` as its own `command` type: abi_stable's layout check of the
    // plugin's object against it fails, and the object is never handed out.
    let err = host.registry().get::<WrongCommand>("hello").unwrap_err();
    assert_eq!(err.reason(), Some(ReasonCode::LayoutMismatch));
    let message = err.to_string();
    assert!(
        message.contains("capability `hello` of kind `command` from plugin `hello`"),
        "{message}"
    );
    assert!(message.contains("rebuild the plugin"), "{message}");
    // The difference itself, first and short, not abi_stable's multi-kilobyte dump.
    assert!(
        message.contains("expected `") && message.contains("found `"),
        "{message}"
    );
    assert!(message.len() < 1500, "{} bytes: {message}", message.len());
    assert!(!message.contains("Layout of expected type"), "{message}");
    // The outcome is kept: asking again gives the same answer.
    assert_eq!(
        host.registry().get::<WrongCommand>("hello").unwrap_err(),
        err
    );
    assert!(
        host.registry().get::<CommandKind>("hello").is_err(),
        "not registered under the demo kind"
    );
}

#[test]
fn layouts_can_be_checked_while_loading() {
    let dir = plugin_dir(&["hello"]);
    let mut host = builder()
        .kinds(Kinds::new().with::<WrongCommand>())
        .layout_check_at_load(true)
        .build();
    let report = host.load(&dir.path().join(file_name("hello")));
    assert_eq!(report.status, Status::Failed);
    assert_eq!(report.reason, Some(ReasonCode::LayoutMismatch));
    let message = report.message.unwrap();
    assert!(
        message.contains("its command `hello` does not have the layout")
            && message.contains("could never be used"),
        "{message}"
    );
    assert!(host.registry().list().is_empty());

    // The CLI: `scan --check-layouts` with the demo kinds passes the example plugins.
    let scan = scan_json(dir.path(), &["--check-layouts"]);
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");
}

/// An application's own kind, declared identically on the host side (as an application's
/// interface crate would be shared): `greeting`, a text.
struct Greeting;

impl CapabilityKind for Greeting {
    const KIND: &'static str = "greeting";
    type Object = RString;
}

#[test]
fn applications_define_their_own_kinds() {
    let dir = plugin_dir(&["calls"]);
    let mut host = builder().kinds(Kinds::demo().with::<Greeting>()).build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(
        reports[0].status,
        Status::Loaded,
        "{:?}",
        reports[0].message
    );
    assert_eq!(
        host.registry().get::<Greeting>("motd").unwrap().as_str(),
        "hello from calls"
    );
    assert!(reports[0]
        .capabilities
        .iter()
        .any(|c| c.kind == "greeting" && c.name == "motd"));

    // A host without the kind: the plugin is told, carries on, and the rest is registered.
    let mut plain = host_without_greeting();
    let reports = plain.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(reports[0].status, Status::Loaded);
    assert!(plain.registry().get::<CommandKind>("echo").is_ok());
    assert!(plain.registry().names("greeting").is_empty());
}

fn host_without_greeting() -> host::Host {
    builder().kinds(Kinds::demo()).build()
}
