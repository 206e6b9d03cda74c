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
//!
//! **Mapped when large.** A cache of [`MAP_FROM`] bytes or more is mapped rather than read,
//! where only the host's own user can write it and it lives on a local file system (see
//! [`crate::small_file::Mapped`]): a start with 10 000 plugins then shares the page cache's
//! copy of its 1 MB instead of copying it into some 250 pages new to the process. Its bytes
//! are checked all the same. The host only ever replaces the file, which leaves a mapping of
//! the one before whole.
//!
//! **In memory.** The bytes read are kept whole and shared ([`Cache::loaded`]): an entry is a
//! few positions into them (its identity too, read only when compared), and the index uses
//! the names, file names and declarations of a warm start where they are, copying nothing
//! per plugin. What this run adds goes after them ([`Bytes`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::small_file::FileBytes;

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

/// The size from which the cache is mapped rather than read (where it may be: see
/// [`crate::small_file::Mapped`]): a cache of some 600 plugins and up. Reading 1 MB (10 000
/// plugins) copies it into some 250 pages new to the process, which cost more than the copy
/// itself on a virtual machine; mapping it shares the page cache's. A small one is read: one
/// `pread` costs less than setting up and tearing down a mapping.
const MAP_FROM: u64 = 64 << 10;

/// The most directories a cache records (search directories, and those of configured
/// files), and the most files in all: far above what a host searches, and what a forged
/// cache may make a start hold (a directory's record and a file's are made per item).
const MAX_DIRS: usize = 4096;
const MAX_FILES: usize = 1 << 20;

/// Device, inode, size, mtime (ns), ctime (ns). A directory's size is recorded as 0.
pub(crate) type Id = [i64; 5];

/// The bytes of an [`Id`] in the cache: five little-endian `i64`s.
pub(crate) const ID_LEN: usize = 40;

/// Where an identity starting at `at` is in the cache's bytes.
fn id_span(at: u32) -> Span {
    Span {
        start: at,
        len: ID_LEN as u32,
    }
}

/// The identity held in `bytes` (zeros if they are not [`ID_LEN`] long).
pub(crate) fn id_from(bytes: &[u8]) -> Id {
    let mut id = [0; 5];
    if bytes.len() == ID_LEN {
        for (n, b) in id.iter_mut().zip(bytes.chunks_exact(8)) {
            *n = i64::from_le_bytes(b.try_into().expect("eight bytes"));
        }
    }
    id
}

/// The cache's bytes: as loaded (shared with the index, which keeps the names and
/// declarations it uses where they are), then what this run added. A [`Span`] past the
/// loaded bytes is in the added ones.
#[derive(Clone, Copy)]
pub(crate) struct Bytes<'a> {
    loaded: &'a [u8],
    added: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// The bytes of `span` (empty if out of range: spans are made in range).
    #[inline]
    fn of(self, span: Span) -> &'a [u8] {
        match (span.start as usize).checked_sub(self.loaded.len()) {
            None => span.of(self.loaded),
            Some(start) => self
                .added
                .get(start..start + span.len as usize)
                .unwrap_or_default(),
        }
    }

    /// The identity at `at` (a position an entry was made with: checked in range when the
    /// cache was decoded, or appended by this run; zeros if not).
    fn id(self, at: u32) -> Id {
        id_from(self.of(id_span(at)))
    }

    /// Whether `span` is within the loaded bytes.
    #[inline]
    fn loaded(self, span: Span) -> bool {
        span.start as usize + span.len as usize <= self.loaded.len()
    }
}

