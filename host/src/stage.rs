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

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, DirBuilderExt};
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
}

impl Area {
    /// A new private directory.
    pub(crate) fn new() -> io::Result<Area> {
        Ok(Area {
            dir: private_dir()?,
            next: AtomicU64::new(0),
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

/// A new directory only this process uses, in the first of [`bases`] that takes one; the
/// error names every base tried.
fn private_dir() -> io::Result<PathBuf> {
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

/// A new directory under `base` that only this process uses.
fn private_dir_in(base: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("plugin-host-{pid}-{n}"));
        // Never a directory someone else made: create it, with no access for others.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free name")))
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
