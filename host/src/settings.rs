//! The settings of one plugin, by its name: what an application (its configuration, its
//! command line) sets for a plugin rather than for all.

use std::path::PathBuf;

use crate::policy::Policy;
use crate::trust::SignatureMode;

/// The settings of one plugin, by its name ([`crate::HostBuilder::plugin`]); unset fields take the
/// host's.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    pub(crate) policy: Option<Policy>,
    pub(crate) disabled: bool,
    pub(crate) file: Option<PathBuf>,
    pub(crate) config: Option<String>,
    pub(crate) signatures: Option<SignatureMode>,
    pub(crate) replaces_builtin: bool,
}

impl PluginSettings {
    /// No setting of its own.
    pub fn new() -> Self {
        PluginSettings::default()
    }

    /// Judges the plugin under `policy` instead of the host's.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Never loads the plugin: a file carrying its name is reported
    /// [`crate::Status::Disabled`] once its provenance is read (no plugin code runs).
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// Names the plugin's file: every scan considers it before the files found in
    /// directories (so it wins over another file of that name), and it is refused
    /// `name-mismatch` when it turns out to carry another name.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The configuration string handed to the plugin when it registers.
    pub fn config(mut self, config: impl Into<String>) -> Self {
        self.config = Some(config.into());
        self
    }

    /// The plugin's own signature mode.
    ///
    /// A mode stricter than the host's applies to every file that says it is this plugin. A
    /// looser one (an exemption: `ignore` under a host-wide `require`) applies only to the
    /// file configured for the plugin ([`PluginSettings::file`]): a file that merely declares
    /// the name in its provenance — an `evil_hello.so` dropped in an earlier directory — gets
    /// the host's mode. (Not a file the lock lists: a lock is found in the working directory
    /// too, where anyone's checkout may have put one.)
    pub fn signatures(mut self, mode: SignatureMode) -> Self {
        self.signatures = Some(mode);
        self
    }

    /// Lets a plugin file of this name replace the builtin of that name: when a scan finds
    /// one, the builtin is not registered and the file is loaded as any other (if it is then
    /// refused, neither is there).
    pub fn replaces_builtin(mut self) -> Self {
        self.replaces_builtin = true;
        self
    }

    /// `later`'s settings over these.
    pub(crate) fn merge(&mut self, later: PluginSettings) {
        if later.policy.is_some() {
            self.policy = later.policy;
        }
        self.disabled |= later.disabled;
        if later.file.is_some() {
            self.file = later.file;
        }
        if later.config.is_some() {
            self.config = later.config;
        }
        if later.signatures.is_some() {
            self.signatures = later.signatures;
        }
        self.replaces_builtin |= later.replaces_builtin;
    }
}
