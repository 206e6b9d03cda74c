//! Why a plugin was not loaded: one typed error per step, each with its reason code.

use std::path::PathBuf;

use crate::read::ReadError;
use crate::reason::ReasonCode;

/// Why one plugin file was rejected or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// Its provenance could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Its provenance was judged incompatible.
    #[error("{}: {message}", path.display())]
    Rejected {
        /// The file.
        path: PathBuf,
        /// The first failed check's reason.
        reason: ReasonCode,
        /// What differs and how to fix it.
        message: String,
    },
    /// A plugin of the same name is already loaded (or verified, in a `--no-load` scan).
    #[error(
        "{}: plugin `{name}` is already loaded from {}; remove one of the two files",
        path.display(),
        first.display()
    )]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The plugin name both files carry.
        name: String,
        /// The file loaded first.
        first: PathBuf,
    },
    /// The dynamic loader or `abi_stable` refused the library after verification passed.
    #[error("{}: {detail}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// `load-failed`, `layout-mismatch`, `api-incompatible` or `abi-stable-mismatch`.
        reason: ReasonCode,
        /// What went wrong and how to fix it.
        detail: String,
    },
    /// The plugin's `register` returned an error.
    #[error(
        "{}: plugin `{name}` failed to register: {message}; fix what it reports (its \
         configuration or environment) or remove it from the plugin directory",
        path.display()
    )]
    RegisterFailed {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// The plugin's error.
        message: String,
    },
    /// The plugin's `register` panicked; the panic was caught on the plugin side.
    #[error(
        "{}: plugin `{name}` panicked while registering: {message}; the panic was contained \
         and none of its capabilities were registered: report it to the plugin's author",
        path.display()
    )]
    RegisterPanicked {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// The panic message.
        message: String,
    },
    /// The plugin registered a capability another plugin already provides.
    #[error(
        "{}: plugin `{name}` registers {kind} `{capability}`, which plugin `{holder}` already \
         provides; none of `{name}`'s capabilities were registered: remove one of the two plugins",
        path.display()
    )]
    CapabilityConflict {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// The capability kind.
        kind: String,
        /// The capability name.
        capability: String,
        /// The plugin that has it.
        holder: String,
    },
}

impl PluginError {
    /// The stable reason code.
    pub fn reason(&self) -> ReasonCode {
        match self {
            PluginError::Read(e) => e.reason(),
            PluginError::Rejected { reason, .. } | PluginError::Load { reason, .. } => *reason,
            PluginError::Duplicate { .. } => ReasonCode::DuplicatePlugin,
            PluginError::RegisterFailed { .. } => ReasonCode::RegisterFailed,
            PluginError::RegisterPanicked { .. } => ReasonCode::RegisterPanicked,
            PluginError::CapabilityConflict { .. } => ReasonCode::CapabilityConflict,
        }
    }
}
