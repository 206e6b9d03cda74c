//! The provenance record: how an artifact (plugin or host) was built.
//!
//! Written by [`crate::build::record`] at build time, embedded by [`crate::export_plugin!`],
//! read back by the host from the file without loading it. A build timestamp is deliberately
//! absent: two identical builds have identical provenance.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::frame::{self, FrameError};

mod view;

pub use view::{DependencyRef, ProfileRef, ProvenanceRef, RustcRef, Text};

/// Everything the host needs to judge whether an artifact can be loaded beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// What an error names when the value is not this struct, as the view's (`ProvenanceRef`)
// names it too: one message for a struct of the wrong type and for a list too short for it.
#[serde(expecting = "struct Provenance")]
pub struct Provenance {
    /// Package name (`CARGO_PKG_NAME`).
    pub name: String,
    /// Package version.
    pub version: semver::Version,
    /// Version of `plugin-api` linked into the artifact.
    pub plugin_api: semver::Version,
    /// Version of `abi_stable` linked into the artifact.
    pub abi_stable: semver::Version,
    /// The compiler that built it.
    pub rustc: Rustc,
    /// Target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
    /// Profile settings that matter at run time.
    pub profile: Profile,
    /// Cargo features enabled on the package itself, sorted.
    pub features: Vec<String>,
    /// Every crate linked into the artifact for this target (normal dependencies, transitively,
    /// proc-macros excluded), sorted by name then version. The package itself is not listed.
    pub dependencies: Vec<Dependency>,
    /// Content digests of the path dependencies in [`Self::dependencies`], keyed by
    /// `name version` (see [`Dependency::key`]): `sha256:` and the hex SHA-256 of the crate's
    /// `Cargo.toml` and `.rs` files, by relative path, so the same content anywhere on disk has
    /// the same digest. Crates.io versions are immutable and git sources name their commit, so
    /// only path dependencies need one. Absent from records of older recorders (and readers
    /// ignore fields they do not know), so it is optional both ways.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
    /// The capabilities the plugin declares it registers, by kind (`command`, `transform`, an
    /// application's own kinds), each list sorted: what the host indexes to load the plugin
    /// only when one of them is first used, and all the plugin may register. Written from the
    /// crate's `[package.metadata.plugin-host] capabilities = { kind = ["name", ...] }`.
    /// `None` (absent from the record) means "not declared": records of older recorders and
    /// crates without the table; such a plugin may register anything, and a lazy host loads
    /// it up front. `Some` of an empty map declares that it registers nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<BTreeMap<String, Vec<String>>>,
}

impl Provenance {
    /// Whether the plugin declared capability `name` of kind `kind`: `None` when it declared
    /// nothing at all (see [`Self::capabilities`]).
    pub fn declares(&self, kind: &str, name: &str) -> Option<bool> {
        let declared = self.capabilities.as_ref()?;
        Some(
            declared
                .get(kind)
                .is_some_and(|names| names.iter().any(|n| n == name)),
        )
    }
}

/// The `rustc -vV` facts of the compiler used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// What an error names when the value is not this struct, as the view's (`ProvenanceRef`)
// names it too: one message for a struct of the wrong type and for a list too short for it.
#[serde(expecting = "struct Rustc")]
pub struct Rustc {
    /// Release, e.g. `1.95.0`.
    pub release: String,
    /// Full commit hash, or `unknown` for compilers built outside a git checkout.
    pub commit_hash: String,
    /// Commit date, e.g. `2026-04-14`.
    pub commit_date: String,
    /// `stable`, `beta`, `nightly` or `dev`.
    pub channel: String,
    /// LLVM version, when rustc reports it.
    pub llvm: Option<String>,
}

impl Rustc {
    /// Short form as `rustc --version` prints it: `1.95.0 (59807616e)`.
    pub fn short(&self) -> String {
        short_rustc(&self.release, &self.commit_hash)
    }
}

fn short_rustc(release: &str, commit_hash: &str) -> String {
    let hash: String = commit_hash.chars().take(9).collect();
    format!("{release} ({hash})")
}

/// Profile settings of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// What an error names when the value is not this struct, as the view's (`ProvenanceRef`)
// names it too: one message for a struct of the wrong type and for a list too short for it.
#[serde(expecting = "struct Profile")]
pub struct Profile {
    /// `debug` or `release` (Cargo's `PROFILE`, which names the profile's base).
    pub name: String,
    /// Optimisation level (`0`..`3`, `s`, `z`).
    pub opt_level: String,
    /// Whether `debug_assertions` were on.
    pub debug_assertions: bool,
    /// The panic strategy: `unwind` or `abort`.
    pub panic: String,
}

/// One crate linked into the artifact.
///
/// In the JSON record it is one string, as `cargo tree` prints it: `name version` or
/// `name version (source)` — compact for the reader, and readable for a person. It is kept
/// as that one string, so decoding a record costs one allocation per dependency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dependency {
    spec: String,
    name_end: usize,
    version_end: usize,
}

