//! The index cache: what indexing read from each plugin file's provenance (name, version,
//! declared capabilities), keyed by the file's path and identity — device, inode, size,
//! modification and change times — so a later index `stat`s each file instead of reading it.
//!
//! A stale or forged entry is harmless to soundness: it only chooses which library the host
//! verifies, and that library's provenance is read again from the file, trusted and judged
//! before anything is loaded (the normal path). Entries are bounded like provenance on the
//! way in. The file is rewritten atomically (a temporary file renamed over it) and only when
//! something changed; any error reading or writing it just means no cache.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format version; another version is ignored (and replaced).
const VERSION: u32 = 1;

/// How the cache is read: a regular file (never a link: the host writes it by renaming a
/// file over it) of at most 64 MiB.
const CACHE_FILE: crate::small_file::SmallFile = crate::small_file::SmallFile {
    what: "index cache",
    limit: 64 << 20,
    links: crate::small_file::Links::Refuse,
};

/// What the index needs of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Device, inode, size, mtime (ns), ctime (ns).
    id: [i128; 5],
    pub name: String,
    pub version: String,
    pub capabilities: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    version: u32,
    entries: HashMap<String, Entry>,
}

/// The cache as loaded, and what this index run found.
pub(crate) struct Cache {
    path: PathBuf,
    old: HashMap<String, Entry>,
    new: HashMap<String, Entry>,
    dirty: bool,
}

/// The identity of the file at `path` (symlinks followed), or `None` (no cache for it).
fn identity(path: &Path) -> Option<[i128; 5]> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some([
            m.dev().into(),
            m.ino().into(),
            m.size().into(),
            ns(m.mtime(), m.mtime_nsec()),
            ns(m.ctime(), m.ctime_nsec()),
        ])
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl Cache {
    /// Loads the cache file at `path` (missing, unreadable, not a regular file, too large or
    /// malformed: empty, and said in the debug log).
    pub(crate) fn load(path: PathBuf) -> Cache {
        let old = CACHE_FILE
            .read(&path)
            .inspect_err(|e| {
                if !e.is_not_found() {
                    tracing::debug!("index cache not used: {e}");
                }
            })
            .ok()
            .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
            .filter(|f| f.version == VERSION)
            .map(|f| f.entries)
            .unwrap_or_default();
        Cache {
            path,
            old,
            new: HashMap::new(),
            dirty: false,
        }
    }

    /// The entry for `path` if the file is the one recorded (same identity) and the entry is
    /// within the bounds provenance must keep. (It moves to what this run found.)
    pub(crate) fn get(&mut self, path: &Path) -> Option<&Entry> {
        let key = path.to_str()?;
        let id = identity(path)?;
        let entry = self.old.get(key).filter(|e| e.id == id)?;
        let bounded = crate::limits::check_name(&entry.name).is_ok()
            && entry.version.len() <= crate::limits::MAX_FIELD
            && entry
                .capabilities
                .as_ref()
                .is_none_or(|c| crate::limits::check_declared(c).is_ok());
        if !bounded {
            return None;
        }
        let (key, entry) = self.old.remove_entry(key)?;
        Some(self.new.entry(key).or_insert(entry))
    }

    /// Records what was read from `path`.
    pub(crate) fn put(&mut self, path: &Path, provenance: &plugin_api::provenance::Provenance) {
        let (Some(key), Some(id)) = (path.to_str(), identity(path)) else {
            return;
        };
        let entry = Entry {
            id,
            name: provenance.name.clone(),
            version: provenance.version.to_string(),
            capabilities: provenance.capabilities.clone(),
        };
        self.new.insert(key.to_owned(), entry);
        self.dirty = true;
    }

    /// Writes the cache if an entry was added or one of `dirs` lost a file; entries outside
    /// `dirs` are kept. Atomic: a temporary file in the same directory, renamed over it.
    pub(crate) fn save(mut self, dirs: &[PathBuf]) {
        // What is left of the old entries was not found this time (found ones were moved).
        for (key, entry) in std::mem::take(&mut self.old) {
            let path = Path::new(&key);
            let indexed_now = path.parent().is_some_and(|p| dirs.iter().any(|d| d == p));
            if indexed_now {
                // A file of an indexed directory not seen this time is gone (or changed,
                // and then put again).
                self.dirty |= !self.new.contains_key(&key);
            } else if path.exists() {
                // Another search path's entry: kept while its file exists.
                self.new.entry(key).or_insert(entry);
            }
        }
        if !self.dirty {
            return;
        }
        let file = File {
            version: VERSION,
            entries: self.new,
        };
        if let Err(e) = write_atomically(&self.path, &file) {
            tracing::debug!("cannot write the index cache {}: {e}", self.path.display());
        }
    }
}

