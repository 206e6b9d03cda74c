//! Loading a verified library and running its registration.

use std::path::Path;

use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use plugin_api::{CallErrorKind, CapabilityExport, HostServices, HostServices_TO, PluginRootRef};

use crate::error::PluginError;
use crate::reason::ReasonCode;
use crate::registry::Kinds;

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
    lib_header_from_path(load_path).map_err(|e| classify(e, path))
}

/// Checks the root module's version and layout and initialises it. The library stays mapped
/// whatever the outcome (`abi_stable` never unloads).
pub(crate) fn init_root(
    header: &'static LibHeader,
    path: &Path,
) -> Result<PluginRootRef, PluginError> {
    header
        .init_root_module::<PluginRootRef>()
        .map_err(|e| classify(e, path))
}

fn classify(error: LibraryError, path: &Path) -> PluginError {
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
        LibraryError::OpenError { .. } => fail(
            ReasonCode::LoadFailed,
            format!("the dynamic loader refused it: {text}; check that the libraries it links are installed"),
        ),
        LibraryError::GetSymbolError { .. } => fail(
            ReasonCode::LoadFailed,
            format!("it has provenance but no plugin root module ({text}); export it with `plugin_api::export_plugin!`"),
        ),
        LibraryError::AbiInstability(_) => fail(
            ReasonCode::LayoutMismatch,
            format!("abi_stable's layout check of the root module failed: {text}; rebuild the plugin against plugin-api {api}"),
        ),
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
pub(crate) struct Registration<'h> {
    pub host_name: &'h str,
    pub host_version: &'h str,
    pub config: &'h str,
    pub kinds: &'h Kinds,
    pub staged: Vec<CapabilityExport>,
    pub self_conflict: Option<(String, String)>,
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
        match self.kinds.admit(&capability) {
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

/// Calls the plugin's `register` with `registration` and the plugin's logger.
pub(crate) fn register(
    root: PluginRootRef,
    path: &Path,
    name: &str,
    registration: &mut Registration<'_>,
) -> Result<(), PluginError> {
    let logger = crate::log_bridge::logger_for(name);
    let init = HostServices_TO::from_ptr(&mut *registration, TD_Opaque);
    match (root.register())(init, logger).into_result() {
        Ok(()) => Ok(()),
        Err(e) if e.kind == CallErrorKind::Panicked => Err(PluginError::RegisterPanicked {
            path: path.to_owned(),
            name: name.to_owned(),
            message: e.message.into(),
        }),
        Err(e) => Err(PluginError::RegisterFailed {
            path: path.to_owned(),
            name: name.to_owned(),
            message: e.message.into(),
        }),
    }
}