impl Dependency {
    /// A dependency from its parts; `source` is `None` for crates.io.
    pub fn new(name: &str, version: &str, source: Option<&str>) -> Dependency {
        let mut spec = format!("{name} {version}");
        if let Some(source) = source {
            spec.push_str(&format!(" ({source})"));
        }
        Dependency {
            name_end: name.len(),
            version_end: name.len() + 1 + version.len(),
            spec,
        }
    }

    /// Parses `name version` or `name version (source)`.
    pub fn parse(spec: &str) -> Option<Dependency> {
        let (name_end, version_end) = split_spec(spec)?;
        Some(Dependency {
            name_end,
            version_end,
            spec: spec.to_owned(),
        })
    }

    /// Crate (package) name.
    pub fn name(&self) -> &str {
        &self.spec[..self.name_end]
    }

    /// Exact version.
    pub fn version(&self) -> &str {
        &self.spec[self.name_end + 1..self.version_end]
    }

    /// Where it came from: `None` for crates.io, else the path, git URL or registry.
    pub fn source(&self) -> Option<&str> {
        let rest = &self.spec[self.version_end..];
        rest.strip_prefix(" (").and_then(|r| r.strip_suffix(')'))
    }

    /// `name version`: the key of this crate in [`Provenance::digests`].
    pub fn key(&self) -> &str {
        &self.spec[..self.version_end]
    }

    /// What kind of source it came from, read from [`Self::source`].
    pub fn source_kind(&self) -> SourceKind<'_> {
        source_kind(self.source())
    }
}

/// The three numbers of `bytes` when they are `major.minor.patch` with nothing before,
/// between or after, each a decimal number without leading zeros that fits a `u64`: exactly
/// the texts `semver` reads as a version with no pre-release or build, and writes back the
/// same. `None` for anything else (a version with more to it, or not a version), for which a
/// reader falls back to `semver` itself.
pub fn plain_version(bytes: &[u8]) -> Option<[u64; 3]> {
    let mut numbers = [0u64; 3];
    let mut at = 0;
    for (i, number) in numbers.iter_mut().enumerate() {
        if i > 0 {
            (bytes.get(at) == Some(&b'.')).then_some(())?;
            at += 1;
        }
        let start = at;
        while let Some(&digit @ b'0'..=b'9') = bytes.get(at) {
            *number = number
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            at += 1;
        }
        let digits = at - start;
        if digits == 0 || (digits > 1 && bytes[start] == b'0') {
            return None;
        }
    }
    (at == bytes.len()).then_some(numbers)
}

/// Where the ends of the name and of the version are in `name version` or
/// `name version (source)`; `None` when `spec` is neither.
fn split_spec(spec: &str) -> Option<(usize, usize)> {
    // The first two spaces (a record holds hundreds of these short strings: `memchr` per
    // split costs more than it saves).
    let bytes = spec.as_bytes();
    let (first, second) = first_two_spaces(bytes);
    spec_ends(bytes, first, second)
}

/// [`split_spec`] of `bytes`, given where its first two spaces are (as
/// [`first_two_spaces`] finds them).
fn spec_ends(bytes: &[u8], first: Option<usize>, second: Option<usize>) -> Option<(usize, usize)> {
    let name_end = first?;
    let version_end = match second {
        Some(at) => {
            let source = &bytes[at + 1..];
            if source.len() < 2 || source[0] != b'(' || source[source.len() - 1] != b')' {
                return None;
            }
            at
        }
        None => bytes.len(),
    };
    if name_end == 0 || version_end == name_end + 1 {
        return None;
    }
    Some((name_end, version_end))
}

/// Where the first two spaces in `bytes` are, eight bytes at a time.
fn first_two_spaces(bytes: &[u8]) -> (Option<usize>, Option<usize>) {
    let mut found = (None, None);
    // Notes the spaces flagged (a high bit each, as `spaces_in` gives them) in the word at
    // `base`; whether two are noted.
    let mut note = |mut flags: u64, base: usize| {
        while flags != 0 {
            let at = Some(base + (flags.trailing_zeros() / 8) as usize);
            if found.0.is_none() {
                found.0 = at;
            } else {
                found.1 = at;
                return true;
            }
            flags &= flags - 1;
        }
        false
    };
    let mut words = bytes.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        if note(
            spaces_in(u64::from_le_bytes(word.try_into().expect("eight bytes"))),
            base,
        ) {
            return found;
        }
        base += 8;
    }
    for (at, &b) in words.remainder().iter().enumerate() {
        if b == b' ' && note(0x80, base + at) {
            return found;
        }
    }
    found
}

