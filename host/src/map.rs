//! Handing a verified file to the dynamic loader: what it maps (a sealed copy, see
//! [`crate::seal`], or the file itself) and under which name (see `stage`).

#[cfg(target_os = "linux")]
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use crate::error::PluginError;
use crate::load::open_library;
use crate::place::Verified;
#[cfg(target_os = "linux")]
use crate::read::holds_record;
#[cfg(any(target_os = "linux", windows))]
use crate::reason::ReasonCode;
#[cfg(target_os = "linux")]
use crate::text::printable;

/// What the dynamic loader maps when a verified plugin is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadFrom {
    /// A private copy of the verified file, sealed against writes (Linux: a `memfd`): a
    /// later write to the plugin file (`cp new.so plugins/libx.so`) cannot change or
    /// truncate what runs. Costs a copy of the library's loadable segments per load (made on
    /// another thread, one file ahead, during a scan). A file that cannot change — the
    /// immutable attribute, fs-verity, or a read-only file system (not just a read-only bind
    /// mount) — is mapped as it is: it needs no copy.
    #[default]
    SealedCopy,
    /// A private copy as [`LoadFrom::SealedCopy`] makes, kept between runs in a store of
    /// this user's (Linux; `$XDG_RUNTIME_DIR/plugin-host-copies`, else
    /// `/dev/shm/plugin-host-copies-UID`, or the directory given to
    /// [`crate::HostBuilder::copy_store`]): the first load of a plugin file copies it, and
    /// every later one — in this process or another — maps that copy until the file changes.
    /// As immune to writes to the plugin file as a sealed copy, and processes loading one
    /// plugin share its pages. The copy is a file of
    /// this user's that no one may write, found by the plugin file's device, inode, size and
    /// times, and used only if its provenance is the record verified; where the store cannot
    /// be used (it is not this user's alone, it is full), a sealed copy is made instead.
    /// The layout of a kept copy's root module is checked once by each build of the host
    /// (told by its GNU build ID) and remembered in the store, so later loads skip
    /// `abi_stable`'s layout check, more than half of a load: a start that finds its copies
    /// kept loads faster than from the file in place.
    /// Elsewhere than on Linux, the same as [`LoadFrom::SealedCopy`].
    KeptCopy,
    /// The verified file itself (through its open descriptor). Faster to load, but writing
    /// to the plugin file in place while the host runs changes the code it runs — bytes
    /// that were never verified — or kills it with `SIGBUS`. A file the lock lists or whose
    /// signature is checked is loaded from the sealed copy it was hashed from all the same:
    /// the lock and the signature vouch for those bytes only.
    File,
}

impl LoadFrom {
    /// What a program that starts often loads from unless told: [`LoadFrom::KeptCopy`] where
    /// this user has a private runtime directory — `$XDG_RUNTIME_DIR`, which a login session
    /// has: absolute, not a link, this user's, writable by no one else — and the store is
    /// made in it; [`LoadFrom::SealedCopy`] anywhere else (a service or a container without
    /// one, a `sudo -E` shell whose variable names another user's directory, not Linux), so
    /// nothing is kept in a directory shared with other users. The `plugin-host` CLI's
    /// choice; the library's default stays [`LoadFrom::SealedCopy`].
    pub fn preferred() -> LoadFrom {
        #[cfg(target_os = "linux")]
        if crate::store::private_runtime_dir().is_some() {
            return LoadFrom::KeptCopy;
        }
        LoadFrom::SealedCopy
    }
}

/// A verified file handed to the loader.
pub(crate) struct Mapped {
    pub(crate) header: &'static abi_stable::library::LibHeader,
    /// For a kept copy whose layout can be remembered: the name of the store's mark saying
    /// that this build of the host checked it (see `store`; Linux).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) layout_mark: Option<String>,
}

