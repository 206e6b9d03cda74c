//! Lazy loading: a capability index built from provenance alone, and libraries loaded only
//! when one of their capabilities is first used.
//!
//! [`crate::Host::index`] discovers the plugin files of the search path and reads each one's
//! provenance (no trust step, no judging, nothing loaded). A plugin that declares its
//! capabilities (`[package.metadata.plugin-host] capabilities = { command = ["hello"] }` in
//! its `Cargo.toml`, recorded by `plugin_api::build::record`) is indexed under each of them.
//! [`crate::Host::get_lazy`] (or [`crate::Host::load_capability`]) then finds the plugin that declared the
//! capability asked for and takes it through the normal path — open, read, trust, judge, load,
//! register — exactly as [`crate::Host::load`] does: the index only chooses which file to verify.
//!
//! Rules:
//! - **Path order wins.** Directories in the order given, files by name within each. When two
//!   files carry the same plugin name, the first is used and the others are reported
//!   [`Status::Shadowed`], naming the first. When two plugins declare the same capability,
//!   the first is loaded; the next is tried only if the first cannot be used. Loading a
//!   plugin loads first the plugins earlier in path order that declare one of its
//!   capabilities too, so an overlap ends as in a scan: the later plugin is refused
//!   (`capability-conflict`).
//! - **Undeclared plugins are loaded up front.** A plugin without a declaration (built by an
//!   older recorder, or without the table) cannot be indexed: `index` loads it at once, as
//!   a scan would. So is nothing else.
//! - **Builtins** are registered by `index` (as by a scan), before any file.
//! - A capability already in the registry (a builtin's, an undeclared plugin's, or one loaded
//!   earlier) is used as it is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

mod cache;
#[doc(hidden)]
pub use cache::fuzz_index_cache;

use crate::discover::{discover, DiscoverError};
use crate::error::PluginError;
use crate::keyed::KeyedHash;
use crate::reason::ReasonCode;
use crate::registry::{LookupError, Registry};
use crate::report::{PluginReport, Status};
use crate::small_file::FileBytes;

/// A plugin file the index knows by its declaration.
#[derive(Debug, Clone)]
pub struct IndexedPlugin {
    /// The file, as found in the search path.
    pub path: PathBuf,
    /// Its plugin name.
    pub name: String,
    /// The capabilities it declares, by kind.
    pub capabilities: BTreeMap<String, Vec<String>>,
    /// What became of it so far.
    pub state: IndexedState,
}

/// Whether an indexed plugin was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexedState {
    /// Not loaded: none of its capabilities was asked for yet.
    Pending,
    /// Verified, loaded and registered.
    Loaded,
    /// Tried, and refused or failed: the reason and message of its report.
    Refused(ReasonCode, String),
}

/// Some bytes of [`Index::text`], or of [`Index::shared`] when the start has [`SHARED`]
/// set: start and length (32 bits each: the tables of 10 000 plugins stay small; an index of
/// more than 2 GiB of names is not one this host makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text(u32, u32);

/// The bit of a [`Text`]'s start that says it is in [`Index::shared`].
const SHARED: u32 = 1 << 31;

/// The bytes an index keeps: its own, and the index cache's as loaded.
#[derive(Clone, Copy)]
struct Texts<'a> {
    own: &'a [u8],
    shared: &'a [u8],
}

impl<'a> Texts<'a> {
    /// An index's own bytes and, if it keeps them, the cache's.
    fn of(own: &'a [u8], shared: &'a Option<std::sync::Arc<FileBytes>>) -> Self {
        Texts {
            own,
            shared: shared.as_deref().map_or(&[], |s| &s[..]),
        }
    }

    fn get(self, t: Text) -> &'a [u8] {
        let (text, start) = match t.0 & SHARED {
            0 => (self.own, t.0 as usize),
            _ => (self.shared, (t.0 & !SHARED) as usize),
        };
        text.get(start..start + t.1 as usize).unwrap_or_default()
    }
}

/// Bytes to place: to be copied into [`Index::text`], or already held.
#[derive(Clone, Copy)]
enum Source<'a> {
    Copy(&'a [u8]),
    Held(Text),
}

/// Where a file is: one of [`Index::dirs`], and the file's name in [`Index::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileAt {
    dir: u32,
    name: Text,
}

/// A file considered by `index`: its place in [`Index::considered`], the one place that
/// says where the file is (the tables that name a file hold this, four bytes, instead).
type Considered = u32;

/// One indexed plugin: its file, and where its name and declaration block (see
/// [`cache::declared`]) are in [`Index::text`].
#[derive(Debug)]
struct Slot {
    file: Considered,
    name: Text,
    declared: Text,
    /// Its name and declaration came from the index cache, not from the file.
    cached: bool,
}

// What a start makes per plugin, kept small: at 10 000 plugins every byte here is 10 KB of
// pages new to the process, each costing more to touch the first time than the index spends
// on a plugin (see BENCHMARKS.md, issue 18 item 3).
const _: () = assert!(std::mem::size_of::<Slot>() <= 24);
const _: () = assert!(std::mem::size_of::<(Text, Considered, u32)>() <= 16);
const _: () = assert!(std::mem::size_of::<(Considered, u32)>() <= 8);

