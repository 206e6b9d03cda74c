//! The configuration drives the commands: search paths instead of `--plugins`, the
//! `[plugins.NAME]` tables (enabled, path, policy, replace-builtin, isolation), `[trust]` and
//! the lock file beside the project file, `[isolation] workers`; command-line flags override
//! the files.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::config::Machine;
use crate::fixtures::fixtures;
use crate::support::{claim_rustc_commit, file_name, rewrite_provenance, stderr, stdout};

/// Copies fixture `name` into the machine's `rel` directory; returns the path as text.
fn install(m: &Machine, rel: &str, name: &str) -> String {
    let dir = m.path(rel);
    fs::create_dir_all(&dir).unwrap();
    let dest = dir.join(file_name(name));
    fs::copy(fixtures().lib(name), &dest).unwrap();
    dest.to_str().unwrap().to_owned()
}

fn scan(m: &Machine, extra: &[&str]) -> Value {
    let out = m.run(&[&["scan", "--json"], extra].concat(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The scan entry of the plugin named `name` (the first, when several files carry it).
pub(crate) fn named<'a>(scan: &'a Value, name: &str) -> &'a Value {
    scan["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin `{name}` in {scan:#}"))
}

#[test]
fn search_paths_plugin_tables_and_policies_come_from_the_files_and_flags_override_them() {
    let m = Machine::new();
    for name in ["hello", "wc", "old-semver"] {
        install(&m, "proj/plugins", name);
    }
    m.project(
        "[search]\npaths = [\"plugins\"]\n\n[policy]\npreset = \"strict\"\n\n\
         [plugins.wc]\nenabled = false\n\n[plugins.old-semver]\npolicy = \"default\"\n",
    );

    let s = scan(&m, &[]);
    assert_eq!(named(&s, "hello")["status"], "loaded", "{s:#}");
    let wc = named(&s, "wc");
    assert_eq!(wc["status"], "disabled", "{s:#}");
    assert!(wc["message"].as_str().unwrap().contains("enabled = false"));
    // The global policy is strict, which refuses old-semver's older `semver`; its own table
    // says `default`, under which the difference is a warning.
    let old = named(&s, "old-semver");
    assert_eq!(old["status"], "loaded", "{s:#}");
    let deps = old["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "dependencies")
        .unwrap();
    assert_eq!(deps["status"], "warn", "{old:#}");

    // `run` finds the command in the configured search path: no --plugins.
    let out = m.run(&["run", "hello", "Ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello, Ada!"), "{}", stdout(&out));

    // Flags override the files: `--set` is the last word on a check, for every plugin.
    let s = scan(&m, &["--set", "dependencies=fail"]);
    let old = named(&s, "old-semver");
    assert_eq!(old["status"], "rejected", "{s:#}");
    assert_eq!(old["reason"], "dependency-mismatch");
    // A directory given on the command line replaces the search paths.
    let other = m.path("other");
    fs::create_dir_all(&other).unwrap();
    let s = scan(&m, &[other.to_str().unwrap()]);
    assert!(
        s["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "hello"),
        "{s:#}"
    );
    let out = m.run(&["scan"], None);
    assert!(stdout(&out).contains("policy: strict"), "{}", stdout(&out));
    let out = m.run(&["scan", "--policy", "default"], None);
    assert!(stdout(&out).contains("policy: default"), "{}", stdout(&out));
}

#[test]
fn default_search_paths_and_the_error_when_there_is_none() {
    let m = Machine::new();
    // No project file, no data directory: nowhere to look.
    let out = m.run(&["run", "hello", "x"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no plugin directory"), "{err}");
    assert!(err.contains(".local/share/plugin-host/plugins"), "{err}");
    // Each command says how to give it a directory: `lock` has no `--plugins`.
    assert!(err.contains("give one (`--plugins DIR`)"), "{err}");
    for command in ["scan", "lock"] {
        let out = m.run(&[command], None);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("give one (`{command} DIR`)")),
            "{err}"
        );
    }
    let out = m.run(&["transform", "echo,nope"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no plugin directory"),
        "{}",
        stderr(&out)
    );
    // The builtins answer all the same: they need no plugin directory.
    let out = m.run(&["run", "version"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("plugin-host "), "{}", stdout(&out));

    // The user's data directory is a default search path, and so is `.plugins` beside the
    // project file (first).
    install(&m, "home/.local/share/plugin-host/plugins", "hello");
    let out = m.run(&["run", "hello", "Ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    m.project("");
    install(&m, "proj/.plugins", "hello");
    let s = scan(&m, &[]);
    let hellos: Vec<&Value> = s["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "hello")
        .collect();
    assert_eq!(hellos.len(), 2, "{s:#}");
    assert!(hellos[0]["path"]
        .as_str()
        .unwrap()
        .contains("proj/.plugins"));
    assert_eq!(hellos[0]["status"], "loaded");
    assert_ne!(hellos[1]["status"], "loaded", "{s:#}");
}

#[test]
fn a_configured_plugin_file_is_loaded_first_and_must_carry_its_name() {
    let m = Machine::new();
    fs::create_dir_all(m.path("proj/plugins")).unwrap();
    install(&m, "elsewhere", "hello");
    install(&m, "proj/plugins", "wc");
    let hello = format!("../elsewhere/{}", file_name("hello"));
    m.project(&format!(
        "[search]\npaths = [\"plugins\"]\n\n[plugins.hello]\npath = \"{hello}\"\n"
    ));
    let s = scan(&m, &[]);
    let entry = named(&s, "hello");
    assert_eq!(entry["status"], "loaded", "{s:#}");
    assert!(entry["path"].as_str().unwrap().contains("elsewhere"));
    assert_eq!(named(&s, "wc")["status"], "loaded");

    // The table of `wc` pointing at hello's file.
    m.project(&format!(
        "[search]\npaths = [\"plugins\"]\n\n[plugins.wc]\npath = \"{hello}\"\n"
    ));
    let s = scan(&m, &[]);
    let wrong = named(&s, "hello");
    assert_eq!(wrong["status"], "rejected", "{s:#}");
    assert_eq!(wrong["reason"], "name-mismatch");
    let message = wrong["message"].as_str().unwrap();
    assert!(message.contains("configured as plugin `wc`"), "{message}");
    assert!(message.contains("[plugins.wc] path"), "{message}");
    assert_eq!(named(&s, "wc")["status"], "loaded", "{s:#}");
}

#[test]
fn a_builtin_is_replaced_only_when_the_config_says_so() {
    let m = Machine::new();
    let file = install(&m, "proj/plugins", "hello");
    rewrite_provenance(file.as_ref(), |j| {
        j["name"] = "plugin-host".into();
        j["rustc"]["commit_date"] = "".into();
        j["rustc"]["llvm"] = "".into();
    });
    m.project("[search]\npaths = [\"plugins\"]\n");
    let s = scan(&m, &[]);
    let entries = s["plugins"].as_array().unwrap();
    assert_eq!(entries[0]["status"], "builtin", "{s:#}");
    assert_eq!(entries[1]["reason"], "duplicate-plugin", "{s:#}");

    m.project("[search]\npaths = [\"plugins\"]\n\n[plugins.plugin-host]\nreplace-builtin = true\n");
    let s = scan(&m, &[]);
    let entries = s["plugins"].as_array().unwrap();
    assert!(entries.iter().all(|p| p["status"] != "builtin"), "{s:#}");
    assert_eq!(named(&s, "plugin-host")["status"], "loaded", "{s:#}");
    let out = m.run(&["run", "hello", "Ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn isolation_process_runs_the_plugin_in_a_worker() {
    let m = Machine::new();
    install(&m, "proj/plugins", "hello");
    install(&m, "proj/plugins", "unruly");
    m.project("[search]\npaths = [\"plugins\"]\n\n[plugins.hello]\nisolation = \"process\"\n");
    let scan = scan(&m, &[]);
    let hello = named(&scan, "hello");
    assert_eq!(hello["status"], "loaded", "{hello:#}");
    assert_eq!(hello["isolated"], true, "{hello:#}");
    let unruly = named(&scan, "unruly");
    assert_eq!(unruly["isolated"], false, "{unruly:#}");
    // `run` (lazy) starts the worker on first use, and the command answers through it.
    let out = m.run(&["run", "hello", "Ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("hello, Ada!"), "{}", stdout(&out));
    // `in-process` is still accepted, and `config` shows the key.
    assert!(m.run(&["config"], None).status.success());
}

#[test]
fn isolate_all_isolates_every_plugin_whatever_a_file_says_of_one() {
    let m = Machine::new();
    install(&m, "proj/plugins", "hello");
    install(&m, "proj/plugins", "unruly");
    // The user's file keeps `hello` in the host; the flag asks for every plugin in a worker.
    m.write(
        "home/.config/plugin-host/config.toml",
        "[plugins.hello]\nisolation = \"in-process\"\n",
    );
    m.project("[search]\npaths = [\"plugins\"]\n");
    let without = scan(&m, &[]);
    assert_eq!(named(&without, "hello")["isolated"], false, "{without:#}");
    let all = scan(&m, &["--isolate", "all"]);
    for name in ["hello", "unruly"] {
        let plugin = named(&all, name);
        assert_eq!(plugin["isolated"], true, "{plugin:#}");
    }
}

#[test]
fn a_project_cannot_exempt_its_plugin_from_the_warn_a_trusted_key_flag_implies() {
    let m = Machine::new();
    install(&m, "proj/plugins", "hello");
    m.project("[search]\npaths = [\"plugins\"]\n\n[plugins.hello]\nsignatures = \"ignore\"\n");
    let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
    let out = m.run(&["scan", "--json", "--trusted-key", key], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let scanned: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hello = named(&scanned, "hello");
    // Unsigned, and said so under `warn`: not silently ignored.
    assert_eq!(hello["signature"], "unsigned", "{hello:#}");
    assert!(
        stderr(&out).contains("`[plugins.hello] signatures = \"ignore\"` is not applied"),
        "{}",
        stderr(&out)
    );
    // `--signatures` chosen on the command line replaces every mode, as before.
    let flagged = scan(&m, &["--trusted-key", key, "--signatures", "ignore"]);
    assert_eq!(named(&flagged, "hello")["signature"], Value::Null);
    // Nor for all its plugins at once, nor by setting `warn` itself so as to exempt one.
    for project in [
        "[trust]\nsignatures = \"ignore\"\n",
        "[trust]\nsignatures = \"warn\"\n\n[plugins.hello]\nsignatures = \"ignore\"\n",
    ] {
        m.project(&format!("[search]\npaths = [\"plugins\"]\n\n{project}"));
        let out = m.run(&["scan", "--json", "--trusted-key", key], None);
        assert!(out.status.success(), "{project}: {}", stderr(&out));
        let scanned: Value = serde_json::from_slice(&out.stdout).unwrap();
        let hello = named(&scanned, "hello");
        assert_eq!(hello["signature"], "unsigned", "{project}: {hello:#}");
        assert!(
            stderr(&out).contains("signatures = \"ignore\"` is not applied"),
            "{project}: {}",
            stderr(&out)
        );
    }
    // The user's own file may choose `ignore`: then the flag's keys change nothing.
    m.project("[search]\npaths = [\"plugins\"]\n");
    m.write(
        "home/.config/plugin-host/config.toml",
        "[trust]\nsignatures = \"ignore\"\n",
    );
    let scanned = scan(&m, &["--trusted-key", key]);
    assert_eq!(named(&scanned, "hello")["signature"], Value::Null);
}

#[test]
fn a_broken_file_stops_every_command_before_any_plugin_is_touched() {
    let m = Machine::new();
    let dir = install(&m, "proj/plugins", "hello");
    let dir = std::path::Path::new(&dir)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    m.write(
        "home/.config/plugin-host/config.toml",
        "[plugins.hello]\nenabeld = false\n",
    );
    for args in [
        &["scan", dir.as_str()][..],
        &["run", "--plugins", &dir, "hello"],
    ] {
        let out = m.run(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("plugin-host/config.toml:2:1"), "{err}");
        assert!(err.contains("did you mean `enabled`"), "{err}");
        assert!(!err.contains("registering"), "{err}");
    }
}

#[test]
fn trust_settings_and_the_lock_file_beside_the_project_file() {
    let m = Machine::new();
    let hello = install(&m, "proj/plugins", "hello");
    install(&m, "proj/plugins", "wc");
    m.project("[search]\npaths = [\"plugins\"]\n");

    // `lock` without arguments: the search paths, the lock beside the project file.
    let out = m.run(&["lock"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = fs::read_to_string(m.path("proj/plugin-host.lock")).unwrap();
    assert!(lock.contains("name = \"hello\""), "{lock}");
    // A one-byte change of a locked file: refused before loading, found via the project.
    let mut bytes = fs::read(&hello).unwrap();
    bytes.push(0);
    fs::write(&hello, bytes).unwrap();
    let s = scan(&m, &[]);
    assert_eq!(named(&s, "hello")["reason"], "checksum-mismatch", "{s:#}");
    assert_eq!(named(&s, "wc")["status"], "loaded");
    fs::remove_file(m.path("proj/plugin-host.lock")).unwrap();

    // `[trust]`: a key and `require`; per-plugin `ignore` for wc — an exemption, so bound to
    // wc's configured file.
    let out = m.run(&["keygen", "--out", m.path("key").to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let public = fs::read_to_string(m.path("key.pub")).unwrap();
    let key = public.lines().nth(1).unwrap();
    m.project(&format!(
        "[search]\npaths = [\"plugins\"]\n\n[trust]\nkeys = [\"{key}\"]\n\
             signatures = \"require\"\n\n[plugins.wc]\nsignatures = \"ignore\"\n\
             path = \"plugins/{}\"\n",
        file_name("wc")
    ));
    let s = scan(&m, &[]);
    assert_eq!(named(&s, "hello")["reason"], "unsigned", "{s:#}");
    assert_eq!(named(&s, "wc")["status"], "loaded", "{s:#}");
    let out = m.run(
        &["sign", "--key", m.path("key.key").to_str().unwrap(), &hello],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = scan(&m, &[]);
    assert_eq!(named(&s, "hello")["status"], "loaded", "{s:#}");
    assert_eq!(named(&s, "hello")["signature"], "signed", "{s:#}");
    // The command line's mode replaces every configured one.
    let s = scan(&m, &["--signatures", "require"]);
    assert_eq!(named(&s, "wc")["reason"], "unsigned", "{s:#}");
}

#[test]
fn configured_workers_are_registered_and_worker_flags_come_first() {
    const FAKE: &str = "0123456789abcdef0123456789abcdef01234567";
    let m = Machine::new();
    // `hello`, claiming another compiler's commit: refused in-process under strict.
    let hello = install(&m, "proj/plugins", "hello");
    claim_rustc_commit(Path::new(&hello), FAKE);
    // The CLI itself, as a worker: a real one, but of the host's compiler.
    let stable = env!("CARGO_BIN_EXE_plugin-host");
    // Workers are named by the user's file (a project's cannot name code to run).
    m.project("[search]\npaths = [\"plugins\"]\n\n[policy]\npreset = \"strict\"\n");
    let user = m.write(
        "home/.config/plugin-host/config.toml",
        &format!("[isolation]\nworkers = [\"{stable}\"]\n"),
    );
    // `config` shows it with where it was set.
    let out = m.run(&["config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = format!(
        "isolation.workers[0] = \"{stable}\"  # {}:2:12",
        user.display()
    );
    assert!(
        stdout(&out).lines().any(|l| l == line),
        "no {line:?} in {}",
        stdout(&out)
    );
    // The configured worker was judged, and the refusal says why it does not fit.
    let s = scan(&m, &[]);
    let h = named(&s, "hello");
    assert_eq!(h["status"], "rejected", "{h:#}");
    assert_eq!(h["reason"], "rustc-mismatch", "{h:#}");
    let message = h["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("no registered worker fits: {stable} (rustc ")),
        "{message}"
    );
    assert!(message.contains("[rustc-mismatch]"), "{message}");

    // Copies of the CLI that claim the plugin's compiler: workers that fit.
    let fits = m.path("home/.config/plugin-host/workers/w-fake");
    fs::create_dir_all(fits.parent().unwrap()).unwrap();
    fs::copy(stable, &fits).unwrap();
    claim_rustc_commit(&fits, FAKE);
    let flagged = m.path("flagged-worker");
    fs::hard_link(&fits, &flagged).unwrap();
    m.write(
        "home/.config/plugin-host/config.toml",
        "[isolation]\nworkers = [\"workers/w-fake\"]\n",
    );
    let s = scan(&m, &[]);
    let h = named(&s, "hello");
    assert_eq!(h["status"], "loaded", "{h:#}");
    assert_eq!(h["isolated"], true, "{h:#}");
    assert_eq!(h["worker"]["path"], fits.to_str().unwrap(), "{h:#}");
    // And its command answers from that worker (which judged the plugin against its own,
    // claimed, provenance before loading it).
    let out = m.run(&["run", "hello", "Ada"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("hello, Ada!"), "{}", stdout(&out));

    // `--worker` adds to the configured list, ahead of it: both fit, the flag's is chosen.
    let s = scan(&m, &["--worker", flagged.to_str().unwrap()]);
    let h = named(&s, "hello");
    assert_eq!(h["worker"]["path"], flagged.to_str().unwrap(), "{h:#}");
    // A flag worker that does not fit leaves the configured one in the list.
    let s = scan(&m, &["--worker", stable]);
    let h = named(&s, "hello");
    assert_eq!(h["status"], "loaded", "{h:#}");
    assert_eq!(h["worker"]["path"], fits.to_str().unwrap(), "{h:#}");
}
