//! A plugin's `config` table: merged key by key across layers, every value with its origin,
//! and handed to the plugin as TOML text.

use std::collections::BTreeMap;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use super::origin::{Origin, Valued};

/// A plugin's `config` table as the layers built it.
///
/// Tables merge recursively (a later layer's key replaces the same key of an earlier one, other
/// keys stay); arrays and scalars are replaced whole.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    entries: BTreeMap<String, Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Table(PluginConfig),
    Leaf(Valued<Value>),
}

/// One value of a plugin's `config` table, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigLeaf {
    /// The dotted key inside the `config` table (keys that are not bare are quoted).
    pub key: String,
    /// The value as TOML text.
    pub toml: String,
    /// The value as JSON (datetimes, and floats JSON cannot hold, become strings).
    pub json: serde_json::Value,
    /// Where it was set.
    pub origin: Origin,
}

impl PluginConfig {
    /// Whether no layer set anything in it.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn insert_leaf(&mut self, key: &str, value: &Value, origin: Origin) {
        self.entries.insert(
            key.to_owned(),
            Node::Leaf(Valued::new(fresh(value), origin)),
        );
    }

    pub(crate) fn insert_table(&mut self, key: &str, table: PluginConfig) {
        self.entries.insert(key.to_owned(), Node::Table(table));
    }

    /// Lays `later` over `self`: tables merge, anything else in `later` replaces.
    pub(crate) fn merge(&mut self, later: PluginConfig) {
        if self.entries.is_empty() {
            // The first layer that sets anything (the usual case): nothing to merge.
            self.entries = later.entries;
            return;
        }
        for (key, node) in later.entries {
            match (self.entries.get_mut(&key), node) {
                (Some(Node::Table(mine)), Node::Table(theirs)) => mine.merge(theirs),
                (_, node) => {
                    self.entries.insert(key, node);
                }
            }
        }
    }

    /// The table as TOML text: what the plugin receives as its configuration string (sorted
    /// keys, sub-tables as `[section]`s).
    pub fn to_toml(&self) -> String {
        let mut doc = DocumentMut::new();
        self.fill(doc.as_table_mut());
        doc.to_string()
    }

    fn fill(&self, table: &mut Table) {
        for (key, node) in &self.entries {
            match node {
                Node::Leaf(v) => {
                    table.insert(key, Item::Value(v.value.clone()));
                }
                Node::Table(sub) => {
                    let mut t = Table::new();
                    t.set_implicit(true);
                    sub.fill(&mut t);
                    table.insert(key, Item::Table(t));
                }
            }
        }
    }

    /// Every value, depth first in key order, with its dotted key and origin.
    pub fn leaves(&self) -> Vec<ConfigLeaf> {
        let mut out = Vec::new();
        self.collect("", &mut out);
        out
    }

    fn collect(&self, prefix: &str, out: &mut Vec<ConfigLeaf>) {
        for (key, node) in &self.entries {
            let key = format!("{prefix}{}", toml_edit::Key::new(key).display_repr());
            match node {
                Node::Table(sub) => sub.collect(&format!("{key}."), out),
                Node::Leaf(v) => out.push(ConfigLeaf {
                    key,
                    toml: v.value.to_string().trim().to_owned(),
                    json: json(&v.value),
                    origin: v.origin.clone(),
                }),
            }
        }
    }
}

/// A copy of `value` that owns its text (no spans into the parsed file, no comments).
fn fresh(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::from(s.value().as_str()),
        Value::Integer(i) => Value::from(*i.value()),
        Value::Float(f) => Value::from(*f.value()),
        Value::Boolean(b) => Value::from(*b.value()),
        Value::Datetime(d) => Value::from(*d.value()),
        Value::Array(a) => {
            let mut out = Array::new();
            for v in a.iter() {
                out.push(fresh(v));
            }
            Value::Array(out)
        }
        Value::InlineTable(t) => {
            let mut out = InlineTable::new();
            for (k, v) in t.iter() {
                out.insert(k, fresh(v));
            }
            Value::InlineTable(out)
        }
    }
}

fn json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::String(s) => J::String(s.value().clone()),
        Value::Integer(i) => J::from(*i.value()),
        Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map(J::Number)
            .unwrap_or_else(|| J::String(f.value().to_string())),
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(d) => J::String(d.value().to_string()),
        Value::Array(a) => J::Array(a.iter().map(json).collect()),
        Value::InlineTable(t) => {
            J::Object(t.iter().map(|(k, v)| (k.to_owned(), json(v))).collect())
        }
    }
}
