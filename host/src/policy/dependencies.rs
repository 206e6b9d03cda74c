//! The `dependencies` check: every crate linked by both host and plugin must be the same
//! version — and, for path and git crates, the same content — with one fix that aligns them all.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use plugin_api::provenance::{Dependency, DependencyRef, Provenance, ProvenanceRef, SourceKind};
use serde::Serialize;

use super::fix;
use crate::keyed::KeyedHash;
use crate::text::decimal;

/// One crate that host and plugin both link, but not identically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrateDifference {
    /// The crate's name.
    pub name: String,
    /// The host's version(s), comma-separated; for a content-only difference, with the host
    /// copy's short content id, e.g. `0.1.0 (sha256:1a2b3c4d5e6f)`.
    pub host: String,
    /// The plugin's version(s), the same way.
    pub plugin: String,
    /// The versions are the same but the contents are not: a changed copy of a path crate,
    /// another git commit, or another source.
    pub content_only: bool,
}

/// One version of a crate the host links.
#[derive(Debug, Clone)]
struct HostCrate {
    dependency: Dependency,
    /// Its version (`dependency.version()`, taken out once).
    version: String,
    identity: Option<String>,
    /// From crates.io (`identity` is [`REGISTRY`]), told once here rather than per plugin.
    registry: bool,
}

/// The host's dependencies, grouped by name once per host and sorted by it: a plugin's
/// sorted list is compared in one merge walk, without a lookup per crate.
#[derive(Debug, Clone, Default)]
pub(super) struct HostCrates {
    /// By name: the name's [`prefix`], the name, its versions.
    by_name: Vec<(u64, String, Vec<HostCrate>)>,
    /// The check's host value, `N crates`, made once.
    count: Arc<str>,
    /// Each crate by `name version` and each name alone: a plugin whose shared crates are
    /// all the host's is told so with one lookup per crate ([`all_same`]).
    lookup: Lookup,
}

/// The first eight bytes of `name`, big-endian, zero-padded: when two prefixes differ, the
/// names compare as they do (a merge walk compares integers, and strings only on a tie).
fn prefix(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let len = name.len().min(8);
    bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
    u64::from_be_bytes(bytes)
}

impl HostCrates {
    pub(super) fn new(host: &Provenance) -> Self {
        let mut by_name: BTreeMap<String, Vec<HostCrate>> = BTreeMap::new();
        for d in &host.dependencies {
            let list = by_name.entry(d.name().to_owned()).or_default();
            if !list.iter().any(|c| c.version == d.version()) {
                let digest = || host.digests.get(d.key()).map(String::as_str);
                let identity = identity(d.source_kind(), digest).map(Cow::into_owned);
                list.push(HostCrate {
                    registry: identity.as_deref() == Some(REGISTRY),
                    identity,
                    version: d.version().to_owned(),
                    dependency: d.clone(),
                });
                list.sort_by(|a, b| a.version.cmp(&b.version));
            }
        }
        let by_name: Vec<(u64, String, Vec<HostCrate>)> = by_name
            .into_iter()
            .map(|(name, crates)| (prefix(&name), name, crates))
            .collect();
        // Room for every key at once: a name and each of its versions.
        let keys = by_name.iter().map(|(_, _, crates)| 1 + crates.len()).sum();
        let mut lookup = Lookup(HashMap::with_capacity_and_hasher(
            keys,
            KeyedHash::default(),
        ));
        for (group, (_, name, crates)) in by_name.iter().enumerate() {
            lookup.insert(name, Found::Name(group));
            for (at, c) in crates.iter().enumerate() {
                lookup.insert(c.dependency.key(), Found::Crate(group, at));
            }
        }
        HostCrates {
            by_name,
            count: format!("{} crates", host.dependencies.len()).into(),
            lookup,
        }
    }

    /// The host's `plugin-api`, when its record lists it.
    pub(super) fn plugin_api(&self) -> Option<&Dependency> {
        self.by_name
            .binary_search_by(|(_, name, _)| name.as_str().cmp("plugin-api"))
            .ok()
            .and_then(|at| self.by_name[at].2.first())
            .map(|c| &c.dependency)
    }
}

/// What a key of [`Lookup`] finds: a name (its group in [`HostCrates::by_name`]) or one
/// version of it (the group and the crate's place in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Name(usize),
    Crate(usize, usize),
}

