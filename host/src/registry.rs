//! Capability kinds the host knows, and the registry of capabilities plugins provided.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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
    /// How its calls cross to a worker, if the application said ([`Kinds::with_wire`]).
    wire: Option<crate::isolate::wire::WireFns>,
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
        let mut info = KindInfo {
            type_id: TypeId::of::<K>(),
            layout: <K::Object as StableAbi>::LAYOUT,
            wire: None,
        };
        if let Some(existing) = self.kinds.insert(K::KIND, info) {
            assert!(
                existing.type_id == info.type_id,
                "capability kind `{}` declared twice with different types",
                K::KIND
            );
            info.wire = existing.wire;
            self.kinds.insert(K::KIND, info);
        }
        self
    }

    /// Adds kind `W::Kind` with a wire encoding, so that its capabilities can be isolated
    /// (see [`crate::isolate::wire`]). The worker needs the same: pass these kinds to
    /// [`crate::isolate::worker::serve_if_worker_with`].
    ///
    /// # Panics
    /// As [`Kinds::with`].
    pub fn with_wire<W: crate::isolate::wire::WireEncoding>(self) -> Self {
        let mut kinds = self.with::<W::Kind>();
        if let Some(info) = kinds.kinds.get_mut(<W::Kind as CapabilityKind>::KIND) {
            info.wire = Some(crate::isolate::wire::WireFns::of::<W>());
        }
        kinds
    }

    /// The wire encoding of `kind` an application gave ([`Kinds::with_wire`]), with the
    /// kind's name.
    pub(crate) fn wire(&self, kind: &str) -> Option<(&'static str, crate::isolate::wire::WireFns)> {
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
            check_layout(kind.layout, export)
                .map_err(|detail| (export.kind().to_owned(), export.name().to_owned(), detail))?;
        }
        Ok(())
    }

    /// Admits an offered capability if this host knows its kind; `Err` says why not.
    ///
    /// Its layout is checked against the kind's type when the host first asks for it (see
    /// [`Registry::get`]): `abi_stable`'s check walks the whole type graph, and a scan
    /// should not pay it for capabilities nobody uses.
    pub(crate) fn admit(&self, capability: &CapabilityExport) -> Result<(), String> {
        if self.kinds.contains_key(capability.kind()) {
            return Ok(());
        }
        Err(format!(
            "this host has no capability kind `{}` (it knows: {})",
            capability.kind(),
            self.names().join(", ")
        ))
    }
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
    /// The crates the plugin shares with the host at another version or content.
    differences: Arc<[String]>,
    kind: KindInfo,
    export: CapabilityExport,
    /// The outcome of the layout check, made on first use.
    layout_checked: OnceLock<Result<(), String>>,
}

/// The capabilities of all loaded plugins, by kind and name.
#[derive(Default)]
pub struct Registry {
    by_kind: HashMap<String, HashMap<String, Entry>>,
    /// The supervisors of isolated plugins, by plugin name.
    isolated: HashMap<Arc<str>, Arc<crate::isolate::Supervisor>>,
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
    /// The capability's object does not have the layout of the type this host uses for its
    /// kind: `abi_stable`'s check failed, and it is never handed out.
    #[error(
        "capability `{name}` of kind `{kind}` from plugin `{plugin}` does not have the layout \
         this host expects: {detail}; {}",
        layout_fix(differences)
    )]
    LayoutMismatch {
        /// The kind.
        kind: String,
        /// The capability.
        name: String,
        /// The plugin that registered it.
        plugin: String,
        /// `abi_stable`'s account of the difference.
        detail: String,
        /// The crates the plugin shares with the host at another version or content: where
        /// the differing type most likely comes from.
        differences: Vec<String>,
    },
    /// The capability belongs to an isolated plugin that was unregistered after too many
    /// consecutive failures of its worker ([`crate::isolate::MAX_FAILURES`]).
    #[error("{kind} `{name}` is unavailable: {message} [{reason}]")]
    Unregistered {
        /// The kind.
        kind: String,
        /// The capability.
        name: String,
        /// The plugin that registered it.
        plugin: String,
        /// The last failure's reason code.
        reason: crate::ReasonCode,
        /// Why it was unregistered.
        message: String,
    },
}

impl LookupError {
    /// The reason code of a layout mismatch or of an unregistered isolated plugin; `None`
    /// for a plain miss.
    pub fn reason(&self) -> Option<crate::ReasonCode> {
        match self {
            LookupError::NotFound { .. } => None,
            LookupError::LayoutMismatch { .. } => Some(crate::ReasonCode::LayoutMismatch),
            LookupError::Unregistered { reason, .. } => Some(*reason),
        }
    }
}

