//! The schema, checked by hand over `toml_edit`'s parsed document so that every key and value
//! keeps its span: one file in, one [`Layer`] of typed values with origins out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, TableLike, Value};

use super::error::ConfigError;
use super::files::LayerKind;
use super::origin::{Lines, Origin, Valued};
use super::settings::{Isolation, PluginSettings};
use super::table::PluginConfig;
use crate::policy::{CheckKind, Policy, PolicyError, Severity};
use crate::trust::SignatureMode;

/// What one file sets, validated.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub kind: LayerKind,
    pub file: PathBuf,
    pub search_paths: Option<Vec<Valued<PathBuf>>>,
    pub preset: Option<Valued<String>>,
    pub checks: BTreeMap<CheckKind, Valued<Severity>>,
    pub keys: Option<Vec<Valued<String>>>,
    pub signatures: Option<Valued<SignatureMode>>,
    pub plugins: BTreeMap<String, PluginSettings>,
    pub workers: Option<Vec<Valued<PathBuf>>>,
}

const TOP: &[&str] = &["search", "policy", "trust", "isolation", "plugins"];
const SEARCH: &[&str] = &["paths"];
const POLICY: &[&str] = &["preset", "checks"];
const TRUST: &[&str] = &["keys", "signatures"];
const ISOLATION: &[&str] = &["workers"];
const PLUGIN: &[&str] = &[
    "path",
    "enabled",
    "config",
    "policy",
    "checks",
    "signatures",
    "replace-builtin",
    "isolation",
    "source",
];

/// Parses and validates `text`, the contents of `file`; `home` is where `~/` paths start.
pub(crate) fn parse(
    kind: LayerKind,
    file: &Path,
    text: &str,
    home: Option<&Path>,
) -> Result<Layer, ConfigError> {
    let walker = Walker {
        file,
        dir: file.parent().unwrap_or(Path::new("")),
        home,
        lines: Lines::new(text),
    };
    let doc = Document::parse(text).map_err(|e| ConfigError::Malformed {
        origin: walker.lines.origin(file, e.span().map_or(0, |s| s.start)),
        message: e.message().trim().replace('\n', " "),
    })?;
    let start = walker.lines.origin(file, 0);
    let mut layer = Layer {
        kind,
        file: file.to_owned(),
        search_paths: None,
        preset: None,
        checks: BTreeMap::new(),
        keys: None,
        signatures: None,
        plugins: BTreeMap::new(),
        workers: None,
    };
    for field in walker.fields(doc.as_table(), &start, "the top level", TOP)? {
        match field.key {
            "search" => {
                let table = walker.table(&field, "search")?;
                for f in walker.fields(table, &field.value_at, "[search]", SEARCH)? {
                    layer.search_paths = Some(walker.paths(&f, "search.paths")?);
                }
            }
            "policy" => {
                let table = walker.table(&field, "policy")?;
                for f in walker.fields(table, &field.value_at, "[policy]", POLICY)? {
                    match f.key {
                        "preset" => layer.preset = Some(walker.preset(&f, "policy.preset")?),
                        _ => layer.checks = walker.checks(&f, "policy.checks")?,
                    }
                }
            }
            "trust" => {
                let table = walker.table(&field, "trust")?;
                for f in walker.fields(table, &field.value_at, "[trust]", TRUST)? {
                    match f.key {
                        "keys" => layer.keys = Some(walker.keys(&f, "trust.keys")?),
                        _ => layer.signatures = Some(walker.signatures(&f, "trust.signatures")?),
                    }
                }
            }
            "isolation" => {
                let table = walker.table(&field, "isolation")?;
                for f in walker.fields(table, &field.value_at, "[isolation]", ISOLATION)? {
                    layer.workers = Some(walker.files(&f, "isolation.workers", "worker binary")?);
                }
            }
            _ => {
                let table = walker.table(&field, "plugins")?;
                for f in walker.fields(table, &field.value_at, "[plugins]", &[])? {
                    let settings = walker.plugin(&f)?;
                    layer.plugins.insert(f.key.to_owned(), settings);
                }
            }
        }
    }
    Ok(layer)
}