/// How verified files are handed to the loader, for one host.
#[derive(Default)]
pub(crate) struct Mapper {
    pub(crate) load_from: LoadFrom,
    /// Where the names handed to the loader live (Linux), made on the first load.
    #[cfg(target_os = "linux")]
    staging: std::sync::OnceLock<Option<crate::stage::Area>>,
    /// Where [`LoadFrom::KeptCopy`] keeps its copies (`None`: the default place).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) store_dir: Option<PathBuf>,
    /// The store, opened on the first load that keeps a copy (Linux).
    #[cfg(target_os = "linux")]
    store: std::sync::OnceLock<Option<crate::store::Store>>,
}

impl Mapper {
    /// Hands the verified file to the dynamic loader (see [`LoadFrom`] and `stage`).
    #[cfg(target_os = "linux")]
    pub(crate) fn map(
        &self,
        verified: &Verified,
        path: &Path,
        resolved: &Path,
    ) -> Result<Mapped, PluginError> {
        // Read once from the verified file, when first needed: the ranges to copy, and what
        // staging needs (a copy holds the same bytes in those ranges). A kept copy found in
        // the store needs neither from the file.
        let len = verified.meta.len();
        let file_info = std::cell::OnceCell::new();
        let info_of_file =
            || file_info.get_or_init(|| crate::read::segments::load_info(&verified.file, len));
        let sealed;
        let copying = matches!(self.load_from, LoadFrom::SealedCopy | LoadFrom::KeptCopy)
            && verified.sealed.is_none();
        // A file that cannot change needs no copy: what is mapped stays what was verified.
        // Checked after the attribute: unchanged since it was verified.
        let unchangeable = copying && in_place_is_sealed(verified, path);
        let kept = match self.load_from {
            LoadFrom::KeptCopy if copying && !unchangeable => {
                self.kept_copy(verified, &info_of_file, path)
            }
            _ => None,
        };
        let file = match (self.load_from, &verified.sealed, &verified.ahead) {
            // Hashed (and signature-checked) as it is, whatever the mode: a lock or a
            // signature vouches for these bytes, not for whatever the file holds later. Its
            // provenance must still be the one judged, read before the copy was made.
            (_, Some(copy), _) => {
                if !holds_record(path, copy, len, &verified.provenance) {
                    return Err(written_while_loading(path));
                }
                copy
            }
            _ if unchangeable => &verified.file,
            // Kept from an earlier load, or just now, and checked to hold what was verified.
            _ if kept.is_some() => kept.as_ref().map_or(&verified.file, |kept| &kept.file),
            // Copied ahead during a scan, and checked then to hold what was verified.
            (LoadFrom::SealedCopy, None, Some(copy)) => copy,
            (LoadFrom::SealedCopy | LoadFrom::KeptCopy, None, _) => {
                let ranges = match info_of_file() {
                    Ok(info) => &info.ranges[..],
                    Err(_) => &[(0, len)][..],
                };
                sealed = sealed_copy(verified, ranges, path)?;
                &sealed
            }
            (LoadFrom::File, None, _) => &verified.file,
        };
        // What staging needs comes from the bytes mapped: a copy is read again, since the
        // file may have changed since it was copied (a vouched copy holds the hashed bytes,
        // the file whatever was written after; the $ORIGIN a library climbs is its copy's).
        let info = if std::ptr::eq(file, &verified.file) {
            file_info
                .into_inner()
                .unwrap_or_else(|| crate::read::segments::load_info(&verified.file, len))
        } else {
            crate::read::segments::load_info(file, len)
        };
        let layout_mark = match (&kept, &info) {
            (Some(kept), Ok(info)) if std::ptr::eq(file, &kept.file) => layout_mark(
                crate::build_id::host_build(),
                kept,
                info,
                &verified.differences,
            ),
            _ => None,
        };
        let info = info.unwrap_or_default();
        let area = self.staging.get_or_init(|| {
            crate::stage::Area::new()
                .inspect_err(warn_once_unstaged)
                .ok()
        });
        let staged = match area {
            Some(area) => crate::stage::stage(area, file, &info, resolved),
            None => Err(std::io::Error::other("no private directory")),
        };
        let header = match staged {
            // The staged name is never reused, so once the library is mapped neither the
            // name nor the descriptor is needed: both go when this returns.
            Ok(staged) => crate::ahead::quietly(|| open_library(&staged.path, path)),
            // A name the loader would climb out of from the private directory: not loaded
            // by any name, since `/proc/self/fd` would let it climb as far.
            Err(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<crate::stage::Escapes>()) =>
            {
                Err(PluginError::Load {
                    path: path.to_owned(),
                    reason: ReasonCode::LoadFailed,
                    detail: e.to_string(),
                })
            }
            Err(e) => {
                if let Some(detail) = crate::error::out_of_descriptors(&e) {
                    return Err(PluginError::Resources {
                        path: path.to_owned(),
                        detail,
                    });
                }
                // No private directory: load by `/proc/self/fd/N` and keep that descriptor
                // open for good, so that name never comes to mean another file — in the
                // upper half of the descriptor range, out of the way of the application's.
                if area.is_some() {
                    tracing::warn!(
                        "cannot name {} for the loader in the private directory ({e}): loading \
                         it by /proc/self/fd, keeping its descriptor open; $ORIGIN in its \
                         RUNPATH does not resolve",
                        printable(&path.display().to_string())
                    );
                }
                let keep = dup_high(file).map_err(|e| load_failed(path, &e))?;
                let name = PathBuf::from(format!("/proc/self/fd/{}", keep.as_raw_fd()));
                let header = crate::ahead::quietly(|| open_library(&name, path))?;
                std::mem::forget(keep);
                Ok(header)
            }
        }?;
        Ok(Mapped {
            header,
            layout_mark,
        })
    }

