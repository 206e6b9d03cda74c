//! The embedding example (`examples/embedding/`): an application with a capability kind of its
//! own builds outside this workspace, loads its plugin, calls its greeter and shows the
//! plugin's log lines; a plugin registering a kind the application does not know fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::fixtures::{cargo, fixtures, root};
use crate::support::*;

/// The built example: the application binary and its plugin.
struct Example {
    app: PathBuf,
    plugin: PathBuf,
}

/// Builds a copy of the example once per test run, into the fixtures' target directory
/// (whose dependencies it shares) with the main workspace's Cargo.lock.
fn example() -> &'static Example {
    static EXAMPLE: OnceLock<Example> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let ws = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws-embedding");
        copy_example(&ws);
        let libs = &fixtures().libs;
        let target = libs.parent().unwrap().to_str().unwrap();
        cargo(&ws, &["build", "--target-dir", target]);
        Example {
            app: libs.join(format!("greeter-app{}", std::env::consts::EXE_SUFFIX)),
            plugin: fixtures().lib("greeter-plugin"),
        }
    })
}

/// Copies `examples/embedding` to `dest` (replacing what was there) with its path
/// dependencies on `plugin-api`, `host` and `plugin-isolate` pointing into this checkout, and the main
/// workspace's Cargo.lock, so that it links the crate versions the host does.
pub fn copy_example(dest: &Path) {
    let _ = fs::remove_dir_all(dest);
    copy_sources(&root().join("examples/embedding"), dest);
    let manifest = fs::read_to_string(dest.join("Cargo.toml")).unwrap();
    let mut rewritten = manifest.clone();
    for dir in ["plugin-api", "host", "isolate"] {
        let path = root().join(dir);
        rewritten = rewritten.replace(
            &format!("path = \"../../{dir}\""),
            &format!("path = {:?}", path.to_str().unwrap()),
        );
    }
    assert_eq!(
        manifest.matches("../../").count(),
        3,
        "the example's path dependencies changed shape"
    );
    fs::write(dest.join("Cargo.toml"), rewritten).unwrap();
    fs::copy(root().join("Cargo.lock"), dest.join("Cargo.lock")).unwrap();
}

