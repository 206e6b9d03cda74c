//! Where configuration files are looked for, and reading them.
//!
//! Everything here is decided from a [`Locations`] value, built from the process environment by
//! [`Locations::from_env`] or by hand (tests never touch the real `~` or `/etc`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The record's name in `$XDG_DATA_HOME/<app>/`.
pub const TRUSTED_PROJECTS_FILE: &str = "trusted-projects";

use serde::Serialize;

/// Which layer a file is. Layers apply in this order, each overriding the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    /// `<dir>/<app>/config.toml` for each `$XDG_CONFIG_DIRS` entry (default `/etc/xdg`).
    System,
    /// `$XDG_CONFIG_HOME/<app>/config.toml` (default `~/.config`).
    User,
    /// `<app>.toml` in the working directory or the nearest parent that has one.
    Project,
    /// The file named by the app's environment variable (`PLUGIN_HOST_CONFIG`): the only layer.
    Explicit,
}

impl LayerKind {
    /// `system`, `user`, `project` or `explicit`.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::System => "system",
            LayerKind::User => "user",
            LayerKind::Project => "project",
            LayerKind::Explicit => "explicit",
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a project file found by walking up needs the user's trust (see the module
/// `trusted`): a project file may come with a cloned repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectTrust {
    /// Used only when this record lists it with its present contents
    /// ([`crate::config::trust_project`]). What [`Locations::from_env`] sets:
    /// `$XDG_DATA_HOME/<app>/trusted-projects`.
    Recorded(PathBuf),
    /// Never used: there is nowhere to record trust (no `$XDG_DATA_HOME`, no `$HOME`).
    Never,
    /// Used as found (still never when another user owns it): for an application that chose
    /// the directory itself, and tests. What [`Locations::project_only`] sets.
    Implicit,
}

/// One place a configuration file was looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Its layer.
    pub kind: LayerKind,
    /// The file (for the project layer when none was found: `<cwd>/<app>.toml`, standing for
    /// the walk up from there).
    pub path: PathBuf,
    /// Whether it exists (and so is read).
    pub found: bool,
}

/// Where an application's configuration files and default plugin directories are.
///
/// Fields are public so that tests and embedding applications can point every layer
/// somewhere else; [`Locations::from_env`] fills them the XDG way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The application's name: `plugin-host` for the CLI.
    pub app: String,
    /// The file named by the environment variable ([`Locations::env_var`]); when set, it is the
    /// only layer. A relative path is relative to [`Locations::cwd`].
    pub explicit: Option<PathBuf>,
    /// System files, **lowest priority first** (the reverse of `$XDG_CONFIG_DIRS` order).
    pub system: Vec<PathBuf>,
    /// The user file.
    pub user: Option<PathBuf>,
    /// The directory the project file is looked for from (walking up).
    pub cwd: PathBuf,
    /// Default plugin directories other than the project's `.plugins`, in search order:
    /// `$XDG_DATA_HOME/<app>/plugins`, then `<dir>/<app>/plugins` for each `$XDG_DATA_DIRS`
    /// entry.
    pub data: Vec<PathBuf>,
    /// The user's home directory (`$HOME`, absolute): what a path starting with `~/` in a
    /// configuration file starts from.
    pub home: Option<PathBuf>,
    /// The application's cache directory: `$XDG_CACHE_HOME/<app>`, else `~/.cache/<app>`.
    pub cache: Option<PathBuf>,
    /// Whether the project file needs the user's trust, and where trust is recorded.
    pub project_trust: ProjectTrust,
}

impl Locations {
    /// Nothing but the project file (looked for from `cwd`): no system, user or data
    /// directories, no explicit file; the project file used without a record of trust
    /// ([`ProjectTrust::Implicit`]). A base for tests and for applications that set their own
    /// places.
    pub fn project_only(app: &str, cwd: impl Into<PathBuf>) -> Self {
        Locations {
            app: app.to_owned(),
            explicit: None,
            system: Vec::new(),
            user: None,
            cwd: cwd.into(),
            data: Vec::new(),
            home: None,
            cache: None,
            project_trust: ProjectTrust::Implicit,
        }
    }

    /// The locations for `app` from this process's environment (`HOME`, `XDG_CONFIG_HOME`,
    /// `XDG_CONFIG_DIRS`, `XDG_DATA_HOME`, `XDG_DATA_DIRS` and [`Locations::env_var`]), the
    /// project file being looked for from `cwd` upwards.
    pub fn from_env(app: &str, cwd: impl Into<PathBuf>) -> Self {
        Self::from_vars(app, cwd, |name| std::env::var_os(name))
    }

