//! The name the dynamic loader is given for a verified library (Linux).
//!
//! The loader must open exactly the file that was verified (a descriptor: the sealed copy or
//! the verified file itself, see [`crate::seal`]), and glibc's loader keeps three things about
//! the name it was given:
//! - it never loads a second library under a name it has already loaded (it hands back the
//!   first one), so a name must never be reused — `/proc/self/fd/N` is, as soon as `N` is
//!   closed and reopened, which is why the name cannot simply be that;
//! - `$ORIGIN` in the library's `DT_RUNPATH`/`DT_RPATH` means the directory part of that
//!   name, so a plugin that ships `libdep.so` beside itself needs a name whose directory
//!   holds `libdep.so`.
//!
//! So each host has a private directory, `plugin-host-PID-N.held/` (mode 0700, never reused
//! by this process) in `$TMPDIR` when that is set, else in memory (`$XDG_RUNTIME_DIR`, else
//! `/dev/shm`; the temporary directory when neither takes it), and each load a name in it
//! never used before: a symlink `K-FILE` to `/proc/self/fd/FD`. A plugin that needs libraries from its `$ORIGIN` gets a
//! subdirectory `K/` instead, holding the symlink under the plugin's own file name and, for
//! every library it needs from an `$ORIGIN` directory, a symlink at the same relative place
//! to the real file beside the plugin (and so on for what those libraries need from their
//! `$ORIGIN`). The loader is handed the plugin's symlink; once it has mapped everything the
//! symlink (or subdirectory) is removed and the descriptor may be closed.
//!
//! The private directory is removed with its host. A process that ends without dropping its
//! host — killed, crashed in a plugin, exited from one — cannot remove it, and nothing
//! cleans a file system in memory: so each host holds its directory locked (`flock`) while
//! it lives, the kernel lets go of the lock however the process ends, and the next host to
//! make a private directory in the same file system in memory removes those left behind
//! (see [`reap_in`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::read::segments::{load_info, LoadInfo};

/// The most `..` levels of `$ORIGIN/../…` that are mirrored.
const MAX_UP: usize = 8;
/// The most dependency symlinks made for one plugin.
const MAX_LINKS: usize = 256;

/// A host's private directory for the names it hands the loader: created on the first load,
/// removed with the host (it is empty between loads).
pub(crate) struct Area {
    dir: PathBuf,
    next: AtomicU64,
    /// The directory, open and locked for as long as the host lives (see [`reap_in`]).
    _held: File,
}

