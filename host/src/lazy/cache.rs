//! The index cache: what indexing read from each plugin file's provenance (name, version,
//! declared capabilities), and the names it listed in each directory, so that a later index
//! neither reads the files nor, mostly, `stat`s them.
//!
//! **Validation.** Each directory's record carries the directory's own identity (device,
//! inode, modification and change times — which change whenever an entry is added, removed
//! or renamed in it). When a directory's identity is unchanged, its listing and its files'
//! entries are used as they are: one `stat` for the directory instead of one per file and a
//! listing. Otherwise (or for a file reached through a symbolic link, whose target may change
//! without its directory) each file is checked by its own identity (device, inode, size,
//! modification and change times), as before. A directory changed within [`SETTLE`] of the
//! index (a timestamp's granularity) gets no identity recorded, so a change in the same
//! clock tick is not missed.
//!
//! A stale or forged entry is harmless to soundness: it only chooses which library the host
//! verifies, and that library's provenance is read again from the file, trusted and judged
//! before anything is loaded (the normal path) — so a file overwritten in place (same inode,
//! its directory untouched) is still refused or re-read before it runs. Entries are bounded
//! like provenance on the way in.
//!
//! **Format** (binary, little-endian; any error anywhere and the whole file is ignored,
//! then rewritten): the magic `PHINDEX` and a format byte, then the directories, each with
//! its path, its identity or none, and its files sorted by name, each with an entry or none
//! (a file whose provenance could not be read: listed, so it is reported again). Every count
//! is checked against the bytes left before anything is allocated for it; the file is read
//! with a size limit, never through a link. It is rewritten atomically (a temporary file
//! renamed over it) and only when something changed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first bytes of the file: the format's name and version (another version is ignored,
/// and replaced).
const MAGIC: &[u8; 8] = b"PHINDEX\x02";

/// How old a directory's last change must be for its identity to be recorded: longer than
/// the granularity of a file system's timestamps (a clock tick, a few milliseconds, on Linux
/// file systems with nanosecond timestamps).
pub(crate) const SETTLE: Duration = Duration::from_millis(100);
/// The same for a file system whose timestamps are whole seconds (FAT keeps 2 s).
const SETTLE_COARSE: Duration = Duration::from_secs(3);

/// How the cache is read: a regular file (never a link: the host writes it by renaming a
/// file over it) of at most 64 MiB.
const CACHE_FILE: crate::small_file::SmallFile = crate::small_file::SmallFile {
    what: "index cache",
    limit: 64 << 20,
    links: crate::small_file::Links::Refuse,
};

/// Device, inode, size, mtime (ns), ctime (ns). A directory's size is recorded as 0.
pub(crate) type Id = [i64; 5];

/// What the index needs of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The file's identity when it was read.
    pub(crate) id: Id,
    /// Reached through a symbolic link: always checked by its own identity.
    linked: bool,
    pub name: String,
    pub version: String,
    pub capabilities: Option<BTreeMap<String, Vec<String>>>,
}

/// A file listed in a directory, with its entry (none: its provenance could not be read).
struct FileRecord {
    name: OsString,
    entry: Option<Entry>,
    /// Found by this index run (else dropped when an indexed directory is saved).
    seen: bool,
}

/// One directory: its identity when listed (none: unsettled or unknown) and its files,
/// sorted by name.
struct DirRecord {
    path: PathBuf,
    stamp: Option<Id>,
    files: Vec<FileRecord>,
    /// Listed by this index run.
    indexed: bool,
    /// Its identity matched: its listing and entries are used without a `stat` per file.
    fresh: bool,
}

/// The cache as loaded, and what this index run found.
pub(crate) struct Cache {
    path: PathBuf,
    dirs: Vec<DirRecord>,
    dirty: bool,
}

/// An entry found for a file, and whether the file's own identity was checked (`false`: its
/// directory's was).
pub(crate) struct Found<'a> {
    pub(crate) entry: &'a Entry,
    pub(crate) checked: bool,
}