    /// Elsewhere: the canonical path, right after verification (see the book, docs/src/security/what-runs-is-what-was-verified.md).
    /// On Windows, only if that path still leads to the very file verified (held open until
    /// the load): a directory above it renamed, or a link to it replaced, since then would
    /// have it load whatever the path leads to now.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn map(
        &self,
        verified: &Verified,
        path: &Path,
        resolved: &Path,
    ) -> Result<Mapped, PluginError> {
        #[cfg(windows)]
        if !crate::windows::same_file(&verified.file, resolved) {
            return Err(PluginError::Load {
                path: path.to_owned(),
                reason: ReasonCode::LoadFailed,
                detail: format!(
                    "{} no longer leads to the file that was verified (a directory above it \
                     was renamed, or a link to it replaced, since); nothing of it was loaded: \
                     keep plugin directories, and those above them, writable only by you",
                    crate::text::printable(&resolved.display().to_string())
                ),
            });
        }
        #[cfg(windows)]
        let loading =
            crate::windows::Loading::begin(&verified.file, resolved).map_err(|detail| {
                PluginError::Load {
                    path: path.to_owned(),
                    reason: ReasonCode::LoadFailed,
                    detail,
                }
            })?;
        #[cfg(not(windows))]
        let _ = verified;
        let header = open_library(resolved, path)?;
        #[cfg(windows)]
        loading.loaded();
        Ok(Mapped {
            header,
            layout_mark: None,
        })
    }

    /// Checks the root module's version and layout and initialises it.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn init_root(
        &self,
        mapped: &Mapped,
        path: &Path,
        differences: &[String],
    ) -> Result<plugin_api::PluginRootRef, PluginError> {
        crate::load::init_root(mapped.header, path, differences)
    }
}

#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

/// A kept copy a load maps: the file, its `fstat` and its name in the store.
#[cfg(target_os = "linux")]
struct Kept {
    file: File,
    meta: Metadata,
    name: String,
}

