//! Capabilities are really called: through the CLI and in-process; their failures and panics
//! come back as errors and the host goes on.

use abi_stable::std_types::{RSlice, RStr, RVec};
use host::{LookupError, Status};
use plugin_api::{CallErrorKind, CommandKind, TransformKind};

use crate::support::*;

#[test]
fn run_calls_a_command_and_shows_plugin_logs() {
    let dir = plugin_dir(&["hello", "redact", "wc"]);
    let out = cli(&[
        "run",
        "--plugins",
        dir.path().to_str().unwrap(),
        "hello",
        "Ada",
        "Lovelace",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "hello, Ada Lovelace! (from plugin-host 0.1.0)\n"
    );
    let log = stderr(&out);
    assert!(
        log.lines().any(|l| l.contains("plugin{name=hello}")
            && l.contains("registering `hello` for plugin-host")),
        "{log}"
    );
    // `run` is lazy: only the plugin that declares the command is loaded and registered.
    assert!(!log.contains("plugin{name=redact}"), "{log}");
    assert!(!log.contains("plugin{name=wc}"), "{log}");
}

#[test]
fn transform_streams_stdin_through_plugins() {
    let dir = plugin_dir(&["redact", "calls"]);
    let input = b"2026-11-21 INFO login ada@example.com from 192.168.10.7\n\
                  2026-11-21 DEBUG Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\n\
                  2026-11-21 WARN key AKIAIOSFODNN7EXAMPLE used\nno newline at end";
    let out = cli_with(
        &[
            "transform",
            "--plugins",
            dir.path().to_str().unwrap(),
            "redact",
        ],
        &[],
        Some(input),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "2026-11-21 INFO login [REDACTED:email] from [REDACTED:ipv4]\n\
         2026-11-21 DEBUG Authorization: Bearer [REDACTED:token]\n\
         2026-11-21 WARN key [REDACTED:aws-key] used\nno newline at end"
    );
    // A chain, applied left to right.
    let out = cli_with(
        &[
            "transform",
            "--plugins",
            dir.path().to_str().unwrap(),
            "redact,upper",
        ],
        &[],
        Some(b"mail ada@example.com\n"),
    );
    assert_eq!(stdout(&out), "MAIL [REDACTED:EMAIL]\n");
    // Plugin configuration reaches the plugin.
    let out = cli_with(
        &[
            "transform",
            "--plugins",
            dir.path().to_str().unwrap(),
            "--plugin-config",
            "redact=ipv4",
            "redact",
        ],
        &[],
        Some(b"ada@example.com 10.0.0.1\n"),
    );
    assert_eq!(stdout(&out), "ada@example.com [REDACTED:ipv4]\n");
    // A transform that panics: exit 1 with the panic message, nothing unwinds.
    let out = cli_with(
        &[
            "transform",
            "--plugins",
            dir.path().to_str().unwrap(),
            "explode",
        ],
        &[],
        Some(b"boom\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("transform #1 panicked: explode saw boom"),
        "{}",
        stderr(&out)
    );
}

/// A host with the `calls` fixture and `hello` loaded, and the directory they are in.
fn calls_and_hello_loaded() -> (tempfile::TempDir, host::Host) {
    let dir = plugin_dir(&["calls", "hello"]);
    let mut host = host();
    let reports = host.scan(&[dir.path()], host::ScanMode::Load).unwrap();
    assert!(
        reports.iter().all(|r| r.status == Status::Loaded),
        "{reports:?}"
    );
    (dir, host)
}

#[test]
fn failing_and_panicking_calls_come_back_as_errors() {
    let (_dir, host) = calls_and_hello_loaded();
    let registry = host.registry();
    let call = |name: &str, args: &[&str]| {
        let args: Vec<RStr<'_>> = args.iter().map(|a| RStr::from(*a)).collect();
        registry
            .get::<CommandKind>(name)
            .unwrap()
            .call(RSlice::from_slice(&args))
            .into_result()
    };
    let boom = call("boom", &[]).unwrap_err();
    assert_eq!(boom.kind, CallErrorKind::Panicked);
    assert_eq!(boom.message, "boom on purpose");
    let fail = call("fail", &[]).unwrap_err();
    assert_eq!(
        (fail.kind, fail.message.as_str()),
        (CallErrorKind::Failed, "failed on purpose")
    );
    // The host keeps serving this plugin and the others.
    assert_eq!(call("echo", &["still", "here"]).unwrap(), "still here");
    assert_eq!(
        call("hello", &[]).unwrap(),
        "hello, world! (from plugin-host 0.1.0)"
    );

    let explode = registry.get::<TransformKind>("explode").unwrap();
    let mut out = RVec::new();
    let err = explode
        .apply(RSlice::from_slice(b"boom"), &mut out)
        .into_result()
        .unwrap_err();
    assert_eq!(err.kind, CallErrorKind::Panicked);
    explode
        .apply(RSlice::from_slice(b"calm"), &mut out)
        .into_result()
        .unwrap();
    assert_eq!(out.as_slice(), b"calm");

    // Capabilities are handed out only as the kind they were registered as.
    let Err(wrong) = registry.get::<TransformKind>("echo") else {
        panic!("a command was handed out as a transform");
    };
    assert!(
        matches!(&wrong, LookupError::NotFound { available, .. } if available.contains(&"upper".to_string())),
        "{wrong}"
    );
    assert_eq!(registry.provider("command", "echo"), Some("calls"));
}

#[test]
fn commands_write_into_a_callers_buffer() {
    let (_dir, host) = calls_and_hello_loaded();
    let registry = host.registry();
    let mut out = abi_stable::std_types::RString::new();
    let mut call_into = |name: &str, args: &[&str]| {
        let args: Vec<RStr<'_>> = args.iter().map(|a| RStr::from(*a)).collect();
        out.clear();
        let result = registry
            .get::<CommandKind>(name)
            .unwrap()
            .call_into(RSlice::from_slice(&args), &mut out)
            .into_result();
        (result, out.to_string())
    };
    // `hello` writes into the buffer (`Command::run_into`); `echo` returns a string, copied.
    assert_eq!(
        call_into("hello", &["Ada"]),
        (Ok(()), "hello, Ada! (from plugin-host 0.1.0)".to_owned())
    );
    assert_eq!(call_into("echo", &["a", "b"]), (Ok(()), "a b".to_owned()));
    let (boom, _) = call_into("boom", &[]);
    let boom = boom.unwrap_err();
    assert_eq!(
        (boom.kind, boom.message.as_str()),
        (CallErrorKind::Panicked, "boom on purpose")
    );
    // The writer still answers `call` with a string of its own.
    let hello = registry.get::<CommandKind>("hello").unwrap();
    assert_eq!(
        hello
            .call(RSlice::from_slice(&[RStr::from("Ada")]))
            .into_result()
            .unwrap(),
        "hello, Ada! (from plugin-host 0.1.0)"
    );
}

/// A held capability's direct entry (`direct()`) answers as the object does: output, errors
/// and panics, for commands that write into the buffer and for those that return a string.
#[test]
fn direct_calls_answer_as_the_object_does() {
    let (_dir, host) = calls_and_hello_loaded();
    let registry = host.registry();
    for (name, args) in [
        ("hello", &["Ada", "L."][..]),
        ("hello", &[]),
        ("echo", &["a", "b"]),
        ("fail", &[]),
        ("boom", &[]),
    ] {
        let command = registry.get::<CommandKind>(name).unwrap();
        let args: Vec<RStr<'_>> = args.iter().map(|a| RStr::from(*a)).collect();
        let mut through_object = abi_stable::std_types::RString::from("> ");
        let expected = command
            .call_into(RSlice::from_slice(&args), &mut through_object)
            .into_result();
        let held = command.direct();
        assert!(
            held.is_direct(),
            "{name}: a plugin's own entry, not the vtable"
        );
        for _ in 0..2 {
            let mut direct = abi_stable::std_types::RString::from("> ");
            let got = held
                .call_into(RSlice::from_slice(&args), &mut direct)
                .into_result();
            assert_eq!((&got, &direct), (&expected, &through_object), "{name}");
        }
    }
    let boom = registry.get::<CommandKind>("boom").unwrap().direct();
    let mut out = abi_stable::std_types::RString::new();
    let e = boom
        .call_into(RSlice::from_slice(&[]), &mut out)
        .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (CallErrorKind::Panicked, "boom on purpose")
    );

    let upper = registry.get::<TransformKind>("upper").unwrap().direct();
    assert!(upper.is_direct());
    let mut out = RVec::from(b"kept: ".to_vec());
    upper.apply(RSlice::from_slice(b"abc"), &mut out).unwrap();
    assert_eq!(&out[..], b"kept: ABC");
    let explode = registry.get::<TransformKind>("explode").unwrap().direct();
    let e = explode
        .apply(RSlice::from_slice(b"a boom"), &mut out)
        .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (CallErrorKind::Panicked, "explode saw boom")
    );
    // The host goes on, and so does the direct entry.
    explode.apply(RSlice::from_slice(b"ok"), &mut out).unwrap();
    assert_eq!(&out[..], b"kept: ABCok");
}
