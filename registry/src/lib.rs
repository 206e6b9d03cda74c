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
use std::path::{Path, PathBuf};

use host::trust::{Lock, LockEntry};
use host::{Host, ReasonCode, Status};

pub mod artifact;
mod auth;
mod cache;
pub mod client;
mod reference;

pub use cache::Cache;
pub use reference::Reference;

use artifact::{key, Build, Descriptor, Index, Manifest};
use client::{Client, Fetched, INDEX, MANIFEST};

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
    #[error("registry {registry} refused the credentials: {detail}; log in (`podman login` / `docker login`, read from $REGISTRY_AUTH_FILE or ~/.docker/config.json)")]
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
    let library = fs::read(file).map_err(io(format!("reading {}", file.display())))?;
    if library.len() as u64 > MAX_LIBRARY {
        return Err(Error::TooLarge {
            what: file.display().to_string(),
            limit: MAX_LIBRARY,
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
    client.put_manifest(&reference.with_reference(&digest), &bytes, MANIFEST)?;
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

/// How [`pull`] places and records what it pulls.
pub struct PullOptions<'a> {
    /// The plugin directory the library is placed in.
    pub dir: &'a Path,
    /// The lock to record it in (and, with `locked`, to hold the tag to).
    pub lock: Option<&'a mut Lock>,
    /// Refuse a tag whose build's manifest digest is not the one the lock pins.
    pub locked: bool,
}

/// What [`pull`] placed.
#[derive(Debug)]
pub struct Pulled {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it was placed.
    pub path: PathBuf,
    /// The build's manifest digest.
    pub manifest: String,
    /// The build.
    pub build: String,
    /// Whether it is the build for this very host (else one the policy accepts).
    pub exact: bool,
}

/// Pulls the build of `reference` that matches `host`: resolves the tag, picks the builds
/// for this host's target (the one for this very host first, then the others of this host's
/// name, newest first, then any), and for each in turn downloads it, checks its digest, and
/// has `host` verify it (read, signature, judge) — the first that passes is placed in
/// `options.dir` and recorded in the lock. `host` should be made without a lock (the pulled
/// file is new) and with digests ([`host::HostBuilder::digests`]) to be recorded.
pub fn pull(
    source: &Source,
    reference: &Reference,
    host: &Host,
    options: PullOptions<'_>,
) -> Result<Pulled, Error> {
    let identity = host.identity();
    let target = &identity.provenance.target;
    let fetched = source.manifest(reference)?;
    let all = artifact::builds(&fetched.media_type, &fetched.bytes, &fetched.digest)?;
    let mut candidates: Vec<&Build> = all
        .iter()
        .filter(|b| b.target() == target.as_str())
        .collect();
    if candidates.is_empty() {
        return Err(Error::NoBuild {
            reference: reference.to_string(),
            host: format!("{} {}", identity.name, identity.version),
            target: target.clone(),
            available: all
                .iter()
                .map(|b| format!("{} ({} on {})", b.name(), b.host(), b.target()))
                .collect(),
        });
    }
    let rank = |b: &Build| {
        let name = b.descriptor.annotations.get(key::HOST_NAME);
        let version = b.descriptor.annotations.get(key::HOST_VERSION);
        let same_name = name == Some(&identity.name);
        let exact = same_name && version == Some(&identity.version);
        let parsed = version.and_then(|v| v.parse::<semver::Version>().ok());
        (!exact, !same_name, std::cmp::Reverse(parsed))
    };
    candidates.sort_by_key(|b| rank(b));
    if options.locked {
        let pinned = options
            .lock
            .as_deref()
            .and_then(|lock| lock.get(candidates[0].name()))
            .and_then(|e| e.manifest.clone());
        let found = &candidates[0].descriptor.digest;
        match pinned {
            Some(locked) if &locked != found => {
                return Err(Error::Moved {
                    reference: reference.to_string(),
                    locked,
                    found: found.clone(),
                })
            }
            Some(_) => {}
            None => {
                return Err(Error::Refused {
                    reference: reference.to_string(),
                    build: candidates[0].describe(),
                    reason: ReasonCode::NotLocked,
                    message: "the lock pins no build of it, and --locked pulls only pinned builds; pull it once without --locked".to_owned(),
                })
            }
        }
    }
    let mut refusals = Vec::new();
    for build in &candidates {
        let exact = !rank(build).0;
        match fetch_and_place(source, reference, build, host, options.dir) {
            Ok((path, report)) => {
                let name = report.name.clone().unwrap_or_default();
                let version = report.version.clone().unwrap_or_default();
                if let (Some(lock), Some(digest)) = (options.lock, &report.digest) {
                    let mut entry = LockEntry::new(&name, &version, &path, lock.dir(), digest);
                    entry.source = Some(reference.to_string());
                    entry.manifest = Some(build.descriptor.digest.clone());
                    lock.insert(entry);
                    lock.write().map_err(|e| Error::Io {
                        what: format!("writing the lock {}", lock.path().display()),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                }
                return Ok(Pulled {
                    name,
                    version,
                    path,
                    manifest: build.descriptor.digest.clone(),
                    build: build.describe(),
                    exact,
                });
            }
            // Refused by the judge: another build may fit under the policy.
            Err(e @ Error::Refused { .. }) => refusals.push(e),
            Err(e) => return Err(e),
        }
    }
    Err(refusals.remove(0))
}

/// Downloads `build` into a private directory inside `dir`, checks and verifies it, and
/// renames it (and its signature) into `dir`: the path and the host's report.
fn fetch_and_place(
    source: &Source,
    reference: &Reference,
    build: &Build,
    host: &Host,
    dir: &Path,
) -> Result<(PathBuf, host::PluginReport), Error> {
    let at = reference.with_reference(&build.descriptor.digest);
    let fetched = source.manifest(&at)?;
    if fetched.digest != build.descriptor.digest {
        return Err(Error::DigestMismatch {
            what: at.to_string(),
            expected: build.descriptor.digest.clone(),
            found: fetched.digest,
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&fetched.bytes).map_err(|e| Error::Malformed {
            what: at.to_string(),
            detail: e.to_string(),
        })?;
    let not_plugin = |detail: &str| Error::NotAPlugin {
        reference: at.to_string(),
        detail: detail.to_owned(),
    };
    let library = manifest
        .layers
        .iter()
        .find(|l| l.media_type == artifact::LIBRARY)
        .ok_or_else(|| {
            not_plugin(
                "it has no library layer (media type application/vnd.plugin-host.library.v1)",
            )
        })?;
    if library.size > MAX_LIBRARY {
        return Err(Error::TooLarge {
            what: format!("{at}'s library layer"),
            limit: MAX_LIBRARY,
        });
    }
    let signature = manifest
        .layers
        .iter()
        .find(|l| l.media_type == artifact::SIGNATURE);
    if signature.is_some_and(|s| s.size > MAX_SIGNATURE) {
        return Err(Error::TooLarge {
            what: format!("{at}'s signature layer"),
            limit: MAX_SIGNATURE,
        });
    }
    let file_name = library
        .annotations
        .get(artifact::TITLE)
        .filter(|t| is_library_name(t))
        .cloned()
        .ok_or_else(|| not_plugin("its library layer has no plain file name (`org.opencontainers.image.title`, e.g. libhello.so)"))?;
    let io = |what: String| move |source| Error::Io { what, source };
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let staging = Staging::new(dir).map_err(io(format!(
        "creating a private directory in {}",
        dir.display()
    )))?;
    let staged = staging.path.join(&file_name);
    source.blob_to(&reference.repository, library, &staged)?;
    let staged_signature = host::trust::signature_path(&staged);
    if let Some(signature) = signature {
        source.blob_to(&reference.repository, signature, &staged_signature)?;
    }
    let report = host.verify(&staged);
    if report.status != Status::Verified {
        let reason = report.reason.unwrap_or(ReasonCode::NotALibrary);
        let message = report
            .message
            .clone()
            .unwrap_or_else(|| format!("it is {}", report.status.as_str()))
            .replace(&staged.display().to_string(), &file_name);
        return Err(Error::Refused {
            reference: reference.to_string(),
            build: build.describe(),
            reason,
            message,
        });
    }
    let placed = dir.join(&file_name);
    let placed_signature = host::trust::signature_path(&placed);
    if signature.is_some() {
        fs::rename(&staged_signature, &placed_signature)
            .map_err(io(format!("placing {}", placed_signature.display())))?;
    } else if fs::symlink_metadata(&placed_signature).is_ok() {
        // An old build's signature would now sign nothing it matches.
        fs::remove_file(&placed_signature).map_err(io(format!(
            "removing the old {}",
            placed_signature.display()
        )))?;
    }
    fs::rename(&staged, &placed).map_err(io(format!("placing {}", placed.display())))?;
    let mut report = report;
    report.path = placed.clone();
    Ok((placed, report))
}

/// A file name a library layer may be placed under: one plain component.
fn is_library_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A private directory inside the plugin directory (so the final rename stays on one file
/// system), removed with whatever is left in it.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(dir: &Path) -> std::io::Result<Staging> {
        for attempt in 0..100u32 {
            let path = dir.join(format!(".pull-{}-{attempt}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Staging { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free private directory name"))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