/// A range of the cache's bytes (as loaded, then with what this run added after them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    /// Where the span ends (saturated: a span past the cache's bytes has none).
    #[inline]
    fn end(self) -> u32 {
        self.start.saturating_add(self.len)
    }

    /// The bytes of the span in `bytes` (empty if out of range: spans are made in range).
    #[inline]
    pub(crate) fn of(self, bytes: &[u8]) -> &[u8] {
        let start = self.start as usize;
        bytes
            .get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

/// What the index needs of one file: where its entry is in the cache's bytes (checked when
/// the cache was decoded, or made by this run) and the lengths of its parts. An entry's bytes
/// are laid out as the file has them (see [`Cache::put`]): the file's identity when it was
/// read ([`ID_LEN`] bytes), the plugin name and the version each after its `u32` length, a
/// byte saying whether a declaration block follows, then the block. So an entry is twelve
/// bytes (a table of 10 000 files stays within 240 KB, pages new to a starting process) and
/// nothing is allocated per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Where the entry starts: its identity, read only when compared (see [`Bytes::id`]).
    id: u32,
    /// The declaration block's length (see [`declared`]); 0: the plugin declares nothing (a
    /// block is never empty: it starts with its count).
    block: u32,
    /// The version's length (at most [`crate::limits::MAX_VERSION_TEXT`]).
    version: u16,
    /// The plugin name's length (at most [`crate::limits::MAX_PLUGIN_NAME`]).
    name: u8,
    /// Reached through a symbolic link: always checked by its own identity.
    linked: bool,
}

impl Entry {
    /// An entry of the parts' lengths starting at `id`, if they fit.
    fn new(id: u32, name: usize, version: usize, block: usize, linked: bool) -> Option<Entry> {
        Some(Entry {
            id,
            block: u32::try_from(block).ok()?,
            version: u16::try_from(version).ok()?,
            name: u8::try_from(name).ok()?,
            linked,
        })
    }

    /// Where the plugin name is (after the identity and its length).
    #[inline]
    fn name(self) -> Span {
        Span {
            start: self.id.saturating_add(ID_LEN as u32 + 4),
            len: u32::from(self.name),
        }
    }

    /// Where the version is (after the name and its length).
    #[inline]
    fn version(self) -> Span {
        Span {
            start: self.name().end().saturating_add(4),
            len: u32::from(self.version),
        }
    }

    /// Where the declaration block is (after the version and the byte saying it follows).
    #[inline]
    fn capabilities(self) -> Option<Span> {
        (self.block != 0).then(|| Span {
            start: self.version().end().saturating_add(1),
            len: self.block,
        })
    }

    /// The entry's bytes, whole: identity, name, version, the byte saying whether a block
    /// follows, and the block.
    fn bytes(self) -> Span {
        let end = match self.capabilities() {
            Some(block) => block.end(),
            None => self.version().end().saturating_add(1),
        };
        Span {
            start: self.id,
            len: end - self.id,
        }
    }
}

/// A file listed in a directory, with its entry (none: its provenance could not be read).
#[derive(Clone, Copy)]
struct FileRecord {
    name: Span,
    entry: Option<Entry>,
    /// Found by this index run (else dropped when an indexed directory is saved).
    seen: bool,
}

// A file's record is what a start makes per file of a directory whose identity matched:
// kept small (see `Entry`).
const _: () = assert!(std::mem::size_of::<FileRecord>() <= 24);

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

/// The cache as loaded, and what this index run found: its bytes, kept whole, and per
/// directory a table of spans into them.
pub(crate) struct Cache {
    path: PathBuf,
    /// The file's bytes (see [`Bytes`]): mapped when it is large (see [`MAP_FROM`]).
    loaded: Arc<FileBytes>,
    added: Vec<u8>,
    dirs: Vec<DirRecord>,
    dirty: bool,
}

/// An entry found for a file, and whether the file's own identity was checked (`false`: its
/// directory's was).
pub(crate) struct Found<'a> {
    pub(crate) entry: Entry,
    pub(crate) checked: bool,
    bytes: Bytes<'a>,
}