/// The spaces among the eight bytes of `x` (little-endian whatever the machine: the first
/// byte is the lowest), each as its byte's high bit, exactly: no borrow or carry crosses
/// bytes (each byte's low seven bits plus 0x7f carry into its own high bit only), and a byte
/// of 0x80 or above is never one. For [`first_two_spaces`] and the one-pass reader, which
/// finds them while it finds a string's end.
fn spaces_in(x: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const LOW: u64 = u64::from_le_bytes([0x7f; 8]);
    let s = x ^ (ONES * u64::from(b' '));
    !(((s & LOW) + LOW) | s | LOW)
}

/// What kind of source a dependency's `source` names.
fn source_kind(source: Option<&str>) -> SourceKind<'_> {
    match source {
        None => SourceKind::Registry,
        Some(s) if s.starts_with('/') || s.get(1..3) == Some(":\\") => SourceKind::Path(s),
        Some(s) => match s.split_once("://") {
            Some(_) if s.contains('#') => {
                let (url, commit) = s.rsplit_once('#').unwrap_or((s, ""));
                // `cargo tree` shows `URL?rev=..` / `?branch=..` / `?tag=..`: the
                // repository is the URL without that query.
                let repository = url.split_once('?').map_or(url, |(r, _)| r);
                SourceKind::Git { repository, commit }
            }
            _ => SourceKind::Other(s),
        },
    }
}

/// What a dependency's JSON string must be (the error of a record that has another).
const DEPENDENCY_EXPECTED: &str = "a dependency as \"name version\" or \"name version (source)\"";

/// Where a [`Dependency`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceKind<'a> {
    /// crates.io (no source shown).
    Registry,
    /// A local directory: the absolute path of the crate.
    Path(&'a str),
    /// A git repository at a commit.
    Git {
        /// The repository URL, without `?rev=`/`?branch=`/`?tag=`.
        repository: &'a str,
        /// The full commit hash the lockfile pins.
        commit: &'a str,
    },
    /// Anything else (another registry), as `cargo tree` shows it.
    Other(&'a str),
}

impl Dependency {
    /// The whole spec, `name version` or `name version (source)`.
    pub fn as_str(&self) -> &str {
        &self.spec
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl Serialize for Dependency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dependency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Spec;
        impl serde::de::Visitor<'_> for Spec {
            type Value = Dependency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DEPENDENCY_EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, spec: &str) -> Result<Dependency, E> {
                Dependency::parse(spec)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(spec), &self))
            }
        }
        deserializer.deserialize_str(Spec)
    }
}

/// Why a blob could not be turned into a [`Provenance`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The framing is wrong.
    Frame(FrameError),
    /// The payload is not valid UTF-8.
    Utf8(std::str::Utf8Error),
    /// The payload is not the JSON record this host expects.
    Json(serde_json::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Frame(e) => e.fmt(f),
            DecodeError::Utf8(e) => write!(f, "provenance payload is not UTF-8: {e}"),
            DecodeError::Json(e) => write!(f, "provenance payload is not a valid record: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Frame(e) => Some(e),
            DecodeError::Utf8(e) => Some(e),
            DecodeError::Json(e) => Some(e),
        }
    }
}

impl Provenance {
    /// Decodes a framed blob (see [`crate::frame`]).
    pub fn decode(blob: &[u8]) -> Result<Self, DecodeError> {
        let payload = frame::decode(blob).map_err(DecodeError::Frame)?;
        let text = std::str::from_utf8(payload).map_err(DecodeError::Utf8)?;
        serde_json::from_str(text).map_err(DecodeError::Json)
    }