/// Every plugin name met so far → the first file carrying it: an open-addressed table of
/// the names' hashes (keyed by two random words per index, so names cannot be chosen to
/// collide without them), the names kept in the index's bytes, so nothing is allocated per
/// name.
#[derive(Debug, Default)]
struct Names {
    hasher: KeyedHash,
    /// A power of two of slots, at most half of them used: an entry's number + 1, or 0
    /// (empty). Probed one slot after another from a name's hash.
    table: Vec<u32>,
    /// A name, the first file carrying it, and the low half of the name's hash (enough to
    /// place it in a table of up to 2³² slots, and to skip most other names unread).
    entries: Vec<(Text, Considered, u32)>,
}

impl Names {
    /// The first file carrying `name` (at `held` in `text`) if there is one; else `file`
    /// becomes it, and `None`.
    fn first_or_insert(
        &mut self,
        text: Texts<'_>,
        held: Text,
        file: Considered,
    ) -> Option<Considered> {
        let name = text.get(held);
        let hash = self.hasher.hash(name) as u32;
        if (self.entries.len() + 1) * 2 > self.table.len() {
            self.resize(self.entries.len() + 1);
        }
        let mask = self.table.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let number = self.table[at];
            let Some(&(other, first, other_hash)) =
                self.entries.get((number as usize).wrapping_sub(1))
            else {
                break;
            };
            if other_hash == hash && text.get(other) == name {
                return Some(first);
            }
            at = (at + 1) & mask;
        }
        let Ok(number) = u32::try_from(self.entries.len() + 1) else {
            // Four billion names: not one more (the table is at most half full).
            return None;
        };
        self.table[at] = number;
        self.entries.push((held, file, hash));
        None
    }

    /// Makes the table room for `n` entries at most half full (placing the entries again).
    fn resize(&mut self, n: usize) {
        let size = (n * 2).next_power_of_two().max(16);
        if size <= self.table.len() {
            return;
        }
        self.table.clear();
        self.table.resize(size, 0);
        let mask = size - 1;
        for (number, &(_, _, hash)) in self.entries.iter().enumerate() {
            let mut at = hash as usize & mask;
            while self.table[at] != 0 {
                at = (at + 1) & mask;
            }
            self.table[at] = number as u32 + 1;
        }
    }

    fn reserve(&mut self, n: usize) {
        self.resize(self.entries.len() + n);
        self.entries.reserve(n);
    }
}

/// The capability index of a host (see the module documentation). Names, file names and
/// declarations are kept one after another in one buffer and found by position, so indexing
/// a plugin allocates nothing of its own; a path, a name or a declaration is made only for a
/// plugin loaded, reported or listed.
#[derive(Debug, Default)]
pub(crate) struct Index {
    text: Vec<u8>,
    /// The index cache's bytes as loaded by the first `index` with a cache: the names, file
    /// names and declarations of its entries are used where they are (checked text, as
    /// decoded), not copied.
    shared: Option<std::sync::Arc<FileBytes>>,
    /// The directories of the files considered.
    dirs: Vec<PathBuf>,
    plugins: Vec<Slot>,
    /// What became of the plugins not [`IndexedState::Pending`], by their place in
    /// [`Index::plugins`] (kept apart: a slot stays small).
    states: HashMap<usize, IndexedState>,
    names: Names,
    /// Every file `index` considered, in path order (what `Lazy::reindex_without_cache` reads
    /// and places again), and whether `index` reported it (loaded at once, verified and
    /// refused, shadowed): not reported again.
    considered: Vec<(FileAt, bool)>,
    /// What [`Index::candidates`] found, by `(kind, name)`, since the last plugin was added
    /// (loading a capability asks for the same twice: for itself, and for the plugins
    /// earlier in path order that declare one of the capabilities of the one loaded).
    asked: HashMap<(String, String), Vec<usize>>,
    /// The files whose entries were trusted by their directory's identity, with the identity
    /// each had when its entry was made: checked one by one before a capability is said not
    /// found.
    /// The identity is where the cache's bytes have it, when the start has [`SHARED`] set
    /// (read only if needed), else one of [`Index::unchecked_ids`].
    unchecked: Vec<(Considered, u32)>,
    unchecked_ids: Vec<cache::Id>,
}

/// What the index made of one file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Indexed under its declared capabilities.
    Indexed,
    /// A file earlier in path order carries the same plugin name.
    Shadowed(PathBuf),
    /// It declares nothing: to be loaded now.
    Undeclared,
}

impl Index {
    /// The indexed plugins, in path order.
    pub(crate) fn plugins(&self) -> Vec<IndexedPlugin> {
        (0..self.plugins.len()).map(|at| self.plugin(at)).collect()
    }

    /// Indexed plugin `at`, made whole.
    fn plugin(&self, at: usize) -> IndexedPlugin {
        let slot = &self.plugins[at];
        IndexedPlugin {
            path: self.considered_path(slot.file),
            name: self.name(at).to_owned(),
            capabilities: cache::declared_map(self.bytes(slot.declared)),
            state: self.state(at).clone(),
        }
    }

