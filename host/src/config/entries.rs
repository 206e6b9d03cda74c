//! The effective configuration as a flat list of `key = value` entries, each with its origin:
//! what `plugin-host config` prints.

use std::path::Path;

use serde::Serialize;
use serde_json::Value as Json;

use super::effective::Config;
use super::origin::{Origin, Valued};

/// One effective value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The dotted key (`policy.preset`, `search.paths[0]`, `plugins.redact.config.mask`).
    pub key: String,
    /// The value as TOML text.
    pub toml: String,
    /// The value as JSON.
    pub json: Json,
    /// Where it was set; `None` for a default.
    pub origin: Option<Origin>,
}

impl Entry {
    fn set(key: String, json: Json, origin: &Origin) -> Entry {
        Entry {
            key,
            toml: toml_text(&json),
            json,
            origin: Some(origin.clone()),
        }
    }
}

fn path_json(p: &Path) -> Json {
    Json::String(p.display().to_string())
}

fn str_json(v: &Valued<impl ToString>) -> Json {
    Json::String(v.value.to_string())
}

/// TOML text for the JSON shapes this module makes (strings, booleans, arrays of strings).
fn toml_text(json: &Json) -> String {
    match json {
        Json::String(s) => toml_edit::Value::from(s.as_str()).to_string(),
        Json::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_text).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

impl Config {
    /// Every effective value, in schema order, with its origin. Default search paths appear
    /// as one `search.paths` entry without origin.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        match self.configured_search_paths() {
            Some(paths) => {
                for (i, p) in paths.iter().enumerate() {
                    out.push(Entry::set(
                        format!("search.paths[{i}]"),
                        path_json(&p.value),
                        &p.origin,
                    ));
                }
            }
            None => {
                let json = Json::Array(
                    self.default_search_paths()
                        .iter()
                        .map(|p| path_json(p))
                        .collect(),
                );
                out.push(Entry {
                    key: "search.paths".to_owned(),
                    toml: toml_text(&json),
                    json,
                    origin: None,
                });
            }
        }
        if let Some(p) = self.policy_preset() {
            out.push(Entry::set("policy.preset".into(), str_json(p), &p.origin));
        }
        for (check, s) in self.policy_checks() {
            let json = Json::String(severity(s.value).into());
            out.push(Entry::set(
                format!("policy.checks.{check}"),
                json,
                &s.origin,
            ));
        }
        for (i, k) in self.trust().keys.iter().enumerate() {
            out.push(Entry::set(
                format!("trust.keys[{i}]"),
                str_json(k),
                &k.origin,
            ));
        }
        if let Some(s) = &self.trust().signatures {
            out.push(Entry::set(
                "trust.signatures".into(),
                str_json(s),
                &s.origin,
            ));
        }
        for (i, w) in self.workers().iter().enumerate() {
            out.push(Entry::set(
                format!("isolation.workers[{i}]"),
                path_json(&w.value),
                &w.origin,
            ));
        }
        for (name, p) in self.plugins() {
            let key = |k: &str| format!("plugins.{name}.{k}");
            if let Some(v) = &p.path {
                out.push(Entry::set(key("path"), path_json(&v.value), &v.origin));
            }
            if let Some(v) = &p.enabled {
                out.push(Entry::set(key("enabled"), Json::Bool(v.value), &v.origin));
            }
            if let Some(v) = &p.preset {
                out.push(Entry::set(key("policy"), str_json(v), &v.origin));
            }
            for (check, s) in &p.checks {
                let json = Json::String(severity(s.value).into());
                out.push(Entry::set(key(&format!("checks.{check}")), json, &s.origin));
            }
            if let Some(v) = &p.signatures {
                out.push(Entry::set(key("signatures"), str_json(v), &v.origin));
            }
            if let Some(v) = &p.replace_builtin {
                let json = Json::Bool(v.value);
                out.push(Entry::set(key("replace-builtin"), json, &v.origin));
            }
            if let Some(v) = &p.isolation {
                out.push(Entry::set(key("isolation"), str_json(v), &v.origin));
            }
            if let Some(v) = &p.source {
                out.push(Entry::set(key("source"), str_json(v), &v.origin));
            }
            for leaf in p.config.leaves() {
                out.push(Entry {
                    key: key(&format!("config.{}", leaf.key)),
                    toml: leaf.toml,
                    json: leaf.json,
                    origin: Some(leaf.origin),
                });
            }
        }
        out
    }
}

fn severity(s: crate::policy::Severity) -> &'static str {
    match s {
        crate::policy::Severity::Ignore => "ignore",
        crate::policy::Severity::Warn => "warn",
        crate::policy::Severity::Fail => "fail",
    }
}