    /// Encodes this record as a framed blob.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("provenance serializes");
        frame::encode(&json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_two_spaces_are_found_wherever_they_are() {
        for len in 0..24 {
            for a in 0..len {
                for b in a..len {
                    let mut text = vec![b'x'; len];
                    // Bytes that differ from a space by one bit, or borrow into the next.
                    for (at, byte) in text.iter_mut().enumerate() {
                        *byte = [b'x', b'!', b'\x1f', 0, 0xa0, b'0'][at % 6];
                    }
                    text[a] = b' ';
                    text[b] = b' ';
                    let expected = if a == b {
                        (Some(a), None)
                    } else {
                        (Some(a), Some(b))
                    };
                    assert_eq!(first_two_spaces(&text), expected, "{text:?}");
                }
            }
            assert_eq!(first_two_spaces(&vec![b'x'; len]), (None, None));
        }
        let three = b"abi_stable 0.11.3 (/a b/c)";
        assert_eq!(first_two_spaces(three), (Some(10), Some(17)));
    }

    pub(crate) fn sample() -> Provenance {
        Provenance {
            name: "hello".into(),
            version: "0.1.0".parse().unwrap(),
            plugin_api: "0.1.0".parse().unwrap(),
            abi_stable: "0.11.3".parse().unwrap(),
            rustc: Rustc {
                release: "1.95.0".into(),
                commit_hash: "59807616e1fa2540724bfbac14d7976d7e4a3860".into(),
                commit_date: "2026-04-14".into(),
                channel: "stable".into(),
                llvm: Some("22.1.2".into()),
            },
            target: "x86_64-unknown-linux-gnu".into(),
            profile: Profile {
                name: "debug".into(),
                opt_level: "0".into(),
                debug_assertions: true,
                panic: "unwind".into(),
            },
            features: vec![],
            dependencies: vec![Dependency::new("log", "0.4.35", None)],
            digests: BTreeMap::new(),
            capabilities: None,
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(Provenance::decode(&p.encode()).unwrap(), p);
        assert_eq!(p.rustc.short(), "1.95.0 (59807616e)");
    }

    #[test]
    fn dependencies_are_compact_strings() {
        let json = String::from_utf8(serde_json::to_vec(&sample()).unwrap()).unwrap();
        assert!(json.contains(r#""dependencies":["log 0.4.35"]"#), "{json}");
        let d = Dependency::parse("plugin-api 0.1.0 (/w/plugin-api)").unwrap();
        assert_eq!(
            (d.name(), d.version(), d.source()),
            ("plugin-api", "0.1.0", Some("/w/plugin-api"))
        );
        assert_eq!(
            d,
            Dependency::new("plugin-api", "0.1.0", Some("/w/plugin-api"))
        );
        assert_eq!(Dependency::new("log", "0.4.35", None).source(), None);
        assert_eq!(Dependency::parse(&d.to_string()), Some(d));
        let spaced = Dependency::parse("x 1.0 (/a path/with spaces)").unwrap();
        assert_eq!(
            (spaced.name(), spaced.version(), spaced.source()),
            ("x", "1.0", Some("/a path/with spaces"))
        );
        assert_eq!(Dependency::parse("x 1.0 ()").unwrap().source(), Some(""));
        for bad in [
            "",
            "log",
            "log 1.0 /path",
            " 1.0",
            "log  (x)",
            "log 1.0 (",
            "log 1.0 )",
        ] {
            assert_eq!(Dependency::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sources_and_digests() {
        let path = Dependency::new("kinds", "0.1.0", Some("/w/kinds"));
        assert_eq!(path.key(), "kinds 0.1.0");
        assert_eq!(path.source_kind(), SourceKind::Path("/w/kinds"));
        assert_eq!(
            Dependency::new("log", "0.4.35", None).source_kind(),
            SourceKind::Registry
        );
        let git = Dependency::new("k", "1.0.0", Some("https://x.test/k?rev=abc#abc123"));
        assert_eq!(
            git.source_kind(),
            SourceKind::Git {
                repository: "https://x.test/k",
                commit: "abc123"
            }
        );
        // Absent digests are not written, and a record without them still decodes.
        let mut p = sample();
        let json = String::from_utf8(serde_json::to_vec(&p).unwrap()).unwrap();
        assert!(!json.contains("digests"), "{json}");
        p.digests.insert("kinds 0.1.0".into(), "sha256:00".into());
        assert_eq!(Provenance::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn declared_capabilities_are_optional_both_ways() {
        let mut p = sample();
        let json = String::from_utf8(serde_json::to_vec(&p).unwrap()).unwrap();
        assert!(!json.contains("capabilities"), "{json}");
        assert_eq!(p.declares("command", "hello"), None);
        p.capabilities = Some(BTreeMap::from([(
            "command".to_owned(),
            vec!["hello".to_owned()],
        )]));
        let json = String::from_utf8(serde_json::to_vec(&p).unwrap()).unwrap();
        assert!(
            json.contains(r#""capabilities":{"command":["hello"]}"#),
            "{json}"
        );
        assert_eq!(Provenance::decode(&p.encode()).unwrap(), p);
        assert_eq!(p.declares("command", "hello"), Some(true));
        assert_eq!(p.declares("command", "bye"), Some(false));
        assert_eq!(p.declares("transform", "hello"), Some(false));
        p.capabilities = Some(BTreeMap::new());
        assert_eq!(
            Provenance::decode(&p.encode()).unwrap(),
            p,
            "declared: none"
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        let not_utf8 = frame::encode(&[0xff, 0xfe]);
        assert!(matches!(
            Provenance::decode(&not_utf8),
            Err(DecodeError::Utf8(_))
        ));
        let missing = frame::encode(br#"{"name":"x"}"#);
        let err = Provenance::decode(&missing).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let wrong_type = String::from_utf8(serde_json::to_vec(&sample()).unwrap())
            .unwrap()
            .replace(r#""debug_assertions":true"#, r#""debug_assertions":"yes""#);
        let err = Provenance::decode(&frame::encode(wrong_type.as_bytes())).unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{err}");
    }
}
