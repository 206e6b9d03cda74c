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
    /// A file configured as one plugin's carries another plugin's name.
    #[error("{}: this file is configured as plugin `{expected}`, but it is plugin `{found}`; point `[plugins.{expected}] path` at the right file, or move this entry to `[plugins.{found}]`", path.display())]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The name it was configured for.
        expected: String,
        /// The name its provenance carries.
        found: String,
    },
    /// A file indexed as one plugin carries another plugin's name when it is loaded: it
    /// changed since it was indexed.
    #[error("{}: this file was indexed as plugin `{indexed}`, but it is now plugin `{found}` (it changed since; nothing of it ran); index the plugins again (a new `plugin-host run` does) so that each name and capability goes to the file that is first in the search path", path.display())]
    NotAsIndexed {
        /// The file.
        path: PathBuf,
        /// The plugin it was indexed as.
        indexed: String,
        /// The plugin it is now.
        found: String,
    },
    /// A file earlier in the search path provides a plugin of the same name: that one wins.
    #[error(
        "{}: shadowed by {} (earlier in the search path), which provides plugin `{name}` too; \
         this file is not used: remove it, or put its directory first to use it instead",
        path.display(),
        first.display()
    )]
    Shadowed {
        /// The file.
        path: PathBuf,
        /// The plugin name both files carry.
        name: String,
        /// The file that wins: first in path order.
        first: PathBuf,
    },
    /// A plugin file carries the name of a plugin compiled into the host.
    #[error("{}: plugin `{name}` is built into this host; rename this plugin, or let it replace the builtin (`--replace-builtin {name}`, `PluginSettings::replaces_builtin`)", path.display())]
    DuplicateBuiltin {
        /// The file.
        path: PathBuf,
        /// The builtin's name, which the file carries too.
        name: String,
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
    /// The plugin's `register` failed after the host refused a capability of a kind it does
    /// not have: the plugin was most likely written for another application.
    #[error(
        "{}: plugin `{name}` failed to register: {detail}; it was probably written for another \
         application: remove it from this host's plugin directory",
        path.display()
    )]
    ForeignKind {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// The kind refused, and the kinds this host has.
        detail: String,
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
    /// The plugin registered one capability name twice.
    #[error(
        "{}: plugin `{name}` registers {kind} `{capability}` twice; none of its capabilities \
         were registered: report it to the plugin's author",
        path.display()
    )]
    CapabilityTwice {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// The capability kind.
        kind: String,
        /// The capability name.
        capability: String,
    },
    /// The plugin registered a capability this host refuses outright: a bad name, or too
    /// many capabilities.
    #[error(
        "{}: plugin `{name}` registers {detail}; none of its capabilities were registered: \
         report it to the plugin's author",
        path.display()
    )]
    InvalidCapability {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Another path to a file this scan has already judged (a hard link, or a symlink).
    #[error("{}: the same file as {} (another link to it): {message}", path.display(), first.display())]
    SameFile {
        /// This path.
        path: PathBuf,
        /// The path it was first judged under.
        first: PathBuf,
        /// The outcome there.
        reason: ReasonCode,
        /// The message there.
        message: String,
    },
    /// The process ran out of a resource it needs to load plugins (file descriptors).
    #[error("{}: {detail}", path.display())]
    Resources {
        /// The file.
        path: PathBuf,
        /// What ran out and how to fix it.
        detail: String,
    },
    /// The plugin declared its capabilities, then registered one it did not declare.
    #[error(
        "{}: plugin `{name}` registers {kind} `{capability}`, which it did not declare; none of \
         its capabilities were registered: add it to the plugin's Cargo.toml \
         (`[package.metadata.plugin-host] capabilities = {{ {kind} = [\"{capability}\"] }}`, \
         beside the others) and rebuild",
        path.display()
    )]
    UndeclaredCapability {
        /// The file.
        path: PathBuf,
        /// The plugin.
        name: String,
        /// The capability kind.
        kind: String,
        /// The capability name.
        capability: String,
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
    /// The trust step refused the file: the lock file or its signature (see
    /// [`crate::trust`]).
    #[error("{}: {message}", path.display())]
    Trust {
        /// The file.
        path: PathBuf,
        /// `checksum-mismatch`, `not-locked`, `unsigned`, `invalid-signature` or
        /// `untrusted-key`.
        reason: ReasonCode,
        /// What was found and how to fix it.
        message: String,
    },
}

impl PluginError {
    /// The stable reason code.
    pub fn reason(&self) -> ReasonCode {
        match self {
            PluginError::Read(e) => e.reason(),
            PluginError::Rejected { reason, .. } | PluginError::Load { reason, .. } => *reason,
            PluginError::Duplicate { .. }
            | PluginError::DuplicateBuiltin { .. }
            | PluginError::Shadowed { .. } => ReasonCode::DuplicatePlugin,
            PluginError::SameFile { reason, .. } => *reason,
            PluginError::NameMismatch { .. } | PluginError::NotAsIndexed { .. } => {
                ReasonCode::NameMismatch
            }
            PluginError::Resources { .. } => ReasonCode::LoadFailed,
            PluginError::InvalidCapability { .. } => ReasonCode::InvalidCapability,
            PluginError::UndeclaredCapability { .. } => ReasonCode::UndeclaredCapability,
            PluginError::CapabilityTwice { .. } => ReasonCode::CapabilityConflict,
            PluginError::RegisterFailed { .. } | PluginError::ForeignKind { .. } => {
                ReasonCode::RegisterFailed
            }
            PluginError::RegisterPanicked { .. } => ReasonCode::RegisterPanicked,
            PluginError::CapabilityConflict { .. } => ReasonCode::CapabilityConflict,
            PluginError::Trust { reason, .. } => *reason,
        }
    }
}

/// What to tell a user whose process ran out of file descriptors, or `None` for other errors.
pub(crate) fn out_of_descriptors(error: &std::io::Error) -> Option<String> {
    let which = match error.raw_os_error()? {
        libc_codes::EMFILE => "this process has too many open files (EMFILE)",
        libc_codes::ENFILE => "the system has too many open files (ENFILE)",
        _ => return None,
    };
    Some(format!(
        "{which}, so the plugin could not be opened; raise the limit (`ulimit -n`, now {}) or \
         put fewer plugins in the plugin directories",
        descriptor_limit().map_or_else(|| "unknown".to_owned(), |n| n.to_string())
    ))
}

/// `RLIMIT_NOFILE`'s soft limit: how many descriptors this process may have open.
pub(crate) fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes into the valid `rlimit` it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            return Some(limit.rlim_cur);
        }
    }
    None
}

#[cfg(unix)]
mod libc_codes {
    pub const EMFILE: i32 = libc::EMFILE;
    pub const ENFILE: i32 = libc::ENFILE;
}

#[cfg(not(unix))]
mod libc_codes {
    pub const EMFILE: i32 = 24;
    pub const ENFILE: i32 = 23;
}
