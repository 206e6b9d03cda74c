//! Isolation: plugins in worker processes. A plugin that aborts, segfaults, exits, loops or
//! panics — in `register` or in a call — fails with the expected reason code naming it, and
//! the host serves the next call; workers die with the host; lying workers never crash it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abi_stable::std_types::{RSlice, RStr, RVec};
use host::{Host, LookupError, PluginSettings, ReasonCode, ScanMode, Status};
use plugin_api::{CallError, CallErrorKind, CommandKind, TransformKind};
use plugin_isolate::{Isolation, Mode};

use crate::support::*;

const WORKER: &str = env!("CARGO_BIN_EXE_plugin-host");

/// Every plugin in a worker (the `plugin-host` binary, as the CLI runs them).
fn isolation() -> Isolation {
    Isolation::new()
        .worker_command(WORKER, ["__worker"])
        .default_mode(Mode::Process)
}

/// A host whose plugins all run in workers.
fn isolated_host() -> Host {
    builder().placement(isolation()).build()
}

fn call(host: &Host, command: &str, args: &[&str]) -> Result<String, CallError> {
    let cmd = host.registry().get::<CommandKind>(command).unwrap();
    let args: Vec<RStr<'_>> = args.iter().map(|a| RStr::from(*a)).collect();
    cmd.call(RSlice::from_slice(&args))
        .into_result()
        .map(|s| s.into())
}

fn report_of<'a>(reports: &'a [host::PluginReport], name: &str) -> &'a host::PluginReport {
    reports
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no report for {name}: {reports:#?}"))
}

#[test]
fn misbehaviour_in_register_is_reported_and_the_host_serves_on() {
    let cases = [
        ("abort", ReasonCode::PluginCrashed, "SIGABRT"),
        ("segfault", ReasonCode::PluginCrashed, "SIGSEGV"),
        ("exit", ReasonCode::PluginCrashed, "exited with status"),
        ("spin", ReasonCode::PluginTimeout, "within 1.5s"),
        (
            "panic",
            ReasonCode::RegisterPanicked,
            "asked to panic in register",
        ),
    ];
    for (mode, reason, needle) in cases {
        let dir = plugin_dir(&["unruly", "hello"]);
        let mut host = builder()
            .plugin("unruly", PluginSettings::new().config(mode))
            .placement(isolation().start_timeout(Duration::from_millis(1500)))
            .build();
        let started = Instant::now();
        let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
        assert!(started.elapsed() < Duration::from_secs(20), "{mode}");
        let unruly = report_of(&reports, "unruly");
        assert_eq!(unruly.status, Status::Failed, "{mode}: {unruly:#?}");
        assert_eq!(unruly.reason, Some(reason), "{mode}: {:?}", unruly.message);
        let message = unruly.message.as_deref().unwrap();
        assert!(message.contains("unruly"), "{mode}: {message}");
        assert!(message.contains(needle), "{mode}: {message}");
        assert!(unruly.isolated);
        assert!(host.registry().get::<CommandKind>("unruly").is_err());
        // The host is alive and serves the other plugin, isolated too.
        assert_eq!(report_of(&reports, "hello").status, Status::Loaded);
        assert!(call(&host, "hello", &["Ada"])
            .unwrap()
            .starts_with("hello, Ada!"));
    }
}

#[test]
fn misbehaviour_in_a_call_fails_that_call_and_the_next_call_is_served() {
    let dir = plugin_dir(&["unruly"]);
    let mut host = builder()
        .placement(isolation().call_timeout(Duration::from_secs(1)))
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(
        reports[0].status,
        Status::Loaded,
        "{:?}",
        reports[0].message
    );
    let first_pid = plugin_isolate::isolated(&host)[0].pid.unwrap();
    assert_ne!(first_pid, std::process::id());
    let cases = [
        ("abort", Some(ReasonCode::PluginCrashed), "SIGABRT"),
        ("segfault", Some(ReasonCode::PluginCrashed), "SIGSEGV"),
        (
            "exit",
            Some(ReasonCode::PluginCrashed),
            "exited with status 7",
        ),
        ("hang", Some(ReasonCode::PluginTimeout), "within 1s"),
        ("panic", None, "misbehave was asked to panic"),
        ("fail", None, "misbehave was asked to fail"),
    ];
    for (mode, reason, needle) in cases {
        let started = Instant::now();
        let error = call(&host, "misbehave", &[mode]).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{mode}");
        assert_eq!(plugin_isolate::reason(&error), reason, "{mode}: {error}");
        assert!(error.message.contains(needle), "{mode}: {error}");
        if reason.is_some() {
            assert!(error.message.contains("plugin `unruly`"), "{mode}: {error}");
            assert!(
                plugin_isolate::isolated(&host)[0].pid.is_none(),
                "{mode}: the worker is gone"
            );
        }
        if mode == "panic" {
            assert_eq!(error.kind, CallErrorKind::Panicked);
        }
        // The next call restarts the worker (when it died) and is served.
        assert_eq!(call(&host, "misbehave", &["echo", mode]).unwrap(), mode);
    }
    let status = &plugin_isolate::isolated(&host)[0];
    assert_eq!(status.starts, 5, "{status:?}");
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.unregistered.is_none());
}

