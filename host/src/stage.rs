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
//! So each host has a private directory, `plugin-host-PID-N/` (mode 0700, never reused by
//! this process) in `$TMPDIR` when that is set, else in memory (`$XDG_RUNTIME_DIR`, else
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
//! make a private directory in the same place removes those left behind (see [`reap_in`]).

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
        if let Some(base) = dir.parent() {
            let reaped = reap_in(base, LEFT_FOR);
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
}

impl Drop for Staged {
    fn drop(&mut self) {
        let removed = if self.is_dir {
            std::fs::remove_dir_all(&self.remove)
        } else {
            std::fs::remove_file(&self.remove)
        };
        if let Err(e) = removed {
            tracing::debug!("cannot remove {}: {e}", self.remove.display());
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
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| "plugin.so".into());
    let real_dir = real.parent().unwrap_or(Path::new("/"));
    let origin_entries: Vec<_> = info
        .search
        .iter()
        .filter_map(|e| origin_relative(e))
        .collect();
    // The plugin's own directory sits deep enough that `$ORIGIN/..` stays inside `dir`.
    let target = format!("/proc/self/fd/{}", file.as_raw_fd());
    if origin_entries.is_empty() {
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
        });
    }
    let up = origin_entries
        .iter()
        .map(|(up, _)| *up)
        .max()
        .unwrap_or(0)
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
    };
    symlink(&target, &staged.path)?;

    // What the plugin (and, in turn, each library linked in) needs from `$ORIGIN` places.
    // Only plugins that need `$ORIGIN` get here: their lists are copied into the work list.
    let mut todo = vec![(info.clone(), origin, real_dir.to_owned(), up)];
    // The plugin's own name and the mirror's `o` chain are taken: a library of that name is
    // not linked in (the loader would find the plugin, or a directory, there anyway).
    let mut seen: HashSet<PathBuf> = staged.path.ancestors().map(Path::to_owned).collect();
    let mut entries = HashSet::new();
    while let Some((info, staged_origin, real_origin, depth)) = todo.pop() {
        for (levels, rel) in info.search.iter().filter_map(|e| origin_relative(e)) {
            if levels > depth || !entries.insert((staged_origin.clone(), levels, rel.clone())) {
                continue; // above the mirrored tree, or done already
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
                if symlink(&real_lib, &staged_lib).is_err() {
                    continue; // a directory of the mirror has that name
                }
                staged.linked += 1;
                let dep_len = dep.metadata()?.len();
                if let Ok(dep_info) = load_info(&dep, dep_len) {
                    let dep_depth = depth - levels + rel.components().count();
                    todo.push((dep_info, staged_dir.clone(), real_dir.clone(), dep_depth));
                }
            }
        }
    }
    Ok(staged)
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
    let rest = entry
        .strip_prefix("$ORIGIN")
        .or_else(|| entry.strip_prefix("${ORIGIN}"))?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let rest = expand_tokens(rest)?;
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
/// given its name: a host reaping `base` never finds it under that name unlocked, even in a
/// moment in between (see [`reap_in`]).
fn private_dir_in(base: &Path) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("plugin-host-{pid}-{n}"));
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

/// How long a directory must have been left as it is before [`reap_in`] takes one still
/// under its `.new` name (a host that is making it names it within microseconds).
const LEFT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The most entries of a base [`reap_in`] reads, and the most directories it removes, at
/// one host's start: what a crowded or hostile base can cost a start is bounded; what is left
/// goes at the next.
const MAX_READ: usize = 4096;
const MAX_REAPED: usize = 256;