    /// [`Locations::from_env`] with the environment given by `var`.
    ///
    /// Per the XDG base directory specification, empty variables count as unset and relative
    /// paths in them are ignored. Without `HOME` (and without the `XDG_*_HOME` variable) there
    /// is no user file and no user data directory.
    pub fn from_vars(
        app: &str,
        cwd: impl Into<PathBuf>,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> Self {
        let cwd = cwd.into();
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let absolute = |p: PathBuf| p.is_absolute().then_some(p);
        let home = get("HOME").map(PathBuf::from).and_then(absolute);
        let base_home = |name: &str, under_home: &str| {
            get(name)
                .map(PathBuf::from)
                .and_then(absolute)
                .or_else(|| home.as_ref().map(|h| h.join(under_home)))
        };
        let dirs = |name: &str, default: &str| -> Vec<PathBuf> {
            let value = get(name).unwrap_or_else(|| default.into());
            std::env::split_paths(&value).filter_map(absolute).collect()
        };

        let config_home = base_home("XDG_CONFIG_HOME", ".config");
        let data_home = base_home("XDG_DATA_HOME", ".local/share");
        let cache = base_home("XDG_CACHE_HOME", ".cache").map(|d| d.join(app));
        let project_trust = match &data_home {
            Some(d) => ProjectTrust::Recorded(d.join(app).join(TRUSTED_PROJECTS_FILE)),
            None => ProjectTrust::Never,
        };
        let mut system: Vec<PathBuf> = dirs("XDG_CONFIG_DIRS", "/etc/xdg")
            .into_iter()
            .map(|d| d.join(app).join("config.toml"))
            .collect();
        system.reverse();
        let data = data_home
            .into_iter()
            .chain(dirs("XDG_DATA_DIRS", "/usr/local/share:/usr/share"))
            .map(|d| d.join(app).join("plugins"))
            .collect();
        Locations {
            app: app.to_owned(),
            // Relative to the working directory, like any command-line path.
            explicit: get(&Self::env_var(app)).map(|f| cwd.join(f)),
            system,
            user: config_home.map(|d| d.join(app).join("config.toml")),
            cwd,
            data,
            home,
            cache,
            project_trust,
        }
    }

    /// The environment variable naming one configuration file explicitly: the app name
    /// uppercased, `-` → `_`, then `_CONFIG` (`PLUGIN_HOST_CONFIG` for `plugin-host`).
    pub fn env_var(app: &str) -> String {
        let mut var: String = app
            .chars()
            .map(|c| match c {
                '-' | '.' | ' ' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        var.push_str("_CONFIG");
        var
    }

    /// The project file's name: `<app>.toml`.
    pub fn project_file_name(&self) -> String {
        format!("{}.toml", self.app)
    }

    /// The nearest `<app>.toml` in [`Locations::cwd`] or one of its parents.
    pub fn project_file(&self) -> Option<PathBuf> {
        let name = self.project_file_name();
        self.cwd
            .ancestors()
            .map(|dir| dir.join(&name))
            .find(|file| file.is_file())
    }

    /// Every place a file was looked for, lowest layer first; [`Candidate::found`] tells which
    /// exist. With an explicit file, only that one.
    pub fn candidates(&self) -> Vec<Candidate> {
        if let Some(file) = &self.explicit {
            return vec![Candidate {
                kind: LayerKind::Explicit,
                path: file.clone(),
                found: self.cwd.join(file).is_file(),
            }];
        }
        let mut out: Vec<Candidate> = self
            .system
            .iter()
            .map(|f| candidate(LayerKind::System, f))
            .chain(self.user.iter().map(|f| candidate(LayerKind::User, f)))
            .collect();
        out.push(match self.project_file() {
            Some(path) => Candidate {
                kind: LayerKind::Project,
                path,
                found: true,
            },
            None => Candidate {
                kind: LayerKind::Project,
                path: self.cwd.join(self.project_file_name()),
                found: false,
            },
        });
        out
    }
}

fn candidate(kind: LayerKind, path: &Path) -> Candidate {
    Candidate {
        kind,
        path: path.to_owned(),
        // A path that exists but is not a file is still "found": reading it reports why it
        // cannot be used, instead of silently skipping a layer the user meant to have.
        found: path.exists(),
    }
}
