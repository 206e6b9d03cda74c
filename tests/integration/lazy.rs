//! Lazy loading: `run` and `transform` open only the library that declares the capability
//! asked for; declarations are enforced (`undeclared-capability`) and bounded; the first file
//! in path order wins, the others are `shadowed`; undeclared plugins still work.

use host::{IndexedState, LazyError, ReasonCode, Status};
use plugin_api::CommandKind;
use serde_json::Value;

use crate::support::{
    assert_outcome, cli, cli_with, copy_into, entry, file_name, host, plugin_dir,
    rewrite_provenance, stderr, stdout,
};

/// The example plugins, the constructor-marker plugin and `calls`: several libraries, only
/// one of which a command needs.
const INSTALLED: &[&str] = &["hello", "redact", "wc", "calls", "ctor-marker"];

fn marker_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("ctor-marker-was-loaded")
}

#[test]
fn run_opens_only_the_library_that_declares_the_command() {
    let dir = plugin_dir(INSTALLED);
    let scratch = tempfile::tempdir().unwrap();
    let marker = marker_path(&scratch);
    let plugins = dir.path().to_str().unwrap();
    let env = [("PLUGIN_HOST_TEST_MARKER", marker.as_path())];

    let out = cli_with(&["run", "--plugins", plugins, "hello", "Ada"], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello, Ada!"), "{}", stdout(&out));
    assert!(
        !marker.exists(),
        "`run hello` ran ctor-marker's load-time constructor: it opened a library it did not need"
    );
    // Only hello registered: the other plugins' registration logs are absent.
    assert!(!stderr(&out).contains("redact ready"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("calls registered"),
        "{}",
        stderr(&out)
    );

    let out = cli_with(
        &["transform", "--plugins", plugins, "redact"],
        &env,
        Some(b"mail ada@example.com\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mail [REDACTED:email]\n");
    assert!(!marker.exists(), "`transform redact` opened ctor-marker");

    // The control: asking for ctor-marker's own command does run its constructor.
    let out = cli_with(&["run", "--plugins", plugins, "marker"], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "marked");
    assert!(
        marker.exists(),
        "the marker is written when the library is loaded"
    );
}

#[test]
fn the_host_loads_one_library_on_first_use() {
    let dir = plugin_dir(INSTALLED);
    // ANCHOR: lazy
    let mut host = host();
    let reports = host.index(&[dir.path()]).unwrap();
    assert!(
        reports.is_empty(),
        "all declare, none decided yet: {reports:?}"
    );
    assert_eq!(host.indexed().len(), INSTALLED.len());
    assert!(host.plugins().is_empty(), "nothing loaded by indexing");

    host.get_lazy::<CommandKind>("wc").unwrap();
    // ANCHOR_END: lazy
    let loaded: Vec<&str> = host.plugins().iter().map(|p| &*p.name).collect();
    assert_eq!(loaded, ["wc"]);
    let pending = host
        .indexed()
        .iter()
        .filter(|p| p.state == IndexedState::Pending)
        .count();
    assert_eq!(pending, INSTALLED.len() - 1);
    assert_eq!(host.lazy_reports().len(), 1);
    assert_eq!(host.lazy_reports()[0].status, Status::Loaded);

    // A second use loads nothing more; another capability of another plugin loads it alone.
    host.load_capability("command", "wc").unwrap();
    host.load_capability("transform", "upper").unwrap();
    let loaded: Vec<&str> = host.plugins().iter().map(|p| &*p.name).collect();
    assert_eq!(loaded, ["wc", "calls"]);

    // Unknown: the error lists what is available, loaded or not.
    match host.load_capability("command", "nope") {
        Err(LazyError::Lookup(host::LookupError::NotFound { available, .. })) => {
            for name in ["hello", "marker", "wc", "echo"] {
                assert!(available.iter().any(|a| a == name), "{available:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(host.plugins().len(), 2, "a miss loads nothing");
}

#[test]
fn a_registration_outside_the_declaration_is_refused() {
    let dir = plugin_dir(&["liar", "hello"]);
    let scan = crate::support::scan_json(dir.path(), &[]);
    assert_outcome(
        entry(&scan, &file_name("liar")),
        "failed",
        "undeclared-capability",
        &[
            "plugin `liar` registers command `sneaky`, which it did not declare",
            "[package.metadata.plugin-host]",
            "command = [\"sneaky\"]",
            "rebuild",
        ],
    );
    assert_eq!(
        entry(&scan, &file_name("liar"))["capabilities"],
        Value::Array(vec![])
    );
    assert_eq!(entry(&scan, &file_name("hello"))["status"], "loaded");

    // Lazily, the same refusal, as an error naming it.
    let plugins = dir.path().to_str().unwrap();
    let out = cli(&["run", "--plugins", plugins, "declared"]);
    // The plugin was refused: exit 1 (the book's exit-status table).
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("undeclared-capability") && err.contains("`sneaky`"),
        "{err}"
    );

    // Honest, it loads; the capability it declares and never registers is a clear error.
    let honest = ["--plugin-config", "liar=honest"];
    let run = |command: &str| {
        let mut args = vec!["run", "--plugins", plugins];
        args.extend(honest);
        args.push(command);
        cli(&args)
    };
    let out = run("declared");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "declared");
    let out = run("ghost");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("declares command `ghost` but did not register it")
            && err.contains("command:declared"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let mut host = crate::support::builder()
        .plugin("liar", host::PluginSettings::new().config("honest"))
        .build();
    host.index(&[dir.path()]).unwrap();
    let error = host.load_capability("command", "ghost").unwrap_err();
    assert!(
        matches!(error, LazyError::NotRegistered { .. }),
        "{error:?}"
    );
    // Asked again: the same answer, nothing loaded twice.
    let again = host.load_capability("command", "ghost").unwrap_err();
    assert_eq!(again, error);
    assert_eq!(host.plugins().len(), 1);
}

#[test]
fn the_first_directory_wins_and_later_files_are_shadowed() {
    let first = tempfile::tempdir().unwrap();
    let second = plugin_dir(&["hello"]);
    // In the first directory, a plugin also named `hello` (the twin, renamed): its `hello`
    // answers differently, so the output says which file won.
    let twin = copy_into(&first, "hello-twin", &file_name("hello"));
    rewrite_provenance(&twin, |j| j["name"] = "hello".into());
    let (a, b) = (
        first.path().to_str().unwrap(),
        second.path().to_str().unwrap(),
    );

    let out = cli(&["run", "--plugins", a, "--plugins", b, "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "hello from the twin");
    assert!(
        stderr(&out).contains("shadowed [duplicate-plugin]"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["run", "--plugins", b, "--plugins", a, "hello", "Ada"]);
    assert!(stdout(&out).contains("hello, Ada!"), "{}", stdout(&out));

    // scan: the same rule, the later file listed as shadowed, naming the winner.
    let out = cli(&["scan", a, b, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let later = scan["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"].as_str().unwrap().starts_with(b))
        .unwrap();
    assert_outcome(
        later,
        "shadowed",
        "duplicate-plugin",
        &[
            &format!("shadowed by {}", twin.display()),
            "(earlier in the search path)",
        ],
    );
    let winner = entry(&scan, &twin.to_string_lossy());
    assert_eq!(winner["status"], "loaded");
    let out = cli(&["scan", a, b]);
    assert!(stdout(&out).contains("1 shadowed"), "{}", stdout(&out));

    // In the library: the index reports the shadowed file at once.
    let mut host = host();
    let reports = host.index(&[first.path(), second.path()]).unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, Status::Shadowed);
    assert_eq!(reports[0].reason, Some(ReasonCode::DuplicatePlugin));
    assert!(reports[0].path.starts_with(second.path()));
}

#[test]
fn a_plugin_without_a_declaration_is_loaded_up_front() {
    let dir = plugin_dir(&["ctor-marker"]);
    let old = copy_into(&dir, "hello", &file_name("hello"));
    rewrite_provenance(&old, |j| {
        j.as_object_mut().unwrap().remove("capabilities");
    });
    let out = cli(&["inspect", old.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("capabilities  (not declared"),
        "{}",
        stdout(&out)
    );

    let scratch = tempfile::tempdir().unwrap();
    let marker = marker_path(&scratch);
    let out = cli_with(
        &[
            "run",
            "--plugins",
            dir.path().to_str().unwrap(),
            "hello",
            "Ada",
        ],
        &[("PLUGIN_HOST_TEST_MARKER", marker.as_path())],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello, Ada!"), "{}", stdout(&out));
    assert!(!marker.exists(), "the declared plugin stays unloaded");

    let mut host = host();
    let reports = host.index(&[dir.path()]).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].status, Status::Loaded, "loaded by `index`");
    assert_eq!(host.indexed().len(), 1, "only ctor-marker is indexed");
    assert!(host.registry().get::<CommandKind>("hello").is_ok());
}

#[test]
fn declarations_are_bounded() {
    let dir = plugin_dir(&[]);
    let cases: [(&str, Value); 3] = [
        ("long", serde_json::json!({ "command": ["n".repeat(200)] })),
        ("control", serde_json::json!({ "command": ["x\u{1b}[2J"] })),
        ("shape", serde_json::json!({ "command": "hello" })),
    ];
    for (what, declared) in cases {
        let file = format!("lib{what}.so");
        let path = copy_into(&dir, "hello", &file);
        rewrite_provenance(&path, |j| {
            // Room for the declaration: the dependency list is not read past it.
            j["dependencies"] = Value::Array(vec![]);
            j.as_object_mut().unwrap().remove("digests");
            j["capabilities"] = declared;
        });
        let out = cli(&["inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("error[malformed-provenance]"),
            "{what}: {}",
            stderr(&out)
        );
    }
    let scan = crate::support::scan_json(dir.path(), &[]);
    for what in ["long", "control", "shape"] {
        let e = entry(&scan, &format!("lib{what}.so"));
        assert_eq!(e["status"], "rejected", "{e:#}");
        assert_eq!(e["reason"], "malformed-provenance", "{e:#}");
    }
    assert!(entry(&scan, "liblong.so")["message"]
        .as_str()
        .unwrap()
        .contains("it declares a capability name of 200 bytes"));
    // The index refuses them too, before anything is loaded.
    let mut host = host();
    let reports = host.index(&[dir.path()]).unwrap();
    assert!(
        reports
            .iter()
            .all(|r| r.reason == Some(ReasonCode::MalformedProvenance)),
        "{reports:?}"
    );
    assert!(host.indexed().is_empty());
}

#[test]
fn run_without_a_plugin_directory_says_so() {
    let out = cli(&["run", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--plugins DIR"), "{}", stderr(&out));
}

/// Long enough for a directory's last change to count as settled, so that the index cache
/// records its identity (`SETTLE`, 100 ms, in `host/src/lazy/cache.rs`), with room.
const SETTLED: std::time::Duration = std::time::Duration::from_millis(250);

/// `hello` and `wc` in a directory, left to settle, then indexed by a `run` with an index cache
/// of its own: the directory, the cache's `XDG_CACHE_HOME` and the cache file (which now
/// records the directory's identity).
fn hello_and_wc_indexed() -> (tempfile::TempDir, tempfile::TempDir, std::path::PathBuf) {
    let dir = plugin_dir(&["hello", "wc"]);
    std::thread::sleep(SETTLED);
    let xdg = tempfile::tempdir().unwrap();
    let env = [("XDG_CACHE_HOME", xdg.path())];
    let plugins = dir.path().to_str().unwrap();
    let out = cli_with(&["run", "--plugins", plugins, "hello", "Ada"], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let cache = xdg.path().join("plugin-host/index.bin");
    assert!(cache.is_file(), "the index cache was written");
    (dir, xdg, cache)
}

/// One forged entry: a file of the directory, the plugin name and the declaration it claims.
type Forged<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [&'a str])]);

/// Writes, at `cache`, an index cache in the host's format (see `host/src/lazy/cache.rs`)
/// that lists `entries` in `dir` and carries `dir`'s current identity and each file's: the
/// host uses every entry on the directory's word alone, the strongest forgery there is.
fn forge_cache(cache: &std::path::Path, dir: &std::path::Path, entries: &[Forged<'_>]) {
    use std::os::unix::fs::MetadataExt;
    fn u32_(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        u32_(out, b.len());
        out.extend_from_slice(b);
    }
    fn id(out: &mut Vec<u8>, m: &std::fs::Metadata, size: bool) {
        let ns = |s: i64, n: i64| s * 1_000_000_000 + n;
        let size = if size { m.size() as i64 } else { 0 };
        let fields = [
            m.dev() as i64,
            m.ino() as i64,
            size,
            ns(m.mtime(), m.mtime_nsec()),
            ns(m.ctime(), m.ctime_nsec()),
        ];
        for n in fields {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    let mut entries = entries.to_vec();
    entries.sort_by_key(|e| e.0);
    let mut out = b"PHINDEX\x02".to_vec();
    u32_(&mut out, 1);
    bytes(&mut out, dir.to_str().unwrap().as_bytes());
    out.push(1);
    id(&mut out, &std::fs::metadata(dir).unwrap(), false);
    u32_(&mut out, entries.len());
    for (file, name, declared) in entries {
        bytes(&mut out, file.as_bytes());
        out.push(1);
        id(&mut out, &std::fs::metadata(dir.join(file)).unwrap(), true);
        bytes(&mut out, name.as_bytes());
        bytes(&mut out, b"0.1.0");
        out.push(1);
        u32_(&mut out, declared.len());
        for (kind, names) in declared {
            bytes(&mut out, kind.as_bytes());
            u32_(&mut out, names.len());
            for n in *names {
                bytes(&mut out, n.as_bytes());
            }
        }
    }
    std::fs::write(cache, out).unwrap();
}

#[test]
fn the_index_cache_only_chooses_what_is_verified() {
    let (dir, xdg, cache) = hello_and_wc_indexed();
    let env = [("XDG_CACHE_HOME", xdg.path())];
    let plugins = dir.path().to_str().unwrap();
    let hello = dir.path().join(file_name("hello"));
    let (hello_file, wc_file) = (file_name("hello"), file_name("wc"));

    // A forged entry: `hello` claims to be the plugin providing `wc`. It is used (hello is
    // loaded first), but it only chose what to verify: `hello` does not register `wc`, so the
    // cache is dropped, every file read again, and the real `wc` is verified, loaded and
    // answers.
    forge_cache(
        &cache,
        dir.path(),
        &[
            (&hello_file, "hello", &[("command", &["wc"])]),
            (&wc_file, "wc", &[("command", &["wc"])]),
        ],
    );
    let file = hello.to_str().unwrap();
    let out = cli_with(&["run", "--plugins", plugins, "wc", file], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registering `hello`"),
        "the cache was read: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "says plugin `hello` ({file}) declares command `wc`, but the library did not \
             register it"
        )),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains(file), "{}", stdout(&out));
}

#[test]
fn a_cache_that_swaps_two_plugins_is_dropped_and_the_right_file_loaded() {
    let (dir, xdg, cache) = hello_and_wc_indexed();
    let env = [("XDG_CACHE_HOME", xdg.path())];
    let plugins = dir.path().to_str().unwrap();
    let wc = dir.path().join(file_name("wc"));
    let wc_key = wc.to_str().unwrap();
    let (hello_file, wc_file) = (file_name("hello"), file_name("wc"));

    // A forged cache: each file's entry carries the other's name and declaration, with the
    // directory's and the files' true identities, so both entries are used.
    forge_cache(
        &cache,
        dir.path(),
        &[
            (&hello_file, "wc", &[("command", &["wc"])]),
            (&wc_file, "hello", &[("command", &["hello"])]),
        ],
    );

    let out = cli_with(&["run", "--plugins", plugins, "hello", "Ada"], &env, None);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(stdout(&out).contains("hello, Ada!"), "{}", stdout(&out));
    // Said once, naming the cache, the file it lied about and what that file really is.
    assert!(err.contains(cache.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!(
            "says {wc_key} is plugin `hello`, but that file is plugin `wc`"
        )),
        "{err}"
    );
    assert!(!err.contains("did not register it"), "{err}");
    // The forged cache is gone; the next run writes a true one, which the run after it
    // uses without complaint.
    assert!(!cache.exists());
    let out = cli_with(&["run", "--plugins", plugins, "hello", "Ada"], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cache.is_file());
    let out = cli_with(&["run", "--plugins", plugins, "wc", wc_key], &env, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("stale or forged"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_overwritten_in_place_is_judged_afresh_before_it_runs() {
    // The cache trusts the unchanged directory; `hello` is then rewritten in place (same
    // inode, the directory untouched) claiming another target. Its entry is used, but the
    // file is read and judged again: refused, and it never runs.
    let (dir, xdg, cache) = hello_and_wc_indexed();
    let env = [("XDG_CACHE_HOME", xdg.path())];
    let plugins = dir.path().to_str().unwrap();
    let hello = dir.path().join(file_name("hello"));
    let dir_before = std::fs::metadata(dir.path()).unwrap().modified().unwrap();
    rewrite_provenance(&hello, |j| j["target"] = "i686-unknown-linux-gnu".into());
    assert_eq!(
        std::fs::metadata(dir.path()).unwrap().modified().unwrap(),
        dir_before,
        "an in-place write leaves the directory as it was"
    );
    let out = cli_with(&["run", "--plugins", plugins, "hello", "Ada"], &env, None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stdout(&out).contains("hello, Ada!"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("[target-mismatch]"),
        "{}",
        stderr(&out)
    );
    assert!(cache.is_file());
}

#[test]
fn a_file_that_became_another_plugin_since_it_was_indexed_is_refused_before_it_runs() {
    // `wc` first in the search path, `hello` after it; then `hello`'s file is replaced by a
    // build of `wc`. Loading `hello` on first use must not let that file take `wc`'s name
    // (a scan would give it to the first directory's `wc`).
    let first = plugin_dir(&["wc"]);
    let second = plugin_dir(&["hello"]);
    let mut host = host();
    host.index(&[first.path(), second.path()]).unwrap();
    let hello = second.path().join(file_name("hello"));
    std::fs::copy(crate::fixtures::fixtures().lib("wc"), &hello).unwrap();
    assert!(host.get_lazy::<CommandKind>("hello").is_err());
    let report = host.lazy_reports().last().unwrap();
    assert_eq!(
        report.reason,
        Some(host::ReasonCode::NameMismatch),
        "{report:#?}"
    );
    let message = report.message.as_deref().unwrap();
    assert!(
        message.contains("indexed as plugin `hello`, but it is now plugin `wc`"),
        "{message}"
    );
    assert!(host.plugins().is_empty(), "nothing of it ran");
    // `wc` is still the first directory's.
    host.get_lazy::<CommandKind>("wc").unwrap();
    assert_eq!(&*host.plugins()[0].path, first.path().join(file_name("wc")));
}

#[test]
fn a_panic_of_the_applications_own_code_during_a_lazy_load_keeps_the_index() {
    let dir = plugin_dir(&["hello", "wc"]);
    let mut host = crate::support::builder()
        .before_load(|path| {
            if path.ends_with(file_name("hello")) {
                panic!("the application's hook")
            }
        })
        .build();
    host.index(&[dir.path()]).unwrap();
    assert_eq!(host.indexed().len(), 2);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = host.load_capability("command", "hello");
    }));
    assert!(caught.is_err(), "the hook's panic reaches the application");
    // The index is still there: another plugin loads on first use.
    assert_eq!(host.indexed().len(), 2);
    host.get_lazy::<CommandKind>("wc").unwrap();
}

#[test]
fn a_capability_a_file_gained_in_place_is_found() {
    // `wc`'s file is overwritten in place by `redact`: the directory is unchanged, so its cached
    // listing says `wc`. Before `transform redact` is said not found, the files trusted by the
    // directory are checked one by one: `wc`'s changed, so every file is read again and
    // `redact` is found there.
    let (dir, xdg, cache) = hello_and_wc_indexed();
    let env = [("XDG_CACHE_HOME", xdg.path())];
    let plugins = dir.path().to_str().unwrap();
    let wc = dir.path().join(file_name("wc"));
    let redact = std::fs::read(crate::fixtures::fixtures().lib("redact")).unwrap();
    std::fs::write(&wc, redact).unwrap();
    let out = cli_with(
        &["transform", "--plugins", plugins, "redact"],
        &env,
        Some(b"mail ada@example.com\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mail [REDACTED:email]\n");
    assert!(!cache.exists(), "the stale cache was dropped");
}