#[cfg(target_os = "linux")]
impl Mapper {
    /// Where [`LoadFrom::KeptCopy`] keeps copies: the directory given, else the default place.
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.store_dir
            .clone()
            .unwrap_or_else(crate::store::Store::default_dir)
    }

    /// The kept copy of a verified file ([`LoadFrom::KeptCopy`]), found in the store or made
    /// now, checked to hold what was verified; `None` where the store cannot be used or the
    /// copy cannot be kept (a sealed copy is then made as for [`LoadFrom::SealedCopy`]).
    fn kept_copy<'i>(
        &self,
        verified: &Verified,
        info: &dyn Fn() -> &'i Result<crate::read::segments::LoadInfo, String>,
        path: &Path,
    ) -> Option<Kept> {
        let store = self.store.get_or_init(|| {
            let dir = self.store_dir();
            crate::store::Store::open(&dir)
                .inspect_err(|e| warn_once_no_store(&dir, e))
                .ok()
        });
        let store = store.as_ref()?;
        let (meta, len) = (&verified.meta, verified.meta.len());
        if len > crate::store::MAX_COPY {
            return None;
        }
        let holds_verified = |copy: &File| holds_record(path, copy, len, &verified.provenance);
        let name = crate::store::Store::name_for(meta);
        if let Some((file, meta)) = store.find(&name, len) {
            if holds_verified(&file) {
                return Some(Kept { file, meta, name });
            }
        }
        // Copied from the verified descriptor; kept only if the file is still what its name
        // says (not written, not even touched, since it was verified: same size and times).
        let unchanged = || {
            verified
                .file
                .metadata()
                .is_ok_and(|now| crate::seal::untouched(meta, &now))
        };
        let check = |copy: &File| holds_verified(copy) && unchanged();
        // Made ahead during a scan, from this very file before it was verified: in place
        // only now, checked to hold what was verified.
        // Only one to go in under this file's name as verified (one made when the file had
        // another change time is removed, and the copy made here).
        let ahead = verified
            .kept_ahead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .filter(|partial| partial.name() == name);
        let made_ahead = ahead.is_some();
        let kept = match ahead {
            Some(partial) => store.commit(partial, check),
            None => {
                let ranges = match info() {
                    Ok(info) => &info.ranges[..],
                    Err(_) => &[(0, len)][..],
                };
                store.keep(&name, &verified.file, len, ranges, check)
            }
        };
        match kept {
            Ok(Some((file, meta))) if holds_verified(&file) => {
                tracing::debug!(
                    "kept a copy of {} in {}{}",
                    printable(&path.display().to_string()),
                    printable(&store.path().display().to_string()),
                    if made_ahead { " (made ahead)" } else { "" }
                );
                Some(Kept { file, meta, name })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(
                    "cannot keep a copy of {} in {} ({e}): loading it from a sealed copy",
                    printable(&path.display().to_string()),
                    printable(&store.path().display().to_string())
                );
                None
            }
        }
    }

    /// Checks the root module's version and layout and initialises it; the layout of a kept
    /// copy is checked once by each build of the host, which marks the copy so in the store
    /// for later loads (see `store`).
    pub(crate) fn init_root(
        &self,
        mapped: &Mapped,
        path: &Path,
        differences: &[String],
    ) -> Result<plugin_api::PluginRootRef, PluginError> {
        let store = self.store.get().and_then(Option::as_ref);
        let (Some(store), Some(mark)) = (store, &mapped.layout_mark) else {
            return crate::load::init_root(mapped.header, path, differences);
        };
        if store.is_marked(mark) {
            tracing::debug!(
                "the layout of {} was checked by an earlier run of this build of the host \
                 (its kept copy is marked so): not checked again",
                printable(&path.display().to_string())
            );
            // SAFETY: the mark is there only once this build of the host (its build ID is in
            // the mark's name) found the layout of this very copy (its inode and change time
            // are too) to be the one it expects; the copy is one no one may write, in a store
            // no one else may enter, it takes no types from a library but the C runtime's,
            // and it shares every crate it has in common with the host at the same version
            // and contents (`layout_mark`), so its types have no field beyond the host's for
            // `abi_stable`'s process-wide maps to compare with other plugins'.
            return unsafe {
                crate::load::init_root_checked_before(mapped.header, path, differences)
            };
        }
        let root = crate::load::init_root(mapped.header, path, differences)?;
        if let Err(e) = store.mark(mark) {
            tracing::debug!(
                "cannot remember a layout check in {} ({e})",
                printable(&store.path().display().to_string())
            );
        }
        Ok(root)
    }
}