impl<'a> Found<'a> {
    /// The plugin's name (a checked Cargo package name).
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'a str {
        text(self.name_bytes())
    }
    /// The plugin's name as bytes (a checked Cargo package name: ASCII, so [`text`] of it
    /// is the same name).
    #[inline]
    pub(crate) fn name_bytes(&self) -> &'a [u8] {
        self.bytes.of(self.entry.name())
    }
    /// The file's identity when its entry was made.
    #[inline]
    pub(crate) fn id(&self) -> Id {
        self.bytes.id(self.entry.id)
    }
    /// The plugin's version, as recorded (checked text: see [`text`]).
    #[inline]
    pub(crate) fn version(&self) -> &'a [u8] {
        self.bytes.of(self.entry.version())
    }
    /// Its declaration block (see [`declared`]), none if it declares nothing.
    #[inline]
    pub(crate) fn declared(&self) -> Option<&'a [u8]> {
        self.entry.capabilities().map(|s| self.bytes.of(s))
    }
    /// Where the file's identity is in the cache's bytes as loaded (see [`Cache::loaded`];
    /// forty bytes, [`id_from`] reads them), if it is there.
    #[inline]
    pub(crate) fn loaded_id(&self) -> Option<u32> {
        let at = self.entry.id;
        self.bytes.loaded(id_span(at)).then_some(at)
    }
    /// Where its name and declaration block are in the cache's bytes as loaded (see
    /// [`Cache::loaded`]), if they are there (an entry decoded, not one this run made).
    #[inline]
    pub(crate) fn loaded(&self) -> Option<(Span, Option<Span>)> {
        let (name, capabilities) = (self.entry.name(), self.entry.capabilities());
        let bytes = self.bytes;
        (bytes.loaded(name) && capabilities.is_none_or(|s| bytes.loaded(s)))
            .then_some((name, capabilities))
    }
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
        let (bytes, dirs) = CACHE_FILE
            .read_or_map(&path, MAP_FROM)
            .inspect_err(|e| {
                if !e.is_not_found() {
                    tracing::debug!("index cache not used: {e}");
                }
            })
            .ok()
            .and_then(|(bytes, meta)| {
                if let Some(why) = not_ours(&meta) {
                    tracing::debug!("index cache {} not used: {why}", path.display());
                    return None;
                }
                let decoded = decode(&bytes);
                if decoded.is_none() {
                    tracing::debug!("index cache {} not used: malformed", path.display());
                }
                Some((bytes, decoded?))
            })
            .unwrap_or_default();
        Cache {
            path,
            loaded: Arc::new(bytes),
            added: Vec::new(),
            dirs,
            dirty: false,
        }
    }

    fn record(&mut self, dir: &Path) -> usize {
        match self.dirs.iter().position(|d| d.path == dir) {
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
        }
    }

    /// When search directory `dir` is the one recorded (same identity): its record, whose
    /// files ([`Cache::listed`]) are its plugin files — no need to list it — and whose
    /// entries are used without a `stat` each. `None`: list it (its identity is recorded for
    /// the next run once settled).
    pub(crate) fn listing(&mut self, dir: &Path) -> Option<usize> {
        let now = SystemTime::now();
        let current = dir_identity(dir);
        let at = self.record(dir);
        let record = &mut self.dirs[at];
        // Asked again in this index (a search directory named twice, `d` and `d/`): the
        // same answer as the first time. The first time may just have stamped a changed
        // directory with its new identity, which must not make its old files fresh.
        if record.indexed {
            return record.fresh.then_some(at);
        }
        record.indexed = true;
        let settled = current.filter(|id| settled(id, now));
        if settled.is_some() && record.stamp == settled {
            record.fresh = true;
            for f in &mut record.files {
                f.seen = true;
            }
            return Some(at);
        }
        record.fresh = false;
        if record.stamp != settled {
            record.stamp = settled;
            self.dirty = true;
        }
        None
    }

    /// The number of files recorded in directory record `dir`.
    pub(crate) fn listed(&self, dir: usize) -> usize {
        self.dirs[dir].files.len()
    }

    /// The path of directory record `dir`.
    pub(crate) fn dir_path(&self, dir: usize) -> &Path {
        &self.dirs[dir].path
    }

    /// The name of file `file` of directory record `dir` (a plain file name: checked).
    pub(crate) fn file_name(&self, dir: usize, file: usize) -> &std::ffi::OsStr {
        os_str(self.bytes().of(self.dirs[dir].files[file].name))
    }

    /// Where the name of file `file` of directory record `dir` is in the bytes as loaded,
    /// if it is there.
    #[inline]
    pub(crate) fn loaded_file_name(&self, dir: usize, file: usize) -> Option<Span> {
        let name = self.dirs[dir].files[file].name;
        self.bytes().loaded(name).then_some(name)
    }

    /// The cache file's bytes as loaded: a [`Span`] of [`Found::loaded`] or
    /// [`Cache::loaded_file_name`] is a range of them (checked text, as decoded).
    pub(crate) fn loaded(&self) -> Arc<FileBytes> {
        Arc::clone(&self.loaded)
    }

    fn bytes(&self) -> Bytes<'_> {
        Bytes {
            loaded: &self.loaded,
            added: &self.added,
        }
    }

    /// The entry for `path` if the file is the one recorded — by its directory's identity
    /// (see [`Cache::listing`]), else by its own.
    pub(crate) fn get(&mut self, path: &Path) -> Option<Found<'_>> {
        let (dir, name) = (path.parent()?, path.file_name()?);
        // The same bytes first: comparing paths component by component costs more.
        let d = self
            .dirs
            .iter()
            .position(|d| d.path.as_os_str() == dir.as_os_str() || d.path == dir)?;
        let f = self.find(d, name.as_encoded_bytes()).ok()?;
        self.found(d, f, path)
    }

    /// The entry for file `file` of directory record `dir`, as [`Cache::get`] gives it.
    #[inline]
    pub(crate) fn get_listed(&mut self, dir: usize, file: usize) -> Option<Found<'_>> {
        let record = &self.dirs[dir];
        let entry = record.files[file].entry?;
        if !record.fresh || entry.linked {
            let path = record.path.join(self.file_name(dir, file));
            return self.found(dir, file, &path);
        }
        // Trusted by its directory's identity, and marked seen when it was listed.
        Some(Found {
            entry,
            checked: false,
            bytes: self.bytes(),
        })
    }

    /// File `file` of record `dir`, at `path` (used only when its own identity is checked).
    fn found(&mut self, dir: usize, file: usize, path: &Path) -> Option<Found<'_>> {
        let bytes = Bytes {
            loaded: &self.loaded,
            added: &self.added,
        };
        let record = &mut self.dirs[dir];
        let fresh = record.fresh;
        let file = &mut record.files[file];
        let entry = file.entry?;
        let checked = !fresh || entry.linked;
        if checked && identity(path) != Some((bytes.id(entry.id), entry.linked)) {
            return None;
        }
        file.seen = true;
        Some(Found {
            entry,
            checked,
            bytes,
        })
    }

    /// Where file `name` is, or would be, in directory record `dir`.
    fn find(&self, dir: usize, name: &[u8]) -> Result<usize, usize> {
        let bytes = self.bytes();
        self.dirs[dir]
            .files
            .binary_search_by(|f| bytes.of(f.name).cmp(name))
    }

    /// Appends `bytes` to the cache's bytes: their span (none past 4 GiB).
    fn append(&mut self, bytes: &[u8]) -> Option<Span> {
        let start = u32::try_from(self.loaded.len() + self.added.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        start.checked_add(len)?;
        self.added.extend_from_slice(bytes);
        Some(Span { start, len })
    }

    /// Whether two entries say the same (their bytes, not where they are).
    fn same(&self, a: &Option<Entry>, b: &Option<Entry>) -> bool {
        let bytes = self.bytes();
        match (a, b) {
            (None, None) => true,
            // Identity, name, version and block, each after its length or its flag: the
            // same bytes say the same.
            (Some(a), Some(b)) => {
                a.linked == b.linked && bytes.of(a.bytes()) == bytes.of(b.bytes())
            }
            _ => false,
        }
    }

    fn set(&mut self, path: &Path, entry: Option<Entry>) {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let d = self.record(dir);
        let at = self.find(d, name.as_encoded_bytes());
        let old = at.ok().map(|f| self.dirs[d].files[f].entry);
        let changed = old.is_none_or(|old| !self.same(&old, &entry));
        let name = match at {
            Ok(f) => self.dirs[d].files[f].name,
            Err(_) => match self.append(name.as_encoded_bytes()) {
                Some(span) => span,
                None => return,
            },
        };
        let file = FileRecord {
            name,
            entry,
            seen: true,
        };
        let files = &mut self.dirs[d].files;
        match at {
            Ok(f) => files[f] = file,
            Err(f) => files.insert(f, file),
        }
        self.dirty |= changed;
    }

    /// Records what was read from `path`.
    pub(crate) fn put(&mut self, path: &Path, provenance: &plugin_api::provenance::Provenance) {
        let Some((id, linked)) = identity(path) else {
            return;
        };
        // Laid out as the file has it (see `Entry`).
        let (name, version) = (provenance.name.as_bytes(), provenance.version.to_string());
        let mut bytes = Vec::with_capacity(ID_LEN + 9 + name.len() + version.len() + 64);
        put_id(&mut bytes, &id);
        put_bytes(&mut bytes, name);
        put_bytes(&mut bytes, version.as_bytes());
        let block = match &provenance.capabilities {
            Some(declared) => {
                bytes.push(1);
                let start = bytes.len();
                encode_declared(&mut bytes, declared);
                bytes.len() - start
            }
            None => {
                bytes.push(0);
                0
            }
        };
        let entry = self
            .append(&bytes)
            .and_then(|at| Entry::new(at.start, name.len(), version.len(), block, linked));
        // (Provenance is bounded when read: a name or version too long for an entry is not
        // one a host reads; such a file is simply not cached.)
        if let Some(entry) = entry {
            self.set(path, Some(entry));
        }
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
        let bytes = Bytes {
            loaded: &self.loaded,
            added: &self.added,
        };
        for record in &mut self.dirs {
            let before = record.files.len();
            if record.indexed {
                record.files.retain(|f| f.seen);
            } else {
                // Another search path's (or a configured file's): kept while the file exists.
                let dir = &record.path;
                record
                    .files
                    .retain(|f| f.seen || dir.join(os_str(bytes.of(f.name))).exists());
            }
            self.dirty |= record.files.len() != before;
        }
        if !self.dirty {
            return;
        }
        if let Err(e) = write_atomically(&self.path, &encode(bytes, &self.dirs)) {
            tracing::debug!("cannot write the index cache {}: {e}", self.path.display());
        }
    }
}