impl Area {
    /// A new private directory; then those that hosts which are gone left beside it are
    /// removed.
    pub(crate) fn new() -> io::Result<Area> {
        let (dir, held) = private_dir()?;
        if let Some(base) = dir.parent().filter(|base| reapable(base)) {
            let reaped = reap_in(base, Ages::default());
            if reaped > 0 {
                tracing::debug!(
                    "removed {reaped} private directories left in {} by hosts that are gone",
                    base.display()
                );
            }
        }
        Ok(Area {
            dir,
            next: AtomicU64::new(0),
            _held: held,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// The name one library is loaded by; removed (symlink, or the directory of symlinks for a
/// plugin that needs `$ORIGIN`) when dropped.
pub(crate) struct Staged {
    remove: PathBuf,
    is_dir: bool,
    /// What to hand the dynamic loader.
    pub(crate) path: PathBuf,
    /// Libraries found in `$ORIGIN` directories and linked in beside it.
    pub(crate) linked: usize,
    /// Those libraries, open: each is linked in by its descriptor (`/proc/self/fd/N`), so
    /// what the loader opens is the regular file checked here, even if another file is
    /// renamed over its name meanwhile (a FIFO there would hang the loader).
    deps: Vec<File>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let removed = if self.is_dir {
            std::fs::remove_dir_all(&self.remove)
        } else {
            std::fs::remove_file(&self.remove)
        };
        if let Err(e) = removed {
            tracing::debug!(
                "cannot remove {}: {e}",
                crate::text::printable(&self.remove.display().to_string())
            );
        }
    }
}

/// Stages `file` (open: the verified library or its sealed copy), which lives
/// at `real` (its canonical path, used for `$ORIGIN`), in `area`.
/// `info` is what the plugin needs, read from it (see [`load_info`]).
pub(crate) fn stage(area: &Area, file: &File, info: &LoadInfo, real: &Path) -> io::Result<Staged> {
    let n = area.next.fetch_add(1, Ordering::Relaxed);
    let name = real
        .file_name()
        .map(staged_name)
        .unwrap_or_else(|| "plugin.so".into());
    let real_dir = real.parent().unwrap_or(Path::new("/"));
    let origin_entries: Vec<_> = info
        .search
        .iter()
        .filter_map(|e| origin_relative(e))
        .collect();
    // How far above its own directory the loader may climb for this library: the staged
    // name must sit at least that deep in the private directory, or the loader would look
    // in the directory it is in (`/dev/shm`, which every user may write).
    let climb = origin_climb(info);
    if climb > MAX_UP {
        return Err(escapes(real, climb, MAX_UP));
    }
    // The plugin's own directory sits deep enough that `$ORIGIN/..` stays inside `dir`.
    let target = format!("/proc/self/fd/{}", file.as_raw_fd());
    if origin_entries.is_empty() && climb == 0 {
        // The common case: one symlink, named uniquely in the area.
        let mut unique = std::ffi::OsString::from(format!("{n}-"));
        unique.push(&name);
        let path = area.dir.join(unique);
        symlink(&target, &path)?;
        return Ok(Staged {
            remove: path.clone(),
            is_dir: false,
            path,
            linked: 0,
            deps: Vec::new(),
        });
    }
    let up = origin_entries
        .iter()
        .map(|(up, _)| *up)
        .max()
        .unwrap_or(0)
        .max(climb)
        .min(MAX_UP);
    let dir = area.dir.join(n.to_string());
    let mut origin = dir.clone();
    for _ in 0..up {
        origin.push("o");
    }
    std::fs::create_dir_all(&origin)?;
    let mut staged = Staged {
        remove: dir,
        is_dir: true,
        path: origin.join(&name),
        linked: 0,
        deps: Vec::new(),
    };
    symlink(&target, &staged.path)?;

    // What the plugin (and, in turn, each library linked in) needs from `$ORIGIN` places.
    // Only plugins that need `$ORIGIN` get here: their lists are copied into the work list.
    let mut todo = vec![(
        info.clone(),
        origin,
        real_dir.to_owned(),
        up,
        real.to_owned(),
    )];
    // The plugin's own name and the mirror's `o` chain are taken: a library of that name is
    // not linked in (the loader would find the plugin, or a directory, there anyway).
    let mut seen: HashSet<PathBuf> = staged.path.ancestors().map(Path::to_owned).collect();
    while let Some((info, staged_origin, real_origin, depth, library)) = todo.pop() {
        // A library linked in climbs from where it is in the mirror: at most to the
        // private directory itself (`depth` levels to the plugin's own, one more).
        let climb = origin_climb(&info);
        if climb > depth + 1 {
            return Err(escapes(&library, climb, depth + 1));
        }
        for (levels, rel) in info.search.iter().filter_map(|e| origin_relative(e)) {
            // Each library's own entries, even where another's were the same directory:
            // its needed names are its own (`seen` keeps each link made once).
            if levels > depth {
                continue; // above the mirrored tree
            }
            let (Some(staged_base), Some(real_base)) = (
                staged_origin.ancestors().nth(levels),
                real_origin.ancestors().nth(levels),
            ) else {
                continue;
            };
            let (staged_dir, real_dir) = (staged_base.join(&rel), real_base.join(&rel));
            for needed in info.needed.iter().filter(|n| !n.contains('/')) {
                if staged.linked >= MAX_LINKS {
                    break;
                }
                let staged_lib = staged_dir.join(needed);
                if seen.contains(&staged_lib) {
                    continue;
                }
                // Opened without blocking and checked from the descriptor: a FIFO or device
                // in the plugin's directory must not stall or fool the host.
                let real_lib = real_dir.join(needed);
                let Ok(dep) = open_regular(&real_lib) else {
                    continue;
                };
                // Never create through something already there (a symlink to elsewhere).
                if !make_dirs(&area.dir, &staged_dir)? {
                    continue;
                }
                seen.insert(staged_lib.clone());
                let by_descriptor = format!("/proc/self/fd/{}", dep.as_raw_fd());
                if symlink(&by_descriptor, &staged_lib).is_err() {
                    continue; // a directory of the mirror has that name
                }
                staged.linked += 1;
                let dep_len = dep.metadata()?.len();
                if let Ok(dep_info) = load_info(&dep, dep_len) {
                    let dep_depth = depth - levels + rel.components().count();
                    todo.push((
                        dep_info,
                        staged_dir.clone(),
                        real_dir.clone(),
                        dep_depth,
                        real_lib.clone(),
                    ));
                }
                staged.deps.push(dep);
            }
        }
    }
    Ok(staged)
}

/// The most directories above `$ORIGIN` that a path the loader derives from a library's
/// search path or needed names reaches: each `..` counted against the directories named
/// before it, whatever they are (a token such as `$LIB` names at least one, and never
/// climbs); 0 when none names `$ORIGIN`.
fn origin_climb(info: &LoadInfo) -> usize {
    info.search
        .iter()
        .chain(&info.needed)
        .filter_map(|entry| {
            let rest = after_origin(entry)?;
            let (mut depth, mut lowest) = (0isize, 0isize);
            for part in rest.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        depth -= 1;
                        lowest = lowest.min(depth);
                    }
                    _ => depth += 1,
                }
            }
            Some(lowest.unsigned_abs())
        })
        .max()
        .unwrap_or(0)
}

/// What follows `$ORIGIN` (or `${ORIGIN}`) at the start of `entry` (empty, or from a `/`);
/// `None` when it does not start with that token (`$ORIGINAL` is another).
fn after_origin(entry: &str) -> Option<&str> {
    let rest = entry
        .strip_prefix("$ORIGIN")
        .or_else(|| entry.strip_prefix("${ORIGIN}"))?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Staging refused a library: a path the loader would derive from its `$ORIGIN` climbs out
/// of the private directory, into the directory that holds it (which other users may write).
#[derive(Debug)]
pub(crate) struct Escapes(String);

impl std::fmt::Display for Escapes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Escapes {}

fn escapes(library: &Path, climb: usize, most: usize) -> io::Error {
    io::Error::other(Escapes(format!(
        "a path in the RUNPATH or needed libraries of {} climbs {climb} directories above its \
         own ($ORIGIN/..), and plugin-host can stage it at most {most} deep in its private \
         directory, so the loader would look where other users may write; link it with a \
         RUNPATH that climbs no more than {most} levels",
        crate::text::printable(&library.display().to_string())
    )))
}

/// Opens `path` read-only without blocking and returns it if it is a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::other("not a regular file"))
    }
}

