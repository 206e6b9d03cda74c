//! The capability kinds a host accepts, with the wire encodings of those that can cross to a
//! worker.

use std::any::TypeId;
use std::collections::HashMap;

use abi_stable::StableAbi;
use plugin_api::{CapabilityExport, CapabilityKind, CommandKind, TransformKind};

use crate::registry::{check_layout, KindInfo};

/// The capability kinds a host accepts: each a name, the Rust type the host will use it as,
/// and that type's `abi_stable` layout.
#[derive(Clone, Default)]
pub struct Kinds {
    kinds: HashMap<&'static str, Kind>,
}

#[derive(Clone, Copy)]
struct Kind {
    info: KindInfo,
    /// How its calls cross to a worker, if the application said ([`Kinds::with_wire`]).
    wire: Option<crate::wire::WireFns>,
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
        let mut info = Kind {
            info: KindInfo {
                type_id: TypeId::of::<K>(),
                layout: <K::Object as StableAbi>::LAYOUT,
            },
            wire: None,
        };
        if let Some(existing) = self.kinds.insert(K::KIND, info) {
            assert!(
                existing.info.type_id == info.info.type_id,
                "capability kind `{}` declared twice with different types",
                K::KIND
            );
            info.wire = existing.wire;
            self.kinds.insert(K::KIND, info);
        }
        self
    }

    /// Adds kind `W::Kind` with a wire encoding, so that its capabilities can be isolated
    /// (see [`crate::wire`]). The worker needs the same: pass these kinds to
    /// the `plugin-isolate` crate's `worker::serve_if_worker_with`.
    ///
    /// # Panics
    /// As [`Kinds::with`].
    pub fn with_wire<W: crate::wire::WireEncoding>(self) -> Self {
        let mut kinds = self.with::<W::Kind>();
        if let Some(info) = kinds.kinds.get_mut(<W::Kind as CapabilityKind>::KIND) {
            info.wire = Some(crate::wire::WireFns::of::<W>());
        }
        kinds
    }

    /// The wire encoding of `kind` an application gave ([`Kinds::with_wire`]), with the
    /// kind's name.
    pub fn wire(&self, kind: &str) -> Option<(&'static str, crate::wire::WireFns)> {
        let (name, info) = self.kinds.get_key_value(kind)?;
        Some((*name, info.wire?))
    }

    /// The names of the kinds, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Checks the layout of every capability in `staged` against its kind's type:
    /// `Err((kind, name, what differs))` for the first that does not match.
    pub(crate) fn check_layouts(
        &self,
        staged: &[CapabilityExport],
    ) -> Result<(), (String, String, String)> {
        for export in staged {
            let kind = self.kinds[export.kind()];
            check_layout(kind.info.layout, export)
                .map_err(|detail| (export.kind().to_owned(), export.name().to_owned(), detail))?;
        }
        Ok(())
    }

    /// Admits an offered capability if this host knows its kind; `Err` says why not.
    ///
    /// Its layout is checked against the kind's type when the host first asks for it (see
    /// [`crate::Registry::get`]): `abi_stable`'s check walks the whole type graph, and a scan
    /// should not pay it for capabilities nobody uses.
    pub fn admit(&self, capability: &CapabilityExport) -> Result<(), String> {
        if self.kinds.contains_key(capability.kind()) {
            return Ok(());
        }
        Err(format!(
            "this host has no capability kind `{}` (it knows: {})",
            capability.kind(),
            self.names().join(", ")
        ))
    }

    /// What the registry checks of the kind of each of `exports` (admitted, so known).
    pub(crate) fn infos(
        &self,
        exports: Vec<CapabilityExport>,
    ) -> Vec<(KindInfo, CapabilityExport)> {
        exports
            .into_iter()
            .map(|e| (self.kinds[e.kind()].info, e))
            .collect()
    }
}
