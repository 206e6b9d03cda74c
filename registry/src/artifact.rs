//! What a plugin build is in a registry: an OCI artifact manifest (the library as a layer, its
//! `.minisig` as a second one, annotations naming the build), and per tag an OCI index of
//! builds for different hosts and targets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{INDEX, MANIFEST};
use crate::reference::is_digest;
use crate::Error;

/// The artifact type of a plugin build.
pub const ARTIFACT_TYPE: &str = "application/vnd.plugin-host.plugin.v1";
/// The media type of the library layer.
pub const LIBRARY: &str = "application/vnd.plugin-host.library.v1";
/// The media type of the signature layer (a minisign `.minisig`).
pub const SIGNATURE: &str = "application/vnd.plugin-host.minisig.v1";
/// The empty config of an artifact (`{}`).
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The file name of a layer, as OCI tools show it.
pub const TITLE: &str = "org.opencontainers.image.title";

/// Annotation keys.
pub mod key {
    /// The plugin's name.
    pub const NAME: &str = "dev.plugin-host.plugin.name";
    /// The plugin's version.
    pub const VERSION: &str = "dev.plugin-host.plugin.version";
    /// The target triple it was built for.
    pub const TARGET: &str = "dev.plugin-host.target";
    /// The host application it was built for.
    pub const HOST_NAME: &str = "dev.plugin-host.host.name";
    /// That host's version.
    pub const HOST_VERSION: &str = "dev.plugin-host.host.version";
    /// The compiler that built it (`rustc --version`).
    pub const RUSTC: &str = "dev.plugin-host.rustc";
    /// `sha256:HEX` of its provenance's canonical JSON.
    pub const PROVENANCE: &str = "dev.plugin-host.provenance.sha256";
}

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The artifact type of the manifest it points to (in an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The platform (in an index), for tools that pick images by platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An OCI platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, `darwin`.
    pub os: String,
    /// `amd64`, `arm64`, ….
    pub architecture: String,
}

/// An OCI image manifest, as an artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    pub schema_version: u32,
    /// [`MANIFEST`].
    pub media_type: String,
    /// [`ARTIFACT_TYPE`].
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The empty config.
    pub config: Descriptor,
    /// The library, then the signature when there is one.
    pub layers: Vec<Descriptor>,
    /// The build's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index: the builds under one tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// [`INDEX`].
    pub media_type: String,
    /// One per build.
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index {
            schema_version: 2,
            media_type: INDEX.to_owned(),
            manifests: Vec::new(),
        }
    }

    /// Adds `build`, replacing the build for the same target and host (name and version).
    /// Whether one was replaced.
    pub fn put(&mut self, build: Descriptor) -> bool {
        let same = |d: &Descriptor| {
            [key::TARGET, key::HOST_NAME, key::HOST_VERSION]
                .iter()
                .all(|k| d.annotations.get(*k) == build.annotations.get(*k))
        };
        let replaced = self.manifests.iter().any(same);
        self.manifests.retain(|d| !same(d));
        self.manifests.push(build);
        replaced
    }
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

/// One build as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The manifest's descriptor.
    pub descriptor: Descriptor,
}

impl Build {
    fn get(&self, key: &str) -> &str {
        self.descriptor
            .annotations
            .get(key)
            .map_or("?", String::as_str)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.get(key::NAME)
    }

    /// Its target triple.
    pub fn target(&self) -> &str {
        self.get(key::TARGET)
    }

    /// The host it was built for: `NAME VERSION`.
    pub fn host(&self) -> String {
        format!(
            "{} {}",
            self.get(key::HOST_NAME),
            self.get(key::HOST_VERSION)
        )
    }

    /// `plugin VERSION for HOST VERSION on TARGET`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} for {} on {}",
            self.name(),
            self.get(key::VERSION),
            self.host(),
            self.target()
        )
    }
}

