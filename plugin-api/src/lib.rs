//! The stable-ABI interface every plugin-host plugin depends on.
//!
//! A plugin is a `cdylib` that depends on this crate, calls [`build::record`] from its
//! `build.rs`, and names its registration function once with [`export_plugin!`]:
//!
//! ```ignore
//! // build.rs
//! fn main() { plugin_api::build::record(); }
//!
//! // src/lib.rs
//! use plugin_api::{export_plugin, Initializer, RegisterResult};
//!
//! fn register(init: &mut Initializer<'_>) -> RegisterResult {
//!     log::info!("hello from {}", init.host_name());
//!     init.add_command("hello", |args: &[&str]| Ok(format!("hello, {}!", args.join(" "))))?;
//!     Ok(())
//! }
//! export_plugin!(register);
//! ```
//!
//! The crate has three faces, chosen by features:
//! - `abi` (default): the root module ([`PluginRoot`]), the [`Initializer`], the FFI
//!   [`Logger`], capability kinds ([`CapabilityKind`], [`CommandKind`], [`TransformKind`]) and
//!   the [`export_plugin!`] macro. This is what a plugin links.
//! - `provenance`: the [`provenance::Provenance`] record and its framing, for hosts that read
//!   plugin files.
//! - `build`: [`build::record`], the build-script recorder.
//! - `config` (with `abi`): typed access to the plugin's configuration,
//!   [`Initializer::config_as`] and [`config::parse`] (pulls in `serde` and `toml`; plugins that
//!   read their configuration string themselves need not enable it).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod frame;

#[cfg(feature = "provenance")]
pub mod provenance;

#[cfg(feature = "build")]
pub mod build;

#[cfg(feature = "config")]
pub mod config;

#[cfg(feature = "abi")]
mod appender;
#[cfg(feature = "abi")]
mod capability;
#[cfg(feature = "abi")]
mod error;
#[cfg(feature = "abi")]
mod export;
#[cfg(feature = "abi")]
mod initializer;
#[cfg(feature = "abi")]
pub mod kinds;
#[cfg(feature = "abi")]
pub mod logger;
#[cfg(feature = "abi")]
mod root;

/// The output buffer [`Command::run_into`] appends to (`abi_stable`'s FFI-safe `String`).
#[cfg(feature = "abi")]
pub use abi_stable::std_types::RString;
/// The output buffer transforms append to (`abi_stable`'s FFI-safe `Vec`).
#[cfg(feature = "abi")]
pub use abi_stable::std_types::RVec;
#[cfg(feature = "abi")]
pub use appender::StringAppender;
#[cfg(feature = "abi")]
pub use capability::{CapabilityExport, CapabilityKind};
#[cfg(feature = "abi")]
pub use error::{guard, CallError, CallErrorKind, CallResult, RegisterError, RegisterResult};
#[cfg(feature = "abi")]
pub use export::Builtin;
#[cfg(feature = "abi")]
pub use initializer::{HostServices, HostServices_TO, Initializer, RawInitializer, Refused};
#[cfg(feature = "abi")]
pub use kinds::{Command, CommandKind, CommandWriter, Transform, TransformKind};
#[cfg(feature = "abi")]
pub use logger::Logger;
#[cfg(feature = "abi")]
pub use root::{PluginRoot, PluginRootRef, RegisterFn};

/// The version of this interface crate, as Cargo knows it.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Items used by the macros of this crate. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "abi")]
    pub use crate::export::{run_register, LOADER_SYMBOL};
    #[cfg(feature = "abi")]
    pub use abi_stable;
}
