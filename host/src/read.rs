//! Reading a file's provenance without loading it.
//!
//! The file is opened once (without blocking: a FIFO cannot stall the scan) and read with
//! positioned reads (`pread` on Unix; `object::ReadCache` elsewhere) of only the byte ranges
//! asked for: on ELF, the first page (file header, program headers, and usually the
//! provenance note), the header of each note examined, and the provenance note's descriptor;
//! the section headers and section names only when the note is not in a note segment. Nothing is mapped, no constructor runs, and the cost does not
//! depend on the size of the library. Reading with `pread`-style calls rather than a memory
//! map also means a file truncated under our feet yields an error, not `SIGBUS`.
//!
//! Every size taken from the file is bounded before anything is read for it, and so is the
//! number of notes walked: whatever a hostile file claims, the reader reads at most the
//! provenance blob's limit (1 MiB) plus a few hundred KiB of tables (see [`ReadCost`]).

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

#[cfg(not(unix))]
use object::ReadCache;
use object::{FileKind, ReadRef};
use plugin_api::frame;
use plugin_api::provenance::{Provenance, ProvenanceRef};

use crate::reason::ReasonCode;

mod elf;
#[cfg(unix)]
mod positioned;
#[cfg(target_os = "linux")]
pub(crate) mod segments;

use elf::{elf_machine, elf_section, format_name, machine_name, Expect, NATIVE};
#[cfg(unix)]
pub(crate) use positioned::{head as room, Head as Room};

/// Room for the first block of a file (unused where files are read through `ReadCache`).
#[cfg(not(unix))]
pub(crate) type Room = ();

/// [`Room`], not written yet.
#[cfg(not(unix))]
pub(crate) const fn room() -> Room {}

/// The largest provenance section accepted: a full blob plus generous alignment padding.
pub(crate) const MAX_SECTION_LEN: u64 = (frame::HEADER_LEN + frame::MAX_PAYLOAD_LEN + 4096) as u64;

/// Why a file's provenance could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{}: cannot read the file: {source}; check that it exists, is readable, and is not a dangling or looping symlink", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a shared library.
    #[error("{}: not a shared library ({detail}); remove it from the plugin directory", path.display())]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        detail: String,
    },
    /// A library for another platform or architecture, told by its headers.
    #[error(
        "{}: {file}, but this host loads {host}; rebuild the plugin for this host's target",
        path.display()
    )]
    WrongTarget {
        /// The file.
        path: PathBuf,
        /// What the file's headers say it is.
        file: String,
        /// What this host loads.
        host: String,
    },
    /// A shared library with no provenance: not built as a plugin-host plugin.
    #[error(
        "{}: {format} shared library without plugin-host provenance (no `{section}` section); \
         build it with `plugin_api::export_plugin!` and a build.rs calling \
         `plugin_api::build::record()`, or move it out of the plugin directory",
        path.display()
    )]
    NoProvenance {
        /// The file.
        path: PathBuf,
        /// `an ELF`, `a PE` or `a Mach-O`.
        format: &'static str,
        /// The section looked for.
        section: &'static str,
    },
    /// The provenance is there but not valid.
    #[error(
        "{}: malformed provenance: {detail}; rebuild the plugin with a plugin-api whose \
         provenance format this host reads (format {})",
        path.display(),
        frame::FORMAT_VERSION
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Reading or judging the file panicked: a bug in this crate that the file sets off,
    /// contained so that it refuses this one file.
    #[error(
        "{}: plugin-host {} panicked on this file ({message}; where it panicked is printed \
         on standard error): a bug in plugin-host that this file sets off, so the file is \
         refused and none of its code ran; report it to plugin-host's authors with the file \
         and that line, and remove the file (or stop configuring it) meanwhile",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    Panicked {
        /// The file.
        path: PathBuf,
        /// The panic's message, escaped and cut short.
        message: String,
    },
}