/// The builds a manifest or index at a reference holds: an index's entries, or the one
/// manifest itself.
pub fn builds(media_type: &str, bytes: &[u8], digest: &str) -> Result<Vec<Build>, Error> {
    let malformed = |detail: String| Error::Malformed {
        what: "the registry's manifest".to_owned(),
        detail,
    };
    match media_type {
        INDEX => {
            let index: Index =
                serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
            if index.manifests.len() > MAX_BUILDS {
                return Err(malformed(format!(
                    "an index of more than {MAX_BUILDS} builds"
                )));
            }
            // A registry's word for a digest becomes part of a URL and of a cache path: one
            // that is not a digest refuses the whole index.
            if let Some(bad) = index.manifests.iter().find(|d| !is_digest(&d.digest)) {
                return Err(malformed(format!(
                    "an entry's digest `{}` is not `sha256:` and 64 lowercase hex digits",
                    host::text::bounded(&bad.digest, 80)
                )));
            }
            Ok(index
                .manifests
                .into_iter()
                .filter(|d| d.media_type == MANIFEST)
                .map(|descriptor| Build { descriptor })
                .collect())
        }
        MANIFEST => {
            let manifest = parse_manifest(bytes).map_err(malformed)?;
            let descriptor = Descriptor {
                media_type: MANIFEST.to_owned(),
                digest: digest.to_owned(),
                size: bytes.len() as u64,
                annotations: manifest.annotations,
                artifact_type: manifest.artifact_type,
                platform: None,
            };
            Ok(vec![Build { descriptor }])
        }
        other => Err(malformed(format!(
            "media type `{}`, neither an OCI manifest nor an OCI index",
            host::text::printable(other)
        ))),
    }
}

/// The most builds an index may list.
pub const MAX_BUILDS: usize = 4096;

/// A manifest whose every descriptor names a digest (checked before any of them is used).
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if manifest.layers.len() > 16 {
        return Err("more than 16 layers".to_owned());
    }
    let descriptors = std::iter::once(&manifest.config).chain(&manifest.layers);
    if let Some(bad) = descriptors.clone().find(|d| !is_digest(&d.digest)) {
        return Err(format!(
            "a layer's digest `{}` is not `sha256:` and 64 lowercase hex digits",
            host::text::bounded(&bad.digest, 80)
        ));
    }
    Ok(manifest)
}

/// The OCI platform of a target triple, where it has one.
pub fn platform(target: &str) -> Option<Platform> {
    let architecture = match target.split('-').next()? {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" | "i586" => "386",
        "riscv64gc" => "riscv64",
        _ => return None,
    };
    let os = if target.contains("-linux") {
        "linux"
    } else if target.contains("-windows") {
        "windows"
    } else if target.contains("-darwin") {
        "darwin"
    } else {
        return None;
    };
    Some(Platform {
        os: os.to_owned(),
        architecture: architecture.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(target: &str, host_version: &str) -> Descriptor {
        let annotations = [
            (key::NAME, "hello"),
            (key::TARGET, target),
            (key::HOST_NAME, "plugin-host"),
            (key::HOST_VERSION, host_version),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Descriptor {
            media_type: MANIFEST.to_owned(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            annotations,
            artifact_type: Some(ARTIFACT_TYPE.to_owned()),
            platform: platform(target),
        }
    }

    #[test]
    fn an_index_keeps_one_build_per_target_and_host() {
        let mut index = Index::new();
        assert!(!index.put(build("x86_64-unknown-linux-gnu", "0.1.0")));
        assert!(!index.put(build("x86_64-unknown-linux-gnu", "0.2.0")));
        assert!(!index.put(build("x86_64-pc-windows-gnu", "0.2.0")));
        let mut again = build("x86_64-unknown-linux-gnu", "0.2.0");
        again.size = 2;
        assert!(index.put(again));
        assert_eq!(index.manifests.len(), 3);
        let bytes = serde_json::to_vec(&index).unwrap();
        let builds = super::builds(INDEX, &bytes, "sha256:x").unwrap();
        assert_eq!(builds.len(), 3);
        assert_eq!(
            builds[2].describe(),
            "hello ? for plugin-host 0.2.0 on x86_64-unknown-linux-gnu"
        );
        assert_eq!(
            platform("x86_64-pc-windows-gnu"),
            Some(Platform {
                os: "windows".into(),
                architecture: "amd64".into()
            })
        );
        let e = super::builds("text/html", b"<html>", "sha256:x").unwrap_err();
        assert!(e
            .to_string()
            .contains("neither an OCI manifest nor an OCI index"));
    }
}