/// The host's names and `name version` keys → what they find, hashed with [`KeyedHash`] (a
/// plugin's record chooses the keys looked up). A name holds no space and a `name version`
/// key one, so the two kinds of key never meet.
#[derive(Debug, Clone, Default)]
struct Lookup(HashMap<Box<str>, Found, KeyedHash>);

impl Lookup {
    fn insert(&mut self, key: &str, found: Found) {
        self.0.entry(key.into()).or_insert(found);
    }

    fn get(&self, key: &str) -> Option<Found> {
        self.0.get(key).copied()
    }
}

/// The identity of every crate from crates.io.
const REGISTRY: &str = "crates.io";

/// What identifies a crate's content beyond its version: its digest for a path crate (when
/// the recorder wrote one), its commit for a git crate, its source otherwise. `None` when it
/// cannot be told (a record from before digests): such a crate is compared by version alone.
/// `digest` looks up the crate's digest in its record.
fn identity<'a>(
    kind: SourceKind<'a>,
    digest: impl FnOnce() -> Option<&'a str>,
) -> Option<Cow<'a, str>> {
    match kind {
        SourceKind::Registry => Some(Cow::Borrowed(REGISTRY)),
        SourceKind::Path(_) => digest().map(Cow::Borrowed),
        SourceKind::Git { commit, .. } => Some(Cow::Owned(format!("git {commit}"))),
        SourceKind::Other(source) => Some(Cow::Borrowed(source)),
        _ => None,
    }
}

/// `parts` one after another, in a buffer on the stack (at most 128 bytes: the parts of
/// the one text made this way are far shorter).
fn joined<'b>(parts: &[&str], buffer: &'b mut [u8; 128]) -> &'b str {
    let mut len = 0;
    for part in parts {
        let end = (len + part.len()).min(buffer.len());
        buffer[len..end].copy_from_slice(&part.as_bytes()[..end - len]);
        len = end;
    }
    // Whole parts of UTF-8 text; a cut (never made) would only end it early.
    match std::str::from_utf8(&buffer[..len]) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&buffer[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// A short form of an identity for messages: `sha256:1a2b3c4d5e6f`, `git 1a2b3c4d5`. The
/// identity is the record's text, not necessarily hexadecimal: cut after a number of
/// characters, never inside one.
fn short(identity: &str) -> String {
    let first = |text: &str, n: usize| {
        let end = text.char_indices().nth(n).map_or(text.len(), |(at, _)| at);
        text[..end].to_owned()
    };
    if let Some(hex) = identity.strip_prefix("sha256:") {
        format!("sha256:{}", first(hex, 12))
    } else if let Some(commit) = identity.strip_prefix("git ") {
        format!("git {}", first(commit, 9))
    } else {
        identity.to_owned()
    }
}

/// The outcome of the comparison: the check's host and plugin values, the message when they
/// differ, and the per-crate differences.
#[derive(Debug)]
pub(super) struct Comparison {
    pub(super) host: Arc<str>,
    pub(super) plugin: Arc<str>,
    pub(super) message: Option<String>,
    pub(super) differences: Vec<CrateDifference>,
}

/// A plugin's crate in the walk: its name's [`prefix`], name, version, and itself.
type Entry<'d> = (u64, &'d str, &'d str, &'d DependencyRef<'d>);

/// What the walk sorts by: name, version, then source — so that only a crate listed twice
/// is one entry, and a name and version from two sources (one of which may not be the
/// host's copy) stay two.
fn key<'d>(entry: &Entry<'d>) -> (u64, &'d str, &'d str, Option<&'d str>) {
    (entry.0, entry.1, entry.2, entry.3.source())
}

pub(super) fn compare(host: &HostCrates, plugin: &ProvenanceRef<'_>) -> Comparison {
    match all_same(host, plugin) {
        Some(shared) => same(host, plugin, shared),
        None => walk(host, plugin),
    }
}

