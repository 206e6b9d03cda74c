//! Which project files the user trusts.
//!
//! A project file is found by walking up from the working directory, so it may come from a
//! cloned repository, an unpacked archive or a shared directory: someone else's file. Until
//! the user trusts it ([`trust_project`]; `plugin-host config trust`), it is ignored — its
//! plugins, search paths and settings alike — as git's `safe.directory`, direnv's `allow` and
//! mise's `trust` do. Trust is recorded with the file's sha256, as direnv does: a file changed
//! since (a `git pull`) is ignored again until the user has looked at it and trusted it anew.
//! A file owned by another user (not root), or in a directory another user owns, is never
//! used, trusted or not.
//!
//! The record is a text file in the user's data directory (`$XDG_DATA_HOME/<app>/
//! trusted-projects`), one `sha256:<hex> <absolute path>` line per file.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ConfigError;
use super::files::{Locations, ProjectTrust};
use crate::small_file::SmallFileError;

pub use super::files::TRUSTED_PROJECTS_FILE;

/// The most the record may hold: far more than any user's list of projects.
const RECORD_LIMIT: u64 = 1 << 20;

/// Why a project file found by walking up was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Untrusted {
    /// The user has not trusted it.
    NotTrusted,
    /// The user trusted it, but it has changed since.
    Changed,
    /// It (or the directory it is in, or the file a link of it names) is owned by another
    /// user, not root: never used.
    OtherOwner {
        /// The path owned by the other user.
        path: PathBuf,
        /// That user's id.
        uid: u32,
    },
    /// There is nowhere to record trust: no `$XDG_DATA_HOME` and no `$HOME`.
    NoRecord,
    /// It is no configuration file the host reads (larger than 1 MiB, not UTF-8, not a
    /// regular file): so not a file the user trusted either.
    Unusable {
        /// What is wrong with it.
        detail: String,
    },
    /// Its owner (or its directory's) could not be checked.
    Unchecked {
        /// The path that could not be checked.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

/// A project file that was found but not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was ignored.
    #[serde(flatten)]
    pub why: Untrusted,
}