impl ReadError {
    /// The reason code this error reports.
    pub fn reason(&self) -> ReasonCode {
        match self {
            ReadError::Io { .. } | ReadError::NotALibrary { .. } => ReasonCode::NotALibrary,
            ReadError::WrongTarget { .. } => ReasonCode::TargetMismatch,
            ReadError::NoProvenance { .. } => ReasonCode::NoProvenance,
            ReadError::Malformed { .. } => ReasonCode::MalformedProvenance,
            ReadError::Panicked { .. } => ReasonCode::VerificationPanicked,
        }
    }
}

/// Runs `read`, which reads or judges hostile bytes, so that a panic in it — a bug in this
/// crate that the bytes set off — is an error for that one file instead of an unwinding into
/// the caller (a scan, an index, the CLI): the panic's message, escaped and cut short, for
/// [`ReadError::Panicked`]. (A build with `panic = "abort"` aborts; nothing can be caught.)
pub(crate) fn contained<T>(read: impl FnOnce() -> T) -> Result<T, String> {
    // Unwind safety: callers pass readers of their own locals and of state they only read;
    // what a reader made is dropped during the unwind.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        // The message may quote the file's bytes (a `str` slicing panic quotes the string).
        let message = crate::text::shown(message, 240);
        // The payload is a `&str` or a `String` of this crate's own panics: dropping it
        // cannot panic again.
        drop(payload);
        message
    })
}

/// [`contained`] for a reader of the file at `path`.
fn contained_read<T>(
    path: &Path,
    read: impl FnOnce() -> Result<T, ReadError>,
) -> Result<T, ReadError> {
    contained(read).unwrap_or_else(|message| {
        Err(ReadError::Panicked {
            path: path.to_owned(),
            message,
        })
    })
}

/// Opens `path` for verification: symlinks followed, never blocking (a FIFO opens at once),
/// and refused unless it is a regular file. The returned handle is what gets verified and,
/// on Linux, what gets loaded (see [`crate::Host`]).
pub fn open_candidate(path: &Path) -> Result<File, ReadError> {
    open_sized(path).map(|(file, _)| file)
}

/// [`open_candidate`], also returning the file's length (from the same `fstat`).
pub(crate) fn open_sized(path: &Path) -> Result<(File, std::fs::Metadata), ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // `O_NONBLOCK`: opening a FIFO with no writer would otherwise wait forever.
        // `O_NOCTTY`: a terminal device must not become our controlling terminal.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // Shared for reading only: while this handle is open — from verification until the
        // library is loaded — the file can be neither written, nor renamed, nor deleted, and
        // no other file can be renamed over its name (each needs a share mode this handle
        // denies). What `LoadLibrary` then opens by path is the file that was verified.
        const FILE_SHARE_READ: u32 = 0x0000_0001;
        options.share_mode(FILE_SHARE_READ);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotALibrary {
            path: path.to_owned(),
            detail: format!("it is {}", crate::small_file::kind_of(&meta.file_type())),
        });
    }
    Ok((file, meta))
}

/// Reads the provenance embedded in the library at `path`, without loading it.
pub fn read_provenance(path: &Path) -> Result<Provenance, ReadError> {
    let (file, meta) = open_sized(path)?;
    read_sized(path, &file, meta.len())
}

/// Reads the provenance note of a **worker binary** (an executable such as the `plugin-host`
/// CLI, whose build.rs records it), without running it: how the host learns which toolchain
/// a worker was built with (`plugin_isolate::Isolation::worker`). The same bounded reader as for
/// plugins, except that executables are accepted (plugins never are).
pub fn read_worker_provenance(path: &Path) -> Result<Provenance, ReadError> {
    let (file, meta) = open_sized(path)?;
    read_expecting(path, &file, meta.len(), Expect::Executable)
}

/// Like [`read_provenance`], from a file already open (`path` is used in messages only).
pub fn read_provenance_from(path: &Path, file: &File) -> Result<Provenance, ReadError> {
    let len = file.metadata().map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_sized(path, file, len.len())
}

