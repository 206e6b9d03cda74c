//! The plugin's root module: what the host finds in the library.

use abi_stable::library::RootModule;
use abi_stable::std_types::RResult;
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::error::RegisterError;
use crate::initializer::RawInitializer;
use crate::logger::Logger;

/// The registration entry point: the host calls it once, right after loading the plugin.
pub type RegisterFn = extern "C" fn(RawInitializer<'_>, Logger) -> RResult<(), RegisterError>;

/// The root module every plugin exports (through [`crate::export_plugin!`]).
///
/// It is an `abi_stable` prefix type: the host sees it through [`PluginRootRef`], and fields
/// can be appended in later `plugin-api` versions without breaking plugins built against this
/// one. `register` is the `last_prefix_field`: every plugin has it and every host may call
/// it unconditionally. A field added later goes *after* it and is read through its
/// `Option`-returning accessor, because older plugins do not have it.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(option))]
pub struct PluginRoot {
    /// Registers the plugin's capabilities with the host; see [`RegisterFn`].
    #[sabi(last_prefix_field)]
    pub register: extern "C" fn(RawInitializer<'_>, Logger) -> RResult<(), RegisterError>,
}

impl RootModule for PluginRootRef {
    declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "plugin";
    const NAME: &'static str = "plugin-host plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}