    /// What became of indexed plugin `at`.
    fn state(&self, at: usize) -> &IndexedState {
        self.states.get(&at).unwrap_or(&IndexedState::Pending)
    }

    fn set_state(&mut self, at: usize, state: IndexedState) {
        match state {
            IndexedState::Pending => self.states.remove(&at),
            state => self.states.insert(at, state),
        };
    }

    /// The plugin name of indexed plugin `at`.
    fn name(&self, at: usize) -> &str {
        cache::text(self.bytes(self.plugins[at].name))
    }

    /// The `(kind, name)` pairs indexed plugin `at` declares.
    fn declared(&self, at: usize) -> cache::Declared<'_> {
        cache::declared(self.bytes(self.plugins[at].declared))
    }

    /// The file of indexed plugin `at`.
    fn plugin_path(&self, at: usize) -> PathBuf {
        self.considered_path(self.plugins[at].file)
    }

    /// The path of considered file `file`.
    fn considered_path(&self, file: Considered) -> PathBuf {
        match self.considered.get(file as usize) {
            Some(&(at, _)) => self.path(at),
            None => PathBuf::new(),
        }
    }

    /// Records `file` as considered (in path order): its number.
    fn consider(&mut self, file: FileAt) -> Considered {
        self.considered.push((file, false));
        (self.considered.len() - 1) as Considered
    }

    /// Room for `n` more files (`shared`: most of their names are in the cache's bytes).
    fn reserve(&mut self, n: usize, shared: bool) {
        self.plugins.reserve(n);
        self.considered.reserve(n);
        self.unchecked.reserve(n);
        self.names.reserve(n);
        if !shared {
            // A file name, a plugin name and a declaration of one or two names.
            self.text.reserve(n * 48);
        }
    }

    /// The identity an entry of [`Index::unchecked`] records.
    fn unchecked_id(&self, id: u32) -> cache::Id {
        match id & SHARED {
            0 => self
                .unchecked_ids
                .get(id as usize)
                .copied()
                .unwrap_or_default(),
            _ => cache::id_from(self.texts().get(Text(id, cache::ID_LEN as u32))),
        }
    }

    fn texts(&self) -> Texts<'_> {
        Texts::of(&self.text, &self.shared)
    }

    fn bytes(&self, t: Text) -> &[u8] {
        self.texts().get(t)
    }

    fn hold(&mut self, source: Source<'_>) -> Text {
        match source {
            Source::Copy(bytes) => self.push(bytes),
            Source::Held(t) => t,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Text {
        let (Ok(start), Ok(len)) = (u32::try_from(self.text.len()), u32::try_from(bytes.len()))
        else {
            return Text(0, 0);
        };
        if start.checked_add(len).is_none_or(|end| end >= SHARED) {
            return Text(0, 0);
        }
        self.text.extend_from_slice(bytes);
        Text(start, len)
    }

    /// The number of directory `dir` among [`Index::dirs`], added if new.
    fn dir(&mut self, dir: &Path) -> u32 {
        // Files come directory by directory: the last one first.
        let same = |d: &PathBuf| d.as_os_str() == dir.as_os_str();
        if let Some(at) = self.dirs.iter().rposition(same) {
            return at as u32;
        }
        self.dirs.push(dir.to_owned());
        (self.dirs.len() - 1) as u32
    }

    /// The file `name` of directory `dir`.
    fn file_in(&mut self, dir: &Path, name: &std::ffi::OsStr) -> FileAt {
        FileAt {
            dir: self.dir(dir),
            name: self.push(name.as_encoded_bytes()),
        }
    }

    /// The file at `path`: its directory and name, or the whole path when joining them again
    /// would not give it back (`..`, a trailing separator).
    fn file_at(&mut self, path: &Path) -> FileAt {
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) if dir.join(name).as_os_str() == path.as_os_str() => {
                self.file_in(dir, name)
            }
            _ => self.file_in(Path::new(""), path.as_os_str()),
        }
    }

    fn path(&self, file: FileAt) -> PathBuf {
        let name = self.bytes(file.name);
        if file.name.0 & SHARED != 0 {
            // A file name of the cache (checked when decoded).
            return self.dirs[file.dir as usize].join(cache::os_str(name));
        }
        // SAFETY: `name` is a copy of the bytes of an `OsStr` (`file_in`), made on this
        // platform in this process, whole.
        let name = unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(name) };
        self.dirs[file.dir as usize].join(name)
    }

    /// Places one file (in path order) by its provenance.
    #[cfg(test)]
    pub(crate) fn add(
        &mut self,
        path: &Path,
        name: &str,
        declared: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Placed {
        let at = self.file_at(path);
        let file = self.consider(at);
        let block = declared.map(|d| {
            let mut block = Vec::new();
            cache::encode_declared(&mut block, d);
            block
        });
        let block = block.as_deref().map(Source::Copy);
        self.add_at(file, Source::Copy(name.as_bytes()), block, false)
    }

    /// Places `file` (in path order) by its plugin name and declaration block.
    fn add_at(
        &mut self,
        file: Considered,
        name: Source<'_>,
        declared: Option<Source<'_>>,
        cached: bool,
    ) -> Placed {
        let held = self.hold(name);
        // Not `self.texts()`: `self.names` is borrowed mutably beside it.
        let texts = Texts::of(&self.text, &self.shared);
        if let Some(first) = self.names.first_or_insert(texts, held, file) {
            // The name was pushed last: taken back.
            if matches!(name, Source::Copy(_))
                && held.0 as usize + held.1 as usize == self.text.len()
            {
                self.text.truncate(held.0 as usize);
            }
            return Placed::Shadowed(self.considered_path(first));
        }
        let Some(declared) = declared else {
            return Placed::Undeclared;
        };
        let declared = self.hold(declared);
        if !self.asked.is_empty() {
            self.asked.clear();
        }
        self.plugins.push(Slot {
            file,
            name: held,
            declared,
            cached,
        });
        Placed::Indexed
    }

    /// The indexed plugins declaring `(kind, name)`, in path order: a pass over the
    /// declarations, which costs less than building a map of them would for a start-up
    /// that asks for one or two.
    pub(crate) fn candidates(&mut self, kind: &str, name: &str) -> Vec<usize> {
        let key = (kind.to_owned(), name.to_owned());
        if let Some(found) = self.asked.get(&key) {
            return found.clone();
        }
        let pair = cache::Declares::new(kind, name);
        let texts = self.texts();
        let found: Vec<usize> = self
            .plugins
            .iter()
            .enumerate()
            .filter(|(_, slot)| pair.by(texts.get(slot.declared)))
            .map(|(at, _)| at)
            .collect();
        self.asked.insert(key, found.clone());
        found
    }

    /// Fills the memo of [`Index::candidates`] for every declared capability in one pass:
    /// for a walk that will ask for many (a chain of overlapping plugins), where a pass per
    /// capability would cost the square of their number.
    pub(crate) fn ask_all(&mut self) {
        let mut all: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for at in 0..self.plugins.len() {
            for (kind, name) in self.declared(at) {
                let key = (cache::text(kind).to_owned(), cache::text(name).to_owned());
                let slots = all.entry(key).or_default();
                // A plugin declaring one capability twice is one candidate.
                if slots.last() != Some(&at) {
                    slots.push(at);
                }
            }
        }
        self.asked = all;
    }

    /// The capability names of `kind` that indexed plugins not refused declare.
    pub(crate) fn names(&self, kind: &str) -> Vec<String> {
        (0..self.plugins.len())
            .filter(|&at| !matches!(self.state(at), IndexedState::Refused(..)))
            .flat_map(|at| self.declared(at))
            .filter(|(k, _)| *k == kind.as_bytes())
            .map(|(_, n)| cache::text(n).to_owned())
            .collect()
    }
}