impl IgnoredFile {
    /// What happened and what the user can do, for an application whose name is `app` and
    /// whose command to trust a file is `<app> config trust FILE`.
    pub fn message(&self, app: &str) -> String {
        let file = crate::text::printable(&self.path.display().to_string()).into_owned();
        let quoted = shell_quote(&file);
        match &self.why {
            Untrusted::NotTrusted => format!(
                "{file} is not trusted, so it is ignored (its plugins, search paths and \
                 settings); if you trust this project, run `{app} config trust {quoted}`"
            ),
            Untrusted::Changed => format!(
                "{file} changed since you trusted it, so it is ignored; review the change, \
                 then run `{app} config trust {quoted}` again"
            ),
            Untrusted::OtherOwner { path, uid } => format!(
                "{file} is ignored: {} is owned by user {uid}, not by you or root, and a file \
                 another user can change must not decide what you run; copy it into a \
                 directory of your own if you mean to use it",
                crate::text::printable(&path.display().to_string())
            ),
            Untrusted::Unchecked { path, detail } => format!(
                "{file} is ignored: who owns {} cannot be checked ({detail})",
                crate::text::printable(&path.display().to_string())
            ),
            Untrusted::Unusable { detail } => format!(
                "{file} is ignored: {detail}",
                detail = crate::text::printable(detail)
            ),
            Untrusted::NoRecord => format!(
                "{file} is ignored: there is no data directory ($XDG_DATA_HOME or $HOME) to \
                 record that you trust it; set HOME, or name it with ${}",
                Locations::env_var(app)
            ),
        }
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether the project file `file` may be used as far as its path tells, before it is read:
/// `Some` when the link at its name (if it is one) or its directory is owned by another user
/// than this process's (root excepted), or cannot be checked. The file itself is checked on the
/// descriptor it is read from ([`owner_refusal`]).
pub(crate) fn path_refusal(file: &Path) -> Option<Untrusted> {
    #[cfg(unix)]
    {
        let dir = file.parent().unwrap_or(Path::new("/"));
        for (path, meta) in [(file, fs::symlink_metadata(file)), (dir, fs::metadata(dir))] {
            let refusal = match meta {
                Ok(meta) => owner_refusal(path, &meta),
                // Fail closed: what cannot be checked is not used.
                Err(e) => Some(Untrusted::Unchecked {
                    path: path.to_owned(),
                    detail: e.to_string(),
                }),
            };
            if refusal.is_some() {
                return refusal;
            }
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

/// Reads the project file `file` when its owners allow it to be used: `Ok(Err(why))` when they
/// do not. Its link's and directory's owners are checked on their paths before it is read,
/// its own on the descriptor it is read from (so a file swapped in between is not taken for
/// the one checked).
pub(crate) fn read_project(file: &Path) -> Result<Result<String, Untrusted>, SmallFileError> {
    if let Some(why) = path_refusal(file) {
        return Ok(Err(why));
    }
    // A file no configuration could be (a cloned repository's, say) is ignored as any
    // untrusted one is, not an error that stops every command.
    let unusable = |e: SmallFileError| match e {
        SmallFileError::TooLarge { .. }
        | SmallFileError::NotText { .. }
        | SmallFileError::NotRegular { .. } => Ok(Err(Untrusted::Unusable { detail: e.detail() })),
        e => Err(e),
    };
    let (bytes, meta) = match super::CONFIG_FILE.read_with_metadata(file) {
        Ok(read) => read,
        Err(e) => return unusable(e),
    };
    if let Some(why) = owner_refusal(file, &meta) {
        return Ok(Err(why));
    }
    match super::CONFIG_FILE.text(file, bytes) {
        Ok(text) => Ok(Ok(text)),
        Err(e) => unusable(e),
    }
}

/// `Some` when `meta` (of `path`) says another user than this process's owns it, root
/// excepted.
fn owner_refusal(path: &Path, meta: &fs::Metadata) -> Option<Untrusted> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
        let me = unsafe { libc::geteuid() };
        (meta.uid() != me && meta.uid() != 0).then(|| Untrusted::OtherOwner {
            path: path.to_owned(),
            uid: meta.uid(),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, meta);
        None
    }
}

/// Whether the project file `file`, whose contents are `text`, is trusted under `locations`:
/// `None` when it may be used.
pub(crate) fn record_refusal(
    locations: &Locations,
    file: &Path,
    text: &str,
) -> Result<Option<Untrusted>, ConfigError> {
    let record = match &locations.project_trust {
        ProjectTrust::Implicit => return Ok(None),
        ProjectTrust::Never => return Ok(Some(Untrusted::NoRecord)),
        ProjectTrust::Recorded(record) => record,
    };
    let key = record_key(file);
    let digest = sha256_hex(text.as_bytes());
    let entries = read_record(record)?;
    Ok(match entries.iter().find(|(_, path)| *path == key) {
        Some((recorded, _)) if *recorded == digest => None,
        Some(_) => Some(Untrusted::Changed),
        None => Some(Untrusted::NotTrusted),
    })
}

/// Records that the user trusts the project file `file` as it is now; returns the path it is
/// recorded under (its directory canonical). A file another user owns cannot be trusted; a file that is not a valid
/// configuration is refused with its error (trusting it would change nothing).
pub fn trust_project(locations: &Locations, file: &Path) -> Result<PathBuf, ConfigError> {
    let record = record_path(locations, file)?;
    let file = record_key(&locations.cwd.join(file));
    let refuse = |why| ConfigError::Untrusted {
        message: IgnoredFile {
            path: file.clone(),
            why,
        }
        .message(&locations.app),
    };
    let text = read_project(&file)
        .map_err(|source| ConfigError::Unreadable {
            file: file.clone(),
            env: None,
            source,
        })?
        .map_err(refuse)?;
    super::schema::parse(
        super::files::LayerKind::Project,
        &file,
        &text,
        locations.home.as_deref(),
    )?;
    let digest = sha256_hex(text.as_bytes());
    let mut entries = read_record(&record)?;
    entries.retain(|(_, path)| *path != file);
    entries.push((digest, file.clone()));
    write_record(&record, &entries)?;
    Ok(file)
}

/// Forgets that the user trusts the project file `file`; returns whether it was trusted.
pub fn untrust_project(locations: &Locations, file: &Path) -> Result<bool, ConfigError> {
    let record = record_path(locations, file)?;
    let file = record_key(&locations.cwd.join(file));
    let mut entries = read_record(&record)?;
    let before = entries.len();
    entries.retain(|(_, path)| *path != file);
    if entries.len() == before {
        return Ok(false);
    }
    write_record(&record, &entries)?;
    Ok(true)
}

fn record_path(locations: &Locations, file: &Path) -> Result<PathBuf, ConfigError> {
    match &locations.project_trust {
        ProjectTrust::Recorded(record) => Ok(record.clone()),
        ProjectTrust::Implicit | ProjectTrust::Never => Err(ConfigError::Untrusted {
            message: IgnoredFile {
                path: file.to_owned(),
                why: Untrusted::NoRecord,
            }
            .message(&locations.app),
        }),
    }
}

/// What the record knows a project file by: its directory's canonical path and its own name.
/// A project directory reached by another path is the same project; but the file's own link
/// is not followed, so a `plugin-host.toml` that links to a trusted file elsewhere is another
/// file — its directory, which its relative paths and `.plugins` belong to, is another.
fn record_key(path: &Path) -> PathBuf {
    match (
        path.parent().and_then(|dir| fs::canonicalize(dir).ok()),
        path.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The record, as the host writes it: a regular file, never a link (one there was planted).
const RECORD: crate::small_file::SmallFile = crate::small_file::SmallFile {
    what: "record of trusted project files",
    limit: RECORD_LIMIT,
    links: crate::small_file::Links::Refuse,
};

/// The record's entries; none when it does not exist.
fn read_record(record: &Path) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let bad = |detail: String| ConfigError::TrustRecord {
        file: record.to_owned(),
        detail,
    };
    let text = match RECORD.read_to_string(record) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::Unreadable {
                file: record.to_owned(),
                env: None,
                source: e,
            })
        }
    };
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = line
            .strip_prefix("sha256:")
            .and_then(|rest| rest.split_once(' '))
            .filter(|(hex, path)| {
                hex.len() == 64
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    && Path::new(path).is_absolute()
            });
        match parsed {
            Some((hex, path)) => entries.push((hex.to_ascii_lowercase(), PathBuf::from(path))),
            None => {
                return Err(bad(format!(
                    "line {}: expected `sha256:<64 hex digits> <absolute path>`; fix or remove \
                     the line",
                    n + 1
                )))
            }
        }
    }
    Ok(entries)
}

/// Replaces the record with `entries`: a new file beside it, renamed over it (a crash leaves
/// the old record or the new one, never half of one).
fn write_record(record: &Path, entries: &[(String, PathBuf)]) -> Result<(), ConfigError> {
    let bad = |detail: String| ConfigError::TrustRecord {
        file: record.to_owned(),
        detail,
    };
    let mut text = String::new();
    for (hex, path) in entries {
        let Some(path) = path.to_str().filter(|p| !p.contains(['\n', '\r'])) else {
            return Err(bad(format!(
                "cannot record {}: only UTF-8 paths without line breaks can be trusted",
                path.display()
            )));
        };
        text.push_str(&format!("sha256:{hex} {path}\n"));
    }
    let dir = record.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
    crate::small_file::write_atomically(record, text.as_bytes()).map_err(|e| bad(e.to_string()))
}