/// `abi_stable`'s layout check of a capability's object against the type its kind expects;
/// `Err` holds the differences, most telling first (the full report is logged at debug).
///
/// A plugin built against an older `plugin-api` 0.1 may lack methods added since at the end of
/// a kind's vtable (a prefix type, such as [`plugin_api::kinds::FfiCommand::call_into`]):
/// `abi_stable` refuses a layout with fewer fields than the one expected. Such a layout is
/// accepted when that is the only difference — every error is a type with fewer fields than
/// expected — and it checks the other way round (what the host expects extends it: only a
/// prefix type may have more fields there). Calling a method the plugin's vtable lacks then
/// runs that method's default (`abi_stable` tells from the vtable which methods it has).
fn check_layout(expected: &'static TypeLayout, export: &CapabilityExport) -> Result<(), String> {
    use abi_stable::abi_stability::abi_checking::AbiInstability;
    let forward = check_layout_compatibility(expected, export.layout());
    if let Err(errors) = &forward {
        let mut differences = errors.errors.iter().flat_map(|e| e.errs.iter()).peekable();
        let fewer_fields_only = differences.peek().is_some()
            && differences.all(
                |d| matches!(d, AbiInstability::FieldCountMismatch(n) if n.expected > n.found),
            );
        if fewer_fields_only && check_layout_compatibility(export.layout(), expected).is_ok() {
            return Ok(());
        }
    }
    forward.map_err(|errors| {
        let full = errors.to_string();
        tracing::debug!("layout check of `{}`: {full}", export.name());
        layout_differences(&full)
    })
}

/// The differences in an `abi_stable` layout report, on one line: each "Error:" with what
/// was expected and what was found, and the "Extra:" notes, without the layout dumps
/// (which run to kilobytes and bury the difference at the very end).
pub(crate) fn layout_differences(report: &str) -> String {
    const MAX_ITEMS: usize = 4;
    const MAX_VALUE: usize = 160;
    let one_line = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut items = Vec::new();
    for part in report.split("\nError:").skip(1) {
        let part = part.split("\nExtra:").next().unwrap_or(part);
        let (what, rest) = part.split_once("\nExpected:").unwrap_or((part, ""));
        let (expected, found) = rest.split_once("\nFound:").unwrap_or((rest, ""));
        let found = found.split("\n\n").next().unwrap_or(found);
        let what = one_line(what);
        let (expected, found) = (one_line(expected), one_line(found));
        items.push(if expected.is_empty() && found.is_empty() {
            what
        } else {
            format!(
                "{what}: expected `{}`, found `{}`",
                crate::text::bounded(&expected, MAX_VALUE),
                crate::text::bounded(&found, MAX_VALUE)
            )
        });
    }
    for extra in report.split("\nExtra:").skip(1) {
        let extra = one_line(
            extra
                .split("\n\n")
                .find(|p| !p.trim().is_empty())
                .unwrap_or(""),
        );
        if !extra.is_empty() {
            items.push(crate::text::bounded(&extra, 2 * MAX_VALUE).into_owned());
        }
    }
    items.dedup();
    if items.is_empty() {
        return crate::text::bounded(&one_line(report), 2 * MAX_VALUE).into_owned();
    }
    let more = items.len().saturating_sub(MAX_ITEMS);
    items.truncate(MAX_ITEMS);
    let mut text = items.join("; ");
    if more > 0 {
        text.push_str(&format!(
            "; and {more} more (the full report is logged at debug level)"
        ));
    }
    text
}

