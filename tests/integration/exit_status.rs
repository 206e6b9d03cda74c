//! The CLI's contract with scripts: the book's exit-status table (each row), output into
//! a closed pipe, flags refused at parse time, and errors said once.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{cli, cli_with, file_name, plugin_dir, rewrite_provenance, stderr, stdout};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A plugin directory whose `hello` and `redact` are refused whatever the policy (another
/// target: `target-mismatch`).
fn refused_dir() -> tempfile::TempDir {
    let dir = plugin_dir(&["hello", "redact"]);
    for name in ["hello", "redact"] {
        rewrite_provenance(&dir.path().join(file_name(name)), |p| {
            p["target"] = "i686-unknown-linux-gnu".into()
        });
    }
    dir
}

/// How often `needle` occurs in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn exit_status_0_success() {
    let empty = tempfile::tempdir().unwrap();
    let out = cli(&["run", "--plugins", s(empty.path()), "version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("plugin-host "), "{}", stdout(&out));
}

#[test]
fn exit_status_1_a_refused_plugin_on_run_and_transform_said_once() {
    let dir = refused_dir();
    let plugins = s(dir.path());
    let out = cli(&["run", "--plugins", plugins, "hello", "Ada"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("command `hello` is declared by plugin `hello`, which could not be used"),
        "{err}"
    );
    // Once: not also as a warning before the error.
    assert_eq!(count(&err, "[target-mismatch]"), 1, "{err}");
    assert_eq!(count(&err, "i686-unknown-linux-gnu"), 1, "{err}");

    let out = cli_with(
        &["transform", "--plugins", plugins, "redact"],
        &[],
        Some(b"x\n"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("transform `redact`"), "{err}");
    assert_eq!(count(&err, "[target-mismatch]"), 1, "{err}");
}

#[test]
fn exit_status_1_a_command_no_plugin_provides() {
    let empty = tempfile::tempdir().unwrap();
    let out = cli(&["run", "--plugins", s(empty.path()), "frobnicate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`frobnicate`"), "{err}");
    assert!(
        err.contains("version"),
        "the available commands are listed: {err}"
    );
    let out = cli_with(
        &["transform", "--plugins", s(empty.path()), "echo,frob"],
        &[],
        Some(b"x\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn exit_status_2_usage_configuration_and_environment_errors_said_once() {
    let empty = tempfile::tempdir().unwrap();
    // Usage: an unknown flag, a flag's bad value.
    let out = cli(&["run", "--no-such-flag", "version"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Configuration: the file $PLUGIN_HOST_CONFIG names does not exist. The OS error is
    // said once (it was printed twice: the error's message and its source).
    let missing = empty.path().join("missing.toml");
    let out = cli_with(
        &["run", "--plugins", s(empty.path()), "version"],
        &[("PLUGIN_HOST_CONFIG", &missing)],
        None,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(s(&missing)) && err.contains("$PLUGIN_HOST_CONFIG"),
        "{err}"
    );
    assert_eq!(count(&err, "(os error 2)"), 1, "{err}");

    // Environment: a plugin directory that does not exist.
    let gone = empty.path().join("gone");
    let out = cli(&["run", "--plugins", s(&gone), "hello"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot list plugin directory"), "{err}");
    assert_eq!(count(&err, "(os error 2)"), 1, "{err}");
}

#[test]
fn call_timeout_beyond_the_maximum_is_refused_when_parsed() {
    let empty = tempfile::tempdir().unwrap();
    for value in ["1e19s", "86401s", "1e300m"] {
        let out = cli(&[
            "run",
            "--plugins",
            s(empty.path()),
            "--call-timeout",
            value,
            "version",
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains("--call-timeout"), "{err}");
        assert!(err.contains("86400s (one day)"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = cli(&[
        "run",
        "--plugins",
        s(empty.path()),
        "--call-timeout",
        "86400s",
        "version",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Runs `plugin-host ARGS` with its stdout a pipe whose reader is already gone.
fn into_closed_pipe(args: &[&str], cwd: &Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args(args)
        .current_dir(cwd)
        .env("PLUGIN_HOST_LOG", "info")
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = plugin_dir(&["hello", "wc"]);
    let work = tempfile::tempdir().unwrap();
    let out = into_closed_pipe(&["run", "--plugins", s(dir.path()), "version"], work.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // `lock` still writes its lock file: the output is dropped, not the work.
    let lock = work.path().join("plugin-host.lock");
    let out = into_closed_pipe(
        &["lock", s(dir.path()), "--lock-file", s(&lock)],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(text.contains("name = \"hello\"") && text.contains("name = \"wc\""));
}

#[test]
fn sign_without_a_key_names_the_key_and_the_command_that_makes_it() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("libx.so");
    std::fs::write(&file, b"plugin bytes").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plugin-host"))
            .args(args)
            .current_dir(work.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["sign", "libx.so"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("plugin-host.key"), "{err}");
    // The command it prints, run literally, makes the key `sign` then finds.
    let command = err
        .split('`')
        .find(|part| part.starts_with("plugin-host keygen"))
        .unwrap_or_else(|| panic!("no keygen command in: {err}"));
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "plugin-host");
    let made = run(&words[1..]);
    assert!(made.status.success(), "{}", stderr(&made));
    let out = run(&["sign", "libx.so"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(work.path().join("libx.so.minisig").is_file());
}

#[cfg(unix)]
#[test]
fn a_config_or_lock_linked_to_dev_zero_or_a_fifo_key_is_an_error_at_once() {
    let empty = tempfile::tempdir().unwrap();
    // $PLUGIN_HOST_CONFIG naming /dev/zero (through a link): an error, not a read without end.
    let zero = empty.path().join("config.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let out = cli_with(
        &["scan", s(empty.path())],
        &[("PLUGIN_HOST_CONFIG", &zero)],
        None,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("configuration file is a device, not a regular file"),
        "{err}"
    );
    std::fs::remove_file(&zero).unwrap();

    let lock = empty.path().join("plugin-host.lock");
    std::os::unix::fs::symlink("/dev/zero", &lock).unwrap();
    let out = cli(&["scan", s(empty.path()), "--lock-file", s(&lock)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("lock file is a symbolic link"), "{err}");

    let fifo = empty.path().join("key.pub");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = cli(&["scan", s(empty.path()), "--trusted-key", s(&fifo)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key file is a FIFO, not a regular file"),
        "{err}"
    );
}

#[test]
fn the_builtin_row_keeps_the_table_in_line() {
    let empty = tempfile::tempdir().unwrap();
    let out = cli(&["scan", s(empty.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let column = |line: &str, word: &str| line.find(word);
    let head = text.lines().find(|l| l.starts_with("STATUS")).unwrap();
    let row = text.lines().find(|l| l.starts_with("builtin")).unwrap();
    assert_eq!(column(head, "PATH"), column(row, "<builtin>"), "{text}");
    // The list goes on below, in its own column.
    let caps = column(head, "CAPABILITIES").unwrap();
    let next = text
        .lines()
        .skip_while(|l| !l.starts_with("builtin"))
        .nth(1)
        .unwrap();
    assert_eq!(next.find(|c: char| c != ' '), Some(caps), "{text}");
    assert!(next.trim().starts_with("transform:echo"), "{text}");
}

#[test]
fn run_passes_every_word_after_the_command_to_the_plugin() {
    // An argument for the plugin that looks like an option of `run` is the plugin's: it was
    // taken as `run`'s (another plugin directory, signatures off, help) when it came first.
    let dir = plugin_dir(&["hello"]);
    let elsewhere = plugin_dir(&["panic-register"]);
    let elsewhere_flag = format!("--plugins={}", s(elsewhere.path()));
    for arg in [
        "--help",
        "-h",
        elsewhere_flag.as_str(),
        "--signatures=ignore",
        "--log=trace",
        "--json",
    ] {
        let out = cli(&["run", "--plugins", s(dir.path()), "hello", arg]);
        assert_eq!(out.status.code(), Some(0), "{arg}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with(&format!("hello, {arg}!")),
            "{arg}: {}",
            stdout(&out)
        );
        assert!(!stderr(&out).contains("panic"), "{arg}: {}", stderr(&out));
    }
}

#[test]
fn a_log_filter_is_never_compiled_as_a_regular_expression() {
    // A field filter whose regular expression grows exponentially as a DFA: it took minutes
    // and hundreds of megabytes before any command ran.
    let empty = tempfile::tempdir().unwrap();
    let filter = format!("[{{a=.*a{}}}]", ".".repeat(20));
    let out = crate::support::cli_with_rlimit(
        &[
            "--log",
            &filter,
            "run",
            "--plugins",
            s(empty.path()),
            "version",
        ],
        libc::RLIMIT_CPU,
        10,
    );
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    // And a filter is bounded.
    let long = "a".repeat(5000);
    let out = cli(&[
        "--log",
        &long,
        "run",
        "--plugins",
        s(empty.path()),
        "version",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("more than 4096"), "{}", stderr(&out));
}

#[test]
fn transform_whose_output_cannot_be_written_is_an_environment_error() {
    // stdout on a full device: the environment's error, exit 2 (it was 1, a plugin's).
    let empty = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .args(["transform", "--plugins", s(empty.path()), "echo"])
        .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
        .stdin(std::process::Stdio::piped())
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"a line\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writing the output failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn keygen_takes_a_prefix_not_a_directory() {
    let work = tempfile::tempdir().unwrap();
    for out in [format!("{}/", s(work.path())), s(work.path()).to_owned()] {
        let o = cli(&["keygen", "--out", &out]);
        assert_eq!(o.status.code(), Some(2), "{out}: {}", stderr(&o));
        assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    }
    assert!(!work.path().join(".key").exists());
    assert_eq!(fs_entries(work.path()), 0, "nothing written");
}

fn fs_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn an_error_that_cannot_be_written_keeps_its_exit_status() {
    // stderr on a full device: the error cannot be said, and the exit status still tells it
    // (writing it panicked, exit 101).
    let empty = tempfile::tempdir().unwrap();
    let status = |args: &[&str]| {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_plugin-host"))
            .args(args)
            .env("XDG_CACHE_HOME", crate::fixtures::tmp().join("xdg-cache"))
            .stdout(std::process::Stdio::null())
            .stderr(full)
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(status(&["check", "/nonexistent/libx.so"]), Some(2));
    assert_eq!(
        status(&["run", "--plugins", s(empty.path()), "nosuch"]),
        Some(1)
    );
}