/// Creates `dir` (below `base`, which exists) one component at a time, never through an
/// entry that is there already but is not a real directory; `false` when one is in the way.
fn make_dirs(base: &Path, dir: &Path) -> io::Result<bool> {
    let Ok(below) = dir.strip_prefix(base) else {
        return Ok(false);
    };
    let mut at = base.to_owned();
    for part in below.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// For a search entry that starts at `$ORIGIN`: how many levels it goes up, and the path
/// below that (`$ORIGIN/../lib` → `(1, "lib")`), with `$PLATFORM` expanded.
fn origin_relative(entry: &str) -> Option<(usize, PathBuf)> {
    let rest = expand_tokens(after_origin(entry)?)?;
    let (mut up, mut below) = (0usize, PathBuf::new());
    for component in Path::new(&rest).components() {
        match component {
            Component::ParentDir if below.as_os_str().is_empty() => up += 1,
            // `a/..` is resolved by the kernel through `a`, which the mirror would need to
            // hold too: such entries are left to the loader.
            Component::ParentDir => return None,
            Component::Normal(part) => below.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some((up, below))
}

/// Expands `$PLATFORM`/`${PLATFORM}` (the loader's `AT_PLATFORM`); `None` if another token
/// (such as `$LIB`, whose value depends on how the C library was built) is left.
fn expand_tokens(text: &str) -> Option<String> {
    if !text.contains('$') {
        return Some(text.to_owned());
    }
    let expanded = match platform() {
        Some(platform) => text
            .replace("${PLATFORM}", platform)
            .replace("$PLATFORM", platform),
        None => text.to_owned(),
    };
    (!expanded.contains('$')).then_some(expanded)
}

/// `AT_PLATFORM` from the auxiliary vector: what the dynamic loader substitutes for
/// `$PLATFORM` (`x86_64` on most PCs).
fn platform() -> Option<&'static str> {
    static PLATFORM: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            // SAFETY: `getauxval` has no preconditions; for `AT_PLATFORM` it returns 0 or the
            // address of a NUL-terminated string the kernel placed on the initial stack,
            // valid for the life of the process. It is copied at once.
            let text = unsafe { libc::getauxval(libc::AT_PLATFORM) } as *const libc::c_char;
            if text.is_null() {
                return None;
            }
            // SAFETY: see above: a valid NUL-terminated string.
            let text = unsafe { std::ffi::CStr::from_ptr(text) };
            Some(text.to_string_lossy().into_owned())
        })
        .as_deref()
}

/// A new directory only this process uses, in the first of [`bases`] that takes one, and
/// the directory itself held locked; the error names every base tried.
fn private_dir() -> io::Result<(PathBuf, File)> {
    let bases = bases();
    let mut failed = Vec::new();
    for base in &bases {
        match private_dir_in(base) {
            Ok(dir) => return Ok(dir),
            Err(e) => failed.push((base, e)),
        }
    }
    let kind = failed
        .last()
        .map_or(io::ErrorKind::NotFound, |(_, e)| e.kind());
    let tried: Vec<String> = failed
        .iter()
        .map(|(base, e)| format!("under {} ({e})", base.display()))
        .collect();
    Err(io::Error::new(kind, tried.join(", nor ")))
}