/// Why [`crate::Host::load_capability`] could not make a capability available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LazyError {
    /// No plugin provides it, or it is there but unusable (see [`LookupError`]).
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The plugin that declares it was refused or failed (and so was every other that
    /// declares it): the reason and message of its report.
    #[error("{kind} `{name}` is declared by plugin `{plugin}`, which could not be used: {message} [{reason}]")]
    Refused {
        /// The kind asked for.
        kind: String,
        /// The capability asked for.
        name: String,
        /// The plugin tried (the first in path order, when several were).
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Its report's reason code.
        reason: ReasonCode,
        /// Its report's message.
        message: String,
    },
    /// The plugin that declares it loaded and registered, but did not register it.
    #[error(
        "plugin `{plugin}` ({}) declares {kind} `{name}` but did not register it (it \
         registered: {}); report it to the plugin's author",
        path.display(),
        if registered.is_empty() { "nothing".to_owned() } else { registered.join(", ") }
    )]
    NotRegistered {
        /// The kind asked for.
        kind: String,
        /// The capability asked for.
        name: String,
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// What it did register, as `kind:name`.
        registered: Vec<String>,
    },
}

impl LazyError {
    /// The reason code behind the error, when there is one.
    pub fn reason(&self) -> Option<ReasonCode> {
        match self {
            LazyError::Lookup(e) => e.reason(),
            LazyError::Refused { reason, .. } => Some(*reason),
            LazyError::NotRegistered { .. } => None,
        }
    }
}