/// Writes `file` to a new temporary file in the cache's directory (created exclusively, never
/// through a link planted at its name), then renames it over `path`.
fn write_atomically(path: &Path, file: &File) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    crate::small_file::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_used_only_for_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("liba.so");
        std::fs::write(&lib, b"one").unwrap();
        let cache_path = dir.path().join("cache/index.json");
        let mut p = crate::lazy::tests::provenance("a", Some(&[("command", &["hello"])]));
        let mut cache = Cache::load(cache_path.clone());
        assert!(cache.get(&lib).is_none());
        cache.put(&lib, &p);
        cache.save(&[dir.path().to_owned()]);
        assert!(cache_path.is_file(), "written");

        let mut cache = Cache::load(cache_path.clone());
        let entry = cache.get(&lib).expect("a hit for the same file");
        assert_eq!(
            (entry.name.as_str(), entry.capabilities.clone()),
            ("a", p.capabilities.clone())
        );

        // Another content (another size, another ctime): a miss.
        std::fs::write(&lib, b"other").unwrap();
        let mut cache = Cache::load(cache_path.clone());
        assert!(cache.get(&lib).is_none());

        // An entry beyond the bounds (a forged cache) is not used.
        p.capabilities = Some(BTreeMap::from([("command".into(), vec!["x".repeat(500)])]));
        let mut cache = Cache::load(cache_path.clone());
        cache.put(&lib, &p);
        cache.save(&[dir.path().to_owned()]);
        assert!(Cache::load(cache_path.clone()).get(&lib).is_none());

        // Garbage: no cache, no error.
        std::fs::write(&cache_path, b"{not json").unwrap();
        assert!(Cache::load(cache_path).get(&lib).is_none());
    }

    /// A cache with one entry for `lib`, written at `cache_path`.
    #[cfg(unix)]
    fn one_entry(lib: &Path, cache_path: &Path) {
        let p = crate::lazy::tests::provenance("a", Some(&[("command", &["hello"])]));
        let mut cache = Cache::load(cache_path.to_owned());
        cache.put(lib, &p);
        cache.save(&[lib.parent().unwrap().to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_a_device_or_a_link_as_the_cache_is_no_cache_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("liba.so");
        std::fs::write(&lib, b"one").unwrap();
        let cache_path = dir.path().join("index.json");
        let fifo = std::ffi::CString::new(cache_path.to_str().unwrap()).unwrap();
        // SAFETY: `fifo` is a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(Cache::load(cache_path.clone()).get(&lib).is_none());
        std::fs::remove_file(&cache_path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &cache_path).unwrap();
        assert!(Cache::load(cache_path.clone()).get(&lib).is_none());

        // A link to a real cache is not followed either.
        std::fs::remove_file(&cache_path).unwrap();
        let real = dir.path().join("real.json");
        one_entry(&lib, &real);
        assert!(Cache::load(real.clone()).get(&lib).is_some());
        std::os::unix::fs::symlink(&real, &cache_path).unwrap();
        assert!(Cache::load(cache_path.clone()).get(&lib).is_none());

        // Larger than the limit: not read.
        std::fs::remove_file(&cache_path).unwrap();
        std::fs::copy(&real, &cache_path).unwrap();
        assert!(Cache::load(cache_path.clone()).get(&lib).is_some());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&cache_path)
            .unwrap();
        f.set_len(CACHE_FILE.limit + 1).unwrap();
        assert!(Cache::load(cache_path).get(&lib).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn the_temporary_file_is_never_written_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("liba.so");
        std::fs::write(&lib, b"one").unwrap();
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cache_dir).unwrap();
        let cache_path = cache_dir.join("index.json");
        // Links at the temporary names this process would use, to a file of the victim's.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let pid = std::process::id();
        for name in [
            format!(".index.json.{pid}.tmp"),
            format!(".index.json.tmp.{pid}.0"),
            format!(".index.json.tmp.{pid}.1"),
        ] {
            std::os::unix::fs::symlink(&victim, cache_dir.join(name)).unwrap();
        }
        one_entry(&lib, &cache_path);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!cache_path.is_symlink() && cache_path.is_file());
        assert!(
            Cache::load(cache_path).get(&lib).is_some(),
            "the cache was written"
        );
    }
}
