//! The provenance record read in place: [`ProvenanceRef`] borrows its strings from the blob
//! it was decoded from, so reading a record costs a handful of allocations (the lists and
//! maps) instead of one per string. A string is copied only when the JSON writes it with
//! escapes (the recorder writes none for the names, versions and paths it records).
//!
//! The same JSON as [`Provenance`], read the same way (the same fields, defaults and errors):
//! [`ProvenanceRef::to_owned`] of a decoded record equals [`Provenance::decode`] of its blob.
//! A record in the exact form the recorder writes is read by hand, in one pass (see
//! `canonical`); any other by serde_json.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use serde::Deserialize;

mod canonical;

use super::{split_spec, DecodeError, Dependency, Profile, Provenance, Rustc, SourceKind};
use crate::frame;

/// A string of a record read in place: borrowed from the blob, owned only when the JSON
/// escaped it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

/// Deserializes a string borrowed when the deserializer can lend it, owned otherwise;
/// `expecting` is what the error names when it is not a string.
fn text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
) -> Result<Cow<'de, str>, D::Error> {
    struct Visitor(&'static str);
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    deserializer.deserialize_str(Visitor(expecting))
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // What `String` expects, so that errors read as those of `Provenance::decode`.
        text(deserializer, "a string").map(Text)
    }
}

/// [`Provenance`], read in place: its strings borrowed from the blob it was decoded from
/// ([`Text`]: copied only when the JSON escapes them), its lists and maps the only
/// allocations. The same JSON, read the same way as [`Provenance::decode`]: the same fields,
/// defaults and errors, and [`ProvenanceRef::to_owned`] of a decoded record equals the owned
/// decode of its blob.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
// Expected as the owned record is, so that an error naming the struct reads the same.
#[serde(expecting = "struct Provenance")]
pub struct ProvenanceRef<'a> {
    /// [`Provenance::name`].
    #[serde(borrow)]
    pub name: Text<'a>,
    /// [`Provenance::version`].
    pub version: semver::Version,
    /// [`Provenance::plugin_api`].
    pub plugin_api: semver::Version,
    /// [`Provenance::abi_stable`].
    pub abi_stable: semver::Version,
    /// [`Provenance::rustc`].
    #[serde(borrow)]
    pub rustc: RustcRef<'a>,
    /// [`Provenance::target`].
    #[serde(borrow)]
    pub target: Text<'a>,
    /// [`Provenance::profile`].
    #[serde(borrow)]
    pub profile: ProfileRef<'a>,
    /// [`Provenance::features`].
    #[serde(borrow)]
    pub features: Vec<Text<'a>>,
    /// [`Provenance::dependencies`].
    #[serde(borrow)]
    pub dependencies: Vec<DependencyRef<'a>>,
    /// [`Provenance::digests`].
    #[serde(default, borrow)]
    pub digests: BTreeMap<Text<'a>, Text<'a>>,
    /// [`Provenance::capabilities`].
    #[serde(default, borrow)]
    pub capabilities: Option<BTreeMap<Text<'a>, Vec<Text<'a>>>>,
}

/// [`Rustc`], read in place.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
// Expected as the owned record is, so that an error naming the struct reads the same.
#[serde(expecting = "struct Rustc")]
pub struct RustcRef<'a> {
    /// [`Rustc::release`].
    #[serde(borrow)]
    pub release: Text<'a>,
    /// [`Rustc::commit_hash`].
    #[serde(borrow)]
    pub commit_hash: Text<'a>,
    /// [`Rustc::commit_date`].
    #[serde(borrow)]
    pub commit_date: Text<'a>,
    /// [`Rustc::channel`].
    #[serde(borrow)]
    pub channel: Text<'a>,
    /// [`Rustc::llvm`].
    #[serde(borrow)]
    pub llvm: Option<Text<'a>>,
}

impl RustcRef<'_> {
    /// [`Rustc::short`].
    pub fn short(&self) -> String {
        super::short_rustc(&self.release, &self.commit_hash)
    }
}

/// [`Profile`], read in place.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
// Expected as the owned record is, so that an error naming the struct reads the same.
#[serde(expecting = "struct Profile")]
pub struct ProfileRef<'a> {
    /// [`Profile::name`].
    #[serde(borrow)]
    pub name: Text<'a>,
    /// [`Profile::opt_level`].
    #[serde(borrow)]
    pub opt_level: Text<'a>,
    /// [`Profile::debug_assertions`].
    pub debug_assertions: bool,
    /// [`Profile::panic`].
    #[serde(borrow)]
    pub panic: Text<'a>,
}