/// The name of the layout mark for the kept copy `kept`, whose load information is `info`
/// and which shares `differences` with the host; `None` when its layout is to be checked on
/// every load:
/// - this build of the host has no build ID;
/// - the copy needs a library other than the C runtime's, or one it needs could not be told
///   (a library it takes types from could change while its bytes do not);
/// - it shares a crate with the host at another version or with other contents (its
///   `abi_stable` types may then have fields the host's do not, which `abi_stable` compares
///   across the plugins of a process only while checking).
#[cfg(target_os = "linux")]
fn layout_mark(
    host: Option<&str>,
    kept: &Kept,
    info: &crate::read::segments::LoadInfo,
    differences: &[String],
) -> Option<String> {
    let host = host?;
    if info.needed_partial
        || !info.needed.iter().all(|needed| c_runtime(needed))
        || !differences.is_empty()
    {
        return None;
    }
    crate::store::Store::layout_mark(host, &kept.name, &kept.meta)
}

/// Whether a needed library's name is one of the C runtime's (glibc's and its unwinder's),
/// which no plugin takes `abi_stable` types from.
#[cfg(target_os = "linux")]
fn c_runtime(name: &str) -> bool {
    const RUNTIME: [&str; 12] = [
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "ld-linux.so.2",
        "ld-linux-armhf.so.3",
        "ld-linux-riscv64-lp64d.so.1",
    ];
    RUNTIME.contains(&name)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_layout_is_remembered_only_by_a_host_with_a_build_id_for_a_copy_needing_the_c_runtime_alone(
    ) {
        use crate::read::segments::LoadInfo;
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let kept = super::Kept {
            file,
            meta,
            name: "801-1a2b-5-6757a1b2.1f-6757a1b2.2e".into(),
        };
        let info = |needed: &[&str], needed_partial| LoadInfo {
            ranges: Vec::new(),
            needed: needed.iter().map(|n| n.to_string()).collect(),
            needed_partial,
            search: Vec::new(),
        };
        let c_only = info(&["libc.so.6", "libgcc_s.so.1"], false);
        let mark = super::layout_mark(Some("0badc0de"), &kept, &c_only, &[]).unwrap();
        assert!(mark.starts_with("checked-0badc0de-801-1a2b-"), "{mark}");
        // A host without a build ID cannot tell its builds apart: never remembered.
        assert_eq!(super::layout_mark(None, &kept, &c_only, &[]), None);
        // Types taken from another library, or a list of needed libraries read in part.
        let other = info(&["libc.so.6", "libplugin_api.so"], false);
        assert_eq!(
            super::layout_mark(Some("0badc0de"), &kept, &other, &[]),
            None
        );
        let partial = info(&["libc.so.6"], true);
        assert_eq!(
            super::layout_mark(Some("0badc0de"), &kept, &partial, &[]),
            None
        );
        // A crate shared with the host at another version or with other contents.
        let differs = ["serde 1.0.1 (host: 1.0.2)".to_string()];
        assert_eq!(
            super::layout_mark(Some("0badc0de"), &kept, &c_only, &differs),
            None
        );
    }

    #[test]
    fn only_the_c_runtimes_own_names_are_the_c_runtime() {
        for name in [
            "libc.so.6",
            "libgcc_s.so.1",
            "ld-linux-x86-64.so.2",
            "libm.so.6",
        ] {
            assert!(super::c_runtime(name), "{name}");
        }
        for name in [
            "libc.so.x",
            "libc.so.6.evil",
            "ld-linux-foo.so",
            "libstd-0123abcd.so",
            "libplugin_api.so",
            "/lib/libc.so.6",
            "",
        ] {
            assert!(!super::c_runtime(name), "{name}");
        }
    }
}

