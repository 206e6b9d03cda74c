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

/// How [`pull`] places and records what it pulls.
pub struct PullOptions<'a> {
    /// The plugin directory the library is placed in.
    pub dir: &'a Path,
    /// The lock to record it in (and, with `locked`, to hold the tag to).
    pub lock: Option<&'a mut Lock>,
    /// Take only the build the lock pins for this reference (its manifest digest), nothing
    /// else.
    pub locked: bool,
    /// The plugin name the build must carry (`sync` knows which plugin it installs).
    pub expect: Option<&'a str>,
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

/// The most builds [`pull`] downloads and judges before it gives up.
pub const MAX_TRIED: usize = 8;

/// Pulls the build of `reference` that matches `host`: resolves the tag, picks the builds
/// for this host's target (the one for this very host first, then the others of this host's
/// name, newest first, then any), and for each in turn (at most [`MAX_TRIED`]) downloads it,
/// checks its digest, and has `host` verify it (read, signature, judge) — the first that
/// passes is placed in `options.dir` as `lib<name>.so` (the name its verified provenance
/// carries) and recorded in the lock. With `locked`, only the build the lock pins for this
/// reference is taken. `host` should be made without a lock (the pulled file is new) and
/// with digests ([`host::HostBuilder::digests`]) to be recorded.
pub fn pull(
    source: &Source,
    reference: &Reference,
    host: &Host,
    mut options: PullOptions<'_>,
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
        let mut available: Vec<String> = all
            .iter()
            .take(20)
            .map(|b| {
                let line = format!("{} ({} on {})", b.name(), b.host(), b.target());
                host::text::bounded(&line, 200).into_owned()
            })
            .collect();
        if all.len() > 20 {
            available.push(format!("and {} more", all.len() - 20));
        }
        return Err(Error::NoBuild {
            reference: reference.to_string(),
            host: format!("{} {}", identity.name, identity.version),
            target: target.clone(),
            available,
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
        let source_text = reference.to_string();
        let pinned = options.lock.as_deref().and_then(|lock| {
            lock.entries()
                .find(|e| e.source.as_deref() == Some(source_text.as_str()))
                .and_then(|e| e.manifest.clone())
        });
        let Some(pinned) = pinned else {
            return Err(Error::Refused {
                reference: source_text,
                build: candidates[0].describe(),
                reason: ReasonCode::NotLocked,
                message: "the lock pins no build pulled from this reference, and --locked pulls \
                          only pinned builds; pull it once without --locked"
                    .to_owned(),
            });
        };
        // The pinned build and nothing else: no fallback to another build of the tag.
        match candidates.iter().find(|b| b.descriptor.digest == pinned) {
            Some(build) => candidates = vec![*build],
            None => {
                return Err(Error::Moved {
                    reference: source_text,
                    locked: pinned,
                    found: candidates[0].descriptor.digest.clone(),
                })
            }
        }
    }
    let mut refusals = Vec::new();
    for build in candidates.iter().take(MAX_TRIED) {
        let exact = !rank(build).0;
        let placed = fetch_and_place(source, reference, build, host, &options);
        match placed {
            Ok((path, report, updated)) => {
                // The caller's lock in step with the file (a `sync` pulls several).
                if let (Some(lock), Some(updated)) = (options.lock.as_deref_mut(), updated) {
                    *lock = updated;
                }
                return Ok(Pulled {
                    name: report.name.clone().unwrap_or_default(),
                    version: report.version.clone().unwrap_or_default(),
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

/// The file name a plugin named `name` is placed under: what discovery looks for.
pub fn library_file_name(name: &str) -> String {
    let prefix = if cfg!(windows) { "" } else { "lib" };
    format!("{prefix}{name}{}", host::LIBRARY_SUFFIX)
}

/// Downloads `build` into a private directory inside the plugin directory, checks and
/// verifies it, records it in the lock, and renames it (and its signature) into the
/// directory: the path, the host's report and the lock as written. On any failure the
/// directory and the lock file are as they were.
fn fetch_and_place(
    source: &Source,
    reference: &Reference,
    build: &Build,
    host: &Host,
    options: &PullOptions<'_>,
) -> Result<(PathBuf, host::PluginReport, Option<Lock>), Error> {
    let dir = options.dir;
    let at = reference.at_digest(&build.descriptor.digest)?;
    let fetched = source.manifest(&at)?;
    let manifest = artifact::parse_manifest(&fetched.bytes).map_err(|detail| Error::Malformed {
        what: at.to_string(),
        detail,
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
    let io = |what: String| move |source| Error::Io { what, source };
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let staging = Staging::new(dir).map_err(io(format!(
        "creating a private directory in {}",
        dir.display()
    )))?;
    // The registry does not choose the name: staged under a fixed one, placed under the
    // name its verified provenance carries.
    let staged = staging.path.join(library_file_name("pulled"));
    source.blob_to(&reference.repository, library, &staged)?;
    let staged_signature = host::trust::signature_path(&staged);
    if let Some(signature) = signature {
        source.blob_to(&reference.repository, signature, &staged_signature)?;
    }
    let report = host.verify(&staged);
    let refused = |reason: ReasonCode, message: String| Error::Refused {
        reference: reference.to_string(),
        build: build.describe(),
        reason,
        message,
    };
    if report.status != Status::Verified {
        let reason = report.reason.unwrap_or(ReasonCode::NotALibrary);
        let message = report
            .message
            .clone()
            .unwrap_or_else(|| format!("it is {}", report.status.as_str()))
            .replace(&staged.display().to_string(), "the pulled library");
        return Err(refused(reason, message));
    }
    let name = report.name.clone().unwrap_or_default();
    let version = report.version.clone().unwrap_or_default();
    if let Some(expected) = options.expect.filter(|e| *e != name) {
        return Err(refused(
            ReasonCode::NameMismatch,
            format!(
                "it is plugin `{}`, not `{expected}`",
                host::text::printable(&name)
            ),
        ));
    }
    let placed = dir.join(library_file_name(&name));
    let placed_signature = host::trust::signature_path(&placed);
    // The lock first (so a failure leaves nothing placed), then the signature, then the
    // library; each step undone if a later one fails.
    let lock = match (&options.lock, &report.digest) {
        (Some(lock), Some(digest)) => {
            let mut updated: Lock = (**lock).clone();
            let mut entry = LockEntry::new(&name, &version, &placed, updated.dir(), digest);
            entry.source = Some(reference.to_string());
            entry.manifest = Some(build.descriptor.digest.clone());
            updated.insert(entry);
            updated.write().map_err(|e| Error::Io {
                what: format!("writing the lock {}", updated.path().display()),
                source: std::io::Error::other(e.to_string()),
            })?;
            Some(((**lock).clone(), updated))
        }
        _ => None,
    };
    let undo_lock = |lock: &Option<(Lock, Lock)>| {
        if let Some((old, _)) = lock {
            let _ = old.write();
        }
    };
    let old_signature = staging.path.join("old.minisig");
    let had_signature = fs::symlink_metadata(&placed_signature).is_ok();
    let swapped = (|| -> std::io::Result<()> {
        if had_signature {
            fs::rename(&placed_signature, &old_signature)?;
        }
        if signature.is_some() {
            fs::rename(&staged_signature, &placed_signature)?;
        }
        fs::rename(&staged, &placed)
    })();
    if let Err(e) = swapped {
        if signature.is_some() {
            let _ = fs::rename(&placed_signature, &staged_signature);
        }
        if had_signature {
            let _ = fs::rename(&old_signature, &placed_signature);
        }
        undo_lock(&lock);
        return Err(Error::Io {
            what: format!("placing {}", placed.display()),
            source: e,
        });
    }
    let mut report = report;
    report.path = placed.clone();
    Ok((placed, report, lock.map(|(_, updated)| updated)))
}
/// A private directory inside the plugin directory (so the final rename stays on one file
/// system), removed with whatever is left in it.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(dir: &Path) -> std::io::Result<Staging> {
        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        for attempt in 0..100u32 {
            let path = dir.join(format!(".pull-{}-{attempt}", std::process::id()));
            match builder.create(&path) {
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
