//! Capability kinds the host knows, and the registry of capabilities plugins provided.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use plugin_api::{CapabilityExport, CapabilityKind, CommandKind, TransformKind};
use serde::Serialize;

/// The capability kinds a host accepts: each a name, the Rust type the host will use it as,
/// and that type's `abi_stable` layout.
#[derive(Clone, Default)]
pub struct Kinds {
    kinds: HashMap<&'static str, KindInfo>,
}

#[derive(Clone, Copy)]
struct KindInfo {
    type_id: TypeId,
    layout: &'static TypeLayout,
}

impl Kinds {
    /// No kinds at all.
    pub fn new() -> Self {
        Kinds::default()
    }

    /// The demo kinds: `command` and `transform`.
    pub fn demo() -> Self {
        Kinds::new().with::<CommandKind>().with::<TransformKind>()
    }

    /// Adds kind `K` (an application's own kinds are added the same way).
    ///
    /// # Panics
    /// If another type already claimed `K::KIND`.
    pub fn with<K: CapabilityKind>(mut self) -> Self {
        let info = KindInfo {
            type_id: TypeId::of::<K>(),
            layout: <K::Object as StableAbi>::LAYOUT,
        };
        if let Some(existing) = self.kinds.insert(K::KIND, info) {
            assert!(
                existing.type_id == info.type_id,
                "capability kind `{}` declared twice with different types",
                K::KIND
            );
        }
        self
    }

    /// The names of the kinds, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Checks an offered capability against the kind it claims; `Err` says why it is refused
    /// and whether the refusal is a layout mismatch.
    pub(crate) fn admit(&self, capability: &CapabilityExport) -> Result<(), Refusal> {
        let Some(info) = self.kinds.get(capability.kind()) else {
            return Err(Refusal::UnknownKind(format!(
                "this host has no capability kind `{}` (it knows: {})",
                capability.kind(),
                self.names().join(", ")
            )));
        };
        check_layout_compatibility(info.layout, capability.layout()).map_err(|errors| {
            Refusal::Layout(format!(
                "capability `{}` of kind `{}` does not have the layout this host expects: {errors}",
                capability.name(),
                capability.kind()
            ))
        })
    }
}

/// Why an offered capability was refused.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    UnknownKind(String),
    Layout(String),
}

/// A capability as listed in reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CapabilityInfo {
    /// The kind's name.
    pub kind: String,
    /// The capability's name.
    pub name: String,
}

struct Entry {
    plugin: Arc<str>,
    type_id: TypeId,
    export: CapabilityExport,
}

/// The capabilities of all loaded plugins, by kind and name.
#[derive(Default)]
pub struct Registry {
    by_kind: HashMap<String, HashMap<String, Entry>>,
}

/// Why a lookup found nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No capability of that kind and name.
    #[error("no {kind} named `{name}` is registered{}", available_list(.available))]
    NotFound {
        /// The kind asked for.
        kind: String,
        /// The name asked for.
        name: String,
        /// The names of that kind that do exist.
        available: Vec<String>,
    },
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        " (none of that kind are loaded)".into()
    } else {
        format!(" (available: {})", available.join(", "))
    }
}

impl Registry {
    /// Looks up the capability `name` of kind `K`, as the type it was registered as.
    pub fn get<K: CapabilityKind>(&self, name: &str) -> Result<&K::Object, LookupError> {
        let entry = self
            .by_kind
            .get(K::KIND)
            .and_then(|names| names.get(name))
            .filter(|e| e.type_id == TypeId::of::<K>())
            .ok_or_else(|| LookupError::NotFound {
                kind: K::KIND.to_owned(),
                name: name.to_owned(),
                available: self.names(K::KIND),
            })?;
        // SAFETY: the entry was admitted by `Kinds::admit` against the kind registered under
        // `K::KIND`, whose type id is `TypeId::of::<K>()` (checked just above): the kind names
        // match and abi_stable's layout check of the object against `K::Object` passed.
        Ok(unsafe { entry.export.object_unchecked::<K>() })
    }

    /// The plugin that provides capability `name` of kind `kind`.
    pub fn provider(&self, kind: &str, name: &str) -> Option<&str> {
        self.by_kind.get(kind)?.get(name).map(|e| &*e.plugin)
    }

    /// The names registered under `kind`, sorted.
    pub fn names(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_kind
            .get(kind)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every registered capability, sorted by kind then name.
    pub fn list(&self) -> Vec<CapabilityInfo> {
        let mut all: Vec<CapabilityInfo> = self
            .by_kind
            .iter()
            .flat_map(|(kind, names)| {
                names.keys().map(move |name| CapabilityInfo {
                    kind: kind.clone(),
                    name: name.clone(),
                })
            })
            .collect();
        all.sort();
        all
    }

    /// The first capability in `staged` whose kind and name another plugin already holds:
    /// `(kind, name, holder)`.
    pub(crate) fn conflict(&self, staged: &[CapabilityExport]) -> Option<(String, String, String)> {
        staged.iter().find_map(|c| {
            self.provider(c.kind(), c.name())
                .map(|holder| (c.kind().to_owned(), c.name().to_owned(), holder.to_owned()))
        })
    }

    /// Adds a plugin's admitted capabilities (after [`Registry::conflict`] found none).
    pub(crate) fn commit(
        &mut self,
        plugin: &Arc<str>,
        kinds: &Kinds,
        staged: Vec<CapabilityExport>,
    ) {
        for export in staged {
            let type_id = kinds.kinds[export.kind()].type_id;
            self.by_kind
                .entry(export.kind().to_owned())
                .or_default()
                .insert(
                    export.name().to_owned(),
                    Entry {
                        plugin: plugin.clone(),
                        type_id,
                        export,
                    },
                );
        }
    }
}