/// Copies a source tree, leaving out build output and a lockfile a local build left there.
fn copy_sources(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// `greeter-app DIR polite Ada`, with plugin logs at `info`.
fn greet(dir: &Path) -> Output {
    Command::new(&example().app)
        .args([dir.to_str().unwrap(), "polite", "Ada"])
        .env("RUST_LOG", "info")
        .output()
        .expect("run greeter-app")
}

#[test]
fn example_app_loads_its_plugin_greets_and_shows_its_logs() {
    let plugins = tempfile::tempdir().unwrap();
    let plugin = &example().plugin;
    fs::copy(plugin, plugins.path().join(plugin.file_name().unwrap())).unwrap();

    let out = greet(plugins.path());
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{stdout}{stderr}");
    let row = stdout.lines().next().unwrap_or_default();
    assert!(
        row.starts_with("loaded ") && row.contains("greeter-plugin 0.1.0 [greeter:polite]"),
        "{stdout}{stderr}"
    );
    assert!(stdout.ends_with("\nGood day, Ada.\n"), "{stdout}{stderr}");
    // The plugin's `log::info!`, through the host's logger, tagged with the plugin's name.
    let log = stderr
        .lines()
        .find(|l| l.contains("greeting for greeter-app 0.1.0"))
        .unwrap_or_else(|| panic!("no plugin log line in:\n{stderr}"));
    assert!(log.contains("plugin{name=greeter-plugin}"), "{log}");
}

#[test]
fn example_app_isolates_its_own_kind_by_its_wire_encoding() {
    let plugins = tempfile::tempdir().unwrap();
    let plugin = &example().plugin;
    fs::copy(plugin, plugins.path().join(plugin.file_name().unwrap())).unwrap();
    let run = |who: &str| {
        Command::new(&example().app)
            .args(["--isolate", plugins.path().to_str().unwrap(), "polite", who])
            .env("RUST_LOG", "info")
            .output()
            .expect("run greeter-app --isolate")
    };

    // The application's `greeter` kind, in a worker (the application's own binary), called
    // through its proxy: the same greeting as in-process.
    let out = run("Ada");
    let (text, errors) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}{errors}");
    let row = text.lines().next().unwrap_or_default();
    assert!(
        row.starts_with("loaded ")
            && row.contains("greeter-plugin 0.1.0 [greeter:polite] [isolated]"),
        "{text}{errors}"
    );
    assert!(text.ends_with("\nGood day, Ada.\n"), "{text}{errors}");
    // The plugin's log line, from the worker, under the plugin's name.
    let log = errors
        .lines()
        .find(|l| l.contains("greeting for greeter-app 0.1.0"))
        .unwrap_or_else(|| panic!("no plugin log line in:\n{errors}"));
    assert!(log.contains("greeter-plugin"), "{log}");

    // The greeter's own error comes back through the wire as it is.
    let out = run("");
    let (text, errors) = (stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{text}{errors}");
    assert!(
        errors.contains("error: whom should I greet?"),
        "{text}{errors}"
    );
}

#[test]
fn plugin_of_a_kind_the_app_does_not_know_fails() {
    // `hello` registers a `command`: a demo kind, which the example application does not take.
    let plugins = plugin_dir(&["hello"]);
    let plugin = &example().plugin;
    fs::copy(plugin, plugins.path().join(plugin.file_name().unwrap())).unwrap();

    let out = greet(plugins.path());
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{stdout}{stderr}");
    let mut lines = stdout.lines();
    let row = lines
        .find(|l| l.contains(" hello "))
        .unwrap_or_else(|| panic!("no row for hello in:\n{stdout}"));
    assert!(row.starts_with("failed "), "{row}");
    let error = lines.next().unwrap_or_default();
    assert!(
        error.contains("error[register-failed]")
            && error.contains("this host has no capability kind `command` (it knows: greeter)"),
        "{error}"
    );
    // The application's own plugin is unaffected.
    assert!(stdout.ends_with("\nGood day, Ada.\n"), "{stdout}{stderr}");
}

#[test]
fn plugin_built_against_a_changed_copy_of_the_kind_crate_is_named() {
    // The same example, with one change to the shared kind crate at the same version: the
    // greeter takes an owned string. The plugin built against it is renamed so that its
    // library does not replace the real one.
    let ws = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws-embedding-changed");
    copy_example(&ws);
    let kind = ws.join("greeter-kind/src/lib.rs");
    let source = fs::read_to_string(&kind).unwrap();
    let changed = source.replace("who: RStr<'_>", "who: RString");
    assert_ne!(source, changed, "the kind crate changed shape");
    fs::write(&kind, changed).unwrap();
    let manifest = ws.join("greeter-plugin/Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace("name = \"greeter-plugin\"", "name = \"skewed-greeter\""),
    )
    .unwrap();
    let target = fixtures()
        .libs
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    cargo(
        &ws,
        &["build", "-p", "skewed-greeter", "--target-dir", &target],
    );

    let plugins = tempfile::tempdir().unwrap();
    let skewed = fixtures().lib("skewed-greeter");
    fs::copy(&skewed, plugins.path().join(skewed.file_name().unwrap())).unwrap();
    let out = greet(plugins.path());
    let (stdout, stderr) = (stdout(&out), stderr(&out));
    // Same version, other content: the dependencies check names the crate...
    assert!(
        stdout.contains("warning[dependency-mismatch]")
            && stdout.contains("greeter-kind 0.1.0")
            && stdout.contains("content differs from the host's copy"),
        "{stdout}{stderr}"
    );
    // ...and so does the layout mismatch on first use, instead of blaming plugin-api.
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("does not have the layout")
            && stderr.contains("greeter-kind 0.1.0 (sha256:")
            && stderr.contains("not the host's copy"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("against this host's plugin-api"),
        "{stderr}"
    );
}

/// The book's "Embedding the host" shows the example's files whole, included from the example
/// itself (which is built and run above), so its code compiles and does what it says.
#[test]
fn the_book_shows_the_example_files_whole() {
    let chapter = crate::book::chapter("applications/embedding.md");
    for file in [
        "Cargo.toml",
        "greeter-kind/Cargo.toml",
        "greeter-kind/src/lib.rs",
        "greeter-app/Cargo.toml",
        "greeter-app/build.rs",
        "greeter-app/src/main.rs",
        "greeter-plugin/Cargo.toml",
        "greeter-plugin/src/lib.rs",
    ] {
        // Whole, or whole between the file's first and last line (`:all`: without the
        // anchor lines other chapters use to quote parts of it).
        let include = format!("{{{{#include ../../../examples/embedding/{file}");
        let whole = [format!("{include}}}}}"), format!("{include}:all}}}}")];
        assert!(
            whole.iter().any(|w| chapter.contains(w.as_str())),
            "the chapter does not include {file}"
        );
    }
}