/// Removes from `base` the private directories of hosts that are gone: how many.
///
/// One is taken only when all of these hold:
/// - its name is `plugin-host-PID-N` (or `plugin-host-PID-N.new`, left for at least
///   `left_for`), and it is a directory (not a link to one) of this user's;
/// - no process `PID` exists here (one that does may be a host of an earlier version, which
///   held no lock);
/// - its lock can be taken: no process holds it, in any PID namespace that shares `base`
///   (`--ipc=host` containers share `/dev/shm`), since the kernel lets go of a lock when its
///   process ends, however it ends.
///
/// It is removed while the lock is held, and only if the name still names the directory
/// locked. Errors skip the entry: reaping never stops a host from loading.
fn reap_in(base: &Path, left_for: std::time::Duration) -> usize {
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
        let Some((pid, making)) = name.to_str().and_then(left_by) else {
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
        if making && !changed_before(&meta, left_for) {
            continue;
        }
        if process_exists(pid) {
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
/// may hold: at most the names of the one load it was making (a symlink, or a plugin's
/// subdirectory of at most [`MAX_LINKS`] links), with room to spare. More, and it is not
/// what a host leaves: it is left alone, unread past that.
const MAX_LEFT: usize = 1024;
const MAX_LEFT_DEPTH: usize = 8;

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

/// The process id in a private directory's name, and whether it is the name it is made
/// under (`.new`); `None` for any other name.
fn left_by(name: &str) -> Option<(u32, bool)> {
    let rest = name.strip_prefix("plugin-host-")?;
    let (rest, making) = match rest.strip_suffix(".new") {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let (pid, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    Some((pid.parse().ok()?, making))
}

/// Whether the directory was last changed at least `left_for` ago.
fn changed_before(meta: &std::fs::Metadata, left_for: std::time::Duration) -> bool {
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
    if e.raw_os_error() != Some(libc::EINVAL) {
        return Err(e);
    }
    // A file system without `RENAME_NOREPLACE`: looked at first, then renamed.
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

#[cfg(test)]
mod tests {
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

    #[test]
    fn directories_left_by_hosts_that_are_gone_are_removed_and_no_others() {
        let base = tempfile::tempdir().unwrap();
        let at = |name: &str| base.path().join(name);
        let dead = dead_pid();
        // Left by a host that died: removed, with the names it held (a symlink, and a
        // plugin's subdirectory of them), their targets untouched.
        let target = at("target.so");
        std::fs::write(&target, b"kept").unwrap();
        let left = at(&format!("plugin-host-{dead}-0"));
        std::fs::create_dir(&left).unwrap();
        symlink(&target, left.join("3-libx.so")).unwrap();
        std::fs::create_dir(left.join("4")).unwrap();
        symlink(&target, left.join("4/liby.so")).unwrap();
        // Left while being made, and left long enough (here: any time).
        let making = at(&format!("plugin-host-{dead}-1.new"));
        std::fs::create_dir(&making).unwrap();
        // Not ours to take: a live process's (this one's), a directory still locked by a
        // process (this one, for a host of another PID namespace), links and files named
        // like one, other names.
        let live = at(&format!("plugin-host-{}-7", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let locked = at(&format!("plugin-host-{dead}-2"));
        std::fs::create_dir(&locked).unwrap();
        let held = open_dir(&locked).unwrap();
        lock(&held).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), at(&format!("plugin-host-{dead}-3"))).unwrap();
        std::fs::write(at(&format!("plugin-host-{dead}-4")), b"").unwrap();
        let others = [
            format!("plugin-host-{dead}"),
            format!("plugin-host-{dead}-5-6"),
            format!("plugin-host-x{dead}-5"),
            format!("plugin-host-{dead}-5.old"),
            format!("plugin-host--{dead}"),
            "other".to_owned(),
        ];
        for name in &others {
            std::fs::create_dir(at(name)).unwrap();
        }

        assert_eq!(reap_in(base.path(), std::time::Duration::ZERO), 2);
        assert!(!left.exists() && !making.exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert!(live.is_dir() && locked.is_dir());
        assert!(elsewhere.path().is_dir());
        assert!(at(&format!("plugin-host-{dead}-3")).is_symlink());
        assert!(at(&format!("plugin-host-{dead}-4")).is_file());
        for name in &others {
            assert!(at(name).is_dir(), "{name}");
        }
        // Once the lock is let go (its process ended), that one goes too.
        drop(held);
        assert_eq!(reap_in(base.path(), std::time::Duration::ZERO), 1);
        assert!(!locked.exists());
    }

    #[test]
    fn a_directory_holding_more_than_a_host_leaves_is_left_alone() {
        let base = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        // Wider than any load leaves.
        let wide = base.path().join(format!("plugin-host-{dead}-0"));
        std::fs::create_dir(&wide).unwrap();
        for i in 0..=MAX_LEFT {
            std::fs::write(wide.join(i.to_string()), b"").unwrap();
        }
        // Deeper.
        let deep = base.path().join(format!("plugin-host-{dead}-1"));
        let mut at = deep.clone();
        for _ in 0..=MAX_LEFT_DEPTH + 1 {
            at.push("d");
        }
        std::fs::create_dir_all(&at).unwrap();
        // What a host that died while staging a plugin with its own libraries leaves.
        let staging = base.path().join(format!("plugin-host-{dead}-2"));
        std::fs::create_dir_all(staging.join("7/lib")).unwrap();
        for i in 0..MAX_LINKS {
            symlink("/nonexistent", staging.join(format!("7/lib/lib{i}.so"))).unwrap();
        }
        symlink("/proc/self/fd/9", staging.join("7/libx.so")).unwrap();
        assert_eq!(reap_in(base.path(), std::time::Duration::ZERO), 1);
        assert!(wide.is_dir() && at.is_dir());
        assert!(!staging.exists());
    }

    #[test]
    fn a_directory_being_made_is_taken_only_once_left_long_enough() {
        let base = tempfile::tempdir().unwrap();
        let making = base
            .path()
            .join(format!("plugin-host-{}-0.new", dead_pid()));
        std::fs::create_dir(&making).unwrap();
        assert_eq!(reap_in(base.path(), LEFT_FOR), 0);
        assert!(making.is_dir());
        assert_eq!(reap_in(base.path(), std::time::Duration::ZERO), 1);
    }

    #[test]
    fn a_private_directory_is_held_locked_under_its_name_until_its_area_goes() {
        let base = tempfile::tempdir().unwrap();
        let (dir, held) = private_dir_in(base.path()).unwrap();
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(left_by(name), Some((std::process::id(), false)), "{name}");
        // Only the one name: nothing left under the name it was made under.
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
        // Locked: another open description of it cannot take the lock.
        assert!(lock(&open_dir(&dir).unwrap()).is_err());
        drop(held);
        assert!(lock(&open_dir(&dir).unwrap()).is_ok());
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