#[cfg(unix)]
fn ns(s: i64, n: i64) -> i64 {
    s.saturating_mul(1_000_000_000).saturating_add(n)
}

#[cfg(unix)]
fn id_of(m: &std::fs::Metadata, size: bool) -> Id {
    use std::os::unix::fs::MetadataExt;
    [
        m.dev() as i64,
        m.ino() as i64,
        if size { m.size() as i64 } else { 0 },
        ns(m.mtime(), m.mtime_nsec()),
        ns(m.ctime(), m.ctime_nsec()),
    ]
}

/// The identity of the file at `path` and whether it is reached through a symbolic link, or
/// `None` (no cache for it).
pub(crate) fn identity(path: &Path) -> Option<(Id, bool)> {
    #[cfg(unix)]
    {
        let m = std::fs::symlink_metadata(path).ok()?;
        if m.is_symlink() {
            return Some((id_of(&std::fs::metadata(path).ok()?, true), true));
        }
        Some((id_of(&m, true), false))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The identity of directory `dir` (links followed, as listing it does).
fn dir_identity(dir: &Path) -> Option<Id> {
    #[cfg(unix)]
    {
        Some(id_of(&std::fs::metadata(dir).ok()?, false))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Whether directory identity `id` is old enough, at `now`, that a change within the same
/// timestamp tick cannot have gone unseen.
fn settled(id: &Id, now: SystemTime) -> bool {
    let Ok(now) = now.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let whole_seconds = id[3] % 1_000_000_000 == 0 && id[4] % 1_000_000_000 == 0;
    let settle = if whole_seconds { SETTLE_COARSE } else { SETTLE };
    let latest = i128::from(id[3].max(id[4]));
    latest + (settle.as_nanos() as i128) < now.as_nanos() as i128
}

impl Cache {
    /// Loads the cache file at `path` (missing, unreadable, not a regular file, too large or
    /// malformed: empty, and said in the debug log).
    pub(crate) fn load(path: PathBuf) -> Cache {
        let dirs = CACHE_FILE
            .read(&path)
            .inspect_err(|e| {
                if !e.is_not_found() {
                    tracing::debug!("index cache not used: {e}");
                }
            })
            .ok()
            .and_then(|bytes| {
                let decoded = decode(&bytes);
                if decoded.is_none() {
                    tracing::debug!("index cache {} not used: malformed", path.display());
                }
                decoded
            })
            .unwrap_or_default();
        Cache {
            path,
            dirs,
            dirty: false,
        }
    }

    fn record(&mut self, dir: &Path) -> &mut DirRecord {
        let at = match self.dirs.iter().position(|d| d.path == dir) {
            Some(at) => at,
            None => {
                self.dirs.push(DirRecord {
                    path: dir.to_owned(),
                    stamp: None,
                    files: Vec::new(),
                    indexed: false,
                    fresh: false,
                });
                self.dirs.len() - 1
            }
        };
        &mut self.dirs[at]
    }

    /// The plugin files of search directory `dir` as recorded, when the directory is the one
    /// recorded (same identity): no need to list it, and its files' entries are used without
    /// a `stat` each. `None`: list it (its identity is recorded for the next run once settled).
    pub(crate) fn listing(&mut self, dir: &Path) -> Option<Vec<PathBuf>> {
        let now = SystemTime::now();
        let current = dir_identity(dir);
        let record = self.record(dir);
        record.indexed = true;
        let settled = current.filter(|id| settled(id, now));
        if settled.is_some() && record.stamp == settled {
            record.fresh = true;
            let files = record
                .files
                .iter_mut()
                .map(|f| {
                    f.seen = true;
                    dir.join(&f.name)
                })
                .collect();
            return Some(files);
        }
        record.fresh = false;
        if record.stamp != settled {
            record.stamp = settled;
            self.dirty = true;
        }
        None
    }

    /// The entry for `path` if the file is the one recorded — by its directory's identity
    /// (see [`Cache::listing`]), else by its own — and the entry is within the bounds
    /// provenance must keep.
    pub(crate) fn get(&mut self, path: &Path) -> Option<Found<'_>> {
        let (dir, name) = (path.parent()?, path.file_name()?);
        // The same bytes first: comparing paths component by component costs more.
        let record = self
            .dirs
            .iter_mut()
            .find(|d| d.path.as_os_str() == dir.as_os_str() || d.path == dir)?;
        let at = record
            .files
            .binary_search_by(|f| f.name.as_encoded_bytes().cmp(name.as_encoded_bytes()))
            .ok()?;
        let fresh = record.fresh;
        let file = &mut record.files[at];
        let entry = file.entry.as_ref()?;
        let checked = !fresh || entry.linked;
        if checked && identity(path) != Some((entry.id, entry.linked)) {
            return None;
        }
        let bounded = crate::limits::check_name(&entry.name).is_ok()
            && entry.version.len() <= crate::limits::MAX_FIELD
            && entry
                .capabilities
                .as_ref()
                .is_none_or(|c| crate::limits::check_declared(c).is_ok());
        if !bounded {
            return None;
        }
        file.seen = true;
        Some(Found {
            entry: file.entry.as_ref()?,
            checked,
        })
    }

    fn set(&mut self, path: &Path, entry: Option<Entry>) {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let record = self.record(dir);
        let file = FileRecord {
            name: name.to_owned(),
            entry,
            seen: true,
        };
        match record
            .files
            .binary_search_by(|f| f.name.as_encoded_bytes().cmp(name.as_encoded_bytes()))
        {
            Ok(at) => {
                let old = &mut record.files[at];
                let changed = old.entry != file.entry;
                *old = file;
                self.dirty |= changed;
            }
            Err(at) => {
                record.files.insert(at, file);
                self.dirty = true;
            }
        }
    }

    /// Records what was read from `path`.
    pub(crate) fn put(&mut self, path: &Path, provenance: &plugin_api::provenance::Provenance) {
        let Some((id, linked)) = identity(path) else {
            return;
        };
        let entry = Entry {
            id,
            linked,
            name: provenance.name.clone(),
            version: provenance.version.to_string(),
            capabilities: provenance.capabilities.clone(),
        };
        self.set(path, Some(entry));
    }

    /// Records that `path`'s provenance could not be read (it stays listed, to be read and
    /// reported again).
    pub(crate) fn unreadable(&mut self, path: &Path) {
        self.set(path, None);
    }

    /// Writes the cache if something changed: an entry added or changed, a directory's
    /// identity, a file gone. Directories not listed this time are kept while they exist, and
    /// their entries while their files do. Atomic: a temporary file in the same directory, renamed over
    /// it.
    pub(crate) fn save(mut self) {
        let before = self.dirs.len();
        self.dirs.retain(|d| d.indexed || d.path.is_dir());
        self.dirty |= self.dirs.len() != before;
        for record in &mut self.dirs {
            let before = record.files.len();
            if record.indexed {
                record.files.retain(|f| f.seen);
            } else {
                // Another search path's (or a configured file's): kept while the file exists.
                let dir = &record.path;
                record
                    .files
                    .retain(|f| f.seen || dir.join(&f.name).exists());
            }
            self.dirty |= record.files.len() != before;
        }
        if !self.dirty {
            return;
        }
        if let Err(e) = write_atomically(&self.path, &encode(&self.dirs)) {
            tracing::debug!("cannot write the index cache {}: {e}", self.path.display());
        }
    }
}

/// Writes `bytes` to a new temporary file in the cache's directory (created exclusively,
/// never through a link planted at its name), then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    crate::small_file::write_atomically(path, bytes)
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_id(out: &mut Vec<u8>, id: &Id) {
    for n in id {
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn encode(dirs: &[DirRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, dirs.len());
    for dir in dirs {
        put_bytes(&mut out, dir.path.as_os_str().as_encoded_bytes());
        match &dir.stamp {
            Some(id) => {
                out.push(1);
                put_id(&mut out, id);
            }
            None => out.push(0),
        }
        put_u32(&mut out, dir.files.len());
        for file in &dir.files {
            put_bytes(&mut out, file.name.as_encoded_bytes());
            let Some(entry) = &file.entry else {
                out.push(0);
                continue;
            };
            out.push(if entry.linked { 2 } else { 1 });
            put_id(&mut out, &entry.id);
            put_bytes(&mut out, entry.name.as_bytes());
            put_bytes(&mut out, entry.version.as_bytes());
            match &entry.capabilities {
                None => out.push(0),
                Some(kinds) => {
                    out.push(1);
                    put_u32(&mut out, kinds.len());
                    for (kind, names) in kinds {
                        put_bytes(&mut out, kind.as_bytes());
                        put_u32(&mut out, names.len());
                        for name in names {
                            put_bytes(&mut out, name.as_bytes());
                        }
                    }
                }
            }
        }
    }
    out
}

/// A bounded reader over the cache's bytes: every read checks what is left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<usize> {
        let bytes = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    }
    /// A count of items of at least `min` bytes each, checked against the bytes left.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.u32()?;
        (n.checked_mul(min)? <= self.0.len()).then_some(n)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
    fn id(&mut self) -> Option<Id> {
        let mut id = [0; 5];
        for n in &mut id {
            *n = i64::from_le_bytes(self.take(8)?.try_into().ok()?);
        }
        Some(id)
    }
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).to_owned()
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    String::from_utf8_lossy(bytes).into_owned().into()
}

/// The directories of a cache file, or `None` if anything in it is malformed: a wrong magic,
/// a count larger than the bytes left, text that is not UTF-8, files out of order, a file
/// name that is not one (empty, `.`, `..`, a separator), trailing bytes.
fn decode(bytes: &[u8]) -> Option<Vec<DirRecord>> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let dir_count = r.count(9)?;
    let mut dirs = Vec::with_capacity(dir_count);
    for _ in 0..dir_count {
        let path = PathBuf::from(os_string(r.bytes()?));
        let stamp = match r.u8()? {
            0 => None,
            1 => Some(r.id()?),
            _ => return None,
        };
        let file_count = r.count(5)?;
        let mut files: Vec<FileRecord> = Vec::with_capacity(file_count);
        for _ in 0..file_count {
            let name = r.bytes()?;
            let plain = !name.is_empty()
                && name != b"."
                && name != b".."
                && !name.contains(&b'/')
                && !name.contains(&0);
            let ordered = files
                .last()
                .is_none_or(|last| last.name.as_encoded_bytes() < name);
            if !plain || !ordered {
                return None;
            }
            let name = os_string(name);
            let linked = match r.u8()? {
                0 => {
                    files.push(FileRecord {
                        name,
                        entry: None,
                        seen: false,
                    });
                    continue;
                }
                1 => false,
                2 => true,
                _ => return None,
            };
            let id = r.id()?;
            let plugin = r.string()?;
            let version = r.string()?;
            let capabilities = match r.u8()? {
                0 => None,
                1 => {
                    let mut kinds = BTreeMap::new();
                    for _ in 0..r.count(8)? {
                        let kind = r.string()?;
                        let names = (0..r.count(4)?)
                            .map(|_| r.string())
                            .collect::<Option<Vec<_>>>()?;
                        kinds.insert(kind, names);
                    }
                    Some(kinds)
                }
                _ => return None,
            };
            files.push(FileRecord {
                name,
                entry: Some(Entry {
                    id,
                    linked,
                    name: plugin,
                    version,
                    capabilities,
                }),
                seen: false,
            });
        }
        dirs.push(DirRecord {
            path,
            stamp,
            files,
            indexed: false,
            fresh: false,
        });
    }
    r.0.is_empty().then_some(dirs)
}

#[cfg(test)]
mod tests;
