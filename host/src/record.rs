//! What the host keeps of each plugin: one record ([`LoadedPlugin`]), and why reloading one
//! can fail ([`ReloadError`]).

use std::path::PathBuf;
use std::sync::Arc;

use plugin_api::provenance::Provenance;

use crate::place::Running;
use crate::reason::ReasonCode;

/// A plugin that was loaded and registered: the host's one record of it.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Its name.
    pub name: Arc<str>,
    /// The file it was loaded from (resolved, absolute).
    pub path: PathBuf,
    /// Its provenance (a builtin's: the host's own).
    pub provenance: Provenance,
    /// Whether it is compiled into the host ([`crate::HostBuilder::builtin`]); `path` is then
    /// [`crate::BUILTIN_PATH`].
    pub builtin: bool,
    /// The path it was found at, as given: what [`crate::Host::reload`] verifies again.
    pub(crate) source: PathBuf,
    /// Its instance out of process ([`crate::place::Placement`]); `None` in-process.
    pub(crate) running: Option<Arc<dyn Running>>,
}

impl LoadedPlugin {
    /// Its instance, when a [`crate::place::Placement`] runs it out of process.
    pub fn running(&self) -> Option<&Arc<dyn Running>> {
        self.running.as_ref()
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("provenance", &self.provenance)
            .field("builtin", &self.builtin)
            .field("out_of_process", &self.running.is_some())
            .finish()
    }
}

/// Why [`crate::Host::reload`] did not switch a plugin to a new instance. In every case the plugin
/// serves on as before: its calls never fail because of a reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// No plugin of that name is loaded.
    #[error("no plugin named `{name}` is loaded, so there is nothing to reload")]
    NotLoaded {
        /// The name asked for.
        name: String,
    },
    /// The plugin runs in-process (or is built into the host): a loaded library is never
    /// unloaded, so only isolated plugins can be reloaded.
    #[error(
        "plugin `{name}` runs in-process and cannot be reloaded: a loaded library is never \
         unloaded; only isolated plugins reload (`isolation = \"process\"`, `--isolate {name}`)"
    )]
    InProcess {
        /// The plugin.
        name: String,
    },
    /// The new file was refused (verification, the trust step, the policy, another plugin's
    /// name), its worker failed to start or register, or it no longer registers a
    /// capability the host holds: the old worker serves on.
    #[error("reloading plugin `{name}` failed, its old worker serves on: {message} [{reason}]")]
    Refused {
        /// The plugin.
        name: String,
        /// Why, as a reason code.
        reason: ReasonCode,
        /// Why, in words.
        message: String,
    },
}

impl ReloadError {
    /// The reason code of a refused reload; `None` when there was nothing to reload.
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            ReloadError::Refused { reason, .. } => Some(*reason),
            ReloadError::NotLoaded { .. } | ReloadError::InProcess { .. } => None,
        }
    }
}