#[test]
fn consecutive_failures_unregister_the_plugin() {
    let dir = plugin_dir(&["unruly"]);
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    for attempt in 1..=plugin_isolate::MAX_FAILURES {
        let error = call(&host, "misbehave", &["abort"]).unwrap_err();
        assert_eq!(
            plugin_isolate::reason(&error),
            Some(ReasonCode::PluginCrashed),
            "{error}"
        );
        // The plugin is named once, also when the last failure is quoted.
        assert_eq!(
            error.message.matches("plugin `unruly`").count(),
            1,
            "{error}"
        );
        let unregistered = error
            .message
            .contains("was unregistered after 3 consecutive");
        assert_eq!(
            unregistered,
            attempt == plugin_isolate::MAX_FAILURES,
            "{error}"
        );
    }
    match host.registry().get::<CommandKind>("misbehave") {
        Err(e @ LookupError::Unregistered { .. }) => {
            assert_eq!(e.reason(), Some(ReasonCode::PluginCrashed));
            assert!(
                e.to_string().contains("plugin `unruly` was unregistered"),
                "{e}"
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("an unregistered plugin is still handed out"),
    }
    let status = &plugin_isolate::isolated(&host)[0];
    assert!(status.pid.is_none());
    assert_eq!(
        status.unregistered.as_ref().unwrap().0,
        ReasonCode::PluginCrashed
    );
}

#[test]
fn an_isolated_transform_appends_its_output_and_a_failure_leaves_the_output_alone() {
    let dir = plugin_dir(&["unruly"]);
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let transform = host.registry().get::<TransformKind>("misbehave").unwrap();
    let apply = |input: &[u8], output: &mut RVec<u8>| {
        transform
            .apply(RSlice::from_slice(input), output)
            .into_result()
    };
    // Appended after what the caller's buffer holds, small and larger than the call
    // channel's rings (streamed through them), read back the same.
    for len in [1, 17, 18, 19, 4096, 300_000, 3 << 20] {
        let input: Vec<u8> = (0..len).map(|i| (i * 7 + i / 13) as u8 | 1).collect();
        let mut output = RVec::from(b"kept: ".to_vec());
        apply(&input, &mut output).unwrap();
        assert_eq!(&output[..6], b"kept: ");
        assert!(
            output[6..].iter().eq(input.iter().rev()),
            "{len} bytes came back different"
        );
    }
    // A failure: the plugin's message, and the caller's buffer as it was (the plugin's
    // half-written output stays in the worker).
    let mut output = RVec::from(b"kept".to_vec());
    let e = apply(b"fail now", &mut output).unwrap_err();
    assert_eq!(e.kind, CallErrorKind::Failed);
    assert_eq!(
        &*e.message_lossy(),
        "misbehave was asked to fail after 8 bytes"
    );
    assert_eq!(&output[..], b"kept");
    let e = apply(b"panic", &mut output).unwrap_err();
    assert_eq!(e.kind, CallErrorKind::Panicked, "{e:?}");
    assert!(
        e.message_lossy()
            .contains("misbehave was asked to panic in a transform"),
        "{e:?}"
    );
    assert_eq!(&output[..], b"kept");
    // An output the protocol cannot carry fails the call, with what to do; the worker lives.
    let e = apply(b"grow", &mut output).unwrap_err();
    assert_eq!(e.kind, CallErrorKind::Failed);
    let message = e.message_lossy();
    for needle in [
        "its output (68157440 bytes) is larger than the protocol's limit",
        "call it with less input at a time",
    ] {
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(&output[..], b"kept");
    // The worker served all of it: a failure in a call is not a crash.
    apply(b"ab", &mut output).unwrap();
    assert_eq!(&output[..], b"keptba");
    assert!(plugin_isolate::isolated(&host)
        .iter()
        .all(|p| p.starts == 1));
}

/// `n` chunks of `unruly`'s `misbehave` transform input: distinct, of sizes from a few bytes
/// to more than its worker's ring (streamed through it), so that two fit in flight at times
/// and not at others.
fn stream_chunks(n: usize) -> Vec<Vec<u8>> {
    let sizes = [3, 4096, 300_000, 700_000, 17, 3 << 20, 250_000, 1];
    (0..n)
        .map(|k| {
            let len = sizes[k % sizes.len()];
            (0..len).map(|i| (i * 7 + k * 31) as u8 | 1).collect()
        })
        .collect()
}

#[test]
fn a_transform_stream_returns_every_chunk_in_order_isolated_and_in_process() {
    let dir = plugin_dir(&["unruly"]);
    let mut isolated = isolated_host();
    isolated.scan(&[dir.path()], ScanMode::Load).unwrap();
    let mut in_process = builder().build();
    in_process.scan(&[dir.path()], ScanMode::Load).unwrap();
    let chunks = stream_chunks(40);
    for host in [&isolated, &in_process] {
        let mut outputs: Vec<Vec<u8>> = Vec::new();
        let done = plugin_isolate::transform_chunks(
            host,
            "misbehave",
            chunks.iter().map(Vec::as_slice),
            |out| outputs.push(out.to_vec()),
        )
        .unwrap();
        assert_eq!((done, outputs.len()), (chunks.len(), chunks.len()));
        for (k, (chunk, out)) in chunks.iter().zip(&outputs).enumerate() {
            assert!(
                out.iter().eq(chunk.iter().rev()),
                "chunk {k} came back different"
            );
        }
    }
    // One worker served the whole stream, and the handle calls after it.
    let transform = isolated
        .registry()
        .get::<TransformKind>("misbehave")
        .unwrap();
    let mut output = RVec::new();
    transform
        .apply(RSlice::from_slice(b"ab"), &mut output)
        .unwrap();
    assert_eq!(&output[..], b"ba");
    assert_eq!(plugin_isolate::isolated(&isolated)[0].starts, 1);
    // An unknown transform is a lookup error, as through the registry.
    let e = plugin_isolate::transform_chunks(&isolated, "nope", [&b"x"[..]], |_| ()).unwrap_err();
    assert!(
        matches!(
            e,
            plugin_isolate::ChunkError::Lookup(LookupError::NotFound { .. })
        ),
        "{e}"
    );
}

#[test]
fn a_worker_that_dies_or_hangs_mid_stream_fails_that_chunk_and_loses_none_silently() {
    let dir = plugin_dir(&["unruly"]);
    let mut host = builder()
        .placement(isolation().call_timeout(Duration::from_secs(1)))
        .build();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let cases = [
        ("abort", ReasonCode::PluginCrashed, "SIGABRT"),
        ("exit", ReasonCode::PluginCrashed, "exited with status 7"),
        ("hang", ReasonCode::PluginTimeout, "within 1s"),
    ];
    for (round, (mode, reason, needle)) in cases.into_iter().enumerate() {
        // Two good chunks, the bad one, then more that must not be run (or must not be
        // reported done): the bad one is in flight behind the second good one.
        let mut chunks = stream_chunks(2);
        chunks.push(mode.as_bytes().to_vec());
        chunks.extend(stream_chunks(3));
        let mut outputs: Vec<Vec<u8>> = Vec::new();
        let e = plugin_isolate::transform_chunks(
            &host,
            "misbehave",
            chunks.iter().map(Vec::as_slice),
            |out| outputs.push(out.to_vec()),
        )
        .unwrap_err();
        let plugin_isolate::ChunkError::Chunk { index, error } = e else {
            panic!("{mode}: {e}");
        };
        assert_eq!(index, 2, "{mode}: {error}");
        assert_eq!(
            plugin_isolate::reason(&error),
            Some(reason),
            "{mode}: {error}"
        );
        let message = error.message_lossy();
        for needle in [
            needle,
            "plugin `unruly`",
            "transform `misbehave` (chunk 2 of a stream)",
        ] {
            assert!(message.contains(needle), "{mode}: {message}");
        }
        // The chunks before it were handed on, whole and in order; none after it.
        assert_eq!(outputs.len(), 2, "{mode}");
        for (chunk, out) in chunks.iter().zip(&outputs) {
            assert!(out.iter().eq(chunk.iter().rev()), "{mode}");
        }
        // The next call is served by a new worker, through the handle it holds (resolved
        // again for that worker).
        assert_eq!(call(&host, "misbehave", &["echo", mode]).unwrap(), mode);
        let status = &plugin_isolate::isolated(&host)[0];
        assert_eq!(
            (status.starts, status.consecutive_failures),
            (round as u32 + 2, 0)
        );
    }
}

#[test]
fn a_plugin_error_mid_stream_fails_that_chunk_and_the_worker_stays_in_step() {
    let dir = plugin_dir(&["unruly"]);
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let mut chunks = stream_chunks(1);
    chunks.push(b"fail here".to_vec());
    chunks.extend(stream_chunks(2));
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    let e = plugin_isolate::transform_chunks(
        &host,
        "misbehave",
        chunks.iter().map(Vec::as_slice),
        |out| outputs.push(out.to_vec()),
    )
    .unwrap_err();
    let plugin_isolate::ChunkError::Chunk { index, error } = e else {
        panic!("{e}");
    };
    assert_eq!(index, 1);
    assert_eq!(
        plugin_isolate::reason(&error),
        None,
        "the plugin's own error: {error}"
    );
    assert_eq!(
        &*error.message_lossy(),
        "misbehave was asked to fail after 9 bytes"
    );
    assert_eq!(outputs.len(), 1);
    // The worker lives, and the reply of the chunk that was in flight behind the failed one
    // was read: the next stream and call get their own replies.
    let chunks = stream_chunks(5);
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    let done = plugin_isolate::transform_chunks(
        &host,
        "misbehave",
        chunks.iter().map(Vec::as_slice),
        |out| outputs.push(out.to_vec()),
    )
    .unwrap();
    assert_eq!(done, 5);
    for (chunk, out) in chunks.iter().zip(&outputs) {
        assert!(out.iter().eq(chunk.iter().rev()));
    }
    assert_eq!(
        call(&host, "misbehave", &["echo", "after"]).unwrap(),
        "after"
    );
    assert_eq!(plugin_isolate::isolated(&host)[0].starts, 1);
}

#[test]
fn eight_threads_call_one_isolated_plugin() {
    let dir = plugin_dir(&["unruly", "redact"]);
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let misbehave = host.registry().get::<CommandKind>("misbehave").unwrap();
    let redact = host.registry().get::<TransformKind>("redact").unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..40 {
                    let (a, b) = (t.to_string(), i.to_string());
                    let args = [RStr::from("echo"), RStr::from(&*a), RStr::from(&*b)];
                    let out = misbehave.call(RSlice::from_slice(&args)).unwrap();
                    assert_eq!(out.as_str(), format!("{t} {i}"));
                    let mut output = RVec::new();
                    let input = format!("thread {t} call {i} mail a{t}@b{i}.org\n");
                    redact
                        .apply(RSlice::from_slice(input.as_bytes()), &mut output)
                        .unwrap();
                    let output = String::from_utf8(output.into_vec()).unwrap();
                    assert_eq!(
                        output,
                        format!("thread {t} call {i} mail [REDACTED:email]\n")
                    );
                }
            });
        }
    });
    assert!(plugin_isolate::isolated(&host)
        .iter()
        .all(|p| p.starts == 1));
}

#[test]
fn in_process_and_isolated_plugins_mix_in_one_host() {
    let dir = plugin_dir(&["hello", "unruly"]);
    let isolation = Isolation::new()
        .worker_command(WORKER, ["__worker"])
        .plugin("unruly", Mode::Process);
    let mut host = builder().placement(isolation).build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let (hello, unruly) = (report_of(&reports, "hello"), report_of(&reports, "unruly"));
    assert_eq!((hello.status, hello.isolated), (Status::Loaded, false));
    assert_eq!((unruly.status, unruly.isolated), (Status::Loaded, true));
    assert!(call(&host, "hello", &["Ada"])
        .unwrap()
        .starts_with("hello, Ada!"));
    assert_eq!(call(&host, "misbehave", &["echo", "x"]).unwrap(), "x");
    // An isolated command's direct entry goes to its worker as `call_into` does.
    let misbehave = host.registry().get::<CommandKind>("misbehave").unwrap();
    let mut out = abi_stable::std_types::RString::from("> ");
    let direct = misbehave.direct();
    assert!(!direct.is_direct(), "a proxy, called through its vtable");
    direct
        .call_into(RSlice::from_slice(&["echo".into(), "y".into()]), &mut out)
        .unwrap();
    assert_eq!(out, "> y");
    // A crash of the isolated one leaves the in-process one (and the host) serving.
    assert!(call(&host, "misbehave", &["segfault"]).is_err());
    assert!(call(&host, "hello", &["Bo"])
        .unwrap()
        .starts_with("hello, Bo!"));
    let names: Vec<_> = plugin_isolate::isolated(&host)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["unruly"]);
}