/// [`Dependency`], read in place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DependencyRef<'a> {
    spec: Text<'a>,
    name_end: usize,
    version_end: usize,
}

impl<'a> DependencyRef<'a> {
    /// Parses `name version` or `name version (source)`, as [`Dependency::parse`].
    pub fn parse(spec: impl Into<Cow<'a, str>>) -> Option<Self> {
        let spec = spec.into();
        let (name_end, version_end) = split_spec(&spec)?;
        Some(DependencyRef {
            spec: Text(spec),
            name_end,
            version_end,
        })
    }

    /// [`Dependency::name`].
    pub fn name(&self) -> &str {
        // The ends are at the ASCII spaces `split_spec` found: always in bounds.
        self.spec.get(..self.name_end).unwrap_or_default()
    }

    /// [`Dependency::version`].
    pub fn version(&self) -> &str {
        self.spec
            .get(self.name_end + 1..self.version_end)
            .unwrap_or_default()
    }

    /// [`Dependency::source`].
    pub fn source(&self) -> Option<&str> {
        let rest = self.spec.get(self.version_end..)?;
        rest.strip_prefix(" (").and_then(|r| r.strip_suffix(')'))
    }

    /// [`Dependency::key`].
    pub fn key(&self) -> &str {
        self.spec.get(..self.version_end).unwrap_or_default()
    }

    /// [`Dependency::source_kind`].
    pub fn source_kind(&self) -> SourceKind<'_> {
        super::source_kind(self.source())
    }

    /// [`Dependency::as_str`].
    pub fn as_str(&self) -> &str {
        &self.spec
    }

    /// The owned [`Dependency`].
    pub fn to_owned(&self) -> Dependency {
        Dependency {
            spec: String::from(&*self.spec),
            name_end: self.name_end,
            version_end: self.version_end,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for DependencyRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, as `Dependency`'s: the error then names the same place.
        struct Spec;
        impl<'de> serde::de::Visitor<'de> for Spec {
            type Value = DependencyRef<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(super::DEPENDENCY_EXPECTED)
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                DependencyRef::parse(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                DependencyRef::parse(v.to_owned())
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(Spec)
    }
}

impl<'a> ProvenanceRef<'a> {
    /// Decodes a framed blob (see [`crate::frame`]) in place: the record borrows from `blob`.
    pub fn decode(blob: &'a [u8]) -> Result<Self, DecodeError> {
        Self::decode_telling_printable(blob).map(|(record, _)| record)
    }

    /// [`ProvenanceRef::decode`], telling also whether every string of the record is known
    /// to be printable ASCII (`0x20..=0x7e`). It is for a record in the exact form the
    /// recorder writes, which is read in one pass that looks at every character anyway, so
    /// a reader that bounds the record's fields need not look at them again. `false` says
    /// nothing either way: the record was read by serde_json.
    pub fn decode_telling_printable(blob: &'a [u8]) -> Result<(Self, bool), DecodeError> {
        let payload = frame::decode(blob).map_err(DecodeError::Frame)?;
        // The recorder's exact form is read by hand (it accepts only ASCII: no UTF-8 check
        // first); anything else by serde_json.
        if let Some(record) = canonical::parse(payload) {
            return Ok((record, true));
        }
        let text = std::str::from_utf8(payload).map_err(DecodeError::Utf8)?;
        serde_json::from_str(text)
            .map(|record| (record, false))
            .map_err(DecodeError::Json)
    }

    /// [`Provenance::declares`].
    pub fn declares(&self, kind: &str, name: &str) -> Option<bool> {
        let declared = self.capabilities.as_ref()?;
        Some(
            declared
                .get(kind)
                .is_some_and(|names| names.iter().any(|n| &**n == name)),
        )
    }

    /// Whether this record is `owned`, field for field (what [`ProvenanceRef::to_owned`]
    /// would make equal to it), without making an owned copy.
    pub fn is(&self, owned: &Provenance) -> bool {
        // Taken apart whole, so that a field added to the record cannot be left out here.
        let ProvenanceRef {
            name,
            version,
            plugin_api,
            abi_stable,
            rustc,
            target,
            profile,
            features,
            dependencies,
            digests,
            capabilities,
        } = self;
        let RustcRef {
            release,
            commit_hash,
            commit_date,
            channel,
            llvm,
        } = rustc;
        let ProfileRef {
            name: profile_name,
            opt_level,
            debug_assertions,
            panic,
        } = profile;
        let texts = |a: &[Text<'_>], b: &[String]| {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| **a == **b)
        };
        let map = |a: &BTreeMap<Text<'_>, Text<'_>>, b: &BTreeMap<String, String>| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ak, av), (bk, bv))| **ak == **bk && **av == **bv)
        };
        let declared = |a: &BTreeMap<Text<'_>, Vec<Text<'_>>>,
                        b: &BTreeMap<String, Vec<String>>| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ak, av), (bk, bv))| **ak == **bk && texts(av, bv))
        };
        **name == *owned.name
            && *version == owned.version
            && *plugin_api == owned.plugin_api
            && *abi_stable == owned.abi_stable
            && **release == *owned.rustc.release
            && **commit_hash == *owned.rustc.commit_hash
            && **commit_date == *owned.rustc.commit_date
            && **channel == *owned.rustc.channel
            && llvm.as_deref() == owned.rustc.llvm.as_deref()
            && **target == *owned.target
            && **profile_name == *owned.profile.name
            && **opt_level == *owned.profile.opt_level
            && *debug_assertions == owned.profile.debug_assertions
            && **panic == *owned.profile.panic
            && texts(features, &owned.features)
            && dependencies.len() == owned.dependencies.len()
            && dependencies
                .iter()
                .zip(&owned.dependencies)
                .all(|(a, b)| a.as_str() == b.as_str())
            && map(digests, &owned.digests)
            && match (capabilities, &owned.capabilities) {
                (None, None) => true,
                (Some(a), Some(b)) => declared(a, b),
                _ => false,
            }
    }

    /// The owned record.
    pub fn to_owned(&self) -> Provenance {
        // `String::from(&str)`, not `to_string`, which goes through `Display` and grows the
        // string piece by piece.
        let own = |text: &Text<'_>| String::from(&**text);
        let strings = |list: &[Text<'_>]| list.iter().map(own).collect();
        Provenance {
            name: own(&self.name),
            version: self.version.clone(),
            plugin_api: self.plugin_api.clone(),
            abi_stable: self.abi_stable.clone(),
            rustc: Rustc {
                release: own(&self.rustc.release),
                commit_hash: own(&self.rustc.commit_hash),
                commit_date: own(&self.rustc.commit_date),
                channel: own(&self.rustc.channel),
                llvm: self.rustc.llvm.as_ref().map(own),
            },
            target: own(&self.target),
            profile: Profile {
                name: own(&self.profile.name),
                opt_level: own(&self.profile.opt_level),
                debug_assertions: self.profile.debug_assertions,
                panic: own(&self.profile.panic),
            },
            features: strings(&self.features),
            dependencies: self
                .dependencies
                .iter()
                .map(DependencyRef::to_owned)
                .collect(),
            digests: self.digests.iter().map(|(k, v)| (own(k), own(v))).collect(),
            capabilities: self.capabilities.as_ref().map(|declared| {
                declared
                    .iter()
                    .map(|(kind, names)| (own(kind), strings(names)))
                    .collect()
            }),
        }
    }
}

