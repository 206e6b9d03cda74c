//! The layout of `host/src` (see the book's Architecture chapter): no circle among its
//! modules, and `impl Host` only where the host and its builder are.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::fixtures::root;

/// Every `.rs` file under `dir`, by its module path relative to `base` (`trust/step`,
/// `place`), with its text.
fn sources(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(base, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).unwrap().with_extension("");
            let text = fs::read_to_string(&path).unwrap();
            out.insert(rel.to_string_lossy().into_owned(), text);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests { … }`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module files `path` (`a::b::c`, from `crate::`) names: the longest prefix that is one.
fn resolve(modules: &BTreeSet<String>, path: &[&str]) -> Option<String> {
    (1..=path.len()).rev().find_map(|n| {
        let candidate = path[..n].join("/");
        [candidate.clone(), format!("{candidate}/mod")]
            .into_iter()
            .find(|c| modules.contains(c))
    })
}

/// Which module files each module file imports (`crate::…` and `super::…` paths; test files
/// left out).
fn imports(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let path_chars = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in files {
        if module.ends_with("tests") {
            continue;
        }
        let code = code(text);
        let parent = match module.rsplit_once('/') {
            Some((parent, _)) => parent.to_owned(),
            None => String::new(),
        };
        let mut add = |target: Option<String>| {
            if let Some(target) = target.filter(|t| t != module && t != "lib") {
                edges.entry(module.clone()).or_default().insert(target);
            }
        };
        for (at, _) in code.match_indices("crate::") {
            let rest: String = code[at + 7..]
                .chars()
                .take_while(|&c| path_chars(c))
                .collect();
            let parts: Vec<&str> = rest.split("::").filter(|p| !p.is_empty()).collect();
            add(resolve(&modules, &parts));
        }
        // `use crate::{a, b::c}`
        for (at, _) in code.match_indices("use crate::{") {
            let list = &code[at + 12..];
            let list = &list[..list.find('}').unwrap_or(0)];
            for item in list.split(',') {
                let parts: Vec<&str> = item.trim().split("::").collect();
                add(resolve(&modules, &parts));
            }
        }
        for (at, _) in code.match_indices("super::") {
            let name: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let sibling = if parent.is_empty() {
                name
            } else {
                format!("{parent}/{name}")
            };
            add(
                resolve(&modules, &sibling.split('/').collect::<Vec<_>>()).or_else(|| {
                    let parent_file = (!parent.is_empty()).then(|| parent.clone());
                    parent_file.filter(|p| modules.contains(p))
                }),
            );
        }
    }
    edges
}

/// The circles of `edges` (strongly connected components of more than one module).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().chain(edges.values().flatten()).collect();
    let reaches = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        if !reach[n].contains(*n) || out.iter().any(|c| c.contains(*n)) {
            continue;
        }
        let circle = nodes
            .iter()
            .filter(|m| reach[n].contains(**m) && reach[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        out.push(circle);
    }
    out
}

#[test]
fn host_modules_import_each_other_without_a_circle() {
    let base = root().join("host/src");
    let mut files = BTreeMap::new();
    sources(&base, &base, &mut files);
    let edges = imports(&files);
    // The reader sees what it must: the host imports its parts, the gate its steps.
    assert!(edges["host"].contains("gate") && edges["host"].contains("place"));
    assert!(edges["gate"].contains("trust/mod") && edges["gate"].contains("policy"));
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "modules of host/src import each other in a circle: {found:?}; give the lower one what \
         it needs through a context, a request or a small trait (see docs/src/architecture.md)"
    );
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut files = BTreeMap::new();
    files.insert("a".to_owned(), "use crate::b::X;".to_owned());
    files.insert("b".to_owned(), "fn f() { crate::c::g() }".to_owned());
    files.insert("c".to_owned(), "use crate::{a::Y, d};".to_owned());
    files.insert("d".to_owned(), "// crate::a in a comment only".to_owned());
    let found = circles(&imports(&files));
    let expected: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, vec![expected]);
}

#[test]
fn impl_host_lives_with_the_host_and_its_builder() {
    let base = root().join("host/src");
    let mut files = BTreeMap::new();
    sources(&base, &base, &mut files);
    let with_impl: Vec<&String> = files
        .iter()
        .filter(|(_, text)| {
            code(text).contains("impl Host {") || code(text).contains("impl crate::Host {")
        })
        .map(|(module, _)| module)
        .collect();
    assert_eq!(
        with_impl,
        ["builder", "host"],
        "impl Host blocks in {with_impl:?}"
    );
}