/// Writes `bytes` to a new temporary file in the cache's directory (created exclusively,
/// never through a link planted at its name), then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    crate::small_file::write_atomically_with(path, |file| {
        // Its owner's alone, whatever the umask: a cache another user can write is not used.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        std::io::Write::write_all(file, bytes)
    })
}

/// Why a cache file (its `fstat` is `meta`) is not used, if it is not: someone besides this
/// process's user and root could change it ([`crate::small_file::others_may_change`]). Such
/// a cache could say which files a directory holds and what each declares.
fn not_ours(meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        crate::small_file::others_may_change(meta)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
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

/// Appends the declaration block of `declared` to `out`: the number of kinds, then each kind
/// with the number of its names and the names. [`declared`] reads it.
pub(crate) fn encode_declared(out: &mut Vec<u8>, declared: &BTreeMap<String, Vec<String>>) {
    put_u32(out, declared.len());
    for (kind, names) in declared {
        put_bytes(out, kind.as_bytes());
        put_u32(out, names.len());
        for name in names {
            put_bytes(out, name.as_bytes());
        }
    }
}

/// The `(kind, name)` pairs of a declaration block, in order (a malformed block ends early:
/// those the index keeps were checked when decoded, or made by [`encode_declared`]).
pub(crate) fn declared(block: &[u8]) -> Declared<'_> {
    let mut r = Reader {
        bytes: block,
        at: 0,
    };
    let kinds = r.u32().unwrap_or(0);
    Declared {
        r,
        kinds,
        kind: &[],
        names: 0,
    }
}