#[test]
fn the_cli_isolates_reports_and_forwards_logs() {
    let dir = plugin_dir(&["hello", "unruly"]);
    let d = dir.path().to_str().unwrap();
    // Lazy `run` of an isolated plugin that declares its capabilities.
    let out = cli(&["run", "--plugins", d, "--isolate", "hello", "hello", "Ada"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("hello, Ada!"));
    // The plugin's log records and its stderr, under its name.
    let out = cli(&[
        "run",
        "--plugins",
        d,
        "--isolate",
        "all",
        "misbehave",
        "log",
        "hi",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("misbehave logs: hi"), "{err}");
    assert!(err.contains("misbehave writes to stderr"), "{err}");
    assert!(err.contains("plugin{name=unruly}"), "{err}");
    // A deadline from the command line.
    let started = Instant::now();
    let out = cli(&[
        "run",
        "--plugins",
        d,
        "--isolate",
        "unruly",
        "--call-timeout",
        "300ms",
        "misbehave",
        "hang",
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("[plugin-timeout]") && err.contains("within 0.3s"),
        "{err}"
    );
    assert!(err.contains("plugin `unruly`"), "{err}");
    let out = cli(&["run", "--plugins", d, "--call-timeout", "soon", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`soon` has no unit"),
        "{}",
        stderr(&out)
    );
    // `scan` marks isolated plugins; the JSON keeps its keys and adds `isolated`.
    let scan = scan_json(dir.path(), &["--isolate", "unruly"]);
    let unruly = entry(&scan, &file_name("unruly"));
    assert_eq!(
        (&unruly["status"], &unruly["isolated"]),
        (&"loaded".into(), &true.into())
    );
    assert_eq!(entry(&scan, &file_name("hello"))["isolated"], false);
    let out = cli(&["scan", d, "--isolate", "unruly"]);
    assert!(stdout(&out).contains(&format!("{} [isolated]", file_name("unruly"))));
}

/// `unruly` logs a mebibyte of `x` between "misbehave logs long: " and " end", run with
/// `flags`: the line of the host's log that holds it, after checking it was cut and the whole
/// log stayed small.
fn long_log_line(flags: &[&str]) -> String {
    let dir = plugin_dir(&["unruly"]);
    let mut args = vec!["run", "--plugins", dir.path().to_str().unwrap()];
    args.extend_from_slice(flags);
    args.extend(["misbehave", "log-long", "1048576"]);
    let out = cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("misbehave logs long: "))
        .unwrap_or_else(|| panic!("the record is not logged: {}", &err[..err.len().min(2000)]))
        .to_owned();
    let tail = &line[line.len().saturating_sub(300)..];
    assert!(line.contains("xxx…") && !line.contains(" end"), "{tail}");
    assert!(err.len() < 80 * 1024, "{} bytes of log", err.len());
    line
}

#[test]
fn a_long_log_record_of_an_isolated_plugin_is_logged_cut() {
    // Cut to 65 536 characters in the worker (as in-process), and to 65 536 bytes again in
    // the host, which says how many it cut.
    let line = long_log_line(&["--isolate", "all"]);
    assert!(
        line.contains(" bytes cut)"),
        "{}",
        &line[line.len() - 300..]
    );
}

#[test]
fn a_long_log_record_of_an_in_process_plugin_is_logged_cut_too() {
    long_log_line(&[]);
}

#[test]
fn isolation_flags_that_would_do_nothing_say_so() {
    let dir = plugin_dir(&["hello", "unruly", "redact"]);
    let d = dir.path().to_str().unwrap();
    // A typo in `--isolate`: an error before any plugin runs, with the near name.
    for command in [
        &[
            "run",
            "--plugins",
            d,
            "--isolate",
            "unrluy",
            "misbehave",
            "echo",
            "ran",
        ][..],
        &["scan", d, "--isolate", "unrluy"][..],
    ] {
        let out = cli(command);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--isolate unrluy: no plugin of that name in the plugin directories"),
            "{err}"
        );
        assert!(err.contains("did you mean `--isolate unruly`?"), "{err}");
        assert!(stdout(&out).is_empty(), "{command:?} ran: {}", stdout(&out));
    }
    // No near name: the names there.
    let out = cli(&["run", "--plugins", d, "--isolate", "zzz", "hello", "Ada"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the plugins there are: hello, redact, unruly"),
        "{}",
        stderr(&out)
    );

    // `--call-timeout` with an in-process plugin: a warning, once, naming it and the fix.
    let out = cli(&[
        "run",
        "--plugins",
        d,
        "--call-timeout",
        "300ms",
        "misbehave",
        "echo",
        "ran",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    let err = stderr(&out);
    let warning = "--call-timeout 0.3s does not apply to plugin `unruly`: it runs in-process";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(err.contains("add `--isolate unruly`"), "{err}");
    // Isolated, the deadline applies: no warning.
    let out = cli(&[
        "run",
        "--plugins",
        d,
        "--isolate",
        "unruly",
        "--call-timeout",
        "300ms",
        "misbehave",
        "echo",
        "ran",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("does not apply"), "{}", stderr(&out));
    // A chain of transforms: one warning naming each in-process plugin once.
    let out = cli_with(
        &[
            "transform",
            "--plugins",
            d,
            "--isolate",
            "unruly",
            "--call-timeout",
            "2s",
            "redact,misbehave,redact",
        ],
        &[],
        Some(b"abc"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("does not apply").count(), 1, "{err}");
    assert!(
        err.contains("does not apply to plugin `redact`: it runs in-process"),
        "{err}"
    );
    assert!(!err.contains("`unruly`"), "{err}");
}

#[test]
fn the_cli_names_a_crashed_isolated_plugin_once() {
    let dir = plugin_dir(&["unruly"]);
    let d = dir.path().to_str().unwrap();
    let out = cli(&[
        "run",
        "--plugins",
        d,
        "--isolate",
        "unruly",
        "misbehave",
        "abort",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert_eq!(line.matches("plugin `unruly`").count(), 1, "{line}");
    assert_eq!(line.matches("command `misbehave`").count(), 1, "{line}");
    assert!(
        line.contains("SIGABRT") && line.ends_with("[plugin-crashed]"),
        "{line}"
    );
    // Said once: the error, not also a warning before it.
    assert_eq!(err.matches("[plugin-crashed]").count(), 1, "{err}");
}

/// The pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` is gone (or a zombie nobody reaps yet: it runs no code).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn workers_die_within_a_second_when_the_host_is_killed() {
    let dir = plugin_dir(&["redact"]);
    let mut cli = Command::new(WORKER)
        .args(["transform", "--plugins", dir.path().to_str().unwrap()])
        .args(["--isolate", "all", "redact"])
        .env("PLUGIN_HOST_LOG", "warn")
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The transform waits on its (open) stdin with the worker started.
    let until = Instant::now() + Duration::from_secs(30);
    let worker = loop {
        let kids = children(cli.id());
        if let Some(&pid) = kids.first() {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("__worker") {
                break pid;
            }
        }
        assert!(Instant::now() < until, "no worker started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: `kill` with a pid this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(cli.id() as i32, libc::SIGKILL) }, 0);
    cli.wait().unwrap();
    let killed = Instant::now();
    while !gone(worker) {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "worker {worker} outlived its host by a second"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the pid a plugin's `misbehave spawn FILE` wrote to FILE.
fn spawned_pid(file: &Path) -> u32 {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = fs::read_to_string(file) {
            return text.trim().parse().unwrap();
        }
        assert!(Instant::now() < until, "the plugin never spawned its child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `pid` (a plugin's child) is gone within a second of `since`.
fn gone_within_a_second(pid: u32, since: Instant, after: &str) {
    while !gone(pid) {
        if since.elapsed() > Duration::from_secs(1) {
            // SAFETY: `kill` with the pid of the fixture's `sleep`; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the plugin's child {pid} outlived its worker by a second after {after}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_plugins_children_die_with_its_worker_when_a_call_times_out() {
    let dir = plugin_dir(&["unruly"]);
    let files = tempfile::tempdir().unwrap();
    let pidfile = files.path().join("child");
    let mut host = builder()
        .placement(isolation().call_timeout(Duration::from_millis(1500)))
        .build();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let file = pidfile.to_str().unwrap();
    let error = call(&host, "misbehave", &["spawn", file, "hang"]).unwrap_err();
    let killed = Instant::now();
    assert_eq!(
        plugin_isolate::reason(&error),
        Some(ReasonCode::PluginTimeout),
        "{error}"
    );
    gone_within_a_second(spawned_pid(&pidfile), killed, "a call timeout");
    // A child left behind by a call that returned dies when the worker is stopped.
    let pidfile = files.path().join("returned");
    let out = call(&host, "misbehave", &["spawn", pidfile.to_str().unwrap()]).unwrap();
    let child = spawned_pid(&pidfile);
    assert_eq!(out, child.to_string());
    assert!(!gone(child), "the child runs while its worker does");
    drop(host);
    gone_within_a_second(child, Instant::now(), "the host was dropped");
}

#[test]
fn a_plugin_that_waits_for_all_its_children_is_not_blocked_by_the_guard() {
    // The worker's guard (see `isolate::tree`) is not the worker's child: a plugin's
    // `while wait(NULL) > 0` ends at once with ECHILD instead of waiting for the guard.
    let dir = plugin_dir(&["unruly"]);
    let mut host = builder()
        .placement(isolation().call_timeout(Duration::from_secs(5)))
        .build();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let started = Instant::now();
    let out = call(&host, "misbehave", &["wait-children"]).unwrap_or_else(|e| {
        panic!("waiting for all children blocked the call: {e}");
    });
    assert_eq!(out, "no children left (0 reaped)");
    assert!(started.elapsed() < Duration::from_secs(4));
    // The guard still does its work: a child the plugin leaves behind dies with the worker.
    let files = tempfile::tempdir().unwrap();
    let pidfile = files.path().join("returned");
    call(&host, "misbehave", &["spawn", pidfile.to_str().unwrap()]).unwrap();
    let child = spawned_pid(&pidfile);
    drop(host);
    gone_within_a_second(child, Instant::now(), "the host was dropped");
}

#[test]
fn a_plugins_children_inherit_only_stdin_stdout_and_stderr_from_the_worker() {
    let dir = plugin_dir(&["unruly"]);
    let files = tempfile::tempdir().unwrap();
    let listing = files.path().join("fds");
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(
        call(&host, "misbehave", &["fds", listing.to_str().unwrap()]).unwrap(),
        "listed"
    );
    // `ls -l /proc/self/fd/`: `lrwx------ … 5 -> socket:[123]`. Besides 0, 1 and 2, only the
    // directory `ls` itself opened to list them may be there.
    let text = fs::read_to_string(&listing).unwrap();
    let mut fds = Vec::new();
    for line in text.lines().filter(|l| l.contains(" -> ")) {
        let (left, target) = line.split_once(" -> ").unwrap();
        let fd: u32 = left.split_whitespace().last().unwrap().parse().unwrap();
        let own_listing = target.starts_with("/proc/") && target.ends_with("/fd");
        assert!(
            fd <= 2 || own_listing,
            "descriptor {fd} ({target}) of the worker leaked into the plugin's child:\n{text}"
        );
        fds.push(fd);
    }
    assert!(
        fds.starts_with(&[0, 1, 2]),
        "the child has its standard descriptors: {text}"
    );
}

#[test]
fn a_plugins_children_die_within_a_second_when_the_host_is_killed() {
    let dir = plugin_dir(&["unruly"]);
    let files = tempfile::tempdir().unwrap();
    let pidfile = files.path().join("child");
    let mut cli = Command::new(WORKER)
        .args(["run", "--plugins", dir.path().to_str().unwrap()])
        .args(["--isolate", "all", "misbehave", "spawn"])
        .arg(&pidfile)
        .arg("hang")
        .env("PLUGIN_HOST_LOG", "warn")
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = spawned_pid(&pidfile);
    // SAFETY: `kill` with a pid this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(cli.id() as i32, libc::SIGKILL) }, 0);
    cli.wait().unwrap();
    gone_within_a_second(child, Instant::now(), "the host was killed");
}

/// A fake worker: bash running `script` with `$2` the control socket's descriptor.
fn fake_host(script: &str) -> Host {
    let isolation = Isolation::new()
        .worker_command("/bin/bash", ["-c", script, "fake-worker"])
        .default_mode(Mode::Process)
        .start_timeout(Duration::from_secs(1))
        .call_timeout(Duration::from_secs(2));
    builder().placement(isolation).build()
}

fn frame(message: &plugin_protocol::Message) -> Vec<u8> {
    let mut out = Vec::new();
    plugin_protocol::encode(message, &mut out);
    out
}

fn write_bin(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A fake worker's handshake, as files in `dir` its script cats: a `Welcome` of protocol
/// version `version` with `cookie`, all but the pid (which the script appends, its own `$$`).
fn welcome_file(dir: &Path, name: &str, cookie: [u8; 16], version: u16) -> String {
    let mut bytes = frame(&plugin_protocol::Message::Welcome {
        cookie,
        version,
        pid: 0,
    });
    bytes.truncate(bytes.len() - 4);
    write_bin(dir, name, &bytes)
}

/// The `Registered` frame of plugin `hello` with its one command, as a file in `dir`.
fn registered_file(dir: &Path) -> String {
    use plugin_protocol::{Capability, Message};
    write_bin(
        dir,
        "registered",
        &frame(&Message::Registered {
            name: "hello".into(),
            version: "0.1.0".into(),
            capabilities: vec![Capability {
                kind: "command".into(),
                name: "hello".into(),
            }],
        }),
    )
}

#[test]
fn lying_workers_and_garbage_frames_never_crash_the_host() {
    use plugin_protocol::{Capability, Message, COOKIE};
    let dir = plugin_dir(&["hello"]);
    let files = tempfile::tempdir().unwrap();
    let f = files.path();
    let good = welcome_file(f, "good", COOKIE, 1);
    let bad_cookie = welcome_file(f, "cookie", *b"not a plugin-hst", 1);
    let bad_version = welcome_file(f, "version", COOKIE, 99);
    // Version 2 moves calls to the shared-memory channel: a worker that chooses it must
    // answer there too.
    let shm_version = welcome_file(f, "shm-version", COOKIE, 2);
    let garbage = write_bin(f, "garbage", b"\x05\x00\x00\x00\xeeGARBAGE");
    let huge = write_bin(f, "huge", &[0xff, 0xff, 0xff, 0xff, 1]);
    let registered = registered_file(f);
    // More capabilities than any plugin may register.
    let too_many = write_bin(
        f,
        "too-many",
        &frame(&Message::Registered {
            name: "hello".into(),
            version: "0.1.0".into(),
            capabilities: (0..=host::limits::MAX_CAPABILITIES)
                .map(|i| Capability {
                    kind: "command".into(),
                    name: format!("c{i}"),
                })
                .collect(),
        }),
    );
    // A refusal whose text the worker did not cut (a megabyte of escapes).
    let refused = write_bin(
        f,
        "refused",
        &frame(&Message::Refused {
            status: "failed".into(),
            reason: "load-failed".into(),
            message: "\u{1b}".repeat(1 << 20),
        }),
    );
    let pid = "le32() { for s in 0 8 16 24; do printf \"\\\\x$(printf %02x $((($1 >> s) & 255)))\"; done; }";
    let script = |body: &str| format!("{pid}\n{{ {body}; }} >&$2\nsleep 5");
    let cases = [
        (
            "silent",
            script("true"),
            "did not answer the handshake within 1s",
        ),
        ("gone", "exit 0".to_owned(), "ended before the handshake"),
        ("garbage", script(&format!("cat {garbage}")), "garbage"),
        ("huge", script(&format!("cat {huge}")), "garbage"),
        (
            "cookie",
            script(&format!("cat {bad_cookie}; le32 $$")),
            "another cookie",
        ),
        (
            "version",
            script(&format!("cat {bad_version}; le32 $$")),
            "protocol version 99",
        ),
        (
            "never-maps-the-channel",
            script(&format!("cat {shm_version}; le32 $$")),
            "did not answer on the shared-memory call channel within 1s",
        ),
        (
            "pid",
            script(&format!("cat {good}; le32 1")),
            "claims to be pid 1",
        ),
        (
            "other-message",
            script(&format!("cat {good}; le32 $$; cat {good}; le32 $$")),
            "answered the load request with a welcome message",
        ),
    ];
    for (case, script, needle) in cases {
        let mut host = fake_host(&script);
        let started = Instant::now();
        let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{case}");
        let hello = report_of(&reports, "hello");
        assert_eq!(hello.status, Status::Failed, "{case}: {hello:#?}");
        assert_eq!(
            hello.reason,
            Some(ReasonCode::HandshakeFailed),
            "{case}: {:?}",
            hello.message
        );
        let message = hello.message.as_deref().unwrap();
        assert!(message.contains("plugin `hello`"), "{case}: {message}");
        assert!(message.contains(needle), "{case}: {message}");
    }
    // Too many capabilities: refused as an in-process plugin would be.
    let mut host = fake_host(&script(&format!("cat {good}; le32 $$; cat {too_many}")));
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let hello = report_of(&reports, "hello");
    assert_eq!(
        hello.reason,
        Some(ReasonCode::InvalidCapability),
        "{hello:#?}"
    );
    assert!(
        hello
            .message
            .as_deref()
            .unwrap()
            .contains("more than 4096 capabilities"),
        "{hello:#?}"
    );
    // Its refusal is shown cut, then escaped: not six megabytes.
    let mut host = fake_host(&script(&format!("cat {good}; le32 $$; cat {refused}")));
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let hello = report_of(&reports, "hello");
    assert_eq!(hello.status, Status::Failed, "{:?}", hello.status);
    let message = hello.message.as_deref().unwrap();
    assert!(
        message.len() < 512 << 10 && message.contains("bytes cut"),
        "{} bytes: {}",
        message.len(),
        &message[message.len().saturating_sub(200)..]
    );
    // A worker that registers, then sends garbage instead of a reply: the call fails
    // `protocol-error`, and the next call tries a new worker (which lies the same way).
    let script = script(&format!(
        "cat {good}; le32 $$; cat {registered}; sleep 0.2; cat {garbage}"
    ));
    let mut host = fake_host(&script);
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let hello = report_of(&reports, "hello");
    assert_eq!(hello.status, Status::Loaded, "{:?}", hello.message);
    let error = call(&host, "hello", &["Ada"]).unwrap_err();
    assert_eq!(
        plugin_isolate::reason(&error),
        Some(ReasonCode::ProtocolError),
        "{error}"
    );
    assert!(error.message.contains("plugin `hello`"), "{error}");
    // A worker of protocol version 1 (calls over the control socket) that registers, then
    // never reads again: a call larger than the socket's buffer fails at the call's deadline
    // (`plugin-timeout`, the worker killed), where the host's write blocked until the worker
    // ended, forever for one that never does, holding the plugin's worker slot.
    let script = format!("{pid}\n{{ cat {good}; le32 $$; cat {registered}; }} >&$2\nsleep 120");
    let mut host = fake_host(&script);
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(report_of(&reports, "hello").status, Status::Loaded);
    let started = Instant::now();
    let error = call(&host, "hello", &[&"x".repeat(4 << 20)]).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
    assert_eq!(
        plugin_isolate::reason(&error),
        Some(ReasonCode::PluginTimeout),
        "{error}"
    );
    assert!(error.message.contains("was killed"), "{error}");
}

#[test]
fn a_worker_slow_to_restart_holds_up_no_lookup_of_its_plugin() {
    use plugin_protocol::COOKIE;
    let dir = plugin_dir(&["hello"]);
    let files = tempfile::tempdir().unwrap();
    let f = files.path();
    let good = welcome_file(f, "good", COOKIE, 1);
    let registered = registered_file(f);
    let marker = f.join("started-once");
    // The first worker registers, then ends (its call fails: the plugin is then not
    // healthy); every restart hangs in the handshake until the start timeout.
    let pid = "le32() { for s in 0 8 16 24; do printf \"\\\\x$(printf %02x $((($1 >> s) & 255)))\"; done; }";
    let script = format!(
        "{pid}\nif [ -e {m} ]; then sleep 10; exit; fi; touch {m}\n\
         {{ cat {good}; le32 $$; cat {registered}; }} >&$2\nsleep 0.3",
        m = marker.display()
    );
    let isolation = Isolation::new()
        .worker_command("/bin/bash", ["-c", &script, "fake-worker"])
        .default_mode(Mode::Process)
        .start_timeout(Duration::from_secs(3))
        .call_timeout(Duration::from_secs(2));
    let mut host = builder().placement(isolation).build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(report_of(&reports, "hello").status, Status::Loaded);
    std::thread::sleep(Duration::from_millis(500));
    let error = call(&host, "hello", &["Ada"]).unwrap_err();
    assert_eq!(
        plugin_isolate::reason(&error),
        Some(ReasonCode::PluginCrashed),
        "{error}"
    );
    std::thread::scope(|scope| {
        // The restart: a backoff, then a handshake that never comes.
        let restarting = scope.spawn(|| call(&host, "hello", &["Ada"]));
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let looked_up = host.registry().get::<CommandKind>("hello");
        let took = started.elapsed();
        assert!(looked_up.is_ok());
        assert!(
            took < Duration::from_millis(250),
            "the lookup waited {took:?}"
        );
        assert!(restarting.join().unwrap().is_err());
    });
}

/// Installs `file`'s new contents at `dest` the way a package manager does: written beside
/// it, then renamed over it (a reload opens the path afresh).
fn install_over(dest: &Path, edit: impl FnOnce(&Path)) {
    let staging = dest.with_extension("new");
    edit(&staging);
    fs::rename(&staging, dest).unwrap();
}

/// The twin fixture renamed `hello`: same plugin name, its `hello` answers
/// "hello from the twin", and it also registers `twin-only`.
fn install_twin_as_hello(dest: &Path) {
    install_over(dest, |staging| {
        fs::copy(crate::fixtures::fixtures().lib("hello-twin"), staging).unwrap();
        rewrite_provenance(staging, |j| j["name"] = "hello".into());
    });
}

#[test]
fn reload_under_a_steady_call_loop_fails_no_call_and_switches_to_the_new_build() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = plugin_dir(&["hello"]);
    let file = dir.path().join(file_name("hello"));
    let mut host = isolated_host();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(report_of(&reports, "hello").status, Status::Loaded);
    let first_pid = plugin_isolate::isolated(&host)[0].pid.unwrap();
    // A handle taken before any reload: it must follow every switch.
    let hello = host.registry().get::<CommandKind>("hello").unwrap();
    let stop = AtomicBool::new(false);
    let (calls, twins) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (stop, calls, twins) = (&stop, &calls, &twins);
            s.spawn(move || {
                let name = format!("T{t}");
                while !stop.load(Ordering::Relaxed) {
                    let args = [RStr::from(name.as_str())];
                    let out = hello
                        .call(RSlice::from_slice(&args))
                        .into_result()
                        .unwrap_or_else(|e| panic!("a call failed during reloads: {e}"));
                    let out = out.as_str();
                    if out == "hello from the twin" {
                        twins.fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert!(out.starts_with(&format!("hello, {name}!")), "{out}");
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..20 {
            let report = host
                .reload("hello")
                .unwrap_or_else(|e| panic!("reload {i}: {e}"));
            assert_eq!(report.status, Status::Loaded);
            assert!(report.isolated);
        }
        assert_eq!(twins.load(Ordering::Relaxed), 0, "same file, same answers");
        // A new build installed at the plugin's path: the next reload serves it.
        install_twin_as_hello(&file);
        let report = host.reload("hello").unwrap();
        assert_eq!(report.name.as_deref(), Some("hello"));
        let args = [RStr::from("Ada")];
        assert_eq!(
            hello.call(RSlice::from_slice(&args)).unwrap().as_str(),
            "hello from the twin"
        );
        let seen = calls.load(Ordering::Relaxed);
        while calls.load(Ordering::Relaxed) < seen + 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 20, "the threads called");
    assert!(
        twins.load(Ordering::Relaxed) >= 20,
        "new calls got the new build"
    );
    let status = &plugin_isolate::isolated(&host)[0];
    assert_eq!(status.starts, 22);
    assert_eq!(status.consecutive_failures, 0);
    assert_ne!(status.pid, Some(first_pid));
    // The old workers were stopped: only the current one is a child of this process.
    assert!(gone(first_pid), "the first worker still runs");
    // The capability the twin adds is served by no handle.
    assert!(host.registry().get::<CommandKind>("twin-only").is_err());
}

#[test]
fn a_failed_reload_keeps_the_old_worker_serving_and_says_why() {
    let dir = plugin_dir(&["hello", "redact"]);
    let file = dir.path().join(file_name("hello"));
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let hello = host.registry().get::<CommandKind>("hello").unwrap();
    let served = |host: &Host| {
        let args = [RStr::from("Ada")];
        let out = hello.call(RSlice::from_slice(&args)).unwrap();
        assert!(out.as_str().starts_with("hello, Ada!"), "{out}");
        let status = plugin_isolate::isolated(host)
            .into_iter()
            .find(|p| p.name == "hello")
            .unwrap();
        assert_eq!(status.starts, 1, "no switch happened");
    };

    // Garbage where the library was: refused before any worker starts.
    install_over(&file, |staging| {
        fs::write(staging, b"not a library at all").unwrap()
    });
    let e = host.reload("hello").unwrap_err();
    assert_eq!(e.reason(), Some(ReasonCode::NotALibrary), "{e}");
    assert!(e.to_string().contains("old worker serves on"), "{e}");
    served(&host);

    // Another plugin's file at the path.
    install_over(&file, |staging| {
        fs::copy(crate::fixtures::fixtures().lib("redact"), staging).unwrap();
    });
    let e = host.reload("hello").unwrap_err();
    assert!(
        matches!(
            e.reason(),
            Some(ReasonCode::NameMismatch | ReasonCode::DuplicatePlugin)
        ),
        "{e}"
    );
    served(&host);

    // A build that refuses to load in its worker (its `register` fails).
    install_over(&file, |staging| {
        fs::copy(crate::fixtures::fixtures().lib("bad-register"), staging).unwrap();
        rewrite_provenance(staging, |j| j["name"] = "hello".into());
    });
    let e = host.reload("hello").unwrap_err();
    assert_eq!(e.reason(), Some(ReasonCode::RegisterFailed), "{e}");
    served(&host);
}

#[test]
fn a_reload_that_drops_a_capability_is_refused() {
    let dir = plugin_dir(&[]);
    let file = copy_into(&dir, "hello", &file_name("hello"));
    install_twin_as_hello(&file);
    let mut host = isolated_host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let twin_only = host.registry().get::<CommandKind>("twin-only").unwrap();
    // The real `hello` registers `hello` only: `twin-only`, which a caller holds, is gone.
    install_over(&file, |staging| {
        fs::copy(crate::fixtures::fixtures().lib("hello"), staging).unwrap();
    });
    let e = host.reload("hello").unwrap_err();
    assert_eq!(e.reason(), Some(ReasonCode::CapabilitiesChanged), "{e}");
    assert!(e.to_string().contains("twin-only"), "{e}");
    assert_eq!(
        twin_only.call(RSlice::from_slice(&[])).unwrap().as_str(),
        "twin"
    );
    assert_eq!(call(&host, "hello", &[]).unwrap(), "hello from the twin");
}

/// What [`plugin_isolate::isolated`] reports for the plugin `name`.
fn status_of(host: &Host, name: &str) -> plugin_isolate::IsolatedPlugin {
    plugin_isolate::isolated(host)
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no isolated plugin `{name}`"))
}

fn by_handle(n: u64) -> plugin_isolate::CallsSent {
    plugin_isolate::CallsSent {
        by_handle: n,
        by_name: 0,
    }
}

#[test]
fn calls_go_by_handle_to_every_worker_after_a_restart_or_a_reload() {
    let dir = plugin_dir(&["unruly", "hello"]);
    let hello_file = dir.path().join(file_name("hello"));
    let mut host = isolated_host();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(report_of(&reports, "unruly").status, Status::Loaded);
    assert_eq!(status_of(&host, "unruly").sent, by_handle(0));

    // The first worker: commands, a transform and a stream, each call by handle.
    assert_eq!(call(&host, "misbehave", &["echo", "a"]).unwrap(), "a");
    assert_eq!(status_of(&host, "unruly").sent, by_handle(1));
    let transform = host.registry().get::<TransformKind>("misbehave").unwrap();
    let mut output = RVec::new();
    transform
        .apply(RSlice::from_slice(b"abc"), &mut output)
        .unwrap();
    assert_eq!(&output[..], b"cba");
    assert_eq!(status_of(&host, "unruly").sent, by_handle(2));
    let chunks: [&[u8]; 3] = [b"12", b"345", b"6"];
    let mut streamed = Vec::new();
    let done = plugin_isolate::transform_chunks(&host, "misbehave", chunks, |out| {
        streamed.extend_from_slice(out)
    })
    .unwrap();
    assert_eq!((done, &streamed[..]), (3, &b"215436"[..]));
    assert_eq!(status_of(&host, "unruly").sent, by_handle(5));
    let first_pid = status_of(&host, "unruly").pid;

    // A crash: the next call starts a worker, whose handles are resolved again.
    let e = call(&host, "misbehave", &["abort"]).unwrap_err();
    assert_eq!(
        plugin_isolate::reason(&e),
        Some(ReasonCode::PluginCrashed),
        "{e}"
    );
    assert_eq!(
        status_of(&host, "unruly").sent,
        by_handle(0),
        "no worker runs"
    );
    assert_eq!(call(&host, "misbehave", &["echo", "b"]).unwrap(), "b");
    let restarted = status_of(&host, "unruly");
    assert_ne!(restarted.pid, first_pid);
    assert_eq!(restarted.starts, 2);
    assert_eq!(restarted.sent, by_handle(1));

    // A reload of the same file: a new worker, by handle again.
    host.reload("unruly").unwrap();
    assert_eq!(status_of(&host, "unruly").sent, by_handle(0));
    output.clear();
    transform
        .apply(RSlice::from_slice(b"xyz"), &mut output)
        .unwrap();
    assert_eq!(&output[..], b"zyx");
    assert_eq!(status_of(&host, "unruly").sent, by_handle(1));

    // A reload of a new build that registers more (`twin-only` besides `hello`): the handle a
    // caller took before it reaches `hello` in the new worker, by handle.
    let hello = host.registry().get::<CommandKind>("hello").unwrap();
    let args = [RStr::from("Ada")];
    assert!(hello
        .call(RSlice::from_slice(&args))
        .unwrap()
        .as_str()
        .starts_with("hello, Ada!"));
    assert_eq!(status_of(&host, "hello").sent, by_handle(1));
    install_twin_as_hello(&hello_file);
    host.reload("hello").unwrap();
    for n in 1..=2 {
        let out = hello.call(RSlice::from_slice(&args)).unwrap();
        assert_eq!(out.as_str(), "hello from the twin");
        assert_eq!(status_of(&host, "hello").sent, by_handle(n));
    }
}

#[test]
fn a_version_2_worker_gets_its_calls_by_name() {
    let dir = plugin_dir(&["hello"]);
    let state_dir = tempfile::tempdir().unwrap();
    let starts = state_dir.path().join("starts");
    let mut host = scribbling_host(SERVE_BY_NAME, &starts);
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(report_of(&reports, "hello").status, Status::Loaded);
    for (n, name) in [(1, "Ada"), (2, "Grace"), (3, "Edsger")] {
        // The fake worker ends at a `call-handle` (which version 2 does not have): the call
        // would fail `plugin-crashed`.
        let out = call(&host, "hello", &[name]).unwrap();
        assert_eq!(out, format!("hello, {name}! (from a version-2 worker)"));
        let status = status_of(&host, "hello");
        assert_eq!(
            status.sent,
            plugin_isolate::CallsSent {
                by_handle: 0,
                by_name: n
            }
        );
        assert_eq!(status.starts, 1);
    }
}

#[test]
fn reloading_an_in_process_plugin_is_a_clear_error() {
    let dir = plugin_dir(&["hello"]);
    let mut host = host();
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let e = host.reload("hello").unwrap_err();
    assert!(matches!(e, host::ReloadError::InProcess { .. }), "{e:?}");
    assert_eq!(e.reason(), None);
    assert!(
        e.to_string().contains("only isolated plugins reload"),
        "{e}"
    );
    assert!(call(&host, "hello", &["Ada"])
        .unwrap()
        .starts_with("hello, Ada!"));
    let e = host.reload("nope").unwrap_err();
    assert!(matches!(e, host::ReloadError::NotLoaded { .. }), "{e:?}");
}

#[test]
fn transform_reloads_its_isolated_plugins_on_sighup() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};
    let dir = plugin_dir(&["redact"]);
    let mut cli = Command::new(WORKER)
        .args(["transform", "--plugins", dir.path().to_str().unwrap()])
        .args(["--isolate", "all", "redact"])
        .env("PLUGIN_HOST_LOG", "info")
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = cli.stderr.take().unwrap();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = cli.stdin.take().unwrap();
    let mut stdout = BufReader::new(cli.stdout.take().unwrap());
    let mut line = String::new();
    let mut roundtrip = |stdin: &mut std::process::ChildStdin, n: u32| {
        writeln!(stdin, "line {n} mail a{n}@b.org").unwrap();
        stdin.flush().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, format!("line {n} mail [REDACTED:email]\n"));
    };
    roundtrip(&mut stdin, 1);
    let log_has = |needle: &str| log.lock().unwrap().contains(needle);
    for round in 1..=2 {
        // SAFETY: `kill` with a pid this test started; no memory is involved.
        assert_eq!(unsafe { libc::kill(cli.id() as i32, libc::SIGHUP) }, 0);
        let until = Instant::now() + Duration::from_secs(30);
        while log
            .lock()
            .unwrap()
            .matches("reloaded plugin `redact`")
            .count()
            < 2 * round
        {
            assert!(
                Instant::now() < until,
                "no reload logged: {}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        roundtrip(&mut stdin, 1 + round as u32);
    }
    drop(stdin);
    let status = cli.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{}", log.lock().unwrap());
    assert!(log_has("SIGHUP: reloaded plugin `redact`"));
    assert!(!log_has("ERROR"), "{}", log.lock().unwrap());
}

/// The CLI's read block (`src/stream.rs`): a regular file as standard input is read in
/// blocks of exactly this size, so the chunks a transform sees are known.
const READ_BLOCK: usize = 256 * 1024;

/// `plugin-host transform --plugins DIR [--isolate all] NAME` with `input` as its standard
/// input: a regular file (read a whole block at a time), or a pipe (read as it comes).
fn transform_cli(
    dir: &Path,
    name: &str,
    isolated: bool,
    input: &[u8],
    file: bool,
) -> std::process::Output {
    let mut args = vec!["transform", "--plugins", dir.to_str().unwrap()];
    if isolated {
        args.extend(["--isolate", "all"]);
    }
    args.push(name);
    if !file {
        return cli_with(&args, &[], Some(input));
    }
    let mut stdin = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut stdin, input).unwrap();
    std::io::Seek::rewind(&mut stdin).unwrap();
    Command::new(WORKER)
        .args(&args)
        .env("PLUGIN_HOST_LOG", "warn")
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .stdin(stdin)
        .output()
        .unwrap()
}

/// The `error: …` line of a CLI run.
fn error_line(out: &std::process::Output) -> String {
    let stderr = stderr(out);
    let line = stderr.lines().find(|l| l.starts_with("error: "));
    line.unwrap_or_else(|| panic!("no error line: {stderr}"))
        .to_owned()
}

#[test]
fn the_cli_streams_an_isolated_transform_in_order_over_many_blocks() {
    let dir = plugin_dir(&["redact", "calls"]);
    // 2.4 MiB of lines through a pipe (chunks as the reads come, several blocks): each line
    // redacted, in order, as in-process.
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for i in 0..60_000 {
        input.extend_from_slice(format!("line {i:06} mail a{i}@b.org and more text\n").as_bytes());
        expected.extend_from_slice(
            format!("line {i:06} mail [REDACTED:email] and more text\n").as_bytes(),
        );
    }
    input.extend_from_slice(b"no newline at the end a@b.org");
    expected.extend_from_slice(b"no newline at the end [REDACTED:email]");
    assert!(input.len() > 8 * READ_BLOCK);
    for file in [false, true] {
        let isolated = transform_cli(dir.path(), "redact", true, &input, file);
        assert!(isolated.status.success(), "{}", stderr(&isolated));
        assert!(
            isolated.stdout == expected,
            "file {file}: the isolated output differs"
        );
        let in_process = transform_cli(dir.path(), "redact", false, &input, file);
        assert!(in_process.status.success(), "{}", stderr(&in_process));
        assert!(in_process.stdout == isolated.stdout, "file {file}");
    }
    // It was pipelined (`plugin_isolate::transform_chunks`), which the debug log says.
    let pipelined = "transform `redact` is isolated: its chunks are pipelined, two in flight";
    let debug = [("PLUGIN_HOST_LOG", Path::new("debug"))];
    let args = ["transform", "--plugins", dir.path().to_str().unwrap()];
    let out = cli_with(
        &[&args[..], &["--isolate", "all", "redact"]].concat(),
        &debug,
        Some(&input),
    );
    assert!(out.stdout == expected);
    assert!(stderr(&out).contains(pipelined), "{}", stderr(&out));
    let out = cli_with(&[&args[..], &["redact"]].concat(), &debug, Some(&input));
    assert!(out.stdout == expected);
    assert!(!stderr(&out).contains(pipelined), "{}", stderr(&out));

    // A plugin error far into a piped stream (`explode` echoes its input and panics at
    // `boom`): exit 1 and the message a call gives in-process; what came before the failed
    // chunk is written, whole lines in order, nothing after it.
    let boom_at = input.len() / 2;
    let line_start = input[..boom_at].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let mut exploding = input.clone();
    exploding[line_start..line_start + 4].copy_from_slice(b"boom");
    let isolated = transform_cli(dir.path(), "explode", true, &exploding, false);
    let in_process = transform_cli(dir.path(), "explode", false, &exploding, false);
    for out in [&isolated, &in_process] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        assert_eq!(
            error_line(out),
            "error: transform #1 panicked: explode saw boom"
        );
        assert!(
            out.stdout.len() <= line_start,
            "nothing after the failed chunk"
        );
        assert!(exploding.starts_with(&out.stdout));
        assert!(out.stdout.is_empty() || out.stdout.ends_with(b"\n"));
    }
}

#[test]
fn the_cli_fails_an_isolated_transform_mid_stream_as_a_call_would() {
    let dir = plugin_dir(&["unruly"]);
    // Regular files as input: chunk 1 is exactly the first block (4,096 lines of 64 bytes),
    // chunk 2 starts with the line after it, which tells `misbehave` what to do; it
    // reverses each chunk it is not told otherwise.
    let line = [&[b'a'; 63][..], b"\n"].concat();
    let first = line.repeat(READ_BLOCK / 64);
    let input = |second: &[u8]| {
        let mut input = first.clone();
        input.extend_from_slice(second);
        // Chunk 2 fills the second block exactly (its last line 64 to 127 bytes long).
        let lines = (READ_BLOCK - second.len()) / 64 - 1;
        input.extend_from_slice(&line.repeat(lines));
        let last = READ_BLOCK - second.len() - lines * 64;
        input.extend_from_slice(&[&vec![b'b'; last - 1][..], b"\n"].concat());
        assert_eq!(input.len(), 2 * READ_BLOCK);
        input.extend_from_slice(&line.repeat(10));
        input
    };
    let reversed = |chunk: &[u8]| chunk.iter().rev().copied().collect::<Vec<u8>>();

    // Served: chunk by chunk, the same bytes isolated and in-process.
    let served = input(b"reverse me\n");
    let isolated = transform_cli(dir.path(), "misbehave", true, &served, true);
    assert!(isolated.status.success(), "{}", stderr(&isolated));
    let mut expected = reversed(&first);
    expected.extend(reversed(&served[READ_BLOCK..2 * READ_BLOCK]));
    expected.extend(reversed(&served[2 * READ_BLOCK..]));
    assert!(isolated.stdout == expected, "the isolated output differs");
    let in_process = transform_cli(dir.path(), "misbehave", false, &served, true);
    assert!(in_process.stdout == isolated.stdout);

    // The plugin's error in chunk 2: its message, as in-process; chunk 1's output only.
    let failing = input(b"fail\n");
    let isolated = transform_cli(dir.path(), "misbehave", true, &failing, true);
    let in_process = transform_cli(dir.path(), "misbehave", false, &failing, true);
    for out in [&isolated, &in_process] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        assert_eq!(
            error_line(out),
            format!("error: transform #1 misbehave was asked to fail after {READ_BLOCK} bytes")
        );
        assert!(
            out.stdout == reversed(&first),
            "chunk 1's output, nothing else"
        );
    }

    // Its worker crashing in chunk 2: exit 1, the crash as a single call reports it (no
    // position in a stream), chunk 1's output only.
    let crashing = input(b"abort\n");
    let out = transform_cli(dir.path(), "misbehave", true, &crashing, true);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = error_line(&out);
    assert!(
        error.starts_with(
            "error: transform #1 plugin `unruly` crashed during transform `misbehave`: "
        ),
        "{error}"
    );
    assert!(
        error.contains("SIGABRT") && error.ends_with("[plugin-crashed]"),
        "{error}"
    );
    assert!(!error.contains("chunk"), "{error}");
    assert!(
        out.stdout == reversed(&first),
        "chunk 1's output, nothing else"
    );
}

/// How the scribbling worker (this test binary, re-run as [`scribbling_worker`]) damages the
/// call channel once the host's first call arrives.
const SCRIBBLE_ALWAYS: &str = "always";
/// Only the first worker scribbles; the ones started after it serve calls.
const SCRIBBLE_ONCE: &str = "once";
/// The channel is left intact, but each worker answers the first call with a lying reply (the
/// n-th worker the n-th lie of [`scribbling_worker`]).
const LYING_REPLIES: &str = "lies";
/// No scribbling: every worker speaks version 2 (no calls by handle) and answers each call
/// to `command` `hello` by name as the real plugin would; any other message ends it.
const SERVE_BY_NAME: &str = "serve-by-name";

/// A host whose worker is this test binary running [`scribbling_worker`] in `mode`, counting
/// its starts in `starts` (a file).
fn scribbling_host(mode: &str, starts: &Path) -> Host {
    let exe = std::env::current_exe().unwrap();
    let isolation = Isolation::new()
        .worker_command(
            exe,
            [
                "isolate::scribbling_worker",
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
                // The host appends `--fd N --shm M`: after `--`, free arguments the worker
                // reads (and test filters that match no test).
                "--",
                mode,
                starts.to_str().unwrap(),
            ],
        )
        .default_mode(Mode::Process)
        // Deadlines far beyond what these workers need on a quiet machine: each test expects
        // another failure than a timeout, and a busy 2-core machine (a full test run) can take
        // seconds to move 128 MiB of flood.
        .start_timeout(Duration::from_secs(20))
        .call_timeout(Duration::from_secs(20));
    builder().placement(isolation).build()
}

#[test]
fn a_worker_scribbling_over_the_shared_channel_fails_the_call_and_never_crashes_the_host() {
    let dir = plugin_dir(&["hello"]);
    let state_dir = tempfile::tempdir().unwrap();

    // Every worker scribbles (out-of-range positions, then an impossible frame length, then
    // positions again): each call fails `protocol-error` at once, saying what happened, and
    // the third failure in a row retires the plugin, with that reason.
    let starts = state_dir.path().join("always");
    let mut host = scribbling_host(SCRIBBLE_ALWAYS, &starts);
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let hello = report_of(&reports, "hello");
    assert_eq!(hello.status, Status::Loaded, "{:?}", hello.message);
    assert!(hello.isolated);
    let handle = host.registry().get::<CommandKind>("hello").unwrap();
    let damage = [
        "peer's write position is out of range",
        "message length over the limit",
        "peer's write position is out of range",
    ];
    for (i, needle) in damage.iter().enumerate() {
        let started = Instant::now();
        let args = [RStr::from("Ada")];
        let error = handle
            .call(RSlice::from_slice(&args))
            .into_result()
            .expect_err("a scribbled channel cannot give a reply");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "call {i} waited {:?}: the corruption was not noticed at once",
            started.elapsed()
        );
        assert_eq!(
            plugin_isolate::reason(&error),
            Some(ReasonCode::ProtocolError),
            "call {i}: {error}"
        );
        let message = error.message.as_str();
        for n in [
            "plugin `hello`",
            "sent garbage during command `hello`",
            "corrupt shared channel",
            needle,
            "killed",
        ] {
            assert!(message.contains(n), "call {i} lacks {n:?}: {message}");
        }
    }
    assert_eq!(
        fs::read_to_string(&starts).unwrap().len(),
        3,
        "three workers"
    );
    let state = &plugin_isolate::isolated(&host)[0];
    assert_eq!(state.starts, 3, "{state:?}");
    let (reason, why) = state
        .unregistered
        .clone()
        .expect("retired after 3 failures");
    assert_eq!(reason, ReasonCode::ProtocolError);
    assert!(
        why.contains("unregistered after 3 consecutive failures"),
        "{why}"
    );
    // Retired: the old handle fails with the reason, no new worker is started, lookups fail.
    let args = [RStr::from("Ada")];
    let error = handle.call(RSlice::from_slice(&args)).unwrap_err();
    assert!(error.message.ends_with("[protocol-error]"), "{error}");
    assert_eq!(fs::read_to_string(&starts).unwrap().len(), 3);
    match host.registry().get::<CommandKind>("hello") {
        Err(e @ LookupError::Unregistered { .. }) => {
            assert_eq!(e.reason(), Some(ReasonCode::ProtocolError))
        }
        Err(e) => panic!("not retired: {e}"),
        Ok(_) => panic!("a retired plugin is still registered"),
    }

    // Only the first worker scribbles: the call fails, and the next is served by a restarted
    // worker, which resets the failure count.
    let starts = state_dir.path().join("once");
    let mut host = scribbling_host(SCRIBBLE_ONCE, &starts);
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let error = call(&host, "hello", &["Ada"]).unwrap_err();
    assert_eq!(
        plugin_isolate::reason(&error),
        Some(ReasonCode::ProtocolError),
        "{error}"
    );
    assert_eq!(
        call(&host, "hello", &["Ada"]).unwrap(),
        "hello, Ada! (from a restarted fake worker)"
    );
    let state = &plugin_isolate::isolated(&host)[0];
    assert_eq!(
        (
            state.starts,
            state.consecutive_failures,
            state.unregistered.is_none()
        ),
        (2, 0, true),
        "{state:?}"
    );
}

#[test]
fn a_worker_sending_lying_replies_fails_the_call_and_is_killed() {
    let dir = plugin_dir(&["hello"]);
    let state_dir = tempfile::tempdir().unwrap();
    let starts = state_dir.path().join("lies");
    let mut host = scribbling_host(LYING_REPLIES, &starts);
    host.scan(&[dir.path()], ScanMode::Load).unwrap();
    let lies = [
        "sent garbage during command `hello` (a reply whose length disagrees with the message \
         that carried it)",
        "answered command `hello` with a reply (to another call) message",
        "sent garbage during command `hello` (an error message that is not UTF-8)",
    ];
    for (i, lie) in lies.iter().enumerate() {
        let error = call(&host, "hello", &["Ada"]).expect_err("a lying reply is no reply");
        assert_eq!(
            plugin_isolate::reason(&error),
            Some(ReasonCode::ProtocolError),
            "lie {i}: {error}"
        );
        let message = error.message.as_str();
        // Named once, also in the third failure's "unregistered …; the last: its worker …".
        assert_eq!(message.matches("plugin `hello`").count(), 1, "{message}");
        for n in [
            "worker",
            lie,
            "it was killed",
            "The next call starts a new worker",
        ] {
            assert!(message.contains(n), "lie {i} lacks {n:?}: {message}");
        }
    }
    // Three lies in a row: retired, with that reason; no lie ever reached the caller as output.
    let state = &plugin_isolate::isolated(&host)[0];
    assert_eq!(state.starts, 3, "{state:?}");
    assert_eq!(
        state.unregistered.as_ref().map(|(reason, _)| *reason),
        Some(ReasonCode::ProtocolError),
        "{state:?}"
    );
}

/// The worker answers the first call only after writing 256 MiB to stderr, without a newline.
const FLOOD_STDERR: &str = "flood-stderr";
/// The worker answers the first call only after sending 200,000 valid `registered` messages
/// (1 KiB each) on its control socket.
const FLOOD_CONTROL: &str = "flood-control";

/// The worker answers the first call only after sending 8 valid `refused` messages of 16 MiB
/// each on its control socket (128 MiB in 8 frames, far under the 64-message bound).
const FLOOD_LARGE: &str = "flood-large";

/// This process's peak resident set (`VmHWM`), in bytes, after resetting it to the current
/// resident set (where the kernel allows it).
fn reset_peak_rss() -> u64 {
    let _ = fs::write("/proc/self/clear_refs", "5");
    peak_rss()
}

fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_worker_flooding_stderr_or_its_control_socket_is_killed_and_the_host_stays_small() {
    let dir = plugin_dir(&["hello"]);
    let state_dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            FLOOD_STDERR,
            "wrote a line of more than 65536 bytes to stderr (the limit of one line)",
        ),
        (
            FLOOD_CONTROL,
            "sent more than 64 control messages that were not asked for",
        ),
        (
            FLOOD_LARGE,
            "sent control messages that were not asked for of more than 4194304 bytes in all \
             (the limit of its queue; the last, a refused message, of 16777246 bytes)",
        ),
    ];
    for (mode, bound) in cases {
        let starts = state_dir.path().join(mode);
        let mut host = scribbling_host(mode, &starts);
        let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
        assert_eq!(report_of(&reports, "hello").status, Status::Loaded);
        let before = reset_peak_rss();
        let error = call(&host, "hello", &["Ada"]).expect_err("a flooding worker is cut off");
        let grown = peak_rss().saturating_sub(before);
        // Generous (other tests run in this process meanwhile), and far below the floods'
        // 200 MiB and more.
        assert!(
            grown < 96 << 20,
            "{mode}: the host grew by {} MiB",
            grown >> 20
        );
        assert_eq!(
            plugin_isolate::reason(&error),
            Some(ReasonCode::ProtocolError),
            "{mode}: {error}"
        );
        let message = error.message.as_str();
        for n in ["plugin `hello`'s worker", bound, "it was killed"] {
            assert!(message.contains(n), "{mode} lacks {n:?}: {message}");
        }
        assert!(
            plugin_isolate::isolated(&host)[0].pid.is_none(),
            "{mode}: the worker is gone"
        );
    }
}

/// Not a test: the fake worker [`scribbling_host`] starts (this binary, re-run on this one
/// function with `--include-ignored`). It completes the version-2 handshake as a real worker
/// does — `welcome` on the control socket and again on the shared-memory call channel, then
/// `registered` for `hello` — and, when the host's first call arrives, scribbles over the
/// channel's reply ring: a write position claiming more than the ring holds, or a frame
/// length far over any limit. In mode `once`, only the first worker does; later ones serve.
#[test]
#[ignore = "a fake worker for a_worker_scribbling_over_the_shared_channel_…, run by that test"]
fn scribbling_worker() {
    use plugin_protocol::{Capability, Message, COOKIE};
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;

    let args: Vec<String> = std::env::args().collect();
    let after = |flag: &str| {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).cloned()
    };
    let (Some(fd), Some(shm)) = (after("--fd"), after("--shm")) else {
        return; // Run by hand or with --include-ignored: nothing to serve.
    };
    let at = args.iter().position(|a| a == "--").unwrap();
    let (mode, starts) = (args[at + 1].clone(), args[at + 2].clone());
    let mut count = fs::read_to_string(&starts).unwrap_or_default();
    count.push('x');
    fs::write(&starts, &count).unwrap();
    let nth = count.len();
    let scribble = mode != SERVE_BY_NAME && (mode == SCRIBBLE_ALWAYS || nth == 1);

    let (fd, shm): (RawFd, RawFd) = (fd.parse().unwrap(), shm.parse().unwrap());
    // SAFETY: the host passed this descriptor, open and ours alone, as the control socket.
    let mut socket = unsafe { UnixStream::from_raw_fd(fd) };
    let read_frame = |socket: &mut UnixStream| {
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).unwrap();
        let mut frame = len.to_vec();
        frame.resize(4 + u32::from_le_bytes(len) as usize, 0);
        socket.read_exact(&mut frame[4..]).unwrap();
        plugin_protocol::decode(&frame).unwrap().0
    };
    let bytes = |m: &Message| {
        let mut out = Vec::new();
        plugin_protocol::encode(m, &mut out);
        out
    };
    assert!(matches!(read_frame(&mut socket), Message::Hello { .. }));
    let welcome = bytes(&Message::Welcome {
        cookie: COOKIE,
        version: 2,
        pid: std::process::id(),
    });
    socket.write_all(&welcome).unwrap();
    // SAFETY: `dup` of the descriptor the host passed; the copy is ours to own.
    let copy = unsafe { OwnedFd::from_raw_fd(libc::dup(shm)) };
    let mut channel = plugin_isolate::shm::Channel::from_fd(copy).unwrap();
    channel.send(&welcome, None).unwrap();
    assert!(matches!(read_frame(&mut socket), Message::Load(_)));
    let registered = Message::Registered {
        name: "hello".into(),
        version: "0.1.0".into(),
        capabilities: vec![Capability {
            kind: "command".into(),
            name: "hello".into(),
        }],
    };
    socket.write_all(&bytes(&registered)).unwrap();

    let mut rx = Vec::new();
    loop {
        if channel.recv_into(&mut rx, None).is_err() {
            return;
        }
        let id = match plugin_protocol::decode(&rx).unwrap().0 {
            Message::Call {
                id,
                kind,
                name,
                payload: plugin_protocol::Payload::Args(args),
            } if mode == SERVE_BY_NAME && kind == "command" && name == "hello" => {
                let text = format!("hello, {}! (from a version-2 worker)", args.join(", "));
                let reply = Message::Reply {
                    id,
                    result: Ok(text.into_bytes()),
                };
                channel.send(&bytes(&reply), None).unwrap();
                continue;
            }
            // A version-2 worker cannot read `call-handle`: ending here fails the test.
            _ if mode == SERVE_BY_NAME => return,
            Message::Call { id, .. } => id,
            _ => return, // shutdown
        };
        if nth == 1 && mode == FLOOD_STDERR {
            let chunk = vec![b'x'; 1 << 20];
            let mut stderr = std::io::stderr().lock();
            for _ in 0..256 {
                if stderr.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
        if nth == 1 && mode == FLOOD_CONTROL {
            let flood = bytes(&Message::Registered {
                name: "x".repeat(1024),
                version: "0.1.0".into(),
                capabilities: Vec::new(),
            });
            for _ in 0..200_000 {
                if socket.write_all(&flood).is_err() {
                    break;
                }
            }
        }
        if nth == 1 && mode == FLOOD_LARGE {
            let flood = bytes(&Message::Refused {
                status: "failed".into(),
                reason: "load-failed".into(),
                message: "x".repeat(16 << 20),
            });
            for _ in 0..8 {
                if socket.write_all(&flood).is_err() {
                    break;
                }
            }
        }
        if mode == LYING_REPLIES {
            let mut frame = Vec::new();
            match nth {
                // A reply's head saying 5 bytes of output, in a message carrying 40.
                1 => {
                    plugin_protocol::encode_reply_head(id, 5, &mut frame);
                    frame.extend_from_slice(&[b'x'; 40]);
                }
                // The reply to another call.
                2 => plugin_protocol::encode_reply(id + 1, Ok(b"hello, Ada!"), &mut frame),
                // An error message that is not UTF-8.
                _ => {
                    plugin_protocol::encode_reply(id, Err((false, "abcdefgh")), &mut frame);
                    let at = frame.len() - 8;
                    frame[at..].copy_from_slice(&[0xff; 8]);
                }
            }
            channel.send(&frame, None).unwrap();
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        if !scribble || [FLOOD_STDERR, FLOOD_CONTROL, FLOOD_LARGE].contains(&mode.as_str()) {
            let reply = Message::Reply {
                id,
                result: Ok(b"hello, Ada! (from a restarted fake worker)".to_vec()),
            };
            channel.send(&bytes(&reply), None).unwrap();
            continue;
        }
        // The region, mapped again here to write where the channel never would.
        // SAFETY: `fstat` on an open descriptor into a zeroed struct; result checked.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            assert_eq!(libc::fstat(shm, &mut st), 0);
            st.st_size as usize
        };
        // SAFETY: a fresh shared mapping of the whole memfd (no address hint); checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                shm,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let word = |offset: usize| {
            assert!(offset + 4 <= size && offset % 4 == 0);
            // SAFETY: in bounds of the live mapping (checked above) and 4-aligned (the
            // mapping is page-aligned); shared words are only ever accessed atomically.
            unsafe { &*(base.cast::<u8>().add(offset) as *const std::sync::atomic::AtomicU32) }
        };
        let seq = std::sync::atomic::Ordering::SeqCst;
        let capacity = word(8).load(seq) as usize;
        // Ring 1 (worker → host): control at 0x180, `tail` its first word; data after the
        // 4096-byte header and ring 0's data.
        let tail = word(0x180);
        let written = tail.load(seq);
        if nth % 2 == 1 {
            // A write position 2 GiB ahead of what the host has read.
            tail.store(written.wrapping_add(0x8000_0000), seq);
        } else {
            // A whole frame header, claiming a length no message may have. Frames are not
            // aligned: byte by byte, wrapping as the ring does.
            for (k, b) in 0xFFFF_FFF0u32.to_le_bytes().into_iter().enumerate() {
                let at = 4096 + capacity + (written as usize + k) % capacity;
                assert!(at < size);
                // SAFETY: in bounds of the live mapping (checked above); a byte store.
                unsafe { std::ptr::write_volatile(base.cast::<u8>().add(at), b) };
            }
            tail.store(written.wrapping_add(4), seq);
        }
        // No futex wake-up: the host re-reads the ring within its liveness slice. Then wait
        // to be killed, as a lying worker would (never more than a minute).
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
}

#[test]
fn a_pool_of_workers_serves_a_call_while_another_hangs() {
    // Two worker slots: a call that hangs holds one worker; a call made meanwhile is served by
    // the other at once (with one worker it would wait for the first call's deadline). The
    // hanging call still fails `plugin-timeout` at its own deadline, its worker killed, and
    // the plugin serves on.
    let dir = plugin_dir(&["unruly"]);
    let scratch = tempfile::tempdir().unwrap();
    let mut host = builder()
        .placement(isolation().workers(2).call_timeout(Duration::from_secs(4)))
        .build();
    let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
    assert_eq!(
        reports[0].status,
        Status::Loaded,
        "{:?}",
        reports[0].message
    );
    let in_flight = scratch.path().join("in-flight");
    let hung = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let hanging = s.spawn(|| {
            let file = in_flight.to_str().unwrap();
            let result = call(&host, "misbehave", &["spawn", file, "hang"]);
            hung.store(true, std::sync::atomic::Ordering::SeqCst);
            result
        });
        // The hanging call is inside its worker once the file exists.
        while !in_flight.exists() {
            assert!(!hanging.is_finished(), "the hanging call ended early");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            call(&host, "misbehave", &["echo", "meanwhile"]).unwrap(),
            "meanwhile"
        );
        assert!(
            !hung.load(std::sync::atomic::Ordering::SeqCst),
            "the second call waited for the first: calls did not run at once"
        );
        let e = hanging.join().unwrap().unwrap_err();
        assert_eq!(
            plugin_isolate::reason(&e),
            Some(ReasonCode::PluginTimeout),
            "{e}"
        );
        assert!(e.message.contains("within 4s"), "{e}");
    });
    for _ in 0..4 {
        assert_eq!(call(&host, "misbehave", &["echo", "ok"]).unwrap(), "ok");
    }
    assert_eq!(plugin_isolate::isolated(&host)[0].consecutive_failures, 0);
}
