//! Plugins from an OCI registry: publish a plugin build as an OCI artifact, pull the build that
//! matches this host, pin it by digest.
//!
//! A plugin build is an OCI artifact manifest ([`artifact::ARTIFACT_TYPE`]): the library as a
//! layer of its own media type, its `.minisig` (when there is one) as a second layer, and
//! annotations naming the plugin and version, the target, the host it was built for, the
//! compiler and the provenance's digest. A tag holds an OCI index of builds — one per target
//! and host version, as a multi-platform image holds one per platform — and [`pull`] picks the
//! build whose target is this host's, the one for this very host first, then the others for
//! which the host's policy passes. Any OCI registry serves them (GHCR, ECR, Harbor, a local
//! `distribution`); `skopeo inspect --raw` shows them.
//!
//! Nothing pulled is placed before it is judged: the library is downloaded beside the plugin
//! directory, its digest checked, its provenance read, its signature checked under the host's
//! trust settings and its provenance judged (the host's [`host::Host::verify`]); only then is
//! it renamed into the directory (a failure at any step leaves the directory as it was), and
//! recorded in the lock file with the manifest's digest.
//!
//! This crate holds the HTTP; `host` has none.

use std::fs;
use std::path::Path;

use host::ReasonCode;

pub mod artifact;
mod auth;
mod cache;
pub mod client;
mod publish;
mod pull;
mod reference;

pub use cache::Cache;
pub use publish::{publish, Published};
pub use pull::{library_file_name, pull, PullOptions, Pulled, MAX_TRIED};
pub use reference::Reference;

use artifact::Descriptor;
use client::{Client, Fetched};

/// The most bytes a library layer may hold.
pub const MAX_LIBRARY: u64 = 1 << 30;
/// The most bytes a signature layer may hold.
pub const MAX_SIGNATURE: u64 = host::trust::MAX_SIGNATURE_LEN;

/// Why a registry operation failed. Each says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not an `oci://` reference.
    #[error("`{text}` is not a plugin reference: {why} (write oci://REGISTRY/REPOSITORY:TAG)")]
    BadReference {
        /// What was given.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// The registry cannot be reached.
    #[error("registry {registry} is unreachable: {detail}; check the address and that it runs (plain HTTP is used only on this machine, or with --insecure)")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The transport error.
        detail: String,
    },
    /// 401 or 403.
    #[error("registry {registry} refused access: {detail}; log in (`podman login` / `docker login`: credentials are read from $REGISTRY_AUTH_FILE, podman's auth.json or ~/.docker/config.json)")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// Its answer.
        detail: String,
    },
    /// The credentials file is unreadable.
    #[error("registry credentials: {detail}")]
    Credentials {
        /// Why.
        detail: String,
    },
    /// 404.
    #[error("{what} is not in the registry (404): check the repository and tag")]
    NotFound {
        /// What was asked for.
        what: String,
    },
    /// Another status.
    #[error("{what}: the registry answered {status}: {detail}")]
    Status {
        /// What was asked for.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The body, cut.
        detail: String,
    },
    /// Larger than allowed.
    #[error("{what} is larger than {limit} bytes, the most this host reads")]
    TooLarge {
        /// What.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The bytes are not the ones named.
    #[error("{what} does not match its digest: expected {expected}, got {found}; the registry (or something between) changed it — nothing was placed")]
    DigestMismatch {
        /// What.
        what: String,
        /// The digest (and size) named.
        expected: String,
        /// What arrived.
        found: String,
    },
    /// A document that is not what it should be.
    #[error("{what} is malformed: {detail}")]
    Malformed {
        /// What.
        what: String,
        /// Why.
        detail: String,
    },
    /// No build for this host's target.
    #[error("{reference} has no build for this host ({host}, target {target}); it has: {}", list(.available))]
    NoBuild {
        /// The reference.
        reference: String,
        /// This host.
        host: String,
        /// This host's target.
        target: String,
        /// What the tag has.
        available: Vec<String>,
    },
    /// The artifact is not a plugin build.
    #[error("{reference} is not a plugin build: {detail}")]
    NotAPlugin {
        /// The reference.
        reference: String,
        /// Why.
        detail: String,
    },
    /// The build was downloaded and refused by the host.
    #[error(
        "{reference}: {build} is refused by this host: {message} [{reason}]; nothing was placed"
    )]
    Refused {
        /// The reference.
        reference: String,
        /// The build.
        build: String,
        /// The reason code.
        reason: ReasonCode,
        /// The host's message.
        message: String,
    },
    /// `--locked`, and the tag moved.
    #[error("{reference} now names manifest {found}, but the lock pins {locked} (--locked): pull without --locked to take the new build, or pin the digest")]
    Moved {
        /// The reference.
        reference: String,
        /// The locked digest.
        locked: String,
        /// The digest found.
        found: String,
    },
    /// `--offline`, and the cache lacks it.
    #[error(
        "{what} is not in the cache ({cache}), and --offline fetches nothing: pull it once online"
    )]
    NotCached {
        /// What.
        what: String,
        /// The cache directory.
        cache: String,
    },
    /// A local file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "no plugin builds at all".to_owned()
    } else {
        items.join("; ")
    }
}

/// Where manifests and blobs come from: the registry (kept in the cache as they arrive), or
/// the cache alone (`--offline`).
pub struct Source {
    client: Option<Client>,
    cache: Option<Cache>,
}

impl Source {
    /// The registry of `reference`, keeping what arrives in `cache`.
    pub fn online(
        reference: &Reference,
        insecure: bool,
        cache: Option<Cache>,
    ) -> Result<Source, Error> {
        Ok(Source {
            client: Some(Client::new(reference, insecure)?),
            cache,
        })
    }

    /// The cache alone.
    pub fn offline(cache: Cache) -> Source {
        Source {
            client: None,
            cache: Some(cache),
        }
    }

    fn manifest(&self, reference: &Reference) -> Result<Fetched, Error> {
        match (&self.client, &self.cache) {
            (Some(client), cache) => {
                let fetched = client.manifest(reference)?;
                if let Some(cache) = cache {
                    cache.put_manifest(reference, &fetched);
                }
                Ok(fetched)
            }
            (None, Some(cache)) => cache.manifest(reference),
            (None, None) => unreachable!("a source has a registry or a cache"),
        }
    }

    /// Writes blob `descriptor` to the new file `path` (created exclusively), checked against
    /// its digest and size.
    fn blob_to(&self, repository: &str, descriptor: &Descriptor, path: &Path) -> Result<(), Error> {
        let io = |what: String| move |source| Error::Io { what, source };
        let mut file =
            fs::File::create_new(path).map_err(io(format!("creating {}", path.display())))?;
        match (&self.client, &self.cache) {
            (Some(client), _) => {
                client.blob_to(repository, &descriptor.digest, descriptor.size, &mut file)?
            }
            (None, Some(cache)) => cache.blob_to(descriptor, &mut file)?,
            (None, None) => unreachable!("a source has a registry or a cache"),
        }
        file.sync_all()
            .map_err(io(format!("writing {}", path.display())))?;
        if let (Some(_), Some(cache)) = (&self.client, &self.cache) {
            cache.put_blob_from(&descriptor.digest, path);
        }
        Ok(())
    }
}
