//! The plugin-host loader.
//!
//! It discovers plugin files, reads each file's build provenance **without loading it**,
//! judges it against the host's own provenance under a [`Policy`], and only then loads the
//! library through `abi_stable` and calls its `register(initializer, logger)`.
//!
//! ```no_run
//! use host::{Host, HostIdentity, ScanMode};
//! use plugin_api::CommandKind;
//! use abi_stable::std_types::{RSlice, RStr};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let blob: &[u8] = &[];
//! // In a real application: HostIdentity::from_blob(plugin_api::provenance_blob!())
//! let mut host = Host::new(HostIdentity::from_blob(blob)?);
//! for report in host.scan(&["plugins"], ScanMode::Load)? {
//!     println!("{}: {:?} {:?}", report.path.display(), report.status, report.reason);
//! }
//! let hello = host.registry().get::<CommandKind>("hello")?;
//! let out = hello.call(RSlice::from_slice(&[RStr::from("Ada")]));
//! # Ok(()) }
//! ```
//!
//! To open only what is used, [`Host::index`] builds a capability index from the plugins'
//! declared capabilities (read from provenance, nothing loaded) and [`Host::get_lazy`] loads
//! the one library that declares a capability on its first use (see [`lazy`]).
//!
//! Safety notes: a verified plugin is trusted native code running in this process. Its
//! panics are caught and reported, but an abort or a crash in it takes the host down, and
//! loaded libraries are never unloaded — unless it is isolated: [`isolate`] runs a plugin in
//! a worker process of its own, behind the same capability handles.

mod builtin;
pub mod config;
mod discover;
mod error;
mod host;
pub mod isolate;
pub mod lazy;
pub mod limits;
mod load;
mod log_bridge;
mod map;
mod policy;
mod read;
mod reason;
mod registry;
mod report;
#[cfg(target_os = "linux")]
mod seal;
mod settings;
pub mod small_file;
#[cfg(target_os = "linux")]
mod stage;
pub mod text;
pub mod toolchains;
pub mod trust;
mod watch;

pub use builtin::BUILTIN_PATH;
pub use discover::{discover, DiscoverError, LIBRARY_SUFFIX};
pub use error::PluginError;
pub use host::{Host, HostIdentity, LoadedPlugin, ScanMode, DEFAULT_HANG_WARNING};
pub use isolate::{IsolatedPlugin, ReloadError};
pub use lazy::{IndexedPlugin, IndexedState, LazyError};
pub use map::LoadFrom;
pub use policy::{
    api_compatible, dependency_line, dependency_source, judge, judge_with, toolchain_name, Check,
    CheckKind, CheckStatus, CrateDifference, Policy, PolicyError, PreparedHost, Severity, Verdict,
};
#[doc(hidden)]
#[cfg(unix)]
pub use read::read_provenance_counted;
#[doc(hidden)]
pub use read::ReadCost;
pub use read::{
    open_candidate, read_provenance, read_provenance_bytes, read_provenance_from,
    read_worker_provenance, ReadError,
};
pub use reason::ReasonCode;
pub use registry::{CapabilityInfo, Kinds, LookupError, Registry};
pub use report::{PluginReport, Status};
pub use trust::{Lock, LockEntry, LockError, SignatureMode, SignatureStatus, TrustedKey};
pub use watch::{CallWatch, PLUGIN_EXIT_STATUS};

pub use plugin_api::provenance::Provenance;
pub use plugin_api::Builtin;
