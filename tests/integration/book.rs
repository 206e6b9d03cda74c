//! The book (`docs/`) and the README hold together: every chapter is in `SUMMARY.md`, every
//! relative link leads to a file (and a heading there, when it names one), and every Rust
//! block is compiled — it is an `{{#include}}` of a file the test suite builds, or it is found
//! word for word in one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::fixtures::root;

/// Every Markdown file of the book, and the README.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs/src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text of a chapter of the book, by its path under `docs/src`.
pub fn chapter(rel: &str) -> String {
    let path = root().join("docs/src").join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced code blocks of `text`: (info string, body).
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for code in lines.by_ref() {
            if code.starts_with("```") {
                break;
            }
            body.push_str(code);
            body.push('\n');
        }
        out.push((info.trim().to_owned(), body));
    }
    out
}

/// The headings of a Markdown text as mdBook and GitHub make anchors of them.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let anchor: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        out.insert(anchor);
    }
    out
}

/// The sources the test suite compiles, whose text a Rust block may quote.
fn compiled_sources() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = ["examples", "plugins", "src", "host/src", "plugin-api/src"]
        .iter()
        .map(|d| root().join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("target") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_chapter_is_in_the_summary_and_every_link_leads_somewhere() {
    let src = root().join("docs/src");
    let summary = fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    for doc in documents() {
        let text = fs::read_to_string(&doc).unwrap();
        if let Ok(rel) = doc.strip_prefix(&src) {
            let rel = rel.to_str().unwrap();
            if rel != "SUMMARY.md" {
                assert!(
                    summary.contains(&format!("]({rel})")),
                    "SUMMARY.md misses {rel}"
                );
            }
        }
        let mut fenced = false;
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            if fenced {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = &rest[..end];
                rest = &rest[end..];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
                let path = if file.is_empty() {
                    doc.clone()
                } else {
                    doc.parent().unwrap().join(file)
                };
                assert!(
                    path.exists(),
                    "{}: the link `{target}` leads nowhere",
                    shown(&doc)
                );
                if !fragment.is_empty() && path.extension().is_some_and(|e| e == "md") {
                    let headings = anchors(&fs::read_to_string(&path).unwrap());
                    assert!(
                        headings.contains(fragment),
                        "{}: the link `{target}` names no heading of {}",
                        shown(&doc),
                        shown(&path)
                    );
                }
            }
        }
    }
}

#[test]
fn every_rust_block_is_compiled_code() {
    let sources = compiled_sources();
    let mut checked = 0;
    // This chapter's plugin is written out, built and run by `readme::readme_plugin_builds_and_loads`.
    let built_elsewhere = root().join("docs/src/authors/writing-a-plugin.md");
    for doc in documents() {
        let text = fs::read_to_string(&doc).unwrap();
        for (info, body) in blocks(&text) {
            if info.split(',').next() != Some("rust") {
                continue;
            }
            if doc == built_elsewhere {
                checked += 1;
                continue;
            }
            checked += 1;
            let includes: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
            if !includes.is_empty() && includes.iter().all(|l| l.starts_with("{{#include ")) {
                for line in includes {
                    let target = line
                        .trim_start_matches("{{#include ")
                        .trim_end_matches("}}");
                    let (file, anchor) = target.split_once(':').unwrap_or((target, ""));
                    let path = doc.parent().unwrap().join(file);
                    assert!(path.is_file(), "{}: {line} includes no file", shown(&doc));
                    if !anchor.is_empty() {
                        let text = fs::read_to_string(&path).unwrap();
                        assert!(
                            text.contains(&format!("ANCHOR: {anchor}\n"))
                                && text.contains(&format!("ANCHOR_END: {anchor}\n")),
                            "{}: {line}: no anchor `{anchor}` in {}",
                            shown(&doc),
                            shown(&path)
                        );
                    }
                }
                continue;
            }
            let body = body.trim_matches('\n');
            assert!(
                sources.iter().any(|s| s.contains(body)),
                "{}: this Rust block is not in any source the tests compile; include the \
                 file it comes from (`{{{{#include …}}}}`) or copy it from there:\n{body}",
                shown(&doc)
            );
        }
    }
    assert!(checked > 5, "only {checked} Rust blocks found");
}