/// See [`declared`].
pub(crate) struct Declared<'a> {
    r: Reader<'a>,
    kinds: usize,
    kind: &'a [u8],
    names: usize,
}

impl<'a> Iterator for Declared<'a> {
    /// A kind and a name, as bytes (checked text: [`text`] makes them `str`s).
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        while self.names == 0 {
            if self.kinds == 0 {
                return None;
            }
            self.kinds -= 1;
            self.kind = self.r.bytes()?;
            self.names = self.r.u32()?;
        }
        self.names -= 1;
        Some((self.kind, self.r.bytes()?))
    }
}

/// Whether a declaration block declares `(kind, name)`: [`declared`] without the iterator,
/// for a pass over every plugin (a kind not asked for is skipped whole).
pub(crate) fn declares(block: &[u8], kind: &[u8], name: &[u8]) -> bool {
    let mut r = Reader {
        bytes: block,
        at: 0,
    };
    let Some(kinds) = r.u32() else {
        return false;
    };
    for _ in 0..kinds {
        let (Some(this), Some(names)) = (r.bytes(), r.u32()) else {
            return false;
        };
        for _ in 0..names {
            let Some(n) = r.bytes() else {
                return false;
            };
            if this == kind && n == name {
                return true;
            }
        }
    }
    false
}

