//! Capability kinds the host knows, and the registry of capabilities plugins provided.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::type_layout::TypeLayout;
use plugin_api::{CapabilityExport, CapabilityKind};
use serde::Serialize;

/// A capability kind as the registry checks it: the Rust type the host uses it as, and that
/// type's `abi_stable` layout.
#[derive(Clone, Copy)]
pub(crate) struct KindInfo {
    pub(crate) type_id: TypeId,
    pub(crate) layout: &'static TypeLayout,
}

/// Set once a plugin placed out of process was given up on: the last failure's reason code
/// and why (what [`crate::place::Running::retired`] says).
pub(crate) type Retired = Arc<dyn Fn() -> Option<(crate::ReasonCode, String)> + Send + Sync>;

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
    /// Whether the plugin's instance placed out of process was retired, which makes lookups
    /// fail; `None` in-process.
    retired: Option<Retired>,
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
    /// consecutive failures of its worker (`plugin_isolate::MAX_FAILURES`).
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
pub(crate) fn check_layout(
    expected: &'static TypeLayout,
    export: &CapabilityExport,
) -> Result<(), String> {
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
        // In-process plugins pay one test of `None` here.
        let retired = entry.retired.as_ref().and_then(|r| r());
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

    /// Adds a plugin's admitted capabilities (after [`Registry::conflict`] found none).
    pub(crate) fn commit(
        &mut self,
        plugin: &Arc<str>,
        differences: &Arc<[String]>,
        staged: Vec<(KindInfo, CapabilityExport)>,
        retired: Option<&Retired>,
    ) {
        for (kind, export) in staged {
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
                        retired: retired.cloned(),
                    },
                );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::StableAbi;
    use plugin_api::{CommandKind, TransformKind};

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
    fn capabilities_built_before_call_into_or_entry_are_accepted_and_other_layouts_are_not() {
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

        // A transform from before `FfiTransform::entry`: accepted, and called through its
        // vtable.
        struct Upper;
        impl plugin_api::kinds::before_entry::FfiTransform for Upper {
            fn apply(
                &self,
                input: abi_stable::std_types::RSlice<'_, u8>,
                output: &mut plugin_api::RVec<u8>,
            ) -> abi_stable::std_types::RResult<(), plugin_api::CallError> {
                output.extend(input.iter().map(u8::to_ascii_uppercase));
                abi_stable::std_types::RResult::ROk(())
            }
        }
        struct OldTransformKind;
        impl CapabilityKind for OldTransformKind {
            const KIND: &'static str = "transform";
            type Object = plugin_api::kinds::before_entry::FfiTransform_TO<
                'static,
                abi_stable::std_types::RBox<()>,
            >;
        }
        let old = CapabilityExport::new::<OldTransformKind>(
            "upper",
            plugin_api::kinds::before_entry::FfiTransform_TO::from_value(Upper, TD_Opaque),
        );
        let expected_transform = <<TransformKind as CapabilityKind>::Object as StableAbi>::LAYOUT;
        assert_eq!(check_layout(expected_transform, &old), Ok(()));
        // And the other way round: a newer plugin's transform in a host built before `entry`.
        let new = CapabilityExport::new::<TransformKind>(
            "upper",
            TransformKind::object(|_: &[u8], _: &mut plugin_api::RVec<u8>| Ok(())),
        );
        let older_host = <plugin_api::kinds::before_entry::FfiTransform_TO<
            'static,
            abi_stable::std_types::RBox<()>,
        > as StableAbi>::LAYOUT;
        assert_eq!(check_layout(older_host, &new), Ok(()));
        let new_command = CapabilityExport::new::<CommandKind>(
            "c",
            CommandKind::object(|_: &[&str]| -> plugin_api::CallResult<String> {
                Ok(String::new())
            }),
        );
        let older_host = <plugin_api::kinds::before_entry::FfiCommand_TO<
            'static,
            abi_stable::std_types::RBox<()>,
        > as StableAbi>::LAYOUT;
        assert_eq!(check_layout(older_host, &new_command), Ok(()));
        // SAFETY: the layout check above passed for `TransformKind`.
        let transform = unsafe { old.object_unchecked::<TransformKind>() };
        let mut out = plugin_api::RVec::new();
        let direct = transform.direct();
        assert!(!direct.is_direct(), "its vtable has no entry");
        direct
            .apply(abi_stable::std_types::RSlice::from_slice(b"ab"), &mut out)
            .unwrap();
        assert_eq!(out.as_slice(), b"AB");

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
