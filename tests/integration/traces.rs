//! A plugin that exits, hangs or crashes while it is being loaded — or, in-process, during a
//! call — leaves a trace of which plugin it was, and never a report that looks like success.

use crate::support::*;

#[test]
fn a_plugin_that_exits_while_registering_fails_the_run() {
    let dir = plugin_dir(&["hello", "unruly"]);
    for json in [false, true] {
        let mut args = vec![
            "scan",
            dir.path().to_str().unwrap(),
            "--plugin-config",
            "unruly=exit",
        ];
        if json {
            args.push("--json");
        }
        let out = cli(&args);
        assert_eq!(
            out.status.code(),
            Some(host::PLUGIN_EXIT_STATUS),
            "{}",
            stdout(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("ended (exit() was called) while registering plugin `unruly`")
                && err.contains(&file_name("unruly")),
            "{err}"
        );
        if !json {
            // Rows are written as plugins finish: `hello` (sorted first) is already out.
            assert!(stdout(&out).contains("loaded    hello"), "{}", stdout(&out));
        }
    }
}

#[test]
fn a_plugin_that_crashes_while_registering_is_named() {
    use std::os::unix::process::ExitStatusExt;
    let dir = plugin_dir(&["unruly"]);
    for (mode, signal, name) in [("segfault", 11, "SIGSEGV"), ("abort", 6, "SIGABRT")] {
        let config = format!("unruly={mode}");
        let out = cli(&[
            "scan",
            dir.path().to_str().unwrap(),
            "--plugin-config",
            &config,
        ]);
        assert_eq!(
            out.status.signal(),
            Some(signal),
            "{mode}: {:?}",
            out.status
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{name} -- error: fatal signal while registering plugin `unruly`"
            )),
            "{mode}: {err}"
        );
    }
}

#[test]
fn a_plugin_that_does_not_return_is_named() {
    // Two of them: the watchdog must warn about the second one too.
    let dir = plugin_dir(&["unruly"]);
    let twin = dir.path().join("libzz_twin.so");
    std::fs::copy(crate::fixtures::fixtures().lib("unruly"), &twin).unwrap();
    rewrite_provenance(&twin, |j| j["name"] = "unrulx".into());
    let out = cli(&[
        "scan",
        dir.path().to_str().unwrap(),
        "--plugin-config",
        "unruly=hang",
        "--plugin-config",
        "unrulx=hang",
        "--hang-warning",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for name in ["unruly", "unrulx"] {
        assert!(
            err.contains(&format!("registering plugin `{name}`"))
                && err.contains("has not returned after"),
            "{name}: {err}"
        );
    }
    assert!(
        stdout(&out).contains("loaded    unruly"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn each_step_is_logged_before_it_runs() {
    let dir = plugin_dir(&["hello"]);
    let out = cli(&["scan", dir.path().to_str().unwrap(), "--log", "host=debug"]);
    let err = stderr(&out);
    let loading = err.find(&format!(
        "loading {}",
        dir.path().join(file_name("hello")).display()
    ));
    let registering = err.find("registering hello");
    assert!(
        loading.is_some() && registering.is_some() && loading < registering,
        "{err}"
    );
}

#[test]
fn an_in_process_plugin_that_exits_or_aborts_in_a_call_is_named() {
    use std::os::unix::process::ExitStatusExt;
    let dir = plugin_dir(&["unruly"]);
    let d = dir.path().to_str().unwrap();
    let file = file_name("unruly");
    for (what, args, stdin) in [
        ("command", &["run", "--plugins", d, "misbehave"][..], None),
        (
            "transform",
            &["transform", "--plugins", d, "misbehave"][..],
            Some(()),
        ),
    ] {
        let note = format!("calling {what} `misbehave` of plugin `unruly` (");
        for mode in ["exit", "abort"] {
            let mut args = args.to_vec();
            let input = format!("{mode}\n");
            if stdin.is_none() {
                args.push(mode);
            }
            let out = cli_with(&args, &[], stdin.map(|()| input.as_bytes()));
            let err = stderr(&out);
            if mode == "exit" {
                // Not the plugin's 7 (nor success): the host's status for a plugin's exit.
                assert_eq!(
                    out.status.code(),
                    Some(host::PLUGIN_EXIT_STATUS),
                    "{what}: {err}"
                );
                assert!(
                    err.contains(&format!(
                        "the process was ended (exit() was called) while {note}"
                    )),
                    "{what}: {err}"
                );
            } else {
                assert_eq!(out.status.signal(), Some(6), "{what}: {:?}", out.status);
                assert!(
                    err.contains(&format!("SIGABRT -- error: fatal signal while {note}")),
                    "{what}: {err}"
                );
            }
            assert!(err.contains(&file), "{what} {mode}: {err}");
        }
    }
}
