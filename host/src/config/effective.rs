//! Loading every layer, then building the effective configuration from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::files::{Candidate, LayerKind, Locations};
use super::origin::Valued;
use super::schema::{self, Layer};
use super::settings::{PluginSettings, Trust};
use crate::policy::{CheckKind, Policy, Severity};

/// The effective configuration: every layer read, merged key by key, each value with the
/// file, line and column that set it.
#[derive(Debug, Clone)]
pub struct Config {
    app: String,
    candidates: Vec<Candidate>,
    files: Vec<(LayerKind, PathBuf)>,
    project_dir: Option<PathBuf>,
    data: Vec<PathBuf>,
    search_paths: Option<Vec<Valued<PathBuf>>>,
    preset: Option<Valued<String>>,
    checks: BTreeMap<CheckKind, Valued<Severity>>,
    policy: Option<Policy>,
    trust: Trust,
    plugins: BTreeMap<String, PluginSettings>,
    workers: Vec<Valued<PathBuf>>,
}

impl Config {
    /// Reads and validates every layer [`Locations`] names, then merges them. The first bad
    /// file is an error, and then nothing is applied (no `Config` is returned).
    pub fn load(locations: &Locations) -> Result<Config, ConfigError> {
        let candidates = locations.candidates();
        let env = Locations::env_var(&locations.app);
        let mut layers = Vec::new();
        for c in &candidates {
            if !c.found && c.kind != LayerKind::Explicit {
                continue;
            }
            // An explicit relative file is relative to the working directory, like any
            // command-line path.
            let file = locations.cwd.join(&c.path);
            let text = super::CONFIG_FILE.read_to_string(&file).map_err(|source| {
                ConfigError::Unreadable {
                    file: file.clone(),
                    env: (c.kind == LayerKind::Explicit).then(|| env.clone()),
                    source,
                }
            })?;
            layers.push(schema::parse(
                c.kind,
                &file,
                &text,
                locations.home.as_deref(),
            )?);
        }
        let project_dir = layers
            .iter()
            .find(|l| matches!(l.kind, LayerKind::Project | LayerKind::Explicit))
            .and_then(|l| l.file.parent().map(Path::to_owned));
        let mut config = Config {
            app: locations.app.clone(),
            candidates,
            files: layers.iter().map(|l| (l.kind, l.file.clone())).collect(),
            project_dir,
            data: locations.data.clone(),
            search_paths: None,
            preset: None,
            checks: BTreeMap::new(),
            policy: None,
            trust: Trust::default(),
            plugins: BTreeMap::new(),
            workers: Vec::new(),
        };
        for layer in layers {
            config.apply(layer);
        }
        config.build_policies();
        Ok(config)
    }

    /// Lays one validated layer over the configuration so far.
    fn apply(&mut self, layer: Layer) {
        if layer.search_paths.is_some() {
            self.search_paths = layer.search_paths;
        }
        if layer.preset.is_some() {
            self.preset = layer.preset;
        }
        self.checks.extend(layer.checks);
        if let Some(keys) = layer.keys {
            self.trust.keys = keys;
        }
        if layer.signatures.is_some() {
            self.trust.signatures = layer.signatures;
        }
        if let Some(workers) = layer.workers {
            self.workers = workers;
        }
        for (name, settings) in layer.plugins {
            self.plugins.entry(name).or_default().merge(settings);
        }
    }

    fn build_policies(&mut self) {
        let build = |preset: Option<&str>, checks: &[&BTreeMap<CheckKind, Valued<Severity>>]| {
            let mut policy =
                Policy::preset(preset.unwrap_or("default")).expect("presets are validated");
            for (check, severity) in checks.iter().flat_map(|c| c.iter()) {
                policy
                    .set(*check, severity.value)
                    .expect("only adjustable checks are accepted");
            }
            policy
        };
        let global = (self.preset.is_some() || !self.checks.is_empty()).then(|| {
            build(
                self.preset.as_ref().map(|p| p.value.as_str()),
                &[&self.checks],
            )
        });
        for settings in self.plugins.values_mut() {
            settings.policy = match &settings.preset {
                Some(preset) => Some(build(Some(&preset.value), &[&settings.checks])),
                None if !settings.checks.is_empty() => Some(build(
                    self.preset.as_ref().map(|p| p.value.as_str()),
                    &[&self.checks, &settings.checks],
                )),
                None => None,
            };
        }
        self.policy = global;
    }

    /// The application name the files were looked for under.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The layer files read, lowest first.
    pub fn files(&self) -> impl Iterator<Item = (LayerKind, &Path)> {
        self.files.iter().map(|(k, p)| (*k, p.as_path()))
    }

    /// Every place a file was looked for, lowest layer first, found or not.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The directory of the project file (or of the explicit file, which takes its role):
    /// where the lock file goes and where `.plugins` is looked for. `None` without one.
    pub fn project_dir(&self) -> Option<&Path> {
        self.project_dir.as_deref()
    }

    /// The directories to look for plugins in, in order: `[search] paths` when configured
    /// (they replace the defaults), else [`Config::default_search_paths`].
    pub fn search_paths(&self) -> Vec<PathBuf> {
        match &self.search_paths {
            Some(paths) => paths.iter().map(|p| p.value.clone()).collect(),
            None => self.default_search_paths(),
        }
    }

    /// `[search] paths` as configured (resolved, each existing), with origins.
    pub fn configured_search_paths(&self) -> Option<&[Valued<PathBuf>]> {
        self.search_paths.as_deref()
    }

    /// The default plugin directories that exist, in order: `<project dir>/.plugins`, then
    /// `$XDG_DATA_HOME/<app>/plugins` (default `~/.local/share`), then
    /// `<dir>/<app>/plugins` for each `$XDG_DATA_DIRS` entry (default
    /// `/usr/local/share:/usr/share`). Missing ones are skipped without error.
    pub fn default_search_paths(&self) -> Vec<PathBuf> {
        self.default_search_paths_considered()
            .into_iter()
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Every default search path, whether it exists or not (to tell a user where plugins are
    /// looked for).
    pub fn default_search_paths_considered(&self) -> Vec<PathBuf> {
        self.project_dir
            .iter()
            .map(|d| d.join(".plugins"))
            .chain(self.data.iter().cloned())
            .collect()
    }

    /// The global policy when `[policy]` sets anything: its `preset` (default `default`) with
    /// its `checks` applied. `None` leaves the application's own choice.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// `[policy] preset`, with its origin.
    pub fn policy_preset(&self) -> Option<&Valued<String>> {
        self.preset.as_ref()
    }

    /// `[policy.checks]`, with origins.
    pub fn policy_checks(&self) -> &BTreeMap<CheckKind, Valued<Severity>> {
        &self.checks
    }

    /// The `[trust]` table.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// `[isolation] workers`: worker binaries built with other toolchains (resolved, each an
    /// existing file), with origins; the array of the last layer that set it. See
    /// [`crate::Host::with_worker`].
    pub fn workers(&self) -> &[Valued<PathBuf>] {
        &self.workers
    }

    /// The effective `[plugins.NAME]` settings, when any layer has that table.
    pub fn plugin(&self, name: &str) -> Option<&PluginSettings> {
        self.plugins.get(name)
    }

    /// Every configured plugin, by name.
    pub fn plugins(&self) -> impl Iterator<Item = (&str, &PluginSettings)> {
        self.plugins.iter().map(|(n, s)| (n.as_str(), s))
    }
}
