//! A project file found by walking up is someone else's until the user trusts it: a cloned
//! repository's `plugin-host.toml` runs none of its plugins and lowers none of the user's
//! trust settings; a trusted one may only tighten them; one owned by another user is never
//! used.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;

use crate::config::Machine;
use crate::fixtures::fixtures;
use crate::support::{file_name, stderr, stdout};

/// A cloned repository under `proj/`: a `plugin-host.toml` that turns signatures off and a
/// `.plugins/libhello.so`; the user's own configuration requires signatures.
fn cloned_repository() -> Machine {
    let m = Machine::new();
    m.write(
        "home/.config/plugin-host/config.toml",
        "[trust]\nsignatures = \"require\"\n",
    );
    fs::create_dir_all(m.path("proj/.plugins")).unwrap();
    fs::copy(
        fixtures().lib("hello"),
        m.path("proj/.plugins").join(file_name("hello")),
    )
    .unwrap();
    m.write(
        "proj/plugin-host.toml",
        "[trust]\nsignatures = \"ignore\"\n\n[plugins.hello]\nsignatures = \"ignore\"\n",
    );
    m
}

/// The command between the backquotes of the message's `run `…``, as words.
fn printed_command(message: &str) -> Vec<String> {
    let start = message.find("run `").expect("a command to run") + "run `".len();
    let end = start + message[start..].find('`').unwrap();
    message[start..end]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_untrusted_project_file_runs_none_of_its_plugins() {
    let m = cloned_repository();
    let out = m.run(&["run", "hello", "Ada"], None);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!stdout(&out).contains("Ada"), "the repository's plugin ran");
    let project = m.path("proj/plugin-host.toml");
    let said = format!(
        "warning: {} is not trusted, so it is ignored",
        project.display()
    );
    assert_eq!(err.matches(&said).count(), 1, "said once: {err}");
    // Its lock is the project's too: not read, and `--locked` says why.
    fs::create_dir_all(m.path("home/.local/share/plugin-host/plugins")).unwrap();
    fs::write(m.path("proj/src/plugin-host.lock"), "").unwrap();
    let out = m.run(&["run", "--locked", "hello", "Ada"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("so neither is a lock beside it"),
        "{}",
        stderr(&out)
    );
    fs::remove_file(m.path("proj/src/plugin-host.lock")).unwrap();
    // Nor written: `lock` refuses to write a lock that the next scan would not read.
    let plugins = m.path("proj/.plugins");
    let out = m.run(&["lock", plugins.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("so neither is a lock beside it"),
        "{}",
        stderr(&out)
    );
    assert!(!m.path("proj/src/plugin-host.lock").exists());
    assert!(!m.path("proj/plugin-host.lock").exists());
    // `config` shows the file as ignored, and the user's mode in force.
    let out = m.run(&["config", "--json"], None);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["layer"] == "project")
        .unwrap();
    assert_eq!(file["found"], true);
    assert_eq!(file["ignored"]["reason"], "not-trusted", "{doc:#}");
    assert_eq!(doc["project_dir"], Value::Null);

    // The printed command, run as printed, trusts it; then its plugins are found — and held
    // to the user's `require`, which the project cannot lower.
    let words = printed_command(&err);
    assert_eq!(&words[..2], ["plugin-host", "config"], "{err}");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let out = m.run(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("trusted "), "{}", stdout(&out));
    let out = m.run(&["scan", "--json"], None);
    let err = stderr(&out);
    let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hello = crate::configured::named(&scan, "hello");
    assert_eq!(hello["status"], "rejected", "{scan:#}");
    assert_eq!(hello["reason"], "unsigned", "{scan:#}");
    for needle in [
        "plugin-host.toml:2:14: `[trust] signatures = \"ignore\"` is not applied",
        "plugin-host.toml:5:14: `[plugins.hello] signatures = \"ignore\"` is not applied",
        "looser than `require`",
        "plugin-host/config.toml:2:14",
        "never loosen",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!err.contains("is not trusted"), "{err}");

    // Changed after it was trusted (a `git pull`): ignored again until trusted again.
    let mut text = fs::read_to_string(&project).unwrap();
    text.push_str("\n[plugins.wc]\nenabled = false\n");
    fs::write(&project, text).unwrap();
    let out = m.run(&["config"], None);
    let err = stderr(&out);
    assert!(
        err.contains("changed since you trusted it, so it is ignored"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("(ignored: changed since trusted"),
        "{}",
        stdout(&out)
    );
    let out = m.run(&["config", "untrust"], None);
    assert!(
        stdout(&out).contains("no longer trusted"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_trusted_project_adds_keys_after_the_users_and_only_tightens() {
    let m = Machine::new();
    let cli = env!("CARGO_BIN_EXE_plugin-host");
    m.write(
        "home/.config/plugin-host/config.toml",
        &format!(
            "[trust]\nkeys = [\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"]\n\n\
             [isolation]\nworkers = [\"{cli}\"]\n\n\
             [plugins.hello]\nisolation = \"process\"\n\n\
             [plugins.old]\nenabled = false\nsignatures = \"ignore\"\npath = \"{cli}\"\n"
        ),
    );
    fs::write(m.path("proj/worker"), "").unwrap();
    fs::write(m.path("proj/libold.so"), "").unwrap();
    m.project(
        "[trust]\nkeys = [\"RWS5vvvMn6QzMl+yNZFZEKuYWmKMLL1G/6/62dcC2YKKVaqWeYLtjxlH\"]\n\
         signatures = \"require\"\n\n[isolation]\nworkers = [\"worker\"]\n\n\
         [plugins.hello]\nisolation = \"in-process\"\n\n[plugins.wc]\nisolation = \"process\"\n\n\
         [plugins.old]\nenabled = true\npath = \"libold.so\"\n",
    );
    let out = m.run(&["config", "--json"], None);
    let err = stderr(&out);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let value = |key: &str| {
        doc["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == key)
            .map(|v| v["value"].clone())
            .unwrap_or(Value::Null)
    };
    // Keys: the user's first, the project's added.
    assert_eq!(
        value("trust.keys[0]"),
        "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"
    );
    assert_eq!(
        value("trust.keys[1]"),
        "RWS5vvvMn6QzMl+yNZFZEKuYWmKMLL1G/6/62dcC2YKKVaqWeYLtjxlH"
    );
    // Workers: the user's only; a project cannot name code to run unchecked.
    assert_eq!(value("isolation.workers[0]"), cli);
    assert_eq!(value("isolation.workers[1]"), Value::Null);
    assert!(
        err.contains("plugin-host.toml:6:12: `[isolation] workers` is not applied"),
        "{err}"
    );
    // Tightened: signatures from warn (keys) to require; wc isolated.
    assert_eq!(value("trust.signatures"), "require", "{doc:#}");
    assert_eq!(value("plugins.wc.isolation"), "process");
    // Loosened: not applied, and said.
    assert_eq!(value("plugins.hello.isolation"), "process");
    assert!(
        err.contains("`[plugins.hello] isolation = \"in-process\"` is not applied"),
        "{err}"
    );
    // A plugin the user disabled stays disabled; the user's exemption for `old` does not
    // follow the project's `path` to the project's file.
    assert_eq!(value("plugins.old.enabled"), false);
    assert!(
        err.contains("`[plugins.old] enabled = true` is not applied"),
        "{err}"
    );
    assert_eq!(
        value("plugins.old.path"),
        m.path("proj/libold.so").to_str().unwrap()
    );
    assert_eq!(value("plugins.old.signatures"), Value::Null, "{doc:#}");
    assert!(
        err.contains(
            "`[plugins.old] path` is applied, and the exemption `signatures = \"ignore\"`"
        ),
        "{err}"
    );
    assert!(err.contains("held to `require`"), "{err}");
}

#[test]
fn a_project_file_owned_by_another_user_is_never_used() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Making a file another user owns takes root (CI runs as root).
        eprintln!("skipped: needs root to give a file to another user");
        return;
    }
    let m = cloned_repository();
    let project = m.path("proj/plugin-host.toml");
    let out = m.run(&["config", "trust"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // Given away after being trusted, contents unchanged: no longer used.
    std::os::unix::fs::chown(&project, Some(4242), Some(4242)).unwrap();
    assert_eq!(fs::metadata(&project).unwrap().uid(), 4242);
    let out = m.run(&["scan", "--json"], None);
    let err = stderr(&out);
    assert!(
        err.contains("is owned by user 4242, not by you or root"),
        "{err}"
    );
    assert!(!stdout(&out).contains("libhello"), "{}", stdout(&out));
    // And it cannot be trusted.
    let out = m.run(&["config", "trust"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("owned by user 4242"),
        "{}",
        stderr(&out)
    );
    // The same for a file of one's own in a directory another user owns (a shared parent).
    std::os::unix::fs::chown(&project, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(m.path("proj"), Some(4242), Some(4242)).unwrap();
    let out = m.run(&["config"], None);
    assert!(
        stderr(&out).contains("owned by user 4242"),
        "{}",
        stderr(&out)
    );
}
