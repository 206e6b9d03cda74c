//! `publish`: a plugin file as a build in a tag's index of builds.

use std::fs;
use std::path::Path;

use crate::artifact::{self, key, Build, Descriptor, Index, Manifest};
use crate::client::{self, Client, INDEX, MANIFEST};
use crate::{Error, Reference, MAX_LIBRARY, MAX_SIGNATURE};

/// What [`publish`] did.
#[derive(Debug)]
pub struct Published {
    /// The build's manifest digest.
    pub manifest: String,
    /// The tag's index digest.
    pub index: String,
    /// Whether a build for the same target and host was replaced.
    pub replaced: bool,
    /// The build.
    pub build: String,
}

/// Publishes the plugin `file` (and `file.minisig` when it exists) as a build for the host
/// `host_name` `host_version`, adding it to the index at `reference` (a tag).
pub fn publish(
    file: &Path,
    reference: &Reference,
    host_name: &str,
    host_version: &str,
    insecure: bool,
) -> Result<Published, Error> {
    if reference.is_digest() {
        return Err(Error::BadReference {
            text: reference.to_string(),
            why: "publish to a tag, not a digest".to_owned(),
        });
    }
    let provenance = host::read_provenance(file).map_err(|e| Error::NotAPlugin {
        reference: file.display().to_string(),
        detail: e.to_string(),
    })?;
    let io = |what: String| move |source| Error::Io { what, source };
    let len = fs::metadata(file)
        .map_err(io(format!("reading {}", file.display())))?
        .len();
    if len > MAX_LIBRARY {
        return Err(Error::TooLarge {
            what: file.display().to_string(),
            limit: MAX_LIBRARY,
        });
    }
    let library = fs::read(file).map_err(io(format!("reading {}", file.display())))?;
    // The bytes published are the bytes whose provenance the annotations describe.
    if host::read_provenance_bytes(file, &library).ok().as_ref() != Some(&provenance) {
        return Err(Error::NotAPlugin {
            reference: file.display().to_string(),
            detail: "it changed while it was being read; publish it again".to_owned(),
        });
    }
    let signature_path = host::trust::signature_path(file);
    let signature = match fs::symlink_metadata(&signature_path) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_SIGNATURE => Some(
            fs::read(&signature_path)
                .map_err(io(format!("reading {}", signature_path.display())))?,
        ),
        Ok(_) => {
            return Err(Error::NotAPlugin {
                reference: signature_path.display().to_string(),
                detail: format!("not a regular file of at most {MAX_SIGNATURE} bytes"),
            })
        }
        Err(_) => None,
    };
    let client = Client::new(reference, insecure)?;
    let repository = &reference.repository;
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned());
    let config = client.put_blob(repository, b"{}")?;
    let titled = |media_type: &str, digest: String, size: usize, title: String| Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size: size as u64,
        annotations: [(artifact::TITLE.to_owned(), title)].into_iter().collect(),
        artifact_type: None,
        platform: None,
    };
    let mut layers = vec![titled(
        artifact::LIBRARY,
        client.put_blob(repository, &library)?,
        library.len(),
        file_name.clone(),
    )];
    if let Some(signature) = &signature {
        let digest = client.put_blob(repository, signature)?;
        layers.push(titled(
            artifact::SIGNATURE,
            digest,
            signature.len(),
            format!("{file_name}.minisig"),
        ));
    }
    let annotations: std::collections::BTreeMap<String, String> = [
        (key::NAME, provenance.name.clone()),
        (key::VERSION, provenance.version.to_string()),
        (key::TARGET, provenance.target.clone()),
        (key::HOST_NAME, host_name.to_owned()),
        (key::HOST_VERSION, host_version.to_owned()),
        (key::RUSTC, provenance.rustc.short()),
        (
            key::PROVENANCE,
            host::trust::hash::provenance_digest(&provenance),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST.to_owned(),
        artifact_type: Some(artifact::ARTIFACT_TYPE.to_owned()),
        config: Descriptor {
            media_type: artifact::EMPTY.to_owned(),
            digest: config,
            size: 2,
            annotations: Default::default(),
            artifact_type: None,
            platform: None,
        },
        layers,
        annotations: annotations.clone(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let digest = client::sha256_digest(&bytes);
    client.put_manifest(&reference.at_digest(&digest)?, &bytes, MANIFEST)?;
    // The tag's index: the builds already there, this one added (or replacing the build for
    // the same target and host).
    let mut index = match client.manifest(reference) {
        Ok(fetched) if fetched.media_type == INDEX => {
            serde_json::from_slice::<Index>(&fetched.bytes).map_err(|e| Error::Malformed {
                what: reference.to_string(),
                detail: e.to_string(),
            })?
        }
        Ok(fetched) => {
            // One build published without an index (by another tool): kept as an entry.
            let mut index = Index::new();
            for build in artifact::builds(&fetched.media_type, &fetched.bytes, &fetched.digest)? {
                index.put(build.descriptor);
            }
            index
        }
        Err(Error::NotFound { .. }) => Index::new(),
        Err(e) => return Err(e),
    };
    let build = Build {
        descriptor: Descriptor {
            media_type: MANIFEST.to_owned(),
            digest: digest.clone(),
            size: bytes.len() as u64,
            annotations,
            artifact_type: Some(artifact::ARTIFACT_TYPE.to_owned()),
            platform: artifact::platform(&provenance.target),
        },
    };
    let described = build.describe();
    let replaced = index.put(build.descriptor);
    let index_bytes = serde_json::to_vec(&index).expect("an index serializes");
    let index_digest = client.put_manifest(reference, &index_bytes, INDEX)?;
    Ok(Published {
        manifest: digest,
        index: index_digest,
        replaced,
        build: described,
    })
}