#[cfg(target_os = "linux")]
fn warn_once_no_store(dir: &Path, e: &std::io::Error) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "cannot use {} to keep copies of plugins ({}): each load makes a sealed copy",
            printable(&dir.display().to_string()),
            printable(&e.to_string())
        );
    });
}

/// The sealed copy of a verified file, checked to be what was verified.
#[cfg(target_os = "linux")]
fn sealed_copy(
    verified: &Verified,
    ranges: &[(u64, u64)],
    path: &Path,
) -> Result<File, PluginError> {
    let len = verified.meta.len();
    let fail = |e: std::io::Error| match crate::error::out_of_descriptors(&e) {
        Some(detail) => PluginError::Resources {
            path: path.to_owned(),
            detail,
        },
        None => load_failed(path, &e),
    };
    let name = &verified.provenance.name;
    let mut copy = crate::seal::sealed_copy(name, &verified.file, len, ranges).map_err(fail)?;
    // The copy is sealed: once read, what it holds cannot change, so each copy is read once.
    let holds_verified = |copy: &File| holds_record(path, copy, len, &verified.provenance);
    let mut holds = holds_verified(&copy);
    if !holds {
        // The provenance lies outside the segments (found through the section table):
        // copy everything.
        copy = crate::seal::sealed_copy(name, &verified.file, len, &[(0, len)]).map_err(fail)?;
        holds = holds_verified(&copy);
    }
    let unchanged = verified
        .file
        .metadata()
        .is_ok_and(|now| crate::seal::same_contents(&verified.meta, &now));
    if !unchanged || !holds {
        return Err(written_while_loading(path));
    }
    Ok(copy)
}

/// Whether the verified file itself cannot change (see [`crate::seal::Unchangeable`]) and
/// has not changed since it was verified, so loading it in place is as safe as loading a
/// sealed copy.
#[cfg(target_os = "linux")]
fn in_place_is_sealed(verified: &Verified, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // One `statx`: whether it can change, and whether it did since it was verified.
    let Some((Some(why), now)) = crate::seal::cannot_change_now(&verified.file) else {
        return false;
    };
    let meta = &verified.meta;
    let unchanged = now == (meta.len(), meta.mtime(), meta.mtime_nsec());
    if unchanged {
        tracing::debug!(
            "loading {} without a copy: {why}, so it cannot change while it is loaded",
            printable(&path.display().to_string())
        );
    }
    unchanged
}

#[cfg(target_os = "linux")]
fn written_while_loading(path: &Path) -> PluginError {
    PluginError::Load {
        path: path.to_owned(),
        reason: ReasonCode::LoadFailed,
        detail: "the file was written to while it was being loaded, so what would be loaded \
                 is not what was verified; nothing of it was loaded: load it again once the \
                 write has finished (replace plugins by renaming a new file over the old one, \
                 which is atomic)"
            .to_owned(),
    }
}

#[cfg(target_os = "linux")]
fn load_failed(path: &Path, e: &std::io::Error) -> PluginError {
    PluginError::Load {
        path: path.to_owned(),
        reason: ReasonCode::LoadFailed,
        detail: format!("cannot make the private copy it is loaded from: {e}"),
    }
}

/// A duplicate of `file`'s descriptor numbered in the upper half of this process's limit
/// (or anywhere, when the upper half is full).
#[cfg(target_os = "linux")]
fn dup_high(file: &File) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    let soft = crate::error::descriptor_limit().unwrap_or(0).min(1 << 20) as libc::c_int;
    // SAFETY: `F_DUPFD_CLOEXEC` on an open descriptor returns a new descriptor (or -1).
    let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, soft / 2) };
    if fd < 0 {
        return file.try_clone();
    }
    // SAFETY: `fd` was just created for us and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(target_os = "linux")]
fn warn_once_unstaged(e: &std::io::Error) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "cannot make a private directory {}: plugins are loaded by /proc/self/fd names, \
             their descriptors stay open, and $ORIGIN in their RUNPATH does not resolve",
            printable(&e.to_string())
        );
    });
}