/// What lazy loading needs of the host: its loading, and what its settings say of a file.
pub(crate) trait Loader {
    /// The configured files, then the `found` ones.
    fn candidates(&self, found: Vec<PathBuf>) -> Vec<PathBuf>;
    /// Registers the pending builtins, but those a file among `candidates()` replaces
    /// (called only if a builtin may be replaced).
    fn register_builtins(&mut self, candidates: &dyn Fn() -> Vec<PathBuf>) -> Vec<PluginReport>;
    /// Verifies, loads and registers one file.
    fn load(&mut self, path: &Path) -> PluginReport;
    /// [`Loader::load`], of a file indexed as plugin `name`: refused, before anything of it
    /// runs, if it now carries another name (it changed since it was indexed).
    fn load_as(&mut self, path: &Path, name: &str) -> PluginReport;
    /// Judges one file without loading it.
    fn verify(&self, path: &Path) -> PluginReport;
    /// Whether the settings refuse the file at `path`, carrying plugin `name` (configured for
    /// another name, or disabled).
    fn refused_by_settings(&self, path: &Path, name: &str) -> bool;
    /// The plugin names the settings disable (of a file not configured, all
    /// [`Loader::refused_by_settings`] says is whether its name is one of them).
    fn disabled(&self) -> Vec<String>;
    /// Whether a builtin holds the name `name` (as bytes: the index keeps names so).
    fn is_builtin(&self, name: &[u8]) -> bool;
    /// The capabilities registered so far.
    fn registry(&self) -> &Registry;
}

/// Files to index: one found at a path, or the files listed in a directory record of the
/// index cache (record, how many), kept as one item (not one per file).
enum Group {
    Path(PathBuf),
    Listed(usize, usize),
}

/// A file to index: found at a path, or listed in a directory record of the index cache
/// (record, file) and made a path only if needed.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    Path(&'a Path),
    Listed(usize, usize),
}

/// The files of `groups`, one by one.
fn each(groups: &[Group]) -> impl Iterator<Item = Candidate<'_>> {
    groups.iter().flat_map(|group| {
        let (path, d, listed) = match group {
            Group::Path(path) => (Some(Candidate::Path(path)), 0, 0),
            Group::Listed(d, n) => (None, *d, *n),
        };
        path.into_iter()
            .chain((0..listed).map(move |f| Candidate::Listed(d, f)))
    })
}

/// Lazy loading's state in a host: the index, the reports of what it loaded, and where its
/// cache lives.
#[derive(Debug, Default)]
pub(crate) struct Lazy {
    pub(crate) index: Index,
    pub(crate) reports: Vec<PluginReport>,
    pub(crate) cache: Option<PathBuf>,
}

