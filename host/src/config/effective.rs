//! Loading every layer, then building the effective configuration from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::files::{Candidate, LayerKind, Locations};
use super::origin::Valued;
use super::schema::{self, Layer};
use super::settings::{PluginSettings, Trust};
use super::trusted::{self, IgnoredFile};
use crate::policy::{CheckKind, Policy, Severity};

/// The effective configuration: every layer read, merged key by key, each value with the
/// file, line and column that set it.
#[derive(Debug, Clone)]
pub struct Config {
    app: String,
    candidates: Vec<Candidate>,
    files: Vec<(LayerKind, PathBuf)>,
    ignored: Vec<IgnoredFile>,
    notices: Vec<String>,
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
        let mut ignored = Vec::new();
        for c in &candidates {
            if !c.found && c.kind != LayerKind::Explicit {
                continue;
            }
            // An explicit relative file is relative to the working directory, like any
            // command-line path.
            let file = locations.cwd.join(&c.path);
            let unreadable = |source| ConfigError::Unreadable {
                file: file.clone(),
                env: (c.kind == LayerKind::Explicit).then(|| env.clone()),
                source,
            };
            let text = if c.kind == LayerKind::Project {
                // Found by walking up: someone else's until the user trusts it.
                let used = match trusted::read_project(&file).map_err(unreadable)? {
                    Ok(text) => {
                        trusted::record_refusal(locations, &file, &text)?.map_or(Ok(text), Err)
                    }
                    Err(why) => Err(why),
                };
                match used {
                    Ok(text) => text,
                    Err(why) => {
                        ignored.push(IgnoredFile { path: file, why });
                        continue;
                    }
                }
            } else {
                super::CONFIG_FILE
                    .read_to_string(&file)
                    .map_err(unreadable)?
            };
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
            ignored,
            notices: Vec::new(),
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
            if layer.kind == LayerKind::Project {
                config.apply_project(layer);
            } else {
                config.apply(layer);
            }
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

    /// Lays the project layer over the system and user layers, whose trust settings are a
    /// floor: the project's keys are added after theirs; its workers, a signature mode or a
    /// plugin's isolation looser than theirs, and a plugin they disabled (or kept from
    /// replacing a builtin) turned back on, are not applied (a notice says so); its `path` for a
    /// plugin they exempt from signatures ends the exemption.
    fn apply_project(&mut self, mut layer: Layer) {
        let floor = self.trust.mode();
        let floor_origin = self
            .trust
            .signatures
            .as_ref()
            .map(|s| s.origin.to_string())
            .or_else(|| {
                self.trust
                    .keys
                    .first()
                    .map(|k| format!("the keys trusted at {}", k.origin))
            })
            .unwrap_or_default();
        if let Some(keys) = layer.keys.take() {
            for key in keys {
                if !self.trust.keys.iter().any(|k| k.value == key.value) {
                    self.trust.keys.push(key);
                }
            }
        }
        // Worker binaries run as trusted code, with no signature or lock to check them: a
        // project (whose binaries a `git pull` may change) cannot name them.
        if let Some(workers) = layer.workers.take() {
            if let Some(first) = workers.first() {
                self.notices.push(format!(
                    "{}: `[isolation] workers` is not applied: a worker binary runs as trusted \
                     code, unchecked, so only the system and user files (or --worker) name \
                     them; move it to your user file if you trust it",
                    first.origin
                ));
            }
        }
        if let Some(mode) = layer.signatures.take() {
            if mode.value < floor {
                self.notices.push(looser(
                    &mode.origin,
                    &format!("[trust] signatures = \"{}\"", mode.value),
                    &format!("`{floor}` ({floor_origin})"),
                ));
            } else {
                self.trust.signatures = Some(mode);
            }
        }
        // The host-wide mode once the project's (tightening) mode is applied: a plugin's mode
        // below it is an exemption.
        let global = self.trust.mode().max(floor);
        for (name, settings) in &mut layer.plugins {
            // An exemption set below follows the file set below: a project's `path` for the
            // plugin ends it (else the project would move the user's exemption onto a file of
            // its own).
            if let (Some(path), Some(entry)) = (&settings.path, self.plugins.get_mut(name)) {
                if let Some(own) = entry.signatures.take_if(|own| own.value < global) {
                    self.notices.push(format!(
                        "{}: `[plugins.{name}] path` is applied, and the exemption \
                         `signatures = \"{}\"` ({}) does not follow it to another file: that \
                         file is held to `{global}`",
                        path.origin, own.value, own.origin
                    ));
                }
            }
            let existing = self.plugins.get(name);
            if let Some(mode) = &settings.signatures {
                let (own, origin) = match existing.and_then(|e| e.signatures.as_ref()) {
                    Some(set) => (set.value, set.origin.to_string()),
                    None => (floor, floor_origin.clone()),
                };
                if mode.value < own {
                    self.notices.push(looser(
                        &mode.origin,
                        &format!("[plugins.{name}] signatures = \"{}\"", mode.value),
                        &format!("`{own}` ({origin})"),
                    ));
                    settings.signatures = None;
                }
            }
            // Switches the files below turned off stay off.
            for (key, theirs, mine) in [
                (
                    "enabled",
                    &mut settings.enabled,
                    existing.and_then(|e| e.enabled.as_ref()),
                ),
                (
                    "replace-builtin",
                    &mut settings.replace_builtin,
                    existing.and_then(|e| e.replace_builtin.as_ref()),
                ),
            ] {
                if let (Some(on), Some(off)) = (theirs.as_ref(), mine) {
                    if on.value && !off.value {
                        self.notices.push(looser(
                            &on.origin,
                            &format!("[plugins.{name}] {key} = true"),
                            &format!("`false` ({})", off.origin),
                        ));
                        *theirs = None;
                    }
                }
            }
            if let (Some(mode), Some(set)) = (
                &settings.isolation,
                existing.and_then(|e| e.isolation.as_ref()),
            ) {
                if mode.value < set.value {
                    self.notices.push(looser(
                        &mode.origin,
                        &format!("[plugins.{name}] isolation = \"{}\"", mode.value),
                        &format!("`{}` ({})", set.value, set.origin),
                    ));
                    settings.isolation = None;
                }
            }
        }
        self.apply(layer);
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

    /// The project file that was found but not used, and why: not trusted by the user, changed
    /// since, or owned by another user. Tell the user (once), with
    /// [`IgnoredFile::message`].
    pub fn ignored(&self) -> &[IgnoredFile] {
        &self.ignored
    }

    /// The project file's settings that were not applied because they would have lowered a
    /// trust setting of the system or user files, each naming both places.
    pub fn notices(&self) -> &[String] {
        &self.notices
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
    /// `plugin_isolate::Isolation::worker`.
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

/// A notice that `what`, set at `origin` in the project file, is looser than `floor`.
fn looser(origin: &super::origin::Origin, what: &str, floor: &str) -> String {
    format!(
        "{origin}: `{what}` is not applied: it is looser than {floor}, and a project file may \
         add keys and tighten trust settings, never loosen them"
    )
}