/// [`read_provenance_from`] for a file whose length is known.
pub(crate) fn read_sized(path: &Path, file: &File, len: u64) -> Result<Provenance, ReadError> {
    read_expecting(path, file, len, Expect::Library)
}

/// Whether the provenance of the library `file` (of length `len`; `path` is used in messages
/// only) is `expected`: read and compared in place, without an owned copy of it. `false` when
/// it cannot be read, or reading it panicked.
#[cfg(target_os = "linux")]
pub(crate) fn holds_record(path: &Path, file: &File, len: u64, expected: &Provenance) -> bool {
    contained(|| {
        let mut room = room();
        read_blob(path, file, len, &mut room)
            .ok()
            .and_then(|blob| decode_in_place(path, &blob).ok().map(|r| r.is(expected)))
            .unwrap_or(false)
    })
    .unwrap_or(false)
}

/// Reads the provenance of a library built for **any** platform, without loading it: a
/// `.dll`'s `.plgprov` section on Linux, an ELF note on Windows, a library for another
/// architecture. What `plugin-host inspect` shows, the same wherever it runs. Plugins to be
/// loaded are read with [`read_provenance`], which refuses a file for another target by its
/// headers (`target-mismatch`).
pub fn read_provenance_any_platform(path: &Path) -> Result<Provenance, ReadError> {
    let (file, meta) = open_sized(path)?;
    read_expecting(path, &file, meta.len(), Expect::AnyPlatform)
}

fn read_expecting(
    path: &Path,
    file: &File,
    len: u64,
    expect: Expect,
) -> Result<Provenance, ReadError> {
    contained_read(path, || read_expecting_uncontained(path, file, len, expect))
}

fn read_expecting_uncontained(
    path: &Path,
    file: &File,
    len: u64,
    expect: Expect,
) -> Result<Provenance, ReadError> {
    #[cfg(unix)]
    {
        let mut room = room();
        let reader = file_reader(path, file, len, &mut room)?;
        decode(path, provenance_section(path, &reader, expect)?)
    }
    #[cfg(not(unix))]
    {
        let _ = len;
        decode(
            path,
            provenance_section(path, &ReadCache::new(file), expect)?,
        )
    }
}

/// What reading one file's provenance read from it: the measure of the reader's work that
/// tests and benchmarks hold it to (whatever the file claims, a few reads of a few KiB, plus
/// the provenance blob itself).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCost {
    /// Read calls (`pread`), the first block of the file included.
    pub reads: u32,
    /// Bytes read.
    pub bytes: u64,
}

/// [`read_provenance`], also returning what was read from the file (zero when it could not
/// be opened). For tests and benchmarks.
#[doc(hidden)]
#[cfg(unix)]
pub fn read_provenance_counted(path: &Path) -> (Result<Provenance, ReadError>, ReadCost) {
    let (file, len) = match open_sized(path) {
        Ok((file, meta)) => (file, meta.len()),
        Err(e) => return (Err(e), ReadCost::default()),
    };
    let mut room = room();
    let reader = match file_reader(path, &file, len, &mut room) {
        Ok(reader) => reader,
        Err(error) => return (Err(error), ReadCost::default()),
    };
    let result =
        provenance_section(path, &reader, Expect::Library).and_then(|blob| decode(path, blob));
    (result, reader.cost())
}

/// Like [`read_provenance`], from the bytes of a file (for fuzzing and tools).
pub fn read_provenance_bytes(path: &Path, bytes: &[u8]) -> Result<Provenance, ReadError> {
    contained_read(path, || {
        decode(path, provenance_section(path, bytes, Expect::Library)?)
    })
}

/// [`read_provenance_bytes`] as the gate reads: decoded in place and checked, nothing
/// copied out (for benchmarks).
#[doc(hidden)]
pub fn check_provenance_bytes(path: &Path, bytes: &[u8]) -> Result<(), ReadError> {
    let blob = provenance_section(path, bytes, Expect::Library)?;
    decode_in_place(path, blob).map(drop)
}