/// Where the private directory may go: `$TMPDIR` when it is set (the user chose it); else a
/// file system in memory, where making and removing the one name per load costs about half
/// what it costs on a disk's (`$XDG_RUNTIME_DIR`, the user's own, then `/dev/shm`), then the
/// temporary directory.
fn bases() -> Vec<PathBuf> {
    bases_from(
        std::env::var_os("TMPDIR"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::temp_dir(),
    )
}

/// [`bases`], given `$TMPDIR`, `$XDG_RUNTIME_DIR` and the temporary directory.
fn bases_from(tmpdir: Option<OsString>, runtime: Option<OsString>, temp: PathBuf) -> Vec<PathBuf> {
    if tmpdir.is_some_and(|dir| !dir.is_empty()) {
        return vec![temp];
    }
    let runtime = runtime.map(PathBuf::from).filter(|dir| dir.is_absolute());
    runtime
        .into_iter()
        .chain([PathBuf::from("/dev/shm"), temp])
        .collect()
}

/// A new directory under `base` that only this process uses, and the directory itself,
/// open and locked.
///
/// It is made under a name of its own (`plugin-host-PID-N.new`), locked, and only then
/// given its name (`plugin-host-PID-N.held`): a host reaping `base` never finds it under
/// that name unlocked, even for a moment (see [`reap_in`]).
fn private_dir_in(base: &Path) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Its owner this user or root, and no other user able to rename entries in it (say
    // `$XDG_RUNTIME_DIR` kept from another user by `sudo -E`).
    if let Some(why) = crate::small_file::others_may_change(&std::fs::metadata(base)?) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{why}: another user could move the private directory away"),
        ));
    }
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("plugin-host-{pid}-{n}.held"));
        let new = base.join(format!("plugin-host-{pid}-{n}.new"));
        // Never a directory someone else made: create it, with no access for others.
        match std::fs::DirBuilder::new().mode(0o700).create(&new) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        }
        let named = open_dir(&new).and_then(|held| {
            lock(&held)?;
            rename_new(&new, &dir)?;
            Ok(held)
        });
        match named {
            Ok(held) => return Ok((dir, held)),
            Err(e) => {
                let _ = std::fs::remove_dir(&new);
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free name")))
}

/// How long a directory must have been left as it is before [`reap_in`] takes it, by what
/// its name says it is.
#[derive(Debug, Clone, Copy)]
struct Ages {
    /// Still under its `.new` name: a host making it names it within microseconds.
    making: std::time::Duration,
    /// Under the name hosts gave it before they held it locked (`plugin-host-PID-N`): one
    /// may still be running where this process cannot see its `PID` (another PID namespace
    /// sharing the file system), and it names a new load in its directory at each load.
    unlocked: std::time::Duration,
}

impl Default for Ages {
    fn default() -> Ages {
        Ages {
            making: std::time::Duration::from_secs(60),
            unlocked: std::time::Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The most entries of a base [`reap_in`] reads, and the most directories it removes, at
/// one host's start: what a crowded or hostile base can cost a start is bounded; what is left
/// goes at the next.
const MAX_READ: usize = 4096;
const MAX_REAPED: usize = 64;

/// Whether [`reap_in`] may look in `base`: a file system in memory (`tmpfs`, which nothing
/// else cleans until the machine restarts, and which only this kernel sees: its locks and
/// process ids mean what they say, as they would not on a network file system), where no
/// other user can rename this user's entries (owned by this user or root, and writable by
/// no one else or sticky, as `/dev/shm` and `/tmp` are: the rule the private directory's
/// base is held to, [`crate::small_file::others_may_change`]).
fn reapable(base: &Path) -> bool {
    // Both told of the one directory opened (its path followed, as `/dev/shm` may be a link).
    let Ok(dir) = File::open(base) else {
        return false;
    };
    let Ok(meta) = dir.metadata() else {
        return false;
    };
    meta.is_dir()
        && crate::small_file::others_may_change(&meta).is_none()
        && crate::small_file::fs_type(&dir) == Some(crate::small_file::TMPFS_MAGIC)
}

/// Removes from `base` the private directories of hosts that are gone: how many.
///
/// One is taken only when all of these hold:
/// - its name is `plugin-host-PID-N.held` (or `plugin-host-PID-N.new`, or the unlocked
///   `plugin-host-PID-N` of earlier versions, each left for at least its [`Ages`]), and it
///   is a directory (not a link to one) of this user's;
/// - no process `PID` exists here (one that does may be a host of an earlier version, which
///   held no lock);
/// - its lock can be taken: no process holds it, in any PID namespace that shares `base`
///   (`--ipc=host` containers share `/dev/shm`), since the kernel lets go of a lock when its
///   process ends, however it ends;
/// - it holds no more than a host leaves (see [`MAX_LEFT`]).
///
/// It is removed while the lock is held, and only if the name still names the directory
/// locked. Errors skip the entry: reaping never stops a host from loading. The caller
/// checks that `base` is [`reapable`].
fn reap_in(base: &Path, ages: Ages) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    // SAFETY: `geteuid` cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    let mut reaped = 0;
    for entry in entries.take(MAX_READ).flatten() {
        if reaped == MAX_REAPED {
            break;
        }
        let name = entry.file_name();
        let Some((pid, kind)) = name.to_str().and_then(left_by) else {
            continue;
        };
        let path = entry.path();
        // Not followed: a link named like one is not ours to follow.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let left_for = match kind {
            Named::Held => std::time::Duration::ZERO,
            Named::Making => ages.making,
            Named::Unlocked => ages.unlocked,
        };
        if !changed_before(&meta, left_for) || process_exists(pid) {
            continue;
        }
        let Ok(held) = open_dir(&path) else {
            continue;
        };
        let same = held
            .metadata()
            .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
        if !same || lock(&held).is_err() {
            continue;
        }
        // Still the directory locked (only this user can rename entries of theirs in a
        // sticky directory such as /dev/shm): removed, links and all, nothing followed.
        let still = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
        let mut budget = MAX_LEFT;
        if still
            && left_small(&path, MAX_LEFT_DEPTH, &mut budget)
            && std::fs::remove_dir_all(&path).is_ok()
        {
            reaped += 1;
        }
    }
    reaped
}

/// The most entries, and levels of directories, that a private directory left by a host
/// may hold. A host leaves the names of the one load it was making: a symlink, or a
/// plugin's subdirectory of at most [`MAX_LINKS`] links, each in a mirror of its `$ORIGIN`
/// places (at most [`MAX_UP`] levels of `o`, then the directories its `RUNPATH` names).
/// More, and it is left alone, unread past that: what one start spends on a base stays
/// bounded, and such a rare tree stays where it is.
const MAX_LEFT: usize = 1024;
const MAX_LEFT_DEPTH: usize = 64;

/// Whether `dir` holds no more than `budget` entries in all, `depth` levels down, nothing
/// followed (the kind of each entry is its own, not its target's).
fn left_small(dir: &Path, depth: usize, budget: &mut usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        let Some(left) = budget.checked_sub(1) else {
            return false;
        };
        *budget = left;
        let Ok(kind) = entry.file_type() else {
            return false;
        };
        if kind.is_dir() && (depth == 0 || !left_small(&entry.path(), depth - 1, budget)) {
            return false;
        }
    }
    true
}

/// Which name of a private directory: see [`reap_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// `plugin-host-PID-N.held`: held locked by its host.
    Held,
    /// `plugin-host-PID-N.new`: being made.
    Making,
    /// `plugin-host-PID-N`: made by a host of an earlier version, which held no lock.
    Unlocked,
}