/// [`declares`] for one `(kind, name)` over many blocks (a pass over every indexed plugin). A
/// block that declares one name of one kind — nearly every plugin's — is told by comparing
/// its bytes with that pair's block as [`encode_declared`] writes it (the same pair makes the
/// same bytes, and no other pair does); any other block is read by [`declares`].
pub(crate) struct Declares<'a> {
    kind: &'a [u8],
    name: &'a [u8],
    one: Vec<u8>,
}

impl<'a> Declares<'a> {
    pub(crate) fn new(kind: &'a str, name: &'a str) -> Self {
        let mut one = Vec::new();
        let pair = BTreeMap::from([(kind.to_owned(), vec![name.to_owned()])]);
        encode_declared(&mut one, &pair);
        Declares {
            kind: kind.as_bytes(),
            name: name.as_bytes(),
            one,
        }
    }

    /// Whether `block` declares the pair.
    #[inline]
    pub(crate) fn by(&self, block: &[u8]) -> bool {
        let one = self.one.as_slice();
        // The pair's own encoding, byte for byte: it. Another plugin's block of the same
        // length (names of one pattern, `x0001` … `x9999`) nearly always differs in its last
        // eight bytes, its name's end: told without a call to compare the rest.
        if block.len() == one.len()
            && block.last_chunk::<8>() == one.last_chunk::<8>()
            && block == one
        {
            return true;
        }
        if one_pair(block) {
            false
        } else {
            declares(block, self.kind, self.name)
        }
    }
}

/// Whether `block` is a whole declaration of one kind with one name, and nothing else.
#[inline]
fn one_pair(block: &[u8]) -> bool {
    let mut r = Reader {
        bytes: block,
        at: 0,
    };
    // One kind, its bytes; one name, its bytes; the end.
    r.u32() == Some(1)
        && r.bytes().is_some()
        && r.u32() == Some(1)
        && r.bytes().is_some()
        && r.left() == 0
}

/// Checked text of the cache as a `str` (empty if it is not UTF-8, which a checked one is).
pub(crate) fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A declaration block as a map of kind to names.
pub(crate) fn declared_map(block: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // A kind declared with no names is kept, as the provenance had it.
    let mut r = Reader {
        bytes: block,
        at: 0,
    };
    for _ in 0..r.u32().unwrap_or(0) {
        let Some(kind) = r.str() else { break };
        map.entry(kind.to_owned()).or_default();
        let names = r.u32().unwrap_or(0);
        for _ in 0..names {
            let Some(name) = r.str() else { break };
            map.entry(kind.to_owned())
                .or_default()
                .push(name.to_owned());
        }
    }
    map
}

fn encode(bytes: Bytes<'_>, dirs: &[DirRecord]) -> Vec<u8> {
    let held = bytes.loaded.len() + bytes.added.len();
    let mut out = Vec::with_capacity(held.min(CACHE_FILE.limit as usize) + 4096);
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
            put_bytes(&mut out, bytes.of(file.name));
            let Some(entry) = &file.entry else {
                out.push(0);
                continue;
            };
            out.push(if entry.linked { 2 } else { 1 });
            // Its bytes, laid out as the file has them (see `Entry`), whole.
            out.extend_from_slice(bytes.of(entry.bytes()));
        }
    }
    out
}

/// A bounded reader over the cache's bytes: every read checks what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        // One comparison: `at` is at most the length, `n` at most `u32::MAX`.
        let head = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
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
        (n.checked_mul(min)? <= self.left()).then_some(n)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(n)
    }
    /// The span of the next length-prefixed bytes (the cache is at most 64 MiB: in `u32`).
    fn span(&mut self) -> Option<Span> {
        let n = self.u32()?;
        let start = u32::try_from(self.at).ok()?;
        self.take(n)?;
        Some(Span {
            start,
            len: u32::try_from(n).ok()?,
        })
    }
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    fn id(&mut self) -> Option<Id> {
        Some(id_from(self.take(ID_LEN)?))
    }
}