fn decode(path: &Path, blob: &[u8]) -> Result<Provenance, ReadError> {
    decode_in_place(path, blob).map(|p| p.to_owned())
}

/// The provenance section of the library `file` (of length `len`; `path` is used in
/// messages only), to be decoded in place by [`decode_in_place`]: what the gate reads. The
/// file's first block is read into `room`, and a section that lies in it (nearly every
/// plugin's: the note follows the program headers) is borrowed from there, not copied out.
pub(crate) fn read_blob<'r>(
    path: &Path,
    file: &File,
    len: u64,
    room: &'r mut Room,
) -> Result<Cow<'r, [u8]>, ReadError> {
    #[cfg(unix)]
    {
        let reader = file_reader(path, file, len, room)?;
        let blob = provenance_section(path, &reader, Expect::Library)?;
        Ok(match reader.in_head(blob) {
            Some(in_room) => Cow::Borrowed(in_room),
            None => Cow::Owned(blob.to_vec()),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (len, room);
        let cache = ReadCache::new(file);
        let blob = provenance_section(path, &cache, Expect::Library)?;
        Ok(Cow::Owned(blob.to_vec()))
    }
}

/// A reader of `file` (`len` bytes long; `path` is used in messages only), its first block
/// read into `room`.
#[cfg(unix)]
fn file_reader<'f, 'h>(
    path: &Path,
    file: &'f File,
    len: u64,
    room: &'h mut Room,
) -> Result<positioned::FileReader<'f, 'h>, ReadError> {
    positioned::FileReader::new(file, len, room).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The most characters of a decoding error a message keeps.
const MAX_DETAIL: usize = 1024;

/// Decodes a provenance blob in place (its strings borrowed from `blob`) and checks it: the
/// bounds of every field, and that it lists the interface crates it names.
pub(crate) fn decode_in_place<'b>(
    path: &Path,
    blob: &'b [u8],
) -> Result<ProvenanceRef<'b>, ReadError> {
    let malformed = |detail: String| ReadError::Malformed {
        path: path.to_owned(),
        detail,
    };
    // A decoding error may quote the record (serde quotes a string of the wrong kind whole):
    // cut, as every field is bounded once decoded.
    let (provenance, printable) = ProvenanceRef::decode_telling_printable(blob)
        .map_err(|e| malformed(crate::text::bounded(&e.to_string(), MAX_DETAIL).into_owned()))?;
    crate::limits::check_provenance(&provenance, printable).map_err(malformed)?;
    lists_its_interface(&provenance).map_err(malformed)?;
    Ok(provenance)
}

/// The recorder lists every crate linked into a plugin, and a plugin links `plugin-api` and
/// `abi_stable`: a record whose list lacks either at the version its own fields state was not
/// written by the recorder as it is (an empty list would let the dependencies check compare
/// nothing and pass).
fn lists_its_interface(p: &ProvenanceRef<'_>) -> Result<(), String> {
    // The common case, found in one pass without writing the versions out: both listed at
    // the versions their fields state.
    let (mut api_listed, mut abi_listed) = (false, false);
    for d in &p.dependencies {
        match d.name() {
            "plugin-api" => api_listed |= is_version(d.version(), &p.plugin_api),
            "abi_stable" => abi_listed |= is_version(d.version(), &p.abi_stable),
            _ => {}
        }
    }
    for (name, field, version, listed_at_version) in [
        ("plugin-api", "plugin_api", &p.plugin_api, api_listed),
        ("abi_stable", "abi_stable", &p.abi_stable, abi_listed),
    ] {
        if listed_at_version {
            continue;
        }
        let listed: Vec<&str> = p
            .dependencies
            .iter()
            .filter(|d| d.name() == name)
            .map(|d| d.version())
            .collect();
        let version = version.to_string();
        if listed.contains(&version.as_str()) {
            continue;
        }
        let found = if p.dependencies.is_empty() {
            "lists no crates at all".to_owned()
        } else if listed.is_empty() {
            format!("does not list {name}")
        } else {
            format!("lists {name} {}", listed.join(", "))
        };
        return Err(format!(
            "its `{field}` field says {name} {version}, but its dependency list {found}; the \
             recorder lists every crate linked into a plugin, {name} included"
        ));
    }
    Ok(())
}