/// The process id in a private directory's name, and which name it is; `None` for any
/// other name (numbers are written as a host writes them: decimal, no leading zero).
fn left_by(name: &str) -> Option<(u32, Named)> {
    let rest = name.strip_prefix("plugin-host-")?;
    let (rest, named) = if let Some(rest) = rest.strip_suffix(".held") {
        (rest, Named::Held)
    } else if let Some(rest) = rest.strip_suffix(".new") {
        (rest, Named::Making)
    } else {
        (rest, Named::Unlocked)
    };
    let (pid, n) = rest.split_once('-')?;
    let number = |s: &str| {
        !s.is_empty()
            && s.len() <= 20
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'))
    };
    if !number(pid) || !number(n) {
        return None;
    }
    Some((pid.parse().ok()?, named))
}

/// Whether the directory was last changed at least `left_for` ago (always, for no time).
fn changed_before(meta: &std::fs::Metadata, left_for: std::time::Duration) -> bool {
    if left_for.is_zero() {
        return true;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let changed = std::time::Duration::new(
        u64::try_from(meta.ctime()).unwrap_or(u64::MAX),
        u32::try_from(meta.ctime_nsec()).unwrap_or(0),
    );
    now.checked_sub(changed).is_some_and(|age| age >= left_for)
}

/// Whether a process `pid` exists in this PID namespace (a process of another user's
/// counts).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let gone = unsafe { libc::kill(pid, 0) } == -1
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    !gone
}

/// Renames `from` to `to`, never over something already there (someone else's directory).
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let renamed = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if renamed == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(e);
    }
    // A file system (or a kernel, or a seccomp filter) without `RENAME_NOREPLACE`: looked at
    // first, then renamed.
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    std::fs::rename(from, to)
}

