//! `pull`: the build for this host, checked, judged, then placed and locked.

use std::fs;
use std::path::{Path, PathBuf};

use host::trust::{Lock, LockEntry};
use host::{Host, ReasonCode, Status};

use crate::artifact::{self, key, Build};
use crate::{Error, Reference, Source, MAX_LIBRARY, MAX_SIGNATURE};

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
    // Which plugin a pull replaces is not the registry's to choose: without a name declared
    // for it (`sync`), a pull replaces only what the lock says came from this very
    // repository, never another plugin the directory holds or the lock pins.
    if options.expect.is_none() {
        let pinned = options.lock.as_deref().and_then(|lock| lock.get(&name));
        let from = pinned.and_then(|entry| entry.source.as_deref());
        let ours = from
            .and_then(|source| Reference::parse(source).ok())
            .is_some_and(|r| {
                r.registry == reference.registry && r.repository == reference.repository
            });
        if (pinned.is_some() || fs::symlink_metadata(&placed).is_ok()) && !ours {
            let whence = match from {
                Some(source) => format!("from {}", host::text::printable(source)),
                None => "not from this repository".to_owned(),
            };
            return Err(refused(
                ReasonCode::NameMismatch,
                format!(
                    "it is plugin `{}`, which {} already holds ({whence}); a pull replaces only \
                     a plugin pulled from the same repository: remove {} and its lock entry \
                     first if you mean to replace it",
                    host::text::printable(&name),
                    host::text::printable(&dir.display().to_string()),
                    host::text::printable(&placed.display().to_string()),
                ),
            ));
        }
    }
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
