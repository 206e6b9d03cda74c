//! The README documents every reason code, and only those.

use host::ReasonCode;

#[test]
fn readme_lists_exactly_the_reason_codes() {
    let readme = std::fs::read_to_string(crate::fixtures::root().join("README.md")).unwrap();
    let section = readme
        .split("## Reason codes")
        .nth(1)
        .expect("README has a `## Reason codes` section");
    let section = section.split("\n## ").next().unwrap();
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let code: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(documented, code, "README table and ReasonCode::ALL differ");
}

/// The subcommands a `--help` lists (without `help`).
fn commands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .expect("a Commands: list")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_synopsis_lists_every_command_and_builder_subcommand() {
    let readme = std::fs::read_to_string(crate::fixtures::root().join("README.md")).unwrap();
    let synopsis = readme
        .split("## The CLI")
        .nth(1)
        .and_then(|s| s.split("```text").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a synopsis under `## The CLI`");
    let help = crate::support::stdout(&crate::support::cli(&["--help"]));
    for command in commands(&help) {
        assert!(
            synopsis.contains(&format!("plugin-host {command}")),
            "the README's synopsis does not show `plugin-host {command}`"
        );
    }
    let builder_lines: Vec<&str> = synopsis
        .lines()
        .filter(|l| l.starts_with("plugin-host builder "))
        .collect();
    let help = crate::support::stdout(&crate::support::cli(&["builder", "--help"]));
    for command in commands(&help) {
        assert!(
            builder_lines
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == command)),
            "the README's synopsis does not show `plugin-host builder {command}`: {builder_lines:?}"
        );
    }
}

#[test]
fn readme_builder_section_connects_the_lock_of_new_with_the_image() {
    let readme = std::fs::read_to_string(crate::fixtures::root().join("README.md")).unwrap();
    let section = readme
        .split("### The builder image")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a builder image section");
    // A crate made by `new` already has the lock the image needs: no separate copy step.
    assert!(
        !section.contains("copy the host's `Cargo.lock` beside it"),
        "the builder section still asks for a copy of the host's lock"
    );
    for needle in [
        "`plugin-host new`",
        "`new` starts it from the host's",
        "plugin-host preflight --fix",
    ] {
        assert!(section.contains(needle), "{needle}");
    }
}
