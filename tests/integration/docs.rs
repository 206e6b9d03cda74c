//! The book documents every reason code (and only those), every command, and the builder's
//! lock workflow.

use host::ReasonCode;

#[test]
fn the_book_lists_exactly_the_reason_codes() {
    let section = crate::book::chapter("reference/reason-codes.md");
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let code: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        documented, code,
        "the reason-code table and ReasonCode::ALL differ"
    );
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
fn the_cli_synopsis_lists_every_command_and_builder_subcommand() {
    let chapter = crate::book::chapter("reference/cli.md");
    let synopsis = chapter
        .split("```text")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the CLI chapter opens with a synopsis");
    let help = crate::support::stdout(&crate::support::cli(&["--help"]));
    for command in commands(&help) {
        assert!(
            synopsis.contains(&format!("plugin-host {command}")),
            "the CLI chapter's synopsis does not show `plugin-host {command}`"
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
            "the CLI chapter's synopsis does not show `plugin-host builder {command}`: {builder_lines:?}"
        );
    }
}

#[test]
fn the_builder_chapter_connects_the_lock_of_new_with_the_image() {
    let chapter = crate::book::chapter("authors/building-for-a-host.md");
    let section = chapter
        .split("## The builder image")
        .nth(1)
        .expect("the builder chapter has a builder image section");
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