/// Whether `text` is `version` as semver writes it (`major.minor.patch[-pre][+build]`): a
/// plain `major.minor.patch` (nearly every version listed) compared by its numbers, without
/// writing the version out; anything else compared with the version as written.
fn is_version(text: &str, version: &semver::Version) -> bool {
    match plugin_api::provenance::plain_version(text.as_bytes()) {
        Some(numbers) => {
            version.pre.is_empty()
                && version.build.is_empty()
                && numbers == [version.major, version.minor, version.patch]
        }
        None => text == version.to_string(),
    }
}

/// Finds the raw provenance section, as `data` holds it.
fn provenance_section<'a, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    expect: Expect,
) -> Result<&'a [u8], ReadError> {
    let not_a_library = |detail: String| ReadError::NotALibrary {
        path: path.to_owned(),
        detail,
    };
    let kind = FileKind::parse(data).map_err(|_| match data.len() {
        Ok(0) => not_a_library("the file is empty".into()),
        _ => not_a_library("unrecognised file format".into()),
    })?;
    let wrong_target = |file: String| ReadError::WrongTarget {
        path: path.to_owned(),
        file,
        host: format!(
            "{} for {}",
            format_name(NATIVE.kind),
            machine_name(NATIVE.elf_machine)
        ),
    };
    match kind {
        FileKind::Elf64 | FileKind::Elf32
            if NATIVE.kind == kind || expect == Expect::AnyPlatform =>
        {
            if kind == FileKind::Elf64 {
                elf_section::<object::elf::FileHeader64<object::Endianness>, R>(
                    path,
                    data,
                    &wrong_target,
                    expect,
                )
            } else {
                elf_section::<object::elf::FileHeader32<object::Endianness>, R>(
                    path,
                    data,
                    &wrong_target,
                    expect,
                )
            }
        }
        FileKind::Elf32 | FileKind::Elf64 => {
            let machine = elf_machine(data)
                .map(machine_name)
                .unwrap_or_else(|| "an unknown machine".into());
            Err(wrong_target(format!("{} for {machine}", format_name(kind))))
        }
        FileKind::Pe32
        | FileKind::Pe64
        | FileKind::MachO32
        | FileKind::MachO64
        | FileKind::MachOFat32
        | FileKind::MachOFat64 => {
            if NATIVE.kind == kind || expect == Expect::AnyPlatform {
                // `object` reads a PE's symbol table and a Mach-O's load commands and symbol
                // tables while it parses, each as large as the file claims: bounded here.
                let budget = Budget {
                    inner: data,
                    left: std::cell::Cell::new(MAX_FOREIGN_READ),
                };
                native_section(path, &budget, kind, expect)
            } else {
                Err(wrong_target(format_name(kind).to_owned()))
            }
        }
        other => Err(not_a_library(format!(
            "{other:?} is not a shared library format"
        ))),
    }
}

pub(crate) fn not_shared(path: &Path, what: &str) -> ReadError {
    ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("{what}, not a shared library"),
    }
}

/// The most bytes the reader reads of a PE or Mach-O file (beyond the first block), whatever
/// its headers claim: more than the symbol tables of any plugin, far less than a hostile
/// file's claims (a Mach-O of 1 MiB may list forty thousand symbol tables of 1 MiB each).
pub(crate) const MAX_FOREIGN_READ: u64 = 32 << 20;

/// A reader that refuses reads past a total of bytes (`left`), charged as they are asked
/// for; slices come from `inner`, for as long as it lives.
struct Budget<R> {
    inner: R,
    left: std::cell::Cell<u64>,
}