/// A directory opened to hold it (and its lock): not through a final symbolic link.
fn open_dir(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// Takes the exclusive lock of the open directory `held`, without waiting.
fn lock(held: &File) -> io::Result<()> {
    // SAFETY: `flock` on a descriptor this function borrows; the lock goes with the
    // descriptor.
    if unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The file name a plugin is staged under, after a counter (`N-`): its own, or its last 200
/// bytes when it is longer (a name may be 255 bytes, and the counter must fit too; a name
/// that did not fit was loaded by its descriptor's name instead, which kept the descriptor
/// open for the life of the process).
fn staged_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    const KEPT: usize = 200;
    let bytes = name.as_bytes();
    std::ffi::OsStr::from_bytes(&bytes[bytes.len().saturating_sub(KEPT)..]).to_owned()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_private_directory_goes_where_the_user_said_else_in_memory() {
        let temp = PathBuf::from("/var/tmp");
        let some = |s: &str| Some(OsString::from(s));
        // `$TMPDIR` set: there, and nowhere else.
        assert_eq!(
            bases_from(some("/var/tmp"), some("/run/user/1000"), temp.clone()),
            std::slice::from_ref(&temp)
        );
        // Not set (or empty): the user's runtime directory, then /dev/shm, then the default.
        let memory = [
            PathBuf::from("/run/user/1000"),
            PathBuf::from("/dev/shm"),
            temp.clone(),
        ];
        assert_eq!(
            bases_from(None, some("/run/user/1000"), temp.clone()),
            memory
        );
        assert_eq!(
            bases_from(some(""), some("/run/user/1000"), temp.clone()),
            memory
        );
        // A relative `$XDG_RUNTIME_DIR` is not one (the specification wants it absolute).
        assert_eq!(
            bases_from(None, some("run"), temp.clone()),
            [PathBuf::from("/dev/shm"), temp]
        );
    }

    /// The id of a process that has ended (and been waited for).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// Every name taken at once, whatever its age.
    const AT_ONCE: Ages = Ages {
        making: std::time::Duration::ZERO,
        unlocked: std::time::Duration::ZERO,
    };

    /// [`reap_in`], again for a while until it takes `expected`: a lock let go can outlive
    /// its `drop` for a moment, held by a child another test is starting (between its fork
    /// and its exec, which closes it).
    fn reaps(base: &Path, ages: Ages, expected: usize) -> usize {
        let mut reaped = 0;
        for _ in 0..200 {
            reaped += reap_in(base, ages);
            if reaped >= expected {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        reaped
    }

    #[test]
    fn directories_left_by_hosts_that_are_gone_are_removed_and_no_others() {
        let base = tempfile::tempdir().unwrap();
        let at = |name: &str| base.path().join(name);
        let dead = dead_pid();
        // Left by a host that died: removed, with the names it held (a symlink, and a
        // plugin's subdirectory of them), their targets untouched.
        let target = at("target.so");
        std::fs::write(&target, b"kept").unwrap();
        let left = at(&format!("plugin-host-{dead}-0.held"));
        std::fs::create_dir(&left).unwrap();
        symlink(&target, left.join("3-libx.so")).unwrap();
        std::fs::create_dir(left.join("4")).unwrap();
        symlink(&target, left.join("4/liby.so")).unwrap();
        // Left while being made, and by an earlier version (left long enough: here, any
        // time at all).
        let making = at(&format!("plugin-host-{dead}-1.new"));
        std::fs::create_dir(&making).unwrap();
        let unlocked = at(&format!("plugin-host-{dead}-8"));
        std::fs::create_dir(&unlocked).unwrap();
        // Not ours to take: a live process's (this one's), a directory still locked by a
        // process (this one, for a host of another PID namespace), links and files named
        // like one, other names.
        let live = at(&format!("plugin-host-{}-7.held", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let locked = at(&format!("plugin-host-{dead}-2.held"));
        std::fs::create_dir(&locked).unwrap();
        let held = open_dir(&locked).unwrap();
        lock(&held).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), at(&format!("plugin-host-{dead}-3.held"))).unwrap();
        std::fs::write(at(&format!("plugin-host-{dead}-4.held")), b"").unwrap();
        let others = [
            format!("plugin-host-{dead}"),
            format!("plugin-host-{dead}-5-6"),
            format!("plugin-host-x{dead}-5"),
            format!("plugin-host-{dead}-5.old"),
            format!("plugin-host-{dead}-5.held.new"),
            format!("plugin-host--{dead}"),
            format!("plugin-host-0{dead}-5.held"),
            format!("plugin-host-{dead}-05.held"),
            "other".to_owned(),
        ];
        for name in &others {
            std::fs::create_dir(at(name)).unwrap();
        }

        assert_eq!(reaps(base.path(), AT_ONCE, 3), 3);
        assert!(!left.exists() && !making.exists() && !unlocked.exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert!(live.is_dir() && locked.is_dir());
        assert!(elsewhere.path().is_dir());
        assert!(at(&format!("plugin-host-{dead}-3.held")).is_symlink());
        assert!(at(&format!("plugin-host-{dead}-4.held")).is_file());
        for name in &others {
            assert!(at(name).is_dir(), "{name}");
        }
        // Once the lock is let go (its process ended), that one goes too.
        drop(held);
        assert_eq!(reaps(base.path(), AT_ONCE, 1), 1);
        assert!(!locked.exists());
    }

    #[test]
    fn a_directory_holding_more_than_a_host_leaves_is_left_alone() {
        let base = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        // Wider than any load leaves.
        let wide = base.path().join(format!("plugin-host-{dead}-0.held"));
        std::fs::create_dir(&wide).unwrap();
        for i in 0..=MAX_LEFT {
            std::fs::write(wide.join(i.to_string()), b"").unwrap();
        }
        // Deeper.
        let deep = base.path().join(format!("plugin-host-{dead}-1.held"));
        let mut at = deep.clone();
        for _ in 0..=MAX_LEFT_DEPTH + 1 {
            at.push("d");
        }
        std::fs::create_dir_all(&at).unwrap();
        // What a host that died while staging a plugin with its own libraries leaves: the
        // deepest `$ORIGIN` mirror, a `RUNPATH` a few levels below it, every link.
        let staging = base.path().join(format!("plugin-host-{dead}-2.held"));
        let mut origin = staging.join("7");
        for _ in 0..MAX_UP {
            origin.push("o");
        }
        let libs = origin.join("a/b/c/lib");
        std::fs::create_dir_all(&libs).unwrap();
        for i in 0..MAX_LINKS {
            symlink("/nonexistent", libs.join(format!("lib{i}.so"))).unwrap();
        }
        symlink("/proc/self/fd/9", origin.join("libx.so")).unwrap();
        assert_eq!(reaps(base.path(), AT_ONCE, 1), 1);
        assert!(wide.is_dir() && at.is_dir());
        assert!(!staging.exists());
    }

    #[test]
    fn a_directory_is_taken_only_once_left_as_long_as_its_name_asks() {
        let base = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let making = base.path().join(format!("plugin-host-{dead}-0.new"));
        let unlocked = base.path().join(format!("plugin-host-{dead}-1"));
        for dir in [&making, &unlocked] {
            std::fs::create_dir(dir).unwrap();
        }
        assert_eq!(reap_in(base.path(), Ages::default()), 0);
        assert!(making.is_dir() && unlocked.is_dir());
        let making_only = Ages {
            making: std::time::Duration::ZERO,
            ..Ages::default()
        };
        assert_eq!(reaps(base.path(), making_only, 1), 1);
        assert!(!making.exists() && unlocked.is_dir());
        assert_eq!(reaps(base.path(), AT_ONCE, 1), 1);
        assert!(!unlocked.exists());
    }

    #[test]
    fn a_private_directory_is_held_locked_under_its_name_until_its_area_goes() {
        let base = tempfile::tempdir().unwrap();
        let (dir, held) = private_dir_in(base.path()).unwrap();
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            left_by(name),
            Some((std::process::id(), Named::Held)),
            "{name}"
        );
        // Only the one name: nothing left under the name it was made under.
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
        // Locked: another open description of it cannot take the lock.
        assert!(lock(&open_dir(&dir).unwrap()).is_err());
        drop(held);
        let free = (0..200).any(|_| {
            let taken = lock(&open_dir(&dir).unwrap()).is_ok();
            if !taken {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            taken
        });
        assert!(free);
    }

    #[test]
    fn only_a_file_system_in_memory_that_others_cannot_rename_in_is_reaped() {
        // Where nothing else cleans, and only this kernel sees: `tmpfs`, as `/dev/shm` is.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.split(' ').nth(1) == Some("/dev/shm")
                    && l.split(' ').nth(2) == Some("tmpfs")),
            "this test needs /dev/shm to be a tmpfs"
        );
        let memory = tempfile::tempdir_in("/dev/shm").unwrap();
        assert!(reapable(memory.path()));
        assert!(reapable(Path::new("/dev/shm")), "sticky");
        let open = memory.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!reapable(&open), "writable by others, not sticky");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(reapable(&open));
        // A file system on a disk (or a network): not looked at.
        let disk = Path::new(env!("CARGO_MANIFEST_DIR"));
        let disk_is_memory = mounts.lines().any(|l| {
            l.split(' ').nth(2) == Some("tmpfs")
                && l.split(' ')
                    .nth(1)
                    .is_some_and(|m| disk.starts_with(m) && m != "/")
        });
        if !disk_is_memory {
            assert!(!reapable(disk));
        }
    }

    #[test]
    fn a_directory_another_user_could_rename_in_holds_no_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let mode = |m: u32| {
            std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(m)).unwrap();
        };
        for (m, usable) in [
            (0o700, true),
            (0o755, true),
            (0o1777, true),
            (0o777, false),
            (0o770, false),
        ] {
            mode(m);
            match private_dir_in(base.path()) {
                Ok((dir, _held)) => {
                    assert!(usable, "mode {m:o}: made {}", dir.display());
                    std::fs::remove_dir(dir).unwrap();
                }
                Err(e) => {
                    assert!(!usable, "mode {m:o}: {e}");
                    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
                    assert!(e.to_string().contains("not sticky"), "{e}");
                }
            }
        }
        mode(0o700);
        // SAFETY: `geteuid` has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(base.path(), Some(65534), None).unwrap();
            let error = private_dir_in(base.path()).unwrap_err();
            assert!(
                error.to_string().contains("belongs to user 65534"),
                "{error}"
            );
        }
    }

    #[test]
    fn what_a_linked_library_needs_from_the_same_origin_is_linked_too() {
        // The plugin and `libA.so` both search `$ORIGIN`; the plugin needs `libA.so`, which
        // needs `libB.so`, all three in one directory.
        let (base, real) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let area = area_in(base.path());
        let plugin = real.path().join("libp.so");
        std::fs::write(&plugin, b"the plugin").unwrap();
        let strings = b"libB.so\0$ORIGIN\0";
        let entries = [
            (u64::from(object::elf::DT_NEEDED), 0),
            (u64::from(object::elf::DT_RUNPATH), 8),
        ];
        std::fs::write(
            real.path().join("libA.so"),
            crate::read::segments::tests::library(&entries, strings, 2, 0),
        )
        .unwrap();
        std::fs::write(real.path().join("libB.so"), b"a leaf").unwrap();
        let info = LoadInfo {
            search: vec!["$ORIGIN".into()],
            needed: vec!["libA.so".into()],
            ..LoadInfo::default()
        };
        let staged = stage(&area, &File::open(&plugin).unwrap(), &info, &plugin).unwrap();
        assert_eq!(staged.linked, 2);
        let origin = staged.path.parent().unwrap();
        for lib in ["libA.so", "libB.so"] {
            // Linked by the descriptor of the file checked: the same inode.
            let link = std::fs::read_link(origin.join(lib)).unwrap();
            assert!(link.starts_with("/proc/self/fd/"), "{}", link.display());
            let (linked, real_lib) = (
                std::fs::metadata(origin.join(lib)).unwrap(),
                std::fs::metadata(real.path().join(lib)).unwrap(),
            );
            assert_eq!(
                (linked.dev(), linked.ino()),
                (real_lib.dev(), real_lib.ino())
            );
        }
        // A FIFO renamed over a library's name after it was checked: the name staged still
        // leads to the file checked, never to something the loader would wait on.
        let fifo = real.path().join("fifo");
        let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path we own, for the call's duration.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        std::fs::rename(&fifo, real.path().join("libB.so")).unwrap();
        assert!(std::fs::metadata(origin.join("libB.so")).unwrap().is_file());
    }

    #[test]
    fn how_far_a_library_climbs_above_its_own_directory() {
        let climb = |search: &[&str], needed: &[&str]| {
            origin_climb(&LoadInfo {
                search: search.iter().map(|s| s.to_string()).collect(),
                needed: needed.iter().map(|s| s.to_string()).collect(),
                ..LoadInfo::default()
            })
        };
        assert_eq!(
            climb(&["$ORIGIN", "/usr/lib", "$ORIGIN/lib"], &["libc.so.6"]),
            0
        );
        assert_eq!(climb(&["$ORIGIN/../lib"], &[]), 1);
        // What `origin_relative` leaves to the loader climbs all the same.
        assert_eq!(climb(&["$ORIGIN/../$LIB"], &[]), 1);
        assert_eq!(climb(&["$ORIGIN/a/../../b"], &[]), 1);
        assert_eq!(climb(&["${ORIGIN}/x/../../../y", "$ORIGIN/.."], &[]), 2);
        assert_eq!(climb(&["$ORIGIN/./../../."], &[]), 2);
        // A needed name can name a path from `$ORIGIN` too.
        assert_eq!(climb(&[], &["$ORIGIN/../../libcore.so"]), 2);
        assert_eq!(climb(&["$ORIGINAL/../.."], &["x/../../y"]), 0);
    }

    /// A private area in a directory of the test's own.
    fn area_in(base: &Path) -> Area {
        let (dir, held) = private_dir_in(base).unwrap();
        Area {
            dir,
            next: AtomicU64::new(0),
            _held: held,
        }
    }

    #[test]
    fn a_library_climbing_out_of_the_private_directory_is_not_staged() {
        let (base, real) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let area = area_in(base.path());
        let plugin = real.path().join("libp.so");
        std::fs::write(&plugin, b"the plugin").unwrap();
        let file = File::open(&plugin).unwrap();
        let info = |search: &[&str], needed: &[&str]| LoadInfo {
            search: search.iter().map(|s| s.to_string()).collect(),
            needed: needed.iter().map(|s| s.to_string()).collect(),
            ..LoadInfo::default()
        };
        let depth = |staged: &Staged| {
            let below = staged.path.strip_prefix(&area.dir).unwrap();
            below.components().count() - 1
        };
        // Climbing as far as it may: staged deep enough that every `..` stays inside.
        for (search, needed, up) in [
            (&["$ORIGIN/../$LIB"][..], &[][..], 1),
            (&[][..], &["$ORIGIN/../../libcore.so"][..], 2),
            (
                &["$ORIGIN/../../../../../../../../lib"][..],
                &[][..],
                MAX_UP,
            ),
        ] {
            let staged = stage(&area, &file, &info(search, needed), &plugin).unwrap();
            // `<n>/o/…/libp.so`: `up` directories between `<n>` and the library.
            assert_eq!(depth(&staged), up + 1, "{search:?} {needed:?}");
        }
        // One level more, by a search path or a needed name: refused, naming the file.
        let too_far = format!("$ORIGIN/{}lib", "../".repeat(MAX_UP + 1));
        for info in [
            info(&[&too_far], &[]),
            info(&[], &[&format!("{too_far}/libx.so")]),
        ] {
            let Err(error) = stage(&area, &file, &info, &plugin) else {
                panic!("staged: {:?}", info.search);
            };
            assert!(error.get_ref().unwrap().is::<Escapes>(), "{error}");
            assert!(error.to_string().contains("libp.so"), "{error}");
            assert!(
                error.to_string().contains("climbs 9 directories"),
                "{error}"
            );
        }
        // A library linked in from `$ORIGIN/lib` climbs from there: two levels take it to
        // the private directory itself, six out of it.
        std::fs::create_dir(real.path().join("lib")).unwrap();
        let dep = real.path().join("lib/libdep.so");
        let strings = b"$ORIGIN/../../../../../../x\0";
        let runpath = [(u64::from(object::elf::DT_RUNPATH), 0)];
        std::fs::write(
            &dep,
            crate::read::segments::tests::library(&runpath, strings, 2, 0),
        )
        .unwrap();
        let linking = info(&["$ORIGIN/lib"], &["libdep.so"]);
        let Err(error) = stage(&area, &file, &linking, &plugin) else {
            panic!("a library climbing out of the private directory was staged");
        };
        assert!(error.get_ref().unwrap().is::<Escapes>(), "{error}");
        assert!(error.to_string().contains("libdep.so"), "{error}");
    }

    #[test]
    fn origin_entries() {
        assert_eq!(origin_relative("$ORIGIN"), Some((0, PathBuf::new())));
        assert_eq!(origin_relative("${ORIGIN}/deps"), Some((0, "deps".into())));
        assert_eq!(origin_relative("$ORIGIN/../lib"), Some((1, "lib".into())));
        assert_eq!(origin_relative("$ORIGIN/a/../../b"), None);
        assert_eq!(origin_relative("/usr/lib"), None);
        assert_eq!(origin_relative("$ORIGINAL"), None);
    }

    #[test]
    fn platform_token() {
        let platform = platform().expect("the kernel passes AT_PLATFORM");
        assert!(
            !platform.is_empty() && !platform.contains('/'),
            "{platform}"
        );
        assert_eq!(
            origin_relative("$ORIGIN/$PLATFORM"),
            Some((0, PathBuf::from(platform)))
        );
        assert_eq!(origin_relative("$ORIGIN/$LIB"), None);
    }
}
