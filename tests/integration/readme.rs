//! The README's "Writing a plugin" example builds outside this workspace and works.

use std::fs;

use crate::fixtures::{cargo, fixtures, root};
use crate::support::*;

/// The fenced code block that follows the line naming `file` in the section.
fn block<'a>(section: &'a str, file: &str) -> &'a str {
    let after = section
        .split(&format!("`{file}`\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README names no `{file}`"));
    let body = after.split_once("\n").unwrap().1;
    body.split("\n```").next().unwrap()
}

#[test]
fn readme_plugin_builds_and_loads() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("## Writing a plugin").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();

    let api = root().join("plugin-api");
    let manifest =
        block(section, "Cargo.toml").replace("../plugin-host/plugin-api", api.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("src")).unwrap();
    fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    fs::write(dir.path().join("build.rs"), block(section, "build.rs")).unwrap();
    fs::write(dir.path().join("src/lib.rs"), block(section, "src/lib.rs")).unwrap();
    fs::copy(root().join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();

    let target = fixtures().libs.parent().unwrap();
    cargo(
        dir.path(),
        &["build", "--target-dir", target.to_str().unwrap()],
    );

    let lib = fixtures().lib("shout");
    let check = cli(&["check", lib.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
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
