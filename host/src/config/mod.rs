//! Configuration: layered TOML files, every value with the file, line and column that set it.
//!
//! # Layers
//!
//! The embedding application chooses its name, `<app>` (`plugin-host` for the CLI). Files are
//! read in this order, each later one overriding the earlier ones **key by key**:
//!
//! 1. **system**: `<dir>/<app>/config.toml` for each entry of `$XDG_CONFIG_DIRS` (default
//!    `/etc/xdg`); as the XDG specification says, an earlier entry matters more, so the last
//!    entry is read first.
//! 2. **user**: `$XDG_CONFIG_HOME/<app>/config.toml` (default `~/.config`).
//! 3. **project**: `<app>.toml` in the working directory or the nearest parent directory that
//!    has one. Its directory is the *project directory*: the lock file goes there, and its
//!    `.plugins` directory is a default search path.
//!
//! # Trust
//!
//! A project file is someone else's until the user says otherwise: found by walking up, it
//! may come with a cloned repository. It is used only once the user trusts it
//! ([`trust_project`], recorded with its sha256 under [`ProjectTrust::Recorded`]; a changed
//! file must be trusted again), and never when another user than root owns it or its
//! directory. Until then it is ignored whole — plugins, search paths, settings — and
//! [`Config::ignored`] says so. And even a trusted project file cannot lower the trust
//! settings of the system and user files: it may add `[trust] keys` and `[isolation] workers`
//! (after the user's) and tighten `signatures` and a plugin's `isolation`, never loosen them
//! ([`Config::notices`] names each setting that was held to the floor).
//!
//! Missing files are skipped. When the environment variable named after the app is set
//! (`PLUGIN_HOST_CONFIG` for `plugin-host`: the name uppercased, `-` → `_`, then `_CONFIG`;
//! see [`Locations::env_var`]), the file it names is the **only** layer — no system, user or
//! project file is read — and it takes the project file's role (its directory is the project
//! directory). That file must exist. Command-line flags override everything (the application
//! applies them over the [`Config`]).
//!
//! Merging: tables merge recursively, including a plugin's `config` table; arrays and scalars
//! are replaced whole (a project's `[search] paths` replaces the user's list, it does not
//! extend it). Relative paths are resolved against the directory of the file that says them;
//! `~` and `~/…` against the home directory ([`Locations::home`]).
//!
//! Every layer is read and validated before any is applied: the first bad file is a
//! [`ConfigError`] naming `file:line:column`, and no [`Config`] at all comes back.
//!
//! # Schema
//!
//! ```toml
//! [search]
//! paths = ["plugins", "/opt/shared-plugins"]   # replace the default search paths; must exist
//!
//! [policy]
//! preset = "strict"                            # "default" | "strict"
//! [policy.checks]
//! rustc = "warn"                               # rustc, panic-strategy, profile, dependencies:
//!                                              # "ignore" | "warn" | "fail"
//! [trust]
//! keys = ["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"]
//! signatures = "require"                       # "ignore" | "warn" | "require"
//!
//! [isolation]
//! workers = ["workers/plugin-host-worker-nightly"]  # worker binaries built with other
//!                                              # toolchains (Isolation::worker); must exist
//!
//! [plugins.redact]                             # NAME: the plugin's cargo package name
//! path = "vendor/libredact.so"                 # a plugin file; must exist
//! enabled = true
//! policy = "default"                           # this plugin's preset
//! checks = { profile = "ignore" }              # this plugin's checks
//! signatures = "warn"                          # this plugin's signature mode
//! replace-builtin = false                      # may replace a builtin of the same name
//! isolation = "in-process"                     # or "process": a worker of its own
//! [plugins.redact.config]                      # any TOML: handed to the plugin as TOML text
//! replacement = "***"
//! ```
//!
//! # Search paths
//!
//! `[search] paths` replaces the defaults, which are, in order and when they exist:
//! `<project dir>/.plugins`, `$XDG_DATA_HOME/<app>/plugins` (default `~/.local/share`), and
//! `<dir>/<app>/plugins` for each `$XDG_DATA_DIRS` entry (default
//! `/usr/local/share:/usr/share`). See [`Config::search_paths`].
//!
//! ```no_run
//! use host::config::{Config, Locations};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(&Locations::from_env("my-app", std::env::current_dir()?))?;
//! for dir in config.search_paths() {
//!     println!("plugins in {}", dir.display());
//! }
//! if let Some(redact) = config.plugin("redact") {
//!     println!("redact gets {:?}", redact.config_text());
//! }
//! # Ok(()) }
//! ```

mod effective;
mod entries;
mod error;
mod files;
mod origin;
mod schema;
mod settings;
mod table;
pub(crate) mod trusted;

pub use effective::Config;
pub use entries::Entry;
pub use error::ConfigError;
pub use files::{Candidate, LayerKind, Locations, ProjectTrust};
pub use origin::{Origin, Valued};
pub use schema::suggest;
pub use settings::{Isolation, PluginSettings, Trust};
pub use table::{ConfigLeaf, PluginConfig};
pub use trusted::{trust_project, untrust_project, IgnoredFile, Untrusted, TRUSTED_PROJECTS_FILE};

/// The largest configuration file read, in bytes (1 MiB): a larger one is a
/// [`ConfigError::Unreadable`] naming the file and this limit. Reading is linear in the size
/// (a 1 MiB file parses in well under 100 ms: `cargo bench --bench config`).
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// How configuration files are read: regular files only (a FIFO or a device is an error, not a
/// hang), at most [`MAX_CONFIG_LEN`] bytes; a symbolic link is followed, as dotfile managers
/// make them.
pub(crate) const CONFIG_FILE: crate::small_file::SmallFile = crate::small_file::SmallFile {
    what: "configuration file",
    limit: MAX_CONFIG_LEN,
    links: crate::small_file::Links::Follow,
};

#[cfg(test)]
mod tests;