impl Lazy {
    /// Builds the capability index of `dirs` (in order) from provenance alone, registering
    /// the builtins first and loading at once the plugins that declare no capabilities (see
    /// the [module documentation](crate::lazy)). Returns the reports of what was decided now:
    /// builtins, files refused for unreadable provenance, shadowed files, files that take a
    /// builtin's name, and the plugins loaded up front. The indexed plugins are not reported
    /// until they are loaded ([`crate::Host::lazy_reports`]); [`crate::Host::indexed`] lists them.
    ///
    /// Calling it again adds more directories after those already indexed.
    pub(crate) fn index(
        &mut self,
        host: &mut dyn Loader,
        dirs: &[impl AsRef<Path>],
    ) -> Result<Vec<PluginReport>, DiscoverError> {
        let mut cache = self.cache.clone().map(cache::Cache::load);
        // The first index with a cache keeps its bytes: the names, file names and
        // declarations of its entries are used where they are.
        let share = self.index.shared.is_none() && cache.is_some();
        if share {
            self.index.shared = cache.as_ref().map(cache::Cache::loaded);
        }
        // (The cache is at most 64 MiB: a start in it never has `SHARED` set.)
        let held = |span: cache::Span| Text(span.start | SHARED, span.len);
        // A directory the cache knows unchanged is not listed (see `cache`).
        let mut found = Vec::new();
        for dir in dirs {
            let dir = dir.as_ref();
            match cache.as_mut().and_then(|c| Some((c.listing(dir)?, &*c))) {
                Some((d, c)) => found.push(Group::Listed(d, c.listed(d))),
                None => found.extend(discover(&[dir])?.into_iter().map(Group::Path)),
            }
        }
        let path_of = |cache: &Option<cache::Cache>, candidate: Candidate<'_>| match candidate {
            Candidate::Path(path) => path.to_owned(),
            Candidate::Listed(d, f) => match cache {
                Some(c) => c.dir_path(d).join(c.file_name(d, f)),
                None => PathBuf::new(),
            },
        };
        // With files configured, the found ones are paths (a configured file found again
        // is indexed once, first); else the found ones are the candidates.
        let configured = !host.candidates(Vec::new()).is_empty();
        let candidates = if configured {
            let found = each(&found).map(|c| path_of(&cache, c)).collect();
            let all = host.candidates(found);
            all.into_iter().map(Group::Path).collect()
        } else {
            found
        };
        let mut reports =
            host.register_builtins(&|| each(&candidates).map(|c| path_of(&cache, c)).collect());
        let disabled = host.disabled();
        let count = candidates
            .iter()
            .map(|g| match g {
                Group::Path(_) => 1,
                Group::Listed(_, n) => *n,
            })
            .sum();
        self.index.reserve(count, share);
        // One directory of the index per directory record.
        let mut dir_of_record: Vec<Option<u32>> = Vec::new();
        for candidate in each(&candidates) {
            let file = match (candidate, &cache) {
                (Candidate::Listed(d, f), Some(c)) => {
                    if dir_of_record.len() <= d {
                        dir_of_record.resize(d + 1, None);
                    }
                    let dir = match dir_of_record[d] {
                        Some(dir) => dir,
                        None => *dir_of_record[d].insert(self.index.dir(c.dir_path(d))),
                    };
                    let name = match c.loaded_file_name(d, f).filter(|_| share) {
                        Some(name) => held(name),
                        None => self.index.push(c.file_name(d, f).as_encoded_bytes()),
                    };
                    FileAt { dir, name }
                }
                (Candidate::Path(path), _) => self.index.file_at(path),
                (Candidate::Listed(..), None) => continue,
            };
            let hit = match (candidate, cache.as_mut()) {
                (Candidate::Listed(d, f), Some(c)) => c.get_listed(d, f),
                (Candidate::Path(path), Some(c)) => c.get(path),
                (_, None) => None,
            };
            let read;
            let from_cache = hit.is_some();
            // Where the name and the declaration are, when in the cache's bytes as loaded.
            let mut loaded = None;
            let (name, version, declared) = match hit {
                Some(found) => {
                    if !found.checked {
                        let id = match found.loaded_id().filter(|_| share) {
                            Some(at) => at | SHARED,
                            None => {
                                self.index.unchecked_ids.push(found.id());
                                (self.index.unchecked_ids.len() - 1) as u32
                            }
                        };
                        // The number `consider` gives the file below.
                        let number = self.index.considered.len() as Considered;
                        self.index.unchecked.push((number, id));
                    }
                    loaded = found.loaded().filter(|_| share);
                    (found.name_bytes(), found.version(), found.declared())
                }
                None => {
                    let path = self.index.path(file);
                    match crate::read::read_provenance(&path) {
                        Ok(p) => {
                            if let Some(cache) = &mut cache {
                                cache.put(&path, &p);
                            }
                            let block = p.capabilities.as_ref().map(|d| {
                                let mut block = Vec::new();
                                cache::encode_declared(&mut block, d);
                                block
                            });
                            read = (p.name, p.version.to_string(), block);
                            (read.0.as_bytes(), read.1.as_bytes(), read.2.as_deref())
                        }
                        Err(e) => {
                            if let Some(cache) = &mut cache {
                                cache.unreadable(&path);
                            }
                            let report = PluginReport::new(path);
                            reports.push(report.with_error(Status::Rejected, e.into()));
                            continue;
                        }
                    }
                }
            };
            let number = self.index.consider(file);
            let refused = if configured {
                host.refused_by_settings(&self.index.path(file), cache::text(name))
            } else {
                disabled.iter().any(|d| d.as_bytes() == name)
            };
            // Refused or disabled by the configuration: reported as a scan would, and never
            // indexed. Taking a builtin's name (not replaceable: a replaced builtin was
            // never registered): a conflict, judged as a scan would.
            if refused || host.is_builtin(name) {
                reports.push(host.verify(&self.index.path(file)));
                self.settle_last();
                continue;
            }
            let (name_at, declared_at) = match loaded {
                Some((name_at, declared_at)) => (
                    Source::Held(held(name_at)),
                    declared_at.map(|d| Source::Held(held(d))),
                ),
                None => (Source::Copy(name), declared.map(Source::Copy)),
            };
            let placed = self.index.add_at(number, name_at, declared_at, from_cache);
            if placed != Placed::Indexed {
                self.settle_last();
            }
            match placed {
                Placed::Indexed => tracing::debug!("indexed plugin `{}`", cache::text(name)),
                Placed::Shadowed(first) => {
                    let path = self.index.path(file);
                    let mut report = PluginReport::new(path.clone());
                    let name = cache::text(name).to_owned();
                    report.name = Some(name.clone());
                    report.version = Some(cache::text(version).to_owned());
                    let error = PluginError::Shadowed { path, name, first };
                    reports.push(report.with_error(Status::Shadowed, error));
                }
                Placed::Undeclared => {
                    let path = self.index.path(file);
                    tracing::debug!(
                        "plugin `{}` ({}) declares no capabilities: loading it now",
                        cache::text(name),
                        path.display()
                    );
                    reports.push(host.load(&path));
                }
            }
        }
        if let Some(cache) = cache {
            cache.save();
        }
        Ok(reports)
    }

    /// Marks the file considered last as reported.
    fn settle_last(&mut self) {
        if let Some(last) = self.index.considered.last_mut() {
            last.1 = true;
        }
    }

    /// Makes capability `name` of kind `kind` available in the [`Host::registry`]: at once if
    /// it is there, else by verifying, loading and registering the indexed plugin that
    /// declares it (the next one in path order if that one is refused or does not register
    /// it). No other library is opened, but for earlier plugins declaring one of the same
    /// capabilities (see the module documentation).
    pub(crate) fn load_capability(
        &mut self,
        host: &mut dyn Loader,
        kind: &str,
        name: &str,
    ) -> Result<(), LazyError> {
        if host.registry().provider(kind, name).is_some() {
            return Ok(());
        }
        // The first failure in path order, should no other plugin provide it.
        let mut failure = None;
        for at in self.index.candidates(kind, name) {
            let state = match self.index.state(at) {
                IndexedState::Pending => self.load_indexed(host, at),
                done => done.clone(),
            };
            if state == IndexedState::Loaded && host.registry().provider(kind, name).is_some() {
                return Ok(());
            }
            let (path, plugin_name) = (self.index.plugin_path(at), self.index.name(at).to_owned());
            let error = match state {
                // Not the plugin the cache said (a stale or forged entry): refused before
                // anything of it ran; read every file again and start over, as below.
                IndexedState::Refused(ReasonCode::NameMismatch, _)
                    if self.index.plugins[at].cached =>
                {
                    self.reindex_without_cache(host, &path, &plugin_name, kind, name);
                    return self.load_capability(host, kind, name);
                }
                IndexedState::Refused(reason, message) => LazyError::Refused {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    plugin: plugin_name,
                    path,
                    reason,
                    message,
                },
                // Loaded without it, but the index entry came from the cache: the entry is
                // stale or forged (another plugin's name and declaration). Read every file
                // again and start over; the error, if any, then names the right file.
                _ if self.index.plugins[at].cached => {
                    self.reindex_without_cache(host, &path, &plugin_name, kind, name);
                    return self.load_capability(host, kind, name);
                }
                // Loaded without it: the declaration lied.
                _ => not_registered(host.registry(), kind, name, plugin_name, path),
            };
            failure.get_or_insert(error);
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // Not declared by any file as the index knows them. Entries trusted by their
        // directory's identity miss a file overwritten in place (same inode, its directory
        // untouched): check those files one by one before saying so.
        let unchecked = std::mem::take(&mut self.index.unchecked);
        if let Some(changed) = unchecked
            .iter()
            .map(|&(file, id)| {
                let path = self.index.considered_path(file);
                (path, self.index.unchecked_id(id))
            })
            .find(|(path, id)| cache::identity(path).map(|(now, _)| now) != Some(*id))
            .map(|(path, _)| path)
        {
            let cache = self.cache_shown();
            tracing::debug!(
                "the index cache {cache} has an entry for {}, which changed since: the \
                 cache is removed and every plugin file is read again",
                changed.display()
            );
            if let Some(cache) = &self.cache {
                let _ = std::fs::remove_file(cache);
            }
            self.read_again(host);
            return self.load_capability(host, kind, name);
        }
        let mut available = host.registry().names(kind);
        available.extend(self.index.names(kind));
        available.sort();
        available.dedup();
        Err(LookupError::NotFound {
            kind: kind.to_owned(),
            name: name.to_owned(),
            available,
        }
        .into())
    }

    /// Loads indexed plugin `at`, after the plugins earlier in path order that declare one of
    /// its capabilities too: as in a scan, where the earlier one registers first and the later
    /// one is then refused (`capability-conflict`), so an overlap is reported, not hidden by
    /// laziness. Only a misconfigured search path pays for those extra loads.
    ///
    /// Those earlier plugins (and theirs, and so on) are found first, without recursion (a
    /// chain of thousands of overlapping plugins would overflow the stack), then loaded in
    /// path order: each after every earlier one it overlaps.
    fn load_indexed(&mut self, host: &mut dyn Loader, at: usize) -> IndexedState {
        let mut before = std::collections::BTreeSet::new();
        let mut todo = self.earlier_pending(at);
        if !todo.is_empty() {
            // More than one plugin to look at: every declaration in one pass.
            self.index.ask_all();
        }
        while let Some(j) = todo.pop() {
            if before.insert(j) {
                todo.extend(self.earlier_pending(j));
            }
        }
        for j in before {
            if *self.index.state(j) == IndexedState::Pending {
                self.load_one(host, j);
            }
        }
        self.load_one(host, at)
    }

    /// The plugins before `at` in path order, not loaded yet, that declare one of its
    /// capabilities.
    fn earlier_pending(&mut self, at: usize) -> Vec<usize> {
        let declared: Vec<(String, String)> = self
            .index
            .declared(at)
            .map(|(kind, name)| (cache::text(kind).to_owned(), cache::text(name).to_owned()))
            .collect();
        let mut earlier: Vec<usize> = declared
            .iter()
            .flat_map(|(kind, name)| self.index.candidates(kind, name))
            .filter(|&j| j < at)
            .collect();
        earlier.retain(|&j| *self.index.state(j) == IndexedState::Pending);
        earlier.sort_unstable();
        earlier.dedup();
        earlier
    }

    /// Loads indexed plugin `at` itself, as the plugin it was indexed as.
    fn load_one(&mut self, host: &mut dyn Loader, at: usize) -> IndexedState {
        let path = self.index.plugin_path(at);
        // The plugin this slot was indexed as, or nothing: a file that became another plugin
        // must not take that one's place in path order, its name or its capabilities.
        let name = self.index.name(at).to_owned();
        let report = host.load_as(&path, &name);
        let state = match (&report.reason, &report.message) {
            (Some(reason), Some(message)) => IndexedState::Refused(*reason, message.clone()),
            _ => IndexedState::Loaded,
        };
        self.index.set_state(at, state.clone());
        self.reports.push(report);
        state
    }

    /// The index cache said `path` is plugin `claimed` with some declaration, and the library
    /// loaded from it did not register what was declared: the entry is stale or forged. The
    /// cache file is removed (the next index writes it afresh), and every file `index`
    /// considered is read again and placed anew, in path order, as `index` would; what was
    /// loaded, refused or reported stays so and is not reported again.
    fn reindex_without_cache(
        &mut self,
        host: &mut dyn Loader,
        path: &Path,
        claimed: &str,
        kind: &str,
        name: &str,
    ) {
        let actual = crate::read::read_provenance(path).ok().map(|p| p.name);
        let cache = self.cache_shown();
        let lie = match actual {
            Some(actual) if actual != claimed => format!(
                "says {} is plugin `{claimed}`, but that file is plugin `{actual}`",
                path.display()
            ),
            _ => format!(
                "says plugin `{claimed}` ({}) declares {kind} `{name}`, but the library did not \
                 register it",
                path.display()
            ),
        };
        tracing::warn!(
            "the index cache {cache} {lie}: the cache is stale or forged; it is removed and \
             every plugin file is read again"
        );
        if let Some(cache) = &self.cache {
            let _ = std::fs::remove_file(cache);
        }
        self.read_again(host);
    }

    /// The index cache's path, as messages show it.
    fn cache_shown(&self) -> String {
        self.cache
            .as_deref()
            .map(|c| c.display().to_string())
            .unwrap_or_default()
    }

    /// Reads every file `index` considered again and places it anew, in path order, as
    /// `index` would; what was loaded, refused or reported stays so and is not reported again.
    fn read_again(&mut self, host: &mut dyn Loader) {
        let old = std::mem::take(&mut self.index);
        let considered: Vec<(PathBuf, bool)> = old
            .considered
            .iter()
            .map(|&(file, settled)| (old.path(file), settled))
            .collect();
        let before: HashMap<PathBuf, IndexedState> = (0..old.plugins.len())
            .map(|at| (old.plugin_path(at), old.state(at).clone()))
            .collect();
        // Reported before (at index time, or loaded on first use since): not again.
        let reported: HashSet<&Path> = considered
            .iter()
            .filter(|(_, settled)| *settled)
            .map(|(file, _)| file.as_path())
            .chain(
                before
                    .iter()
                    .filter(|(_, state)| **state != IndexedState::Pending)
                    .map(|(file, _)| file.as_path()),
            )
            .collect();
        for (file, _) in &considered {
            let provenance = match crate::read::read_provenance(file) {
                Ok(p) => p,
                Err(e) => {
                    let report = PluginReport::new(file.clone());
                    self.reports
                        .push(report.with_error(Status::Rejected, e.into()));
                    continue;
                }
            };
            let at = self.index.file_at(file);
            let number = self.index.consider(at);
            let name = provenance.name.clone();
            // As `index` does: refused or disabled by the configuration, or taking a builtin's
            // name, reported and never indexed.
            if host.refused_by_settings(file, &name) || host.is_builtin(name.as_bytes()) {
                if !reported.contains(file.as_path()) {
                    let report = host.verify(file);
                    self.reports.push(report);
                }
                self.settle_last();
                continue;
            }
            let block = provenance.capabilities.as_ref().map(|d| {
                let mut block = Vec::new();
                cache::encode_declared(&mut block, d);
                block
            });
            let placed = self.index.add_at(
                number,
                Source::Copy(name.as_bytes()),
                block.as_deref().map(Source::Copy),
                false,
            );
            if placed != Placed::Indexed {
                self.settle_last();
            }
            match placed {
                Placed::Indexed => {
                    if let Some(state) = before.get(file) {
                        let at = self.index.plugins.len() - 1;
                        self.index.set_state(at, state.clone());
                    }
                }
                _ if reported.contains(file.as_path()) => {}
                Placed::Shadowed(first) => {
                    let mut report = PluginReport::new(file.clone());
                    report.name = Some(name.clone());
                    report.version = Some(provenance.version.to_string());
                    let error = PluginError::Shadowed {
                        path: file.clone(),
                        name,
                        first,
                    };
                    self.reports
                        .push(report.with_error(Status::Shadowed, error));
                }
                Placed::Undeclared => {
                    let report = host.load(file);
                    self.reports.push(report);
                }
            }
        }
    }
}

fn not_registered(
    registry: &Registry,
    kind: &str,
    name: &str,
    plugin: String,
    path: PathBuf,
) -> LazyError {
    let registered = registry
        .list()
        .into_iter()
        .filter(|c| registry.provider(&c.kind, &c.name) == Some(plugin.as_str()))
        .map(|c| format!("{}:{}", c.kind, c.name))
        .collect();
    LazyError::NotRegistered {
        kind: kind.to_owned(),
        name: name.to_owned(),
        plugin,
        path,
        registered,
    }
}

#[cfg(test)]
pub(crate) mod tests;
