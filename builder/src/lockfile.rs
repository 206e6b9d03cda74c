//! `Cargo.lock` files compared: the crates of a plugin's lock that the host's lock does not
//! have at that version — and so the builder image does not hold either (it holds the host's
//! crates at the host's versions) — each with the `cargo update` that moves it to the host's.

use std::path::Path;

use serde::Serialize;

/// The largest lockfile read.
const MAX_LOCKFILE: u64 = 16 << 20;

/// One `[[package]]` of a lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Locked {
    pub(crate) name: String,
    pub(crate) version: String,
    /// `registry+…`, `git+…`; `None` for a path package.
    pub(crate) source: Option<String>,
}

/// The packages of the lockfile at `path` (a regular file of at most 16 MiB).
pub(crate) fn read(path: &Path) -> Result<Vec<Locked>, String> {
    read_with(path, host::small_file::Links::Follow)
}

/// [`read`], a link at `path` followed or refused.
fn read_with(path: &Path, links: host::small_file::Links) -> Result<Vec<Locked>, String> {
    let lockfile = host::small_file::SmallFile {
        what: "Cargo.lock",
        limit: MAX_LOCKFILE,
        links,
    };
    let text = lockfile.read_to_string(path).map_err(|e| e.detail())?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let packages = doc
        .get("package")
        .and_then(|p| p.as_array_of_tables())
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some(Locked {
                        name: t.get("name")?.as_str()?.to_owned(),
                        version: t.get("version")?.as_str()?.to_owned(),
                        source: t.get("source").and_then(|s| s.as_str()).map(str::to_owned),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(packages)
}

/// A crate of a plugin's lock that the host's lock does not have at that version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageGap {
    /// The crate.
    pub name: String,
    /// The plugin's version of it.
    pub version: String,
    /// The versions the host's lock has (empty: the host has no such crate).
    pub host_versions: Vec<String>,
    /// The command, run in the crate's directory, that moves it to the host's version of the
    /// same series, when the host has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl std::fmt::Display for ImageGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)?;
        match (&self.command, self.host_versions.as_slice()) {
            (_, []) => write!(f, " (the host has no {})", self.name),
            (Some(command), versions) => {
                write!(f, " (the host has {}; run: {command})", versions.join(", "))
            }
            (None, versions) => write!(
                f,
                " (the host has {}, of another series: require one of those in Cargo.toml)",
                versions.join(", ")
            ),
        }
    }
}

/// Every package of `plugin` from a registry or git (not a path) whose version `host` does
/// not lock.
pub(crate) fn gaps(host: &[Locked], plugin: &[Locked]) -> Vec<ImageGap> {
    let mut out = Vec::new();
    for p in plugin.iter().filter(|p| p.source.is_some()) {
        let same_name: Vec<&Locked> = host.iter().filter(|h| h.name == p.name).collect();
        if same_name.iter().any(|h| h.version == p.version) {
            continue;
        }
        let series = |v: &str| {
            semver::Version::parse(v)
                .ok()
                .map(|v| crate::preflight::series(&v))
        };
        let to = same_name
            .iter()
            .filter(|h| {
                h.source == p.source
                    && series(&h.version).is_some()
                    && series(&h.version) == series(&p.version)
            })
            .filter_map(|h| semver::Version::parse(&h.version).ok())
            .max();
        out.push(ImageGap {
            name: p.name.clone(),
            version: p.version.clone(),
            host_versions: same_name.iter().map(|h| h.version.clone()).collect(),
            command: to
                .map(|to| crate::preflight::update_command(&p.name, &p.version, &to.to_string())),
        });
    }
    out
}

/// [`gaps`] of the lockfiles at `host` and `plugin`.
pub(crate) fn gaps_between(host: &Path, plugin: &Path) -> Result<Vec<ImageGap>, String> {
    let host_packages = read(host).map_err(|e| format!("{}: {e}", host.display()))?;
    // The crate's, as its build left it (a build may have put a link there).
    let plugin_packages = read_with(plugin, host::small_file::Links::Refuse)
        .map_err(|e| format!("{}: {e}", plugin.display()))?;
    Ok(gaps(&host_packages, &plugin_packages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(name: &str, version: &str, source: Option<&str>) -> Locked {
        Locked {
            name: name.into(),
            version: version.into(),
            source: source.map(str::to_owned),
        }
    }

    #[test]
    fn names_each_crate_the_host_lacks_with_the_update_that_fixes_it() {
        let reg = Some("registry+https://github.com/rust-lang/crates.io-index");
        let host = [
            locked("syn", "1.0.109", reg),
            locked("syn", "3.0.9", reg),
            locked("serde", "1.0.229", reg),
            locked("plugin-api", "0.1.0", None),
        ];
        let plugin = [
            locked("syn", "1.0.109", reg),
            locked("syn", "3.0.10", reg),
            locked("serde", "2.0.0", reg),
            locked("left-pad", "1.0.0", reg),
            locked("plugin-api", "0.1.0", None),
            locked("mine", "0.2.0", None),
        ];
        let gaps = gaps(&host, &plugin);
        let shown: Vec<String> = gaps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "syn 3.0.10 (the host has 1.0.109, 3.0.9; run: cargo update -p syn@3.0.10 --precise 3.0.9)",
                "serde 2.0.0 (the host has 1.0.229, of another series: require one of those in Cargo.toml)",
                "left-pad 1.0.0 (the host has no left-pad)",
            ]
        );
    }
}