/// How to fix a layout mismatch: rebuild against the host's copies of the crates that
/// differ, when the verdict found some, else against the host's `plugin-api`.
pub(crate) fn layout_fix(differences: &[String]) -> String {
    if differences.is_empty() {
        format!(
            "rebuild the plugin against this host's plugin-api {}",
            plugin_api::API_VERSION
        )
    } else {
        format!(
            "the plugin was built against other versions or copies of crates this host links \
             ({}): the differing type most likely comes from one of them; rebuild the plugin \
             against the host's (`plugin-host check --policy strict` prints how)",
            differences.join(", ")
        )
    }
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
    ///
    /// The first lookup of each capability runs `abi_stable`'s layout check of its object
    /// against `K::Object`; the outcome is kept, so later lookups cost a hash lookup.
    pub fn get<K: CapabilityKind>(&self, name: &str) -> Result<&K::Object, LookupError> {
        let entry = self
            .by_kind
            .get(K::KIND)
            .and_then(|names| names.get(name))
            .filter(|e| e.kind.type_id == TypeId::of::<K>())
            .ok_or_else(|| LookupError::NotFound {
                kind: K::KIND.to_owned(),
                name: name.to_owned(),
                available: self.names(K::KIND),
            })?;
        // In-process plugins pay nothing here: the map is empty without isolated plugins.
        let retired = if self.isolated.is_empty() {
            None
        } else {
            self.isolated.get(&entry.plugin).and_then(|s| s.retired())
        };
        if let Some((reason, message)) = retired {
            return Err(LookupError::Unregistered {
                kind: K::KIND.to_owned(),
                name: name.to_owned(),
                plugin: entry.plugin.to_string(),
                reason,
                message,
            });
        }
        let checked = entry
            .layout_checked
            .get_or_init(|| check_layout(entry.kind.layout, &entry.export));
        if let Err(detail) = checked {
            return Err(LookupError::LayoutMismatch {
                kind: K::KIND.to_owned(),
                name: name.to_owned(),
                plugin: entry.plugin.to_string(),
                detail: detail.clone(),
                differences: entry.differences.to_vec(),
            });
        }
        // SAFETY: the entry's kind was registered with `TypeId::of::<K>()` (checked above), so
        // `entry.kind.layout` is `K::Object::LAYOUT`, and abi_stable's layout check of the
        // object against it passed: the object is a `K::Object`.
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

    /// Notes that `plugin`'s capabilities are proxies served by `supervisor`.
    pub(crate) fn supervise(
        &mut self,
        plugin: Arc<str>,
        supervisor: Arc<crate::isolate::Supervisor>,
    ) {
        self.isolated.insert(plugin, supervisor);
    }

    /// Adds a plugin's admitted capabilities (after [`Registry::conflict`] found none).
    pub(crate) fn commit(
        &mut self,
        plugin: &Arc<str>,
        differences: &Arc<[String]>,
        kinds: &Kinds,
        staged: Vec<CapabilityExport>,
    ) {
        for export in staged {
            let kind = kinds.kinds[export.kind()];
            self.by_kind
                .entry(export.kind().to_owned())
                .or_default()
                .insert(
                    export.name().to_owned(),
                    Entry {
                        plugin: plugin.clone(),
                        differences: differences.clone(),
                        kind,
                        export,
                        layout_checked: OnceLock::new(),
                    },
                );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command kind whose object is `FfiCommand` as plugin-api 0.1.0 declared it.
    struct OldCommandKind;
    impl CapabilityKind for OldCommandKind {
        const KIND: &'static str = "command";
        type Object = plugin_api::kinds::before_call_into::FfiCommand_TO<
            'static,
            abi_stable::std_types::RBox<()>,
        >;
    }

    struct Echo;
    impl plugin_api::kinds::before_call_into::FfiCommand for Echo {
        fn call(
            &self,
            args: abi_stable::std_types::RSlice<'_, abi_stable::std_types::RStr<'_>>,
        ) -> abi_stable::std_types::RResult<abi_stable::std_types::RString, plugin_api::CallError>
        {
            abi_stable::std_types::RResult::ROk(
                args.iter().map(|a| a.as_str()).collect::<String>().into(),
            )
        }
    }

    /// `TransformKind`'s object offered as a command: no prefix of the other.
    struct NotACommand;
    impl CapabilityKind for NotACommand {
        const KIND: &'static str = "command";
        type Object = <TransformKind as CapabilityKind>::Object;
    }

    #[test]
    fn a_command_built_before_call_into_is_accepted_and_other_layouts_are_not() {
        use abi_stable::sabi_trait::TD_Opaque;
        use plugin_api::kinds::before_call_into::FfiCommand_TO;
        let expected = <<CommandKind as CapabilityKind>::Object as StableAbi>::LAYOUT;
        let old = CapabilityExport::new::<OldCommandKind>(
            "echo",
            FfiCommand_TO::from_value(Echo, TD_Opaque),
        );
        assert_eq!(check_layout(expected, &old), Ok(()));
        // Once accepted, `call_into` runs the default on it: `call`, then a copy.
        // SAFETY: the layout check above passed for `CommandKind`.
        let command = unsafe { old.object_unchecked::<CommandKind>() };
        let mut out = abi_stable::std_types::RString::new();
        command
            .call_into(
                abi_stable::std_types::RSlice::from_slice(&["a".into(), "b".into()]),
                &mut out,
            )
            .unwrap();
        assert_eq!(out, "ab");

        let transform = CapabilityExport::new::<NotACommand>(
            "t",
            TransformKind::object(|_: &[u8], _: &mut plugin_api::RVec<u8>| Ok(())),
        );
        let refused = check_layout(expected, &transform).unwrap_err();
        assert!(!refused.is_empty(), "names the difference");
    }

    #[test]
    fn layout_differences_come_first_and_short() {
        let report = "Compared <this>:\n    huge dump\nTo <other>:\n    huge dump\n\n1 error(s)inside:\n    <other>\n\n    field: Foo\n\nLayout of expected type:\n    more dump\n\n\nError:incompatible primitive\nExpected:\n    Int(\n        U8,\n    )\nFound:\n    Int(\n        U32,\n    )\n";
        assert_eq!(
            layout_differences(report),
            "incompatible primitive: expected `Int( U8, )`, found `Int( U32, )`"
        );
        let two = "x\nError:mismatched type\nExpected:\n    RStr\nFound:\n    RString\n\nExtra:\n    the vtable differs\n\n";
        assert_eq!(
            layout_differences(two),
            "mismatched type: expected `RStr`, found `RString`; the vtable differs"
        );
    }
}
