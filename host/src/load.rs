//! Loading a verified library and running its registration.

use std::path::Path;

use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use plugin_api::{CallErrorKind, CapabilityExport, HostServices, HostServices_TO, PluginRootRef};

use crate::error::PluginError;
use crate::kinds::Kinds;
use crate::limits::{capability_name, MAX_CAPABILITIES, MAX_CAPABILITY_NAME};
use crate::reason::ReasonCode;

/// Maps the library at `load_path` (absolute) and finds its `abi_stable` header; `path` is
/// the name used in messages. On error nothing stays mapped.
///
/// This uses `lib_header_from_path(..)` and then [`init_root`], not
/// `RootModule::load_from_*`, which would cache one library per interface type. Only call it
/// after verification.
pub(crate) fn open_library(
    load_path: &Path,
    path: &Path,
) -> Result<&'static LibHeader, PluginError> {
    // Windows: loaded first with its imports looked for in the system directory only, then
    // found loaded by `abi_stable` under the same name; loaded by `abi_stable` alone, a DLL
    // it imports would be looked for in the working directory and on `PATH` too, where
    // anyone who can write there could put one of that name.
    #[cfg(windows)]
    let _system_only =
        crate::windows::load_with_system_imports(load_path).map_err(|e| PluginError::Load {
            path: path.to_owned(),
            reason: ReasonCode::LoadFailed,
            detail: format!(
                "the dynamic loader refused it: {e}; a plugin's DLLs are looked for in the \
                 system directory only, so a DLL it imports that is not a system one cannot \
                 be loaded"
            ),
        })?;
    lib_header_from_path(load_path).map_err(|e| classify(e, path))
}

/// Checks the root module's version and layout and initialises it. The library stays mapped
/// whatever the outcome (`abi_stable` never unloads).
pub(crate) fn init_root(
    header: &'static LibHeader,
    path: &Path,
    differences: &[String],
) -> Result<PluginRootRef, PluginError> {
    header
        .init_root_module::<PluginRootRef>()
        .map_err(|e| classify_with(e, path, differences))
}

/// As [`init_root`], without checking the root module's layout again: for a library whose
/// very bytes this same build of the host has checked before (a kept copy's layout mark,
/// see `store`). Its version is still checked.
///
/// # Safety
///
/// The root module's layout must be known to be the one this host expects: the bytes
/// mapped are bytes it was checked in, against this build's expected layout.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn init_root_checked_before(
    header: &'static LibHeader,
    path: &Path,
    differences: &[String],
) -> Result<PluginRootRef, PluginError> {
    // SAFETY: the caller's promise: these bytes passed `init_root_module`'s layout check
    // against this build's `PluginRootRef` layout (see `Mapper::init_root`).
    unsafe { header.init_root_module_with_unchecked_layout::<PluginRootRef>() }
        .map_err(|e| classify_with(e, path, differences))
}

fn classify(error: LibraryError, path: &Path) -> PluginError {
    classify_with(error, path, &[])
}

/// `differences`: the crates the plugin shares with the host at another version or content,
/// to name in a layout mismatch.
fn classify_with(error: LibraryError, path: &Path, differences: &[String]) -> PluginError {
    let fail = |reason: ReasonCode, detail: String| PluginError::Load {
        path: path.to_owned(),
        reason,
        detail,
    };
    let api = plugin_api::API_VERSION;
    // abi_stable's messages span several indented lines; a report wants one.
    let text = error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match error {
        LibraryError::OpenError { .. } if text.contains("Too many open files") => fail(
            ReasonCode::LoadFailed,
            format!("the dynamic loader ran out of file descriptors (EMFILE): {text}; raise the limit (`ulimit -n`) or put fewer plugins in the plugin directories"),
        ),
        LibraryError::OpenError { .. } => fail(
            ReasonCode::LoadFailed,
            format!("the dynamic loader refused it: {text}; check that the libraries it links are installed (beside it, when its RUNPATH says $ORIGIN)"),
        ),
        LibraryError::GetSymbolError { .. } => fail(
            ReasonCode::LoadFailed,
            format!("it has provenance but no plugin root module ({text}); export it with `plugin_api::export_plugin!`"),
        ),
        LibraryError::AbiInstability(_) => {
            tracing::debug!(
                "layout check of the root module of {}: {}",
                crate::text::printable(&path.display().to_string()),
                crate::text::printable(&error.to_string())
            );
            fail(
                ReasonCode::LayoutMismatch,
                format!(
                    "abi_stable's layout check of the root module failed: {}; {}",
                    crate::registry::layout_differences(&error.to_string()),
                    crate::registry::layout_fix(differences)
                ),
            )
        }
        LibraryError::ParseVersionError(_) | LibraryError::IncompatibleVersionNumber { .. } => fail(
            ReasonCode::ApiIncompatible,
            format!("abi_stable refused its interface version: {text}; rebuild the plugin against plugin-api {api}"),
        ),
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => fail(
            ReasonCode::AbiStableMismatch,
            format!("abi_stable refused its header: {text}; rebuild the plugin with this host's abi_stable"),
        ),
        _ => fail(ReasonCode::LoadFailed, format!("initialising its root module failed: {text}")),
    }
}

/// What the host tells a plugin during registration, and what the plugin offered.
struct Registration<'h> {
    pub host_name: &'h str,
    pub host_version: &'h str,
    pub config: &'h str,
    pub kinds: &'h Kinds,
    pub staged: Vec<CapabilityExport>,
    /// A capability name registered twice by this very plugin: `(kind, name)`.
    pub self_conflict: Option<(String, String)>,
    /// The first capability refused as invalid (bad name, too many): why.
    pub invalid: Option<String>,
    /// The first capability refused for a kind this host does not have: why.
    pub foreign: Option<String>,
}

