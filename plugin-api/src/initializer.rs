//! The initializer: what a plugin's registration function receives.

// The `sabi_trait` macro generates items without docs.
#![allow(missing_docs)]
// abi_stable 0.11's `sabi_trait` expansion puts impls inside a `const` block.
#![allow(non_local_definitions)]

use abi_stable::sabi_trait;
use abi_stable::std_types::{RResult, RStr, RString};
use abi_stable::RMut;

use crate::capability::{CapabilityExport, CapabilityKind};
use crate::kinds::{Command, CommandKind, Transform, TransformKind};

/// What the host offers a plugin during registration (FFI face).
///
/// New methods are only ever added after the last one, so plugins built against an older
/// `plugin-api` keep working with newer hosts.
#[sabi_trait]
pub trait HostServices {
    /// The host application's name.
    fn host_name(&self) -> RStr<'_>;
    /// The host application's version.
    fn host_version(&self) -> RStr<'_>;
    /// The `plugin-api` version the host was built with.
    fn api_version(&self) -> RStr<'_>;
    /// Configuration the host has for this plugin (empty when none).
    fn plugin_config(&self) -> RStr<'_>;
    /// Offers a capability; `Err` says why the host refuses it.
    #[sabi(last_prefix_field)]
    fn add_capability(&mut self, capability: CapabilityExport) -> RResult<(), RString>;
}

/// The initializer as it crosses the boundary.
pub type RawInitializer<'a> = HostServices_TO<'a, RMut<'a, ()>>;

/// The host's refusal of a capability (unknown kind, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host refused capability: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// What a plugin's registration function receives: host facts, its configuration, and the
/// place to register capabilities.
pub struct Initializer<'a> {
    raw: RawInitializer<'a>,
}

impl<'a> Initializer<'a> {
    /// Wraps the FFI initializer (done for you by [`crate::export_plugin!`]).
    pub fn new(raw: RawInitializer<'a>) -> Self {
        Initializer { raw }
    }

    /// The host application's name.
    pub fn host_name(&self) -> &str {
        self.raw.host_name().into()
    }

    /// The host application's version.
    pub fn host_version(&self) -> &str {
        self.raw.host_version().into()
    }

    /// The `plugin-api` version the host was built with.
    pub fn api_version(&self) -> &str {
        self.raw.api_version().into()
    }

    /// The host's configuration string for this plugin (empty when none).
    pub fn config(&self) -> &str {
        self.raw.plugin_config().into()
    }

    /// The configuration string deserialised into the plugin's own type `T`.
    ///
    /// A host using `host::config` passes the plugin's `[plugins.NAME.config]` table as TOML
    /// text; no configuration is an empty table (so `#[serde(default)]` types get their
    /// defaults). The error says what is wrong for the user of the plugin.
    #[cfg(feature = "config")]
    pub fn config_as<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, crate::config::ConfigError> {
        crate::config::parse(self.config())
    }

    /// Registers `object` as a capability of kind `K` named `name`.
    pub fn add<K: CapabilityKind>(&mut self, name: &str, object: K::Object) -> Result<(), Refused> {
        self.raw
            .add_capability(CapabilityExport::new::<K>(name, object))
            .into_result()
            .map_err(|e| Refused(e.into()))
    }

    /// Registers a `command` capability.
    pub fn add_command(&mut self, name: &str, command: impl Command) -> Result<(), Refused> {
        self.add::<CommandKind>(name, CommandKind::object(command))
    }

    /// Registers a `transform` capability.
    pub fn add_transform(&mut self, name: &str, transform: impl Transform) -> Result<(), Refused> {
        self.add::<TransformKind>(name, TransformKind::object(transform))
    }
}