/// One key of a table, with where its value is (and where the key is, placed only when an
/// error needs it: see [`Walker::key_at`]).
struct Field<'d> {
    key: &'d str,
    item: &'d Item,
    key_span: Option<std::ops::Range<usize>>,
    value_at: Origin,
}

struct Walker<'a> {
    file: &'a Path,
    dir: &'a Path,
    home: Option<&'a Path>,
    /// The file's text, indexed once: every key's origin is a lookup, not a scan.
    lines: Lines<'a>,
}

impl Walker<'_> {
    /// The fields of `table`; with a non-empty `known`, any other key is an error.
    fn fields<'d>(
        &self,
        table: &'d dyn TableLike,
        at: &Origin,
        name: &str,
        known: &[&str],
    ) -> Result<Vec<Field<'d>>, ConfigError> {
        let mut out = Vec::with_capacity(table.len());
        for (key, item) in table.iter() {
            let key_span = table.key(key).and_then(|k| k.span());
            if !known.is_empty() && !known.contains(&key) {
                return Err(ConfigError::UnknownKey {
                    origin: self.lines.of(self.file, key_span, at),
                    key: key.to_owned(),
                    table: name.to_owned(),
                    suggestion: suggest(key, known.iter().copied()),
                });
            }
            let value_at = match item.span() {
                Some(span) => self.lines.origin(self.file, span.start),
                None => self.lines.of(self.file, key_span.clone(), at),
            };
            out.push(Field {
                key,
                item,
                key_span,
                value_at,
            });
        }
        Ok(out)
    }

    /// Where the key of `f` is (its value's place when the parser gave the key no span).
    fn key_at(&self, f: &Field<'_>) -> Origin {
        self.lines.of(self.file, f.key_span.clone(), &f.value_at)
    }

    fn table<'d>(&self, f: &Field<'d>, key: &str) -> Result<&'d dyn TableLike, ConfigError> {
        f.item
            .as_table_like()
            .ok_or_else(|| wrong(&f.value_at, key, "a table", f.item))
    }

    fn string(&self, f: &Field<'_>, key: &str) -> Result<Valued<String>, ConfigError> {
        match f.item.as_str() {
            Some(s) => Ok(Valued::new(s.to_owned(), f.value_at.clone())),
            None => Err(wrong(&f.value_at, key, "a string", f.item)),
        }
    }

    fn bool(&self, f: &Field<'_>, key: &str) -> Result<Valued<bool>, ConfigError> {
        match f.item.as_bool() {
            Some(b) => Ok(Valued::new(b, f.value_at.clone())),
            None => Err(wrong(&f.value_at, key, "a boolean", f.item)),
        }
    }

    /// One of a fixed set of words.
    fn word<T>(
        &self,
        f: &Field<'_>,
        key: &str,
        allowed: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Valued<T>, ConfigError> {
        let s = self.string(f, key)?;
        match parse(&s.value) {
            Some(v) => Ok(Valued::new(v, s.origin)),
            None => Err(ConfigError::BadValue {
                origin: s.origin,
                key: key.to_owned(),
                value: s.value,
                allowed: allowed.iter().map(|a| (*a).to_owned()).collect(),
            }),
        }
    }

    fn preset(&self, f: &Field<'_>, key: &str) -> Result<Valued<String>, ConfigError> {
        self.word(f, key, &Policy::PRESETS, |s| {
            Policy::PRESETS.contains(&s).then(|| s.to_owned())
        })
    }

    fn signatures(&self, f: &Field<'_>, key: &str) -> Result<Valued<SignatureMode>, ConfigError> {
        let allowed: Vec<_> = SignatureMode::ALL.iter().map(|m| m.as_str()).collect();
        self.word(f, key, &allowed, |s| s.parse().ok())
    }

    fn checks(
        &self,
        f: &Field<'_>,
        key: &str,
    ) -> Result<BTreeMap<CheckKind, Valued<Severity>>, ConfigError> {
        let table = self.table(f, key)?;
        let names: Vec<&str> = CheckKind::ALL.iter().map(|c| c.as_str()).collect();
        let mut out = BTreeMap::new();
        let name = format!("`{key}`");
        for c in self.fields(table, &f.value_at, &name, &names)? {
            let check = CheckKind::parse(c.key).expect("a known check name");
            let full = format!("{key}.{}", c.key);
            if !check.adjustable() {
                return Err(ConfigError::Invalid {
                    origin: self.key_at(&c),
                    key: full,
                    message: PolicyError::NotAdjustable(check).to_string(),
                });
            }
            let severity = self.word(&c, &full, &["ignore", "warn", "fail"], Severity::parse)?;
            out.insert(check, severity);
        }
        Ok(out)
    }

    fn array<'d>(&self, f: &Field<'d>, key: &str) -> Result<Vec<(&'d Value, Origin)>, ConfigError> {
        let array = f
            .item
            .as_array()
            .ok_or_else(|| wrong(&f.value_at, key, "an array", f.item))?;
        Ok(array
            .iter()
            .map(|v| {
                let at = self.lines.of(self.file, v.span(), &f.value_at);
                (v, at)
            })
            .collect())
    }

    fn strings(&self, f: &Field<'_>, key: &str) -> Result<Vec<Valued<String>>, ConfigError> {
        self.array(f, key)?
            .into_iter()
            .map(|(v, at)| match v.as_str() {
                Some(s) => Ok(Valued::new(s.to_owned(), at)),
                None => Err(ConfigError::WrongType {
                    origin: at,
                    key: key.to_owned(),
                    expected: "a string",
                    found: value_type(v),
                }),
            })
            .collect()
    }

    /// `s` resolved against the directory of the file (`~` or `~/…`: against the home
    /// directory); it must exist.
    fn existing(&self, s: Valued<String>, key: &str) -> Result<Valued<PathBuf>, ConfigError> {
        if s.value.is_empty() {
            return Err(ConfigError::Invalid {
                origin: s.origin,
                key: key.to_owned(),
                message: "an empty path".to_owned(),
            });
        }
        let under_home = match s.value.strip_prefix('~') {
            Some("") => Some(""),
            Some(rest) => rest.strip_prefix('/'),
            None => None,
        };
        let path = match (under_home, self.home) {
            (Some(rest), Some(home)) => home.join(rest),
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    origin: s.origin,
                    key: key.to_owned(),
                    message: "a path under `~`, but $HOME is not set (to an absolute path)"
                        .to_owned(),
                })
            }
            (None, _) => self.dir.join(&s.value),
        };
        if !path.exists() {
            return Err(ConfigError::MissingPath {
                origin: s.origin,
                key: key.to_owned(),
                path,
            });
        }
        Ok(Valued::new(path, s.origin))
    }

    fn paths(&self, f: &Field<'_>, key: &str) -> Result<Vec<Valued<PathBuf>>, ConfigError> {
        let mut out = Vec::new();
        for s in self.strings(f, key)? {
            let p = self.existing(s, key)?;
            if !p.value.is_dir() {
                return Err(ConfigError::Invalid {
                    origin: p.origin,
                    key: key.to_owned(),
                    message: format!("{} is not a directory", p.value.display()),
                });
            }
            out.push(p);
        }
        Ok(out)
    }

    /// An array of files (each existing, none a directory); `what` names one in the error.
    fn files(
        &self,
        f: &Field<'_>,
        key: &str,
        what: &str,
    ) -> Result<Vec<Valued<PathBuf>>, ConfigError> {
        let mut out = Vec::new();
        for s in self.strings(f, key)? {
            out.push(self.file(s, key, what)?);
        }
        Ok(out)
    }

    /// `s` resolved against the directory of the file; it must exist and not be a directory.
    fn file(
        &self,
        s: Valued<String>,
        key: &str,
        what: &str,
    ) -> Result<Valued<PathBuf>, ConfigError> {
        let path = self.existing(s, key)?;
        if path.value.is_dir() {
            return Err(ConfigError::Invalid {
                origin: path.origin,
                key: key.to_owned(),
                message: format!("{} is a directory, not a {what}", path.value.display()),
            });
        }
        Ok(path)
    }

    fn keys(&self, f: &Field<'_>, key: &str) -> Result<Vec<Valued<String>>, ConfigError> {
        let keys = self.strings(f, key)?;
        for k in &keys {
            if !is_minisign_public_key(&k.value) {
                return Err(ConfigError::Invalid {
                    origin: k.origin.clone(),
                    key: key.to_owned(),
                    message: format!(
                        "`{}` is not a minisign public key (the base64 line of a .pub file: \
                         56 characters encoding 42 bytes, starting `RW`)",
                        k.value
                    ),
                });
            }
        }
        Ok(keys)
    }

    fn plugin(&self, f: &Field<'_>) -> Result<PluginSettings, ConfigError> {
        let name = f.key;
        if !is_package_name(name) {
            return Err(ConfigError::Invalid {
                origin: self.key_at(f),
                key: format!("plugins.{}", toml_edit::Key::new(name).display_repr()),
                message: "a plugin name is a cargo package name: ASCII letters, digits, `-` \
                          and `_`, starting with a letter"
                    .to_owned(),
            });
        }
        let prefix = format!("plugins.{name}");
        let table = self.table(f, &prefix)?;
        let mut s = PluginSettings::default();
        let section = format!("[{prefix}]");
        for p in self.fields(table, &f.value_at, &section, PLUGIN)? {
            let key = format!("{prefix}.{}", p.key);
            match p.key {
                "path" => s.path = Some(self.file(self.string(&p, &key)?, &key, "plugin file")?),
                "enabled" => s.enabled = Some(self.bool(&p, &key)?),
                "config" => s.config = self.config(&p, &key)?,
                "policy" => s.preset = Some(self.preset(&p, &key)?),
                "checks" => s.checks = self.checks(&p, &key)?,
                "signatures" => s.signatures = Some(self.signatures(&p, &key)?),
                "replace-builtin" => s.replace_builtin = Some(self.bool(&p, &key)?),
                "source" => {
                    let source = self.string(&p, &key)?;
                    if !source.value.starts_with("oci://") {
                        return Err(ConfigError::Invalid {
                            origin: source.origin.clone(),
                            key,
                            message: "a plugin's source is an OCI reference: \
                                      `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:DIGEST`)"
                                .to_owned(),
                        });
                    }
                    s.source = Some(source);
                }
                _ => {
                    let allowed: Vec<_> = Isolation::ALL.iter().map(|i| i.as_str()).collect();
                    s.isolation = Some(self.word(&p, &key, &allowed, Isolation::parse)?);
                }
            }
        }
        Ok(s)
    }

    /// A plugin's `config` table: any TOML, kept with origins.
    fn config(&self, f: &Field<'_>, key: &str) -> Result<PluginConfig, ConfigError> {
        let table = self.table(f, key)?;
        let mut out = PluginConfig::default();
        for c in self.fields(table, &f.value_at, key, &[])? {
            match c.item {
                Item::Value(Value::InlineTable(_)) | Item::Table(_) => {
                    let sub = self.config(&c, &format!("{key}.{}", c.key))?;
                    out.insert_table(c.key, sub);
                }
                Item::Value(v) => out.insert_leaf(c.key, v, c.value_at),
                Item::ArrayOfTables(_) | Item::None => {
                    return Err(wrong(&c.value_at, key, "a value or a table", c.item));
                }
            }
        }
        Ok(out)
    }
}

fn wrong(at: &Origin, key: &str, expected: &'static str, item: &Item) -> ConfigError {
    ConfigError::WrongType {
        origin: at.clone(),
        key: key.to_owned(),
        expected,
        found: item_type(item),
    }
}

fn item_type(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_type(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// The known word closest to `key`, when it is close enough to be a likely typo (the
/// configuration's did-you-mean, also the command line's).
pub fn suggest<'k>(key: &str, known: impl Iterator<Item = &'k str>) -> Option<String> {
    known
        .map(|k| (strsim::jaro_winkler(key, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned())
}

/// A cargo package name: ASCII letters, digits, `-` and `_`, starting with a letter.
fn is_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64
}

/// A minisign public key line: base64 of 42 bytes (`Ed`, an 8-byte key id, a 32-byte Ed25519
/// key), parsed as the trust step will use it.
fn is_minisign_public_key(line: &str) -> bool {
    !line.contains('\n') && crate::trust::TrustedKey::parse(line).is_ok()
}

#[cfg(test)]
pub(crate) fn minisign_key_shape(line: &str) -> bool {
    is_minisign_public_key(line)
}