impl<R> Budget<R> {
    fn charge(&self, size: u64) -> Result<(), ()> {
        let left = self.left.get().checked_sub(size).ok_or(())?;
        self.left.set(left);
        Ok(())
    }
}

impl<'a, R: ReadRef<'a>> ReadRef<'a> for &Budget<R> {
    fn len(self) -> Result<u64, ()> {
        self.inner.len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        self.charge(size)?;
        self.inner.read_bytes_at(offset, size)
    }

    fn read_bytes_at_until(
        self,
        range: std::ops::Range<u64>,
        delimiter: u8,
    ) -> Result<&'a [u8], ()> {
        let bytes = self.inner.read_bytes_at_until(range, delimiter)?;
        self.charge(bytes.len() as u64 + 1)?;
        Ok(bytes)
    }
}

/// PE on Windows, Mach-O on Apple platforms: through `object`'s generic reader.
fn native_section<'a, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    kind: FileKind,
    expect: Expect,
) -> Result<&'a [u8], ReadError> {
    use object::{Object, ObjectKind, ObjectSection};
    let (format, name) = match kind {
        FileKind::Pe32 | FileKind::Pe64 => ("a PE", frame::SECTION_PE),
        _ => ("a Mach-O", frame::SECTION_MACHO),
    };
    let file = object::File::parse(data).map_err(|e| ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("truncated or corrupt file ({format} header): {e}"),
    })?;
    let accepted = match expect {
        Expect::Library | Expect::AnyPlatform => file.kind() == ObjectKind::Dynamic,
        Expect::Executable => matches!(file.kind(), ObjectKind::Dynamic | ObjectKind::Executable),
    };
    if !accepted {
        return Err(not_shared(
            path,
            &format!("{format} file of kind {:?}", file.kind()),
        ));
    }
    // The machine, as ELF's header is checked: a DLL for ARM64 on an x86-64 host is refused
    // here, before LoadLibrary would fail on it. `inspect` reads any platform's library.
    if expect != Expect::AnyPlatform {
        if let Some(native) = native_architecture().filter(|a| *a != file.architecture()) {
            return Err(ReadError::WrongTarget {
                path: path.to_owned(),
                file: format!("{format} file for {:?}", file.architecture()),
                host: format!("{} for {native:?}", format_name(NATIVE.kind)),
            });
        }
    }
    let Some(section) = file.section_by_name(name) else {
        return Err(ReadError::NoProvenance {
            path: path.to_owned(),
            format,
            section: name,
        });
    };
    check_section_size(path, section.size())?;
    let bytes = section.data().map_err(|e| ReadError::Malformed {
        path: path.to_owned(),
        detail: format!("section `{name}` cannot be read: {e}"),
    })?;
    Ok(bytes)
}