impl Provenance {
    /// This record as a [`ProvenanceRef`] borrowing from it (what code written for records
    /// read in place is given an owned record as).
    pub fn view(&self) -> ProvenanceRef<'_> {
        fn texts(list: &[String]) -> Vec<Text<'_>> {
            list.iter().map(|s| Text::from(s.as_str())).collect()
        }
        ProvenanceRef {
            name: Text::from(self.name.as_str()),
            version: self.version.clone(),
            plugin_api: self.plugin_api.clone(),
            abi_stable: self.abi_stable.clone(),
            rustc: RustcRef {
                release: Text::from(self.rustc.release.as_str()),
                commit_hash: Text::from(self.rustc.commit_hash.as_str()),
                commit_date: Text::from(self.rustc.commit_date.as_str()),
                channel: Text::from(self.rustc.channel.as_str()),
                llvm: self.rustc.llvm.as_deref().map(Text::from),
            },
            target: Text::from(self.target.as_str()),
            profile: ProfileRef {
                name: Text::from(self.profile.name.as_str()),
                opt_level: Text::from(self.profile.opt_level.as_str()),
                debug_assertions: self.profile.debug_assertions,
                panic: Text::from(self.profile.panic.as_str()),
            },
            features: texts(&self.features),
            dependencies: self
                .dependencies
                .iter()
                .map(|d| DependencyRef {
                    spec: Text::from(d.spec.as_str()),
                    name_end: d.name_end,
                    version_end: d.version_end,
                })
                .collect(),
            digests: self
                .digests
                .iter()
                .map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str())))
                .collect(),
            capabilities: self.capabilities.as_ref().map(|declared| {
                declared
                    .iter()
                    .map(|(kind, names)| (Text::from(kind.as_str()), texts(names)))
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests;
