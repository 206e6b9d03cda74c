//! The export macro and the registration shim it calls.

use abi_stable::std_types::{RResult, RStr};
use abi_stable::StableAbi;

use crate::error::{guard, RegisterError, RegisterResult};
use crate::initializer::{Initializer, RawInitializer};
use crate::logger::{self, Logger};
use crate::root::RegisterFn;

/// The symbol `abi_stable` looks up in a library: `abi_stable::library::ROOT_MODULE_LOADER_NAME`.
/// [`crate::export_plugin!`] needs it as a literal; a test keeps the two equal.
pub const LOADER_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Installs the host's logger, then runs the plugin's registration function with panics
/// caught, so that nothing unwinds into the host.
pub fn run_register(
    raw: RawInitializer<'_>,
    logger: Logger,
    register: fn(&mut Initializer<'_>) -> RegisterResult,
) -> RResult<(), RegisterError> {
    logger::install(logger);
    let mut init = Initializer::new(raw);
    guard(|| register(&mut init))
}

/// Exports a plugin: its root module (with the registration function) and its provenance.
///
/// Use it once, at the crate root, naming a `fn(&mut Initializer<'_>) -> RegisterResult`:
///
/// ```ignore
/// fn register(init: &mut plugin_api::Initializer<'_>) -> plugin_api::RegisterResult {
///     init.add_command("hello", |_: &[&str]| Ok("hello".to_string()))?;
///     Ok(())
/// }
/// plugin_api::export_plugin!(register);
/// ```
///
/// The crate's `build.rs` must call `plugin_api::build::record()`: the macro embeds the
/// provenance blob it wrote, in its own section and behind the exported `PLUGIN_HOST_PROVENANCE`.
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        const _: () = {
            use $crate::__private::abi_stable as __abi;

            $crate::__register_shim!(__plugin_host_register, $register);

            fn __plugin_host_root() -> $crate::PluginRootRef {
                __abi::prefix_type::PrefixTypeTrait::leak_into_prefix($crate::PluginRoot {
                    register: __plugin_host_register,
                })
            }

            extern "C" fn __plugin_host_root_erased() -> __abi::library::RootModuleResult {
                __abi::library::__call_root_module_loader(__plugin_host_root)
            }

            /// The `abi_stable` library header: the host's way in, after verification.
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static __PLUGIN_HOST_ROOT: __abi::library::LibHeader = unsafe {
                // SAFETY: `__plugin_host_root_erased` returns the root module of type
                // `PluginRootRef`, the type named here.
                __abi::library::LibHeader::from_constructor::<$crate::PluginRootRef>(
                    __plugin_host_root_erased,
                    __abi::library::CheckTypeLayout::Yes,
                )
            };

            /// The section's bytes, 4-byte aligned as ELF notes must be.
            #[repr(C, align(4))]
            pub struct __PluginHostProvenance(pub [u8; $crate::__provenance_section!().len()]);

            /// The plugin's build provenance, read by the host from the file before loading.
            #[used]
            #[unsafe(export_name = "PLUGIN_HOST_PROVENANCE")]
            #[cfg_attr(
                any(
                    target_os = "macos",
                    target_os = "ios",
                    target_os = "tvos",
                    target_os = "watchos",
                    target_os = "visionos"
                ),
                unsafe(link_section = "__DATA,__plgprov")
            )]
            #[cfg_attr(any(windows, target_os = "uefi"), unsafe(link_section = ".plgprov"))]
            #[cfg_attr(
                not(any(
                    target_os = "macos",
                    target_os = "ios",
                    target_os = "tvos",
                    target_os = "watchos",
                    target_os = "visionos",
                    windows,
                    target_os = "uefi"
                )),
                unsafe(link_section = ".note.plgprov")
            )]
            pub static __PLUGIN_HOST_PROVENANCE: __PluginHostProvenance = {
                // Copy the bytes into an array: a static of its own bytes, no pointer.
                let section = $crate::__provenance_section!();
                let mut bytes = [0u8; $crate::__provenance_section!().len()];
                let mut i = 0;
                while i < bytes.len() {
                    bytes[i] = section[i];
                    i += 1;
                }
                __PluginHostProvenance(bytes)
            };
        };
    };
}

/// Defines `extern "C" fn $shim`, the [`crate::RegisterFn`] both [`crate::export_plugin!`] and
/// [`crate::builtin_plugin!`] hand the host: it installs the host's logger and runs
/// `$register` under the panic guard ([`run_register`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __register_shim {
    ($shim:ident, $register:path) => {
        extern "C" fn $shim(
            init: $crate::RawInitializer<'_>,
            logger: $crate::Logger,
        ) -> $crate::__private::abi_stable::std_types::RResult<(), $crate::RegisterError> {
            $crate::__private::run_register(init, logger, $register)
        }
    };
}

/// A plugin compiled into the host: its name, version and registration function, which the
/// host calls through the very same `register(initializer, logger)` path as a loaded
/// plugin's. Made by [`crate::builtin_plugin!`]; handed to `host::HostBuilder::builtin`.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct Builtin {
    /// The plugin's name (its crate's `CARGO_PKG_NAME`).
    pub name: RStr<'static>,
    /// The plugin's version (its crate's `CARGO_PKG_VERSION`).
    pub version: RStr<'static>,
    /// Its registration function ([`RegisterFn`]): the shim [`crate::export_plugin!`] would
    /// export.
    pub register: extern "C" fn(RawInitializer<'_>, Logger) -> RResult<(), RegisterError>,
}

impl Builtin {
    /// A builtin named `name`, at `version`, registering through `register`.
    pub const fn new(name: &'static str, version: &'static str, register: RegisterFn) -> Self {
        Builtin {
            name: RStr::from_str(name),
            version: RStr::from_str(version),
            register,
        }
    }
}

/// Declares a plugin to be compiled into a host, without exporting any symbol: the
/// expression is a [`Builtin`] named after the calling crate (`CARGO_PKG_NAME`,
/// `CARGO_PKG_VERSION`), whose `register` is the same shim [`crate::export_plugin!`]
/// exports (the host's logger installed, panics caught). Any number of builtins link into
/// one binary.
///
/// ```ignore
/// pub const BUILTIN: plugin_api::Builtin = plugin_api::builtin_plugin!(register);
/// // in the host: Host::builder(identity).builtin(my_plugin::BUILTIN).build()
/// ```
///
/// `builtin_plugin!(register, name = "x", version = "1.0.0")` names it otherwise (several
/// builtins in one crate).
#[macro_export]
macro_rules! builtin_plugin {
    ($register:path) => {
        $crate::builtin_plugin!(
            $register,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        )
    };
    ($register:path, name = $name:expr, version = $version:expr) => {{
        $crate::__register_shim!(__plugin_host_register, $register);
        $crate::Builtin::new($name, $version, __plugin_host_register)
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn loader_symbol_matches_abi_stable() {
        assert_eq!(
            super::LOADER_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    fn register(init: &mut crate::Initializer<'_>) -> crate::RegisterResult {
        let _ = init;
        Ok(())
    }

    const BUILTIN: crate::Builtin = crate::builtin_plugin!(register);

    #[test]
    fn builtin_names_the_calling_crate() {
        assert_eq!(BUILTIN.name.as_str(), "plugin-api");
        assert_eq!(BUILTIN.version.as_str(), env!("CARGO_PKG_VERSION"));
        let other = crate::builtin_plugin!(register, name = "x", version = "1.0.0");
        assert_eq!(other.name.as_str(), "x");
    }
}