/// Whether every crate the plugin shares with the host is one the host links at that
/// version, with the same content where both records tell (nearly every plugin a host
/// accepts): then how many names it shares, told with one lookup per crate (two for a crate
/// not at a version the host links), allocating nothing but a git crate's identity. `None`
/// when a crate differs (or the host links more names than are counted here): [`walk`]
/// then says how, as it would have anyway.
fn all_same(host: &HostCrates, plugin: &ProvenanceRef<'_>) -> Option<usize> {
    // One bit per host name met, so a name met twice (several versions, a repeated entry)
    // counts once.
    let mut met = [0u64; 16];
    if host.by_name.len() > met.len() * 64 {
        return None;
    }
    let mut shared = 0;
    for d in &plugin.dependencies {
        let key = d.key();
        match host.lookup.get(key) {
            Some(Found::Crate(group, at)) => {
                let host_crate = &host.by_name[group].2[at];
                // Nearly every crate is from crates.io on both sides: told before a call.
                if !both_from_registry(host_crate, key, d.as_str())
                    && other_content(host_crate, d, plugin).is_some()
                {
                    return None;
                }
                let (word, bit) = (group / 64, 1u64 << (group % 64));
                if met[word] & bit == 0 {
                    met[word] |= bit;
                    shared += 1;
                }
            }
            // A `name version` key never finds a name; were it to, the walk decides.
            Some(Found::Name(_)) => return None,
            // Not at that version: shared at another (a difference), or not shared.
            None => {
                if host.lookup.get(d.name()).is_some() {
                    return None;
                }
            }
        }
    }
    Some(shared)
}

/// The comparison of a plugin that shares `shared` names with the host and differs in none.
fn same(host: &HostCrates, plugin: &ProvenanceRef<'_>, shared: usize) -> Comparison {
    // Put together on the stack: `format!` and a `String` turned into an `Arc` cost more
    // here than the whole merge walk.
    let (mut count, mut shared_digits, mut buffer) = ([0; 20], [0; 20], [0; 128]);
    let plugin_text = [
        decimal(plugin.dependencies.len() as u64, &mut count),
        " crates, ",
        decimal(shared as u64, &mut shared_digits),
        " shared with the host, all the same versions",
    ];
    Comparison {
        host: host.count.clone(),
        plugin: Arc::from(joined(&plugin_text, &mut buffer)),
        message: None,
        differences: Vec::new(),
    }
}

/// When `d` and the host's crate of its name and version differ in content (both records
/// tell it, and not alike): the host's identity and the plugin's.
fn other_content<'h, 'd>(
    host_crate: &'h HostCrate,
    d: &'d DependencyRef<'d>,
    plugin: &'d ProvenanceRef<'d>,
) -> Option<(&'h str, Cow<'d, str>)> {
    if both_from_registry(host_crate, d.key(), d.as_str()) {
        return None;
    }
    let h = host_crate.identity.as_deref()?;
    let digest = || plugin.digests.get(d.key()).map(|s| s.as_str());
    let p = identity(d.source_kind(), digest)?;
    (h != p).then_some((h, p))
}

/// Whether a crate (its `name version` key and whole spec) and the host's crate of that
/// name and version are from crates.io on both sides: the same content (a registry's
/// versions are immutable), told without a comparison — nor reading the source: a spec
/// that ends with its version names none.
fn both_from_registry(host_crate: &HostCrate, key: &str, spec: &str) -> bool {
    host_crate.registry && key.len() == spec.len()
}