impl Registration<'_> {
    /// Checks an offered capability: a bounded count, a valid kind and name, a kind this
    /// host knows. Invalid names are remembered: the plugin fails even if it ignores the
    /// refusal.
    fn check(&mut self, capability: &CapabilityExport) -> Result<(), String> {
        let invalid = if self.staged.len() >= MAX_CAPABILITIES {
            Some(format!("more than {MAX_CAPABILITIES} capabilities"))
        } else if std::str::from_utf8(capability.kind_bytes()).is_err() {
            Some("a capability kind that is not UTF-8".to_owned())
        } else if capability.kind_bytes().len() > MAX_CAPABILITY_NAME {
            Some(format!(
                "a capability kind of {} bytes, more than {MAX_CAPABILITY_NAME}",
                capability.kind_bytes().len()
            ))
        } else {
            capability_name(capability.name_bytes()).err()
        };
        if let Some(why) = invalid {
            let refusal = format!("this host refuses {why}");
            self.invalid.get_or_insert(why);
            return Err(refusal);
        }
        // The kind and name were checked to be UTF-8 just above.
        self.kinds.admit(capability).inspect_err(|why| {
            self.foreign.get_or_insert_with(|| why.clone());
        })
    }
}

impl HostServices for Registration<'_> {
    fn host_name(&self) -> RStr<'_> {
        self.host_name.into()
    }

    fn host_version(&self) -> RStr<'_> {
        self.host_version.into()
    }

    fn api_version(&self) -> RStr<'_> {
        plugin_api::API_VERSION.into()
    }

    fn plugin_config(&self) -> RStr<'_> {
        self.config.into()
    }

    fn add_capability(&mut self, capability: CapabilityExport) -> RResult<(), RString> {
        match self.check(&capability) {
            Ok(()) => {
                let twice = self
                    .staged
                    .iter()
                    .any(|c| c.kind() == capability.kind() && c.name() == capability.name());
                if twice && self.self_conflict.is_none() {
                    self.self_conflict = Some((capability.kind().into(), capability.name().into()));
                }
                self.staged.push(capability);
                RResult::ROk(())
            }
            Err(message) => RResult::RErr(message.into()),
        }
    }
}

/// Calls the plugin's `register` (a loaded plugin's, or a builtin's) with `registration` and the plugin's logger.
fn register(
    register: plugin_api::RegisterFn,
    path: &Path,
    name: &str,
    registration: &mut Registration<'_>,
) -> Result<(), PluginError> {
    let logger = crate::log_bridge::logger_for(name);
    let init = HostServices_TO::from_ptr(&mut *registration, TD_Opaque);
    match register(init, logger).into_result() {
        Ok(()) => Ok(()),
        Err(e) if e.kind == CallErrorKind::Panicked => Err(PluginError::RegisterPanicked {
            path: path.to_owned(),
            name: name.to_owned(),
            message: kept(&e),
        }),
        Err(e) => Err(PluginError::RegisterFailed {
            path: path.to_owned(),
            name: name.to_owned(),
            message: kept(&e),
        }),
    }
}

/// A registration's error message as the host keeps it: at most
/// [`crate::limits::MAX_PLUGIN_TEXT`] characters, as a worker's is.
fn kept(e: &plugin_api::CallError) -> String {
    crate::text::bounded(&e.message_lossy(), crate::limits::MAX_PLUGIN_TEXT).into_owned()
}

/// A plugin about to register (loaded or builtin): what it is told, and what its
/// capabilities are checked against.
pub(crate) struct Registering<'a> {
    /// The path reported (a builtin's: [`crate::BUILTIN_PATH`]).
    pub path: &'a Path,
    pub name: &'a str,
    pub provenance: &'a plugin_api::provenance::Provenance,
    pub host: &'a crate::identity::HostIdentity,
    pub config: &'a str,
    pub kinds: &'a Kinds,
}

/// Runs a plugin's `register` and checks what it offered: configuration, kinds, validation
/// and the declaration are the same for loaded plugins and builtins. The capabilities, or why
/// the plugin fails.
pub(crate) fn registered(
    register_fn: plugin_api::RegisterFn,
    r: &Registering<'_>,
) -> Result<Vec<CapabilityExport>, PluginError> {
    let (path, name) = (r.path.to_owned(), r.name.to_owned());
    let mut registration = Registration {
        host_name: &r.host.name,
        host_version: &r.host.version,
        config: r.config,
        kinds: r.kinds,
        staged: Vec::new(),
        self_conflict: None,
        invalid: None,
        foreign: None,
    };
    let outcome = register(register_fn, r.path, r.name, &mut registration);
    if let Some(detail) = registration.invalid.take() {
        return Err(PluginError::InvalidCapability { path, name, detail });
    }
    if let Err(e) = outcome {
        // A plugin that gives up because the host lacks a kind it needs was most likely
        // written for another application: say that, not "fix its configuration".
        return Err(match (e, registration.foreign.take()) {
            (PluginError::RegisterFailed { path, name, .. }, Some(detail)) => {
                PluginError::ForeignKind { path, name, detail }
            }
            (e, _) => e,
        });
    }
    if let Some((kind, capability)) = registration.self_conflict.take() {
        return Err(PluginError::CapabilityTwice {
            path,
            name,
            kind,
            capability,
        });
    }
    let undeclared = registration
        .staged
        .iter()
        .find(|c| r.provenance.declares(c.kind(), c.name()) == Some(false));
    if let Some(c) = undeclared {
        return Err(PluginError::UndeclaredCapability {
            path,
            name,
            kind: c.kind().to_owned(),
            capability: c.name().to_owned(),
        });
    }
    Ok(registration.staged)
}