#[cfg(unix)]
pub(crate) fn os_str(bytes: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes)
}

#[cfg(not(unix))]
pub(crate) fn os_str(bytes: &[u8]) -> &std::ffi::OsStr {
    // Written from `as_encoded_bytes` of this platform's `OsStr`s, and a file name found in
    // the cache is only ever joined to a path; text that is not UTF-8 is no name here (and a
    // decoded cache holds none: see `os_str_checked`).
    std::ffi::OsStr::new(std::str::from_utf8(bytes).unwrap_or("\u{fffd}"))
}

/// [`os_str`] of bytes from a cache file being decoded, `None` where it would not be the
/// same bytes: on Unix any bytes are a name; elsewhere only UTF-8 is read back exactly (a
/// name that is not, such as a Windows name with an unpaired surrogate, leaves the cache
/// unused rather than read as another name).
fn os_str_checked(bytes: &[u8]) -> Option<&std::ffi::OsStr> {
    #[cfg(not(unix))]
    std::str::from_utf8(bytes).ok()?;
    Some(os_str(bytes))
}

/// Checks a declaration block at the reader and moves past it: at most
/// [`crate::limits::MAX_CAPABILITIES`] kinds and names in all, each kind and name as
/// [`crate::limits::capability_name`] wants it.
fn check_declared<'a>(r: &mut Reader<'a>, last_kind: &mut Option<&'a [u8]>) -> Option<()> {
    let mut count = 0usize;
    for _ in 0..r.count(8)? {
        // Nearly every plugin declares the same kind or two: checked once in a row.
        let kind = r.bytes()?;
        if *last_kind != Some(kind) {
            crate::limits::is_capability_name(kind).then_some(())?;
        }
        *last_kind = Some(kind);
        let names = r.count(4)?;
        count = count.checked_add(names + 1)?;
        for _ in 0..names {
            crate::limits::is_capability_name(r.bytes()?).then_some(())?;
        }
    }
    (count <= crate::limits::MAX_CAPABILITIES).then_some(())
}

/// Whether `name` holds a `/` or a NUL byte: eight bytes at a time (a file name of each of
/// 10 000 entries is checked on every warm start).
fn slash_or_nul(name: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of a byte of the result is set if that byte of `x` is zero (and, past
    // the first zero byte, maybe for others: which changes nothing here).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
        if has_zero(x) || has_zero(x ^ (ONES * u64::from(b'/'))) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b == b'/' || b == 0)
}

/// Whether file name `a` sorts before file name `b` (as `a < b` does), told by their first
/// eight bytes as one number when they differ there: file names hold no NUL (checked before
/// they are compared), so a name shorter than eight bytes padded with zeros sorts as it does.
#[inline]
fn sorts_before(a: &[u8], b: &[u8]) -> bool {
    let head = |name: &[u8]| match name.first_chunk::<8>() {
        Some(word) => u64::from_be_bytes(*word),
        None => {
            let mut word = [0; 8];
            word[..name.len()].copy_from_slice(name);
            u64::from_be_bytes(word)
        }
    };
    match head(a).cmp(&head(b)) {
        std::cmp::Ordering::Equal => a < b,
        order => order.is_lt(),
    }
}

