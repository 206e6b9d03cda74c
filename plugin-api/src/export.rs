//! The export macro and the registration shim it calls.

use abi_stable::std_types::RResult;

use crate::error::{guard, RegisterError, RegisterResult};
use crate::initializer::{Initializer, RawInitializer};
use crate::logger::{self, Logger};

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

            extern "C" fn __plugin_host_register(
                init: $crate::RawInitializer<'_>,
                logger: $crate::Logger,
            ) -> __abi::std_types::RResult<(), $crate::RegisterError> {
                $crate::__private::run_register(init, logger, $register)
            }

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

#[cfg(test)]
mod tests {
    #[test]
    fn loader_symbol_matches_abi_stable() {
        assert_eq!(
            super::LOADER_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
