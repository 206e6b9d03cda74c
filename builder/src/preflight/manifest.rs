//! What a plugin crate's manifests say: the package (through `cargo metadata`, so inherited
//! workspace fields resolve as cargo resolves them), whether it is a plugin at all, and the
//! profile settings a build would use.

use std::path::{Path, PathBuf};

use plugin_api::provenance::Profile;
use serde_json::Value;
use toml_edit::DocumentMut;

use super::PreflightError;
use crate::cargo::{self, ToolError};

/// A plugin crate, as its manifests describe it.
#[derive(Debug, Clone)]
pub(crate) struct PluginCrate {
    pub(crate) name: String,
    pub(crate) version: semver::Version,
    pub(crate) manifest: PathBuf,
    /// The workspace root: where `Cargo.lock` and the `[profile.*]` tables live.
    pub(crate) root: PathBuf,
    /// The package's features a plain build enables (`default`, expanded).
    pub(crate) features: Vec<String>,
}

impl PluginCrate {
    pub(crate) fn lockfile(&self) -> PathBuf {
        self.root.join("Cargo.lock")
    }

    /// Reads the crate in `dir` and checks it is a plugin: a `cdylib` with the provenance
    /// recorder in its build script.
    pub(crate) fn read(dir: &Path) -> Result<PluginCrate, PreflightError> {
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(PreflightError::NoManifest(dir.to_owned()));
        }
        let manifest = manifest
            .canonicalize()
            .map_err(|source| PreflightError::Io {
                path: manifest.clone(),
                source,
            })?;
        let text = cargo::cargo_offline_first(
            dir,
            &[
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
                &manifest.to_string_lossy(),
            ],
        )
        .map_err(|source| match source {
            ToolError::Failed { .. } | ToolError::Output { .. } => PreflightError::Manifest {
                path: manifest.clone(),
                source,
            },
            // Not the manifest's fault: the toolchain or the program.
            other => PreflightError::Tool(other),
        })?;
        let metadata: Value =
            serde_json::from_str(&text).map_err(|e| PreflightError::Metadata(e.to_string()))?;
        let package = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
            .ok_or_else(|| PreflightError::NotAPackage(manifest.clone()))?;
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let version = package["version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| PreflightError::Metadata(format!("{name} has no version")))?;
        let targets = package["targets"].as_array().cloned().unwrap_or_default();
        let kinds = |t: &Value, key: &str| -> Vec<String> {
            t[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        };
        let lib = targets
            .iter()
            .find(|t| kinds(t, "kind").iter().any(|k| k.ends_with("lib")));
        let crate_types = lib.map(|t| kinds(t, "crate_types")).unwrap_or_default();
        if !crate_types.iter().any(|k| k == "cdylib") {
            return Err(PreflightError::NotACdylib {
                name,
                crate_types: crate_types.join(", "),
            });
        }
        let build_script = targets
            .iter()
            .find(|t| kinds(t, "kind").iter().any(|k| k == "custom-build"))
            .and_then(|t| t["src_path"].as_str())
            .map(PathBuf::from);
        // Read as any file a crate names: a regular file, within bounds, never waiting on a
        // FIFO (`build = "/dev/zero"` is no build script).
        const BUILD_SCRIPT: host::small_file::SmallFile = host::small_file::SmallFile {
            what: "build script",
            limit: 16 << 20,
            links: host::small_file::Links::Follow,
        };
        let records = build_script
            .as_deref()
            .and_then(|p| BUILD_SCRIPT.read_to_string(p).ok())
            .is_some_and(|text| calls_recorder(&text));
        if !records {
            return Err(PreflightError::NoRecorder { name, build_script });
        }
        let links_api = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == "plugin-api" && d["kind"].is_null());
        if !links_api {
            return Err(PreflightError::NoPluginApi(name));
        }
        let root = metadata["workspace_root"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.to_owned());
        Ok(PluginCrate {
            features: default_features(&package["features"]),
            name,
            version,
            manifest,
            root,
        })
    }

    /// The profile a build with cargo profile `cargo_profile` (`dev`, `release`) would
    /// record: the root manifest's `[profile.*]` settings over cargo's defaults.
    pub(crate) fn profile(&self, cargo_profile: &str) -> Result<Profile, PreflightError> {
        let doc = read_toml(&self.root.join("Cargo.toml"))?;
        let table = doc
            .get("profile")
            .and_then(|p| p.get(cargo_profile))
            .and_then(|t| t.as_table_like());
        let release = cargo_profile == "release";
        let mut profile = Profile {
            name: if release { "release" } else { "debug" }.into(),
            opt_level: if release { "3" } else { "0" }.into(),
            debug_assertions: !release,
            panic: "unwind".into(),
        };
        if let Some(table) = table {
            if let Some(v) = table.get("opt-level").and_then(|v| v.as_value()) {
                profile.opt_level = match (v.as_integer(), v.as_str()) {
                    (Some(n), _) => n.to_string(),
                    (_, Some(s)) => s.to_owned(),
                    _ => profile.opt_level,
                };
            }
            if let Some(b) = table.get("debug-assertions").and_then(|v| v.as_bool()) {
                profile.debug_assertions = b;
            }
            if let Some(s) = table.get("panic").and_then(|v| v.as_str()) {
                profile.panic = s.to_owned();
            }
        }
        Ok(profile)
    }
}

/// Whether a build script calls the provenance recorder.
fn calls_recorder(build_rs: &str) -> bool {
    build_rs.contains("record()") && build_rs.contains("plugin_api")
}

/// The package features `default` turns on, transitively.
fn default_features(features: &Value) -> Vec<String> {
    let mut on: Vec<String> = Vec::new();
    let mut todo = vec!["default".to_owned()];
    while let Some(f) = todo.pop() {
        let Some(implied) = features[&f].as_array() else {
            continue;
        };
        if !on.contains(&f) {
            on.push(f.clone());
        }
        for i in implied.iter().filter_map(Value::as_str) {
            if !i.contains(':') && !i.contains('/') && !on.iter().any(|o| o == i) {
                todo.push(i.to_owned());
            }
        }
    }
    on.sort();
    on
}

pub(crate) fn read_toml(path: &Path) -> Result<DocumentMut, PreflightError> {
    let text = std::fs::read_to_string(path).map_err(|source| PreflightError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.parse()
        .map_err(|e: toml_edit::TomlError| PreflightError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// The rustup toolchain file that applies in `dir`, searching upward as rustup does.
pub(crate) fn toolchain_file(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(|d| {
        ["rust-toolchain", "rust-toolchain.toml"]
            .iter()
            .map(|f| d.join(f))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_and_features() {
        assert!(calls_recorder(
            "fn main() {\n    plugin_api::build::record();\n}\n"
        ));
        assert!(!calls_recorder("fn main() {}\n"));
        let features = serde_json::json!({
            "default": ["fast", "dep:log"], "fast": ["simd", "serde/std"], "simd": [], "slow": []
        });
        assert_eq!(default_features(&features), ["default", "fast", "simd"]);
    }
}