/// Decodes `bytes` as an index cache file and reads back every part a start reads, for the
/// fuzz target `index_cache` (`fuzz/`): whatever the bytes, never a panic; what decodes
/// encodes back to the very same bytes; file names are in the order lookups search them by;
/// names and versions are checked text; every pair a declaration block lists is found again
/// by [`declares`] and [`Declares::by`].
#[doc(hidden)]
pub fn fuzz_index_cache(bytes: &[u8]) {
    let Some(dirs) = decode(bytes) else {
        return;
    };
    let b = Bytes {
        loaded: bytes,
        added: &[],
    };
    assert!(
        encode(b, &dirs) == bytes,
        "a decoded cache encodes back to other bytes"
    );
    for dir in &dirs {
        // In the order a lookup's binary search needs: the bytes' own order.
        assert!(
            dir.files
                .windows(2)
                .all(|pair| b.of(pair[0].name) < b.of(pair[1].name)),
            "file names out of order"
        );
        for file in &dir.files {
            assert!(!b.of(file.name).is_empty(), "an empty file name");
            let Some(entry) = file.entry else {
                continue;
            };
            assert!(crate::limits::is_plugin_name(b.of(entry.name())));
            assert!(std::str::from_utf8(b.of(entry.version())).is_ok());
            std::hint::black_box(b.id(entry.id));
            let Some(block) = entry.capabilities().map(|s| b.of(s)) else {
                continue;
            };
            let map = declared_map(block);
            let mut listed = 0;
            for (kind, name) in declared(block) {
                listed += 1;
                assert!(map
                    .get(text(kind))
                    .is_some_and(|n| n.iter().any(|n| n.as_bytes() == name)));
                assert!(declares(block, kind, name), "a listed pair not declared");
                assert!(
                    Declares::new(text(kind), text(name)).by(block),
                    "a listed pair not told"
                );
            }
            assert_eq!(listed, map.values().map(Vec::len).sum::<usize>());
        }
    }
}

/// The directories of a cache file, as spans into `bytes`, or `None` if anything in it is
/// malformed: a wrong magic, a count larger than the bytes left, text that is not UTF-8,
/// files out of order, a file name that is not one (empty, `.`, `..`, a separator), an entry
/// beyond the bounds provenance must keep (a forged cache), trailing bytes. Nothing is
/// allocated per file but its place in its directory's table.
fn decode(bytes: &[u8]) -> Option<Vec<DirRecord>> {
    let mut r = Reader { bytes, at: 0 };
    let mut last_kind = None;
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let dir_count = r.count(9)?;
    if dir_count > MAX_DIRS {
        return None;
    }
    let mut dirs = Vec::with_capacity(dir_count);
    // Each directory once (told apart as `Cache::record` finds them: by components), and
    // named.
    let mut paths = std::collections::HashSet::with_capacity(dir_count);
    let mut files_left = MAX_FILES;
    for _ in 0..dir_count {
        let path = PathBuf::from(os_str_checked(r.bytes()?)?);
        if path.as_os_str().is_empty() || !paths.insert(path.clone()) {
            return None;
        }
        let stamp = match r.u8()? {
            0 => None,
            1 => Some(r.id()?),
            _ => return None,
        };
        let file_count = r.count(5)?;
        files_left = files_left.checked_sub(file_count)?;
        let mut files: Vec<FileRecord> = Vec::with_capacity(file_count);
        let mut last: &[u8] = &[];
        for _ in 0..file_count {
            let name = r.span()?;
            let text = name.of(bytes);
            let plain = !text.is_empty()
                && text != b"."
                && text != b".."
                && !slash_or_nul(text)
                && os_str_checked(text).is_some();
            if !plain || (!files.is_empty() && !sorts_before(last, text)) {
                return None;
            }
            last = text;
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
            // Kept where it is: read only when compared.
            let id = u32::try_from(r.at).ok()?;
            r.take(ID_LEN)?;
            let plugin = r.span()?;
            let plugin_ok = crate::limits::is_plugin_name(plugin.of(bytes));
            let version = r.span()?;
            let text = version.of(bytes);
            // As reading a plugin bounds its version (its parts), written out.
            let version_ok = text.len() <= crate::limits::MAX_VERSION_TEXT
                && (text.is_ascii() || std::str::from_utf8(text).is_ok());
            if !plugin_ok || !version_ok {
                return None;
            }
            let block = match r.u8()? {
                0 => 0,
                1 => {
                    let start = r.at;
                    check_declared(&mut r, &mut last_kind)?;
                    r.at - start
                }
                _ => return None,
            };
            let entry = Entry::new(id, plugin.len as usize, version.len as usize, block, linked)?;
            files.push(FileRecord {
                name,
                entry: Some(entry),
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
    (r.left() == 0).then_some(dirs)
}

#[cfg(test)]
mod tests;
