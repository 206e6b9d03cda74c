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
//! let mut host = Host::builder(HostIdentity::from_blob(blob)?)
//!     .policy(host::Policy::preset("strict").unwrap())
//!     .build();
//! for report in host.scan(&["plugins"], ScanMode::Load)? {
//!     println!("{}: {:?} {:?}", report.path.display(), report.status, report.reason);
//! }
//! let hello = host.registry().get::<CommandKind>("hello")?;
//! let out = hello.call(RSlice::from_slice(&[RStr::from("Ada")]));
//! # Ok(()) }
//! ```
//!
//! # The parts, along the flow
//!
//! A file goes **discover → read → trust → judge → place → register → use**; each step is a
//! part the [`Host`] holds, and the host only runs the flow and keeps one record per plugin
//! ([`LoadedPlugin`]):
//!
//! | step | part | modules |
//! |---|---|---|
//! | settings | [`HostBuilder`] → [`Host`]; [`PluginSettings`] per plugin | `builder`, [`config`] (files) |
//! | discover | the search path, in order | `discover` |
//! | read | provenance from the file, nothing mapped | `read` (ELF, PE, Mach-O), `small_file` |
//! | trust | lock and signatures, on the bytes that will run | [`trust`], `seal` |
//! | judge | the [`Policy`] against the host's identity | `policy`, `gate` (the three steps for one file) |
//! | place | where it runs: [`place::InProcess`], builtins, or a [`place::Placement`] out of process (the `plugin-isolate` crate) | [`place`], `map`, `stage`, `builtin`, [`wire`] |
//! | register | the plugin's `register`, its offers checked | `load`, [`log_bridge`], `watch` |
//! | use | capabilities by kind and name, layout-checked on first use | `registry` |
//! | lazily | the capability index: the flow deferred to first use | [`lazy`] |
//!
//! Lower modules never reach into the host: the gate gets what it needs of the rest through a
//! context, a placement through a [`place::Request`], lazy loading through a small loader
//! trait the host implements.
//!
//! Safety notes: a verified plugin is trusted native code running in this process. Its
//! panics are caught and reported, but an abort or a crash in it takes the host down, and
//! loaded libraries are never unloaded — unless it runs out of process: the `plugin-isolate`
//! crate runs a plugin in a worker process of its own, behind the same capability handles.

#[cfg(target_os = "linux")]
mod ahead;
#[cfg(target_os = "linux")]
mod build_id;
mod builder;
mod builtin;
pub mod config;
mod discover;
mod error;
mod gate;
mod host;
mod identity;
mod keyed;
mod kinds;
pub mod lazy;
pub mod limits;
mod load;
pub mod log_bridge;
mod map;
pub mod place;
mod policy;
mod read;
mod reason;
mod record;
mod registry;
mod report;
#[cfg(target_os = "linux")]
mod seal;
pub mod secret_file;
mod settings;
pub mod small_file;
#[cfg(target_os = "linux")]
mod stage;
#[cfg(target_os = "linux")]
mod store;
pub mod text;
pub mod toolchains;
pub mod trust;
mod watch;
#[cfg(windows)]
mod windows;
pub mod wire;

pub use builder::HostBuilder;
pub use builtin::BUILTIN_PATH;
pub use discover::{discover, DiscoverError, LIBRARY_SUFFIX, MAX_PLUGIN_FILES};
pub use error::PluginError;
pub use host::{Host, ScanMode};
pub use identity::HostIdentity;
pub use kinds::Kinds;
#[doc(hidden)]
pub use lazy::fuzz_index_cache;
pub use lazy::{IndexedPlugin, IndexedState, LazyError};
pub use map::LoadFrom;
pub use place::in_process::DEFAULT_HANG_WARNING;
pub use policy::{
    api_compatible, dependency_line, dependency_source, judge, judge_in_place, judge_with,
    same_rustc, toolchain_name, Check, CheckKind, CheckStatus, CrateDifference, Policy,
    PolicyError, PreparedHost, Severity, Verdict,
};
#[doc(hidden)]
#[cfg(unix)]
pub use read::read_provenance_counted;
#[doc(hidden)]
pub use read::{check_provenance_bytes, ReadCost};
pub use read::{
    open_candidate, read_provenance, read_provenance_any_platform, read_provenance_bytes,
    read_provenance_from, read_worker_provenance, ReadError,
};
pub use reason::ReasonCode;
pub use record::{LoadedPlugin, ReloadError};
pub use registry::{CapabilityInfo, LookupError, Registry};
pub use report::{PluginReport, Status, WorkerChoice};
pub use settings::PluginSettings;
pub use trust::{Lock, LockEntry, LockError, SignatureMode, SignatureStatus, TrustedKey};
pub use watch::{CallWatch, PLUGIN_EXIT_STATUS};

pub use plugin_api::provenance::Provenance;
pub use plugin_api::Builtin;
