//! The book's "Writing a plugin" example builds outside this workspace, following the chapter's
//! steps exactly, and passes `--policy strict`; without the host's lock, the alignment command
//! `check --policy strict` prints makes it pass.

use std::fs;
use std::path::Path;

use crate::fixtures::{cargo, fixtures, root, run_suggested};
use crate::support::*;

/// The fenced code block that follows the line naming `file` in the section.
fn block<'a>(section: &'a str, file: &str) -> &'a str {
    let after = section
        .split(&format!("`{file}`\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("the chapter names no `{file}`"));
    let body = after.split_once("\n").unwrap().1;
    body.split("\n```").next().unwrap()
}

/// The book's "Writing a plugin" chapter.
fn section() -> String {
    crate::book::chapter("authors/writing-a-plugin.md")
}

/// Writes the chapter's plugin crate into `dir`, its paths pointing at this checkout.
fn write_plugin(section: &str, dir: &Path) {
    let api = root().join("plugin-api");
    let manifest =
        block(section, "Cargo.toml").replace("../plugin-host/plugin-api", api.to_str().unwrap());
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    fs::write(dir.join("build.rs"), block(section, "build.rs")).unwrap();
    fs::write(dir.join("src/lib.rs"), block(section, "src/lib.rs")).unwrap();
}

fn check_strict(lib: &Path) -> std::process::Output {
    cli(&["check", "--policy", "strict", lib.to_str().unwrap()])
}

#[test]
fn readme_plugin_builds_and_loads() {
    let section = section();
    let dir = tempfile::tempdir().unwrap();
    write_plugin(&section, dir.path());
    let target = fixtures().libs.parent().unwrap().to_owned();
    let lib = target.join("debug").join(file_name_of_shout());

    // The commands after "try it", run as the chapter says, with this checkout's paths.
    let steps = section
        .split("```sh\n")
        .nth(1)
        .expect("the section shows the commands")
        .split("\n```")
        .next()
        .unwrap();
    let mut ran = Vec::new();
    for step in steps.lines() {
        let words: Vec<&str> = step.split_whitespace().collect();
        match words.as_slice() {
            ["cp", from, "."] => {
                let from = from.replace("../plugin-host", root().to_str().unwrap());
                let name = Path::new(&from).file_name().unwrap().to_owned();
                fs::copy(&from, dir.path().join(name)).unwrap();
            }
            // The chapter builds in release, the profile of an installed `plugin-host`; the
            // `plugin-host` under test is a debug build, so the plugin is built in debug too:
            // what is tested is that a plugin of the host's profile passes strict.
            ["cargo", "build", "--release"] => {
                cargo(
                    dir.path(),
                    &["build", "--target-dir", target.to_str().unwrap()],
                );
            }
            ["plugin-host", "check", "--policy", "strict", "target/release/libshout.so"] => {
                let check = check_strict(&lib);
                assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
            }
            ["plugin-host", "run", "--plugins", "target/release", "shout", "hello"] => {
                let plugins = tempfile::tempdir().unwrap();
                fs::copy(&lib, plugins.path().join(lib.file_name().unwrap())).unwrap();
                let run = cli(&[
                    "run",
                    "--plugins",
                    plugins.path().to_str().unwrap(),
                    "shout",
                    "hello",
                    "world",
                ]);
                assert_eq!(stdout(&run), "HELLO WORLD\n", "{}", stderr(&run));
                assert!(
                    stderr(&run).contains("plugin{name=shout}"),
                    "{}",
                    stderr(&run)
                );
            }
            _ => panic!("the README shows a step this test does not know: {step:?}"),
        }
        ran.push(words[0..2].join(" "));
    }
    assert_eq!(
        ran,
        [
            "cp ../plugin-host/Cargo.lock",
            "cargo build",
            "plugin-host check",
            "plugin-host run"
        ],
        "the README's steps changed"
    );

    // Without the host's lock: a fresh resolution, then the one command `check` prints.
    let fresh = tempfile::tempdir().unwrap();
    write_plugin(&section, fresh.path());
    let build = || {
        cargo(
            fresh.path(),
            &["build", "--target-dir", target.to_str().unwrap()],
        )
    };
    build();
    let check = check_strict(&lib);
    if check.status.code() != Some(0) {
        let text = stdout(&check);
        assert!(text.contains("error[dependency-mismatch]"), "{text}");
        let at = text.find("by running `").expect("an alignment command") + "by running `".len();
        let command = &text[at..at + text[at..].find('`').unwrap()];
        run_suggested(fresh.path(), command, &[]);
        build();
        let check = check_strict(&lib);
        assert_eq!(
            check.status.code(),
            Some(0),
            "after `{command}`: {}",
            stdout(&check)
        );
    }
}

fn file_name_of_shout() -> String {
    format!(
        "{}shout{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}