/// The comparison crate by crate: both lists sorted by name and walked side by side,
/// every difference and its fix told.
fn walk(host: &HostCrates, plugin: &ProvenanceRef<'_>) -> Comparison {
    // Grouped by name whatever the order of the list (a hand-written record need not be
    // sorted): one sorted list of references, walked a name at a time. Nothing else is
    // allocated unless a crate differs.
    // Each crate's name and version taken out once, for the sort and the walk.
    let mut deps: Vec<Entry<'_>> = plugin
        .dependencies
        .iter()
        .map(|d| {
            let name = d.name();
            (prefix(name), name, d.version(), d)
        })
        .collect();
    // The recorder writes the list sorted: then there is nothing to sort.
    if !deps.is_sorted_by(|a, b| key(a) <= key(b)) {
        deps.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    }
    deps.dedup_by(|a, b| key(a) == key(b));
    let mut shared = 0;
    let mut differences = Vec::new();
    let mut fixes = Fixes::default();
    let mut rest = &deps[..];
    // Both sides sorted by name: the host's crates still to compare.
    let mut host_rest = &host.by_name[..];
    while let Some(&(first_prefix, name, _, _)) = rest.first() {
        // The first is the group's own; the next nearly always differs in its prefix.
        let count = 1 + rest[1..]
            .iter()
            .take_while(|d| d.0 == first_prefix && d.1 == name)
            .count();
        let (group, after) = rest.split_at(count);
        rest = after;
        // Host crates are passed over on their prefixes, nearly all without a string
        // comparison; the names are compared once, where the prefixes tie.
        let mut host_crates = None;
        while let Some((host_prefix, host_name, crates)) = host_rest.first() {
            let order = host_prefix
                .cmp(&first_prefix)
                .then_with(|| host_name.as_str().cmp(name));
            match order {
                std::cmp::Ordering::Less => host_rest = &host_rest[1..],
                std::cmp::Ordering::Equal => {
                    host_crates = Some(crates);
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        let Some(host_crates) = host_crates else {
            continue;
        };
        shared += 1;
        let find = |v: &str| host_crates.iter().find(|c| c.version == v);
        // Nearly always one version on each side: found once, for both questions below.
        let single = match (group, &host_crates[..]) {
            ([(_, _, v, _)], [c]) => Some((c.version == *v).then_some(c)),
            _ => None,
        };
        let all_known = match single {
            Some(found) => found.is_some(),
            None => group.iter().all(|d| find(d.2).is_some()),
        };
        if !all_known {
            let host_versions: Vec<&str> = host_crates.iter().map(|c| c.version.as_str()).collect();
            // Each version once, though it may be listed from several sources (the group is
            // sorted by version, then source: the same versions are together).
            let mut plugin_versions: Vec<&str> = group.iter().map(|d| d.2).collect();
            plugin_versions.dedup();
            let other_versions: Vec<&str> = plugin_versions
                .iter()
                .copied()
                .filter(|v| find(v).is_none())
                .collect();
            differences.push(CrateDifference {
                name: name.to_owned(),
                host: host_versions.join(", "),
                plugin: plugin_versions.join(", "),
                content_only: false,
            });
            fixes.add(name, host_crates, &other_versions);
            continue;
        }
        // Same versions: then the same content, where both records can tell.
        for &(_, _, version, d) in group {
            let Some(host_crate) = single.flatten().or_else(|| find(version)) else {
                continue;
            };
            if let Some((h, p)) = other_content(host_crate, d, plugin) {
                differences.push(CrateDifference {
                    name: name.to_owned(),
                    host: format!("{version} ({})", short(h)),
                    plugin: format!("{version} ({})", short(&p)),
                    content_only: true,
                });
                fixes.point_at(name, &host_crate.dependency);
            }
        }
    }
    if differences.is_empty() {
        return same(host, plugin, shared);
    }
    let host_side: Vec<String> = differences
        .iter()
        .map(|d| format!("{} {}", d.name, d.host))
        .collect();
    let plugin_side: Vec<String> = differences
        .iter()
        .map(|d| {
            if d.content_only {
                let version = d.plugin.split(' ').next().unwrap_or_default();
                format!(
                    "{} {version} (content differs from the host's copy)",
                    d.name
                )
            } else {
                format!("{} {}", d.name, d.plugin)
            }
        })
        .collect();
    let message = format!(
        "links {} of {shared} crate(s) shared with the host at other versions or contents \
         (plugin {}; host {}); {}",
        differences.len(),
        plugin_side.join(", "),
        host_side.join(", "),
        fixes.text()
    );
    Comparison {
        host: host_side.join(", ").into(),
        plugin: plugin_side.join(", ").into(),
        message: Some(message),
        differences,
    }
}

/// The fixes for every differing crate, gathered so they read as one instruction.
#[derive(Default)]
struct Fixes {
    /// `cargo update` commands, run one after the other.
    updates: Vec<String>,
    /// Dependencies to point at the host's copy: (name, Cargo.toml line).
    sources: Vec<(String, String)>,
    /// Crates no lockfile change can align: the plugin requires another series.
    requirements: Vec<String>,
}

impl Fixes {
    /// A crate linked at versions the host does not link.
    fn add(&mut self, name: &str, host: &[HostCrate], other_versions: &[&str]) {
        let host_dep = &host[0].dependency;
        if !matches!(host_dep.source_kind(), SourceKind::Registry) {
            // `cargo update --precise` cannot move a path or git crate: point at the host's.
            self.point_at(name, host_dep);
            return;
        }
        for plugin_version in other_versions {
            // The host version the plugin's requirement can accept: same semver series.
            let target = host
                .iter()
                .map(|c| c.version.as_str())
                .find(|h| fix::same_series(h, plugin_version));
            match target {
                Some(h) => self.updates.push(format!(
                    "cargo update -p {name}@{plugin_version} --precise {h}"
                )),
                None => {
                    let wanted: Vec<&str> = host.iter().map(|c| c.version.as_str()).collect();
                    self.requirements.push(format!(
                        "`{name}` {plugin_version} (the host links {}: make the plugin require \
                         `{name} = \"={}\"`)",
                        wanted.join(", "),
                        wanted[wanted.len() - 1]
                    ))
                }
            }
        }
    }

    fn point_at(&mut self, name: &str, host_dep: &Dependency) {
        if !self.sources.iter().any(|(n, _)| n == name) {
            self.sources
                .push((name.to_owned(), fix::dependency_line(host_dep)));
        }
    }

    fn text(&self) -> String {
        let mut parts = Vec::new();
        if !self.updates.is_empty() {
            parts.push(format!(
                "align the versions with the host's by running `{}` in the plugin's directory, \
                 then rebuild",
                self.updates.join(" && ")
            ));
        }
        for (name, line) in &self.sources {
            parts.push(format!(
                "build against the host's copy of `{name}`: `{line}` in the plugin's Cargo.toml \
                 (for every dependency on it), then rebuild"
            ));
        }
        if !self.requirements.is_empty() {
            parts.push(format!(
                "the plugin's own requirements pick another series of {}",
                self.requirements.join(", ")
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use plugin_api::provenance::{Provenance, ProvenanceRef};

    use super::super::tests::record;
    use super::{all_same, same, walk, HostCrates};

    /// A host linking crates of every kind: from crates.io (one at two versions, names alike
    /// in their first eight bytes), from another registry, from git, from a path.
    fn host() -> Provenance {
        let mut host = record(&[
            "serde 1.0.200",
            "serde_json 1.0.100",
            "parking_lot 0.12.5",
            "parking_lot_core 0.9.12",
            "z 1.0.0",
            "z 2.0.0",
            "reg 1.0.0 (sparse+https://other.test/)",
            "g 0.1.0 (git+https://example.test/g#abc123)",
            "p 0.1.0 (/w/p)",
        ]);
        host.digests.insert("p 0.1.0".into(), "sha256:aaaa".into());
        host
    }

    /// What a plugin may list: each of the host's crates, and others like them.
    const POOL: &[&str] = &[
        "serde 1.0.200",
        "serde 1.0.199",
        "serde 1.0.200 (sparse+https://other.test/)",
        "serde_json 1.0.100",
        "parking_lot 0.12.5",
        "parking_lot_core 0.9.12",
        "parking_lot_core 0.9.11",
        "parking_lot_x 1.0.0",
        "z 1.0.0",
        "z 2.0.0",
        "z 3.0.0",
        "reg 1.0.0 (sparse+https://other.test/)",
        "reg 1.0.0",
        "g 0.1.0 (git+https://example.test/g#abc123)",
        "g 0.1.0 (git+https://example.test/g#def456)",
        "p 0.1.0 (/w/p)",
        "p 0.1.0 (/elsewhere/p)",
        "only 1.0.0",
        "a 0.0.1",
    ];

    /// The lookup that tells a plugin with no difference agrees with the walk over 4 000
    /// lists of up to eight crates drawn at random from [`POOL`] (repeats and any order
    /// included), with the path crate's digest the host's, another or absent: `Some` exactly
    /// when the walk finds no difference, with the same count of shared names.
    #[test]
    fn the_lookup_and_the_walk_agree_on_every_list() {
        let host = host();
        let prepared = HostCrates::new(&host);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            // xorshift64*: the same lists on every run.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        };
        let (mut alike, mut unlike) = (0, 0);
        for _ in 0..4000 {
            let len = next(9);
            let specs: Vec<&str> = (0..len).map(|_| POOL[next(POOL.len())]).collect();
            let mut plugin = record(&specs);
            // The path crate's digest: none, the host's, another.
            let digest = [None, Some("sha256:aaaa"), Some("sha256:bbbb")][next(3)];
            if let Some(digest) = digest {
                plugin.digests.insert("p 0.1.0".into(), digest.into());
            }
            let blob = plugin.encode();
            let view = ProvenanceRef::decode(&blob).unwrap();
            let walked = walk(&prepared, &view);
            match all_same(&prepared, &view) {
                Some(shared) => {
                    alike += 1;
                    assert!(walked.differences.is_empty(), "{specs:?}: {walked:?}");
                    let told = same(&prepared, &view, shared);
                    assert_eq!(told.plugin, walked.plugin, "{specs:?}");
                    assert_eq!(told.host, walked.host, "{specs:?}");
                }
                None => {
                    unlike += 1;
                    assert!(!walked.differences.is_empty(), "{specs:?}");
                }
            }
        }
        // Both outcomes were met many times.
        assert!(
            alike > 500 && unlike > 500,
            "{alike} alike, {unlike} unlike"
        );
    }
}