/// This host's architecture as `object` names a PE or Mach-O file's; `None` where it is not
/// told (the file is then not refused for its machine).
fn native_architecture() -> Option<object::Architecture> {
    use object::Architecture;
    if cfg!(target_arch = "x86_64") {
        Some(Architecture::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(Architecture::Aarch64)
    } else if cfg!(target_arch = "x86") {
        Some(Architecture::I386)
    } else if cfg!(target_arch = "arm") {
        Some(Architecture::Arm)
    } else {
        None
    }
}

fn check_section_size(path: &Path, size: u64) -> Result<(), ReadError> {
    if size > MAX_SECTION_LEN {
        return Err(ReadError::Malformed {
            path: path.to_owned(),
            detail: format!(
                "the provenance section claims {size} bytes, more than the {MAX_SECTION_LEN}-byte limit"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_version;

    #[test]
    fn characters_beyond_printable_ascii_are_still_checked_one_by_one() {
        use plugin_api::provenance::Provenance;
        let mut record = crate::policy::tests::record(&["abi_stable 0.11.3", "plugin-api 0.1.0"]);
        record.features = vec!["default".into()];
        let decode = |record: &Provenance| {
            let blob = record.encode();
            super::decode_in_place(std::path::Path::new("libp.so"), &blob)
                .map(|p| p.to_owned())
                .map_err(|e| e.to_string())
        };
        assert_eq!(decode(&record), Ok(record.clone()));
        // JSON carries these unescaped, so the record keeps the recorder's form: the reader
        // in one pass leaves them to serde_json, and the bounds look at every character.
        for (field, bad) in [
            ("target", "x86_64\u{202e}-linux"),
            ("target", "x86_64\u{85}-linux"),
            ("target", "x86_64\u{7f}-linux"),
            ("feature", "d\u{200b}efault"),
            ("digest", "sha256:12\u{1b}[2J"),
            ("digest key", "abi_stable\u{202e} 0.11.3"),
        ] {
            let mut hostile = record.clone();
            match field {
                "target" => hostile.target = bad.into(),
                "digest" => drop(
                    hostile
                        .digests
                        .insert("plugin-api 0.1.0".into(), bad.into()),
                ),
                "digest key" => drop(hostile.digests.insert(bad.into(), "sha256:12".into())),
                _ => hostile.features = vec![bad.into()],
            }
            let error = decode(&hostile).unwrap_err();
            assert!(
                error.contains(&format!("its {field} ")) && error.contains("control characters"),
                "{bad:?}: {error}"
            );
        }
        // Beyond ASCII but harmless: read (by serde_json) and accepted.
        record.target = "x86_64-unknown-linux-gnu-caf\u{e9}".into();
        assert_eq!(decode(&record), Ok(record.clone()));
        // A digest as long as a field may be, and one byte longer.
        let long = format!("sha256:{}", "a".repeat(crate::limits::MAX_FIELD - 7));
        record
            .digests
            .insert("plugin-api 0.1.0".into(), long.clone());
        assert_eq!(decode(&record), Ok(record.clone()));
        record
            .digests
            .insert("plugin-api 0.1.0".into(), format!("{long}a"));
        let error = decode(&record).unwrap_err();
        assert!(
            error.contains(&format!(
                "its digest is {} bytes long",
                crate::limits::MAX_FIELD + 1
            )),
            "{error}"
        );
    }

    #[test]
    fn a_decoding_error_quotes_the_record_cut() {
        let record = crate::policy::tests::record(&["abi_stable 0.11.3", "plugin-api 0.1.0"]);
        let blob = record.encode();
        let json = std::str::from_utf8(plugin_api::frame::decode(&blob).unwrap()).unwrap();
        // A string where serde expects a boolean: its error quotes the string whole.
        let long = "A".repeat(900_000);
        let hostile = json.replace(
            "\"debug_assertions\":true",
            &format!("\"debug_assertions\":\"{long}\""),
        );
        assert_ne!(hostile, json, "the record has the field");
        let hostile = plugin_api::frame::encode(hostile.as_bytes());
        let error = super::decode_in_place(std::path::Path::new("libp.so"), &hostile)
            .unwrap_err()
            .to_string();
        assert!(error.len() < 8192, "{} bytes", error.len());
        assert!(error.contains("AAAA"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_foreign_library_is_read_within_a_budget_whatever_it_claims() {
        use std::io::Write;
        // A Mach-O dylib of 1 MiB with 64 symbol tables of 64 Ki symbols (1 MiB) each:
        // `object` reads each table as it parses, 64 MiB in all.
        const LEN: usize = 1 << 20;
        const N: u32 = 64;
        let mut b = vec![0u8; LEN];
        b[0..4].copy_from_slice(&0xfeed_facfu32.to_le_bytes());
        b[4..8].copy_from_slice(&0x0100_0007u32.to_le_bytes());
        b[12..16].copy_from_slice(&6u32.to_le_bytes()); // MH_DYLIB
        b[16..20].copy_from_slice(&N.to_le_bytes());
        b[20..24].copy_from_slice(&(N * 24).to_le_bytes());
        for i in 0..N as usize {
            let c = 32 + i * 24;
            b[c..c + 4].copy_from_slice(&2u32.to_le_bytes()); // LC_SYMTAB
            b[c + 4..c + 8].copy_from_slice(&24u32.to_le_bytes());
            b[c + 12..c + 16].copy_from_slice(&((LEN / 16) as u32).to_le_bytes());
        }
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&b).unwrap();
        let path = std::path::Path::new("x.dylib");
        let mut room = super::room();
        let reader = super::file_reader(path, &f, LEN as u64, &mut room).unwrap();
        let outcome = super::provenance_section(path, &reader, super::Expect::AnyPlatform);
        assert!(
            matches!(outcome, Err(super::ReadError::NotALibrary { .. })),
            "{outcome:?}"
        );
        assert!(
            reader.cost().bytes <= super::MAX_FOREIGN_READ,
            "{:?}",
            reader.cost()
        );
    }

    #[test]
    fn every_version_field_is_bounded() {
        let record = crate::policy::tests::record(&["abi_stable 0.11.3", "plugin-api 0.1.0"]);
        let decode = |record: &plugin_api::provenance::Provenance| {
            let blob = record.encode();
            super::decode_in_place(std::path::Path::new("libp.so"), &blob)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(decode(&record), Ok(()));
        // A pre-release as long as a field may be passes the bounds; one byte more is
        // refused, naming the field, before any message could quote it whole.
        let at_most = format!("0.1.0-{}", "a".repeat(crate::limits::MAX_FIELD));
        for field in ["version", "plugin_api version", "abi_stable version"] {
            for (text, refused) in [(at_most.clone(), false), (format!("{at_most}a"), true)] {
                let mut hostile = record.clone();
                let version: semver::Version = text.parse().unwrap();
                match field {
                    "version" => hostile.version = version,
                    "plugin_api version" => hostile.plugin_api = version,
                    _ => hostile.abi_stable = version,
                }
                match decode(&hostile) {
                    Err(error) if refused => assert!(
                        error.contains(&format!(
                            "its {field} is {} bytes long, more than {}",
                            text.len(),
                            crate::limits::MAX_FIELD
                        )),
                        "{field}: {error}"
                    ),
                    Ok(()) if refused => panic!("{field}: {} bytes accepted", text.len()),
                    // Within bounds: an interface crate's long version is then refused for
                    // what it says (the dependency list names another), not for its length.
                    Err(error) => assert!(!error.contains("bytes long"), "{field}: {error}"),
                    Ok(()) => {}
                }
            }
        }
    }

    #[test]
    fn a_version_is_compared_as_semver_writes_it() {
        let texts = [
            "0.11.3",
            "0.11.30",
            "0.11",
            "0.11.3.0",
            "00.11.3",
            "0.011.3",
            "0.11.3-",
            "0.11.3+",
            "0.11.3-rc.1",
            "0.11.3-rc.1+b7",
            "0.11.3+b7",
            "1.0.0-alpha-1",
            "18446744073709551615.0.0",
            "18446744073709551616.0.0",
            "184467440737095516150.0.0",
            "0.11.3+b7-rc.1",
            "0.11.3-+b7",
            "0.11.3-rc.1+",
            "0.11.3rc",
            "0.11.3 ",
            "+0.11.3",
            "0.11.3\u{e9}",
            "0.11.-3",
            "1.0.0-alpha-1+b",
            "",
            "..",
            "x.y.z",
        ];
        let versions = [
            "0.11.3",
            "0.11.30",
            "0.11.3-rc.1",
            "0.11.3-rc.1+b7",
            "0.11.3+b7",
            "1.0.0-alpha-1",
            "18446744073709551615.0.0",
            "0.0.0",
        ];
        for v in versions {
            let version: semver::Version = v.parse().unwrap();
            for text in texts {
                assert_eq!(
                    is_version(text, &version),
                    version.to_string() == text,
                    "{text:?} against {version}"
                );
            }
        }
    }
}
