//! Reading a file's provenance without loading it.
//!
//! The file is opened once (without blocking: a FIFO cannot stall the scan) and read through
//! [`object::ReadCache`], which fetches only the byte ranges asked for: the file header, the
//! section headers, the section-name table and the provenance section itself. Nothing is
//! mapped executable, no constructor runs, and the cost does not depend on the size of the
//! library. Reading with `pread`-style calls rather than a memory map also means a file
//! truncated under our feet yields an error, not `SIGBUS`.
//!
//! Every size taken from the file is bounded before anything is allocated for it, so a
//! hostile file cannot make the reader allocate more than a few MiB.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
#[cfg(not(unix))]
use object::ReadCache;
use object::{FileKind, ReadRef};
use plugin_api::frame;
use plugin_api::provenance::Provenance;

use crate::reason::ReasonCode;

/// The largest provenance section accepted: a full blob plus generous alignment padding.
const MAX_SECTION_LEN: u64 = (frame::HEADER_LEN + frame::MAX_PAYLOAD_LEN + 4096) as u64;
/// The largest section header table read (65 536 64-byte entries).
const MAX_SECTION_TABLE_LEN: u64 = 4 << 20;
/// How much of a note segment is read to look for the provenance note.
const NOTE_WINDOW: u64 = MAX_SECTION_LEN + (64 << 10);
/// How much of all note segments together is read.
const MAX_NOTE_BYTES: u64 = 4 * NOTE_WINDOW;
/// The largest section-name table read; real ones are a few hundred bytes.
const MAX_SECTION_NAMES_LEN: u64 = 1 << 20;

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
}

impl ReadError {
    /// The reason code this error reports.
    pub fn reason(&self) -> ReasonCode {
        match self {
            ReadError::Io { .. } | ReadError::NotALibrary { .. } => ReasonCode::NotALibrary,
            ReadError::WrongTarget { .. } => ReasonCode::TargetMismatch,
            ReadError::NoProvenance { .. } => ReasonCode::NoProvenance,
            ReadError::Malformed { .. } => ReasonCode::MalformedProvenance,
        }
    }
}

/// Opens `path` for verification: symlinks followed, never blocking (a FIFO opens at once),
/// and refused unless it is a regular file. The returned handle is what gets verified and,
/// on Linux, what gets loaded (see [`crate::Host`]).
pub fn open_candidate(path: &Path) -> Result<File, ReadError> {
    open_sized(path).map(|(file, _)| file)
}

/// [`open_candidate`], also returning the file's length (from the same `fstat`).
pub(crate) fn open_sized(path: &Path) -> Result<(File, u64), ReadError> {
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
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotALibrary {
            path: path.to_owned(),
            detail: format!("it is {}", describe(&meta.file_type())),
        });
    }
    Ok((file, meta.len()))
}

fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads the provenance embedded in the library at `path`, without loading it.
pub fn read_provenance(path: &Path) -> Result<Provenance, ReadError> {
    let (file, len) = open_sized(path)?;
    read_sized(path, &file, len)
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
    #[cfg(unix)]
    {
        let reader = positioned::FileReader::new(file, len).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        decode(path, &provenance_section(path, &reader)?)
    }
    #[cfg(not(unix))]
    {
        let _ = len;
        decode(path, &provenance_section(path, &ReadCache::new(file))?)
    }
}

/// Like [`read_provenance`], from the bytes of a file (for fuzzing and tools).
pub fn read_provenance_bytes(path: &Path, bytes: &[u8]) -> Result<Provenance, ReadError> {
    decode(path, &provenance_section(path, bytes)?)
}

fn decode(path: &Path, blob: &[u8]) -> Result<Provenance, ReadError> {
    Provenance::decode(blob).map_err(|e| ReadError::Malformed {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// What this host loads, as object file facts.
struct Native {
    kind: FileKind,
    elf_machine: u16,
    little_endian: bool,
}

const NATIVE: Native = Native {
    kind: if cfg!(windows) {
        FileKind::Pe64
    } else if cfg!(any(target_os = "macos", target_os = "ios")) {
        FileKind::MachO64
    } else if cfg!(target_pointer_width = "32") {
        FileKind::Elf32
    } else {
        FileKind::Elf64
    },
    elf_machine: if cfg!(target_arch = "x86_64") {
        object::elf::EM_X86_64
    } else if cfg!(target_arch = "aarch64") {
        object::elf::EM_AARCH64
    } else if cfg!(target_arch = "x86") {
        object::elf::EM_386
    } else if cfg!(target_arch = "arm") {
        object::elf::EM_ARM
    } else if cfg!(target_arch = "riscv64") || cfg!(target_arch = "riscv32") {
        object::elf::EM_RISCV
    } else if cfg!(target_arch = "powerpc64") {
        object::elf::EM_PPC64
    } else if cfg!(target_arch = "s390x") {
        object::elf::EM_S390
    } else if cfg!(target_arch = "loongarch64") {
        object::elf::EM_LOONGARCH
    } else {
        object::elf::EM_NONE
    },
    little_endian: cfg!(target_endian = "little"),
};

fn machine_name(machine: u16) -> String {
    match machine {
        object::elf::EM_X86_64 => "x86_64".into(),
        object::elf::EM_AARCH64 => "aarch64".into(),
        object::elf::EM_386 => "x86".into(),
        object::elf::EM_ARM => "arm".into(),
        object::elf::EM_RISCV => "riscv".into(),
        object::elf::EM_PPC64 => "powerpc64".into(),
        object::elf::EM_S390 => "s390x".into(),
        object::elf::EM_LOONGARCH => "loongarch".into(),
        other => format!("machine {other}"),
    }
}

fn format_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Elf32 => "a 32-bit ELF file",
        FileKind::Elf64 => "a 64-bit ELF file",
        FileKind::Pe32 | FileKind::Pe64 => "a PE (Windows) file",
        FileKind::MachO32 | FileKind::MachO64 | FileKind::MachOFat32 | FileKind::MachOFat64 => {
            "a Mach-O (Apple) file"
        }
        _ => "an object file",
    }
}

/// Finds and copies out the raw provenance section.
fn provenance_section<'a, R: ReadRef<'a>>(path: &Path, data: R) -> Result<Vec<u8>, ReadError> {
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
        FileKind::Elf64 | FileKind::Elf32 if NATIVE.kind == kind => {
            if kind == FileKind::Elf64 {
                elf_section::<object::elf::FileHeader64<object::Endianness>, R>(
                    path,
                    data,
                    &wrong_target,
                )
            } else {
                elf_section::<object::elf::FileHeader32<object::Endianness>, R>(
                    path,
                    data,
                    &wrong_target,
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
            if NATIVE.kind == kind {
                native_section(path, data, kind)
            } else {
                Err(wrong_target(format_name(kind).to_owned()))
            }
        }
        other => Err(not_a_library(format!(
            "{other:?} is not a shared library format"
        ))),
    }
}

/// `e_machine` of an ELF file of either class, read without trusting the class.
fn elf_machine<'a, R: ReadRef<'a>>(data: R) -> Option<u16> {
    let ident = data.read_bytes_at(0, 20).ok()?;
    let raw = [ident[18], ident[19]];
    Some(if ident[5] == object::elf::ELFDATA2MSB {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    })
}

fn elf_section<'a, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    wrong_target: &impl Fn(String) -> ReadError,
) -> Result<Vec<u8>, ReadError> {
    let corrupt = |detail: String| ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("truncated or corrupt ELF file: {detail}"),
    };
    let header = Elf::parse(data).map_err(|e| corrupt(e.to_string()))?;
    let endian = header.endian().map_err(|e| corrupt(e.to_string()))?;
    let machine = header.e_machine(endian);
    if machine != NATIVE.elf_machine || header.is_little_endian() != NATIVE.little_endian {
        let order = if header.is_little_endian() {
            "little"
        } else {
            "big"
        };
        return Err(wrong_target(format!(
            "{} for {} ({order}-endian)",
            format_name(FileKind::parse(data).unwrap_or(FileKind::Elf64)),
            machine_name(machine)
        )));
    }
    match header.e_type(endian) {
        object::elf::ET_DYN => {}
        object::elf::ET_EXEC => return Err(not_shared(path, "an ELF executable")),
        object::elf::ET_REL => return Err(not_shared(path, "an ELF relocatable object")),
        object::elf::ET_CORE => return Err(not_shared(path, "an ELF core dump")),
        other => return Err(not_shared(path, &format!("an ELF file of type {other}"))),
    }

    let len = data
        .len()
        .map_err(|()| corrupt("its length cannot be read".into()))?;

    // Program headers: what the dynamic loader reads, and where the provenance note is found.
    let count = u64::from(header.e_phnum(endian));
    if count.saturating_mul(u64::from(header.e_phentsize(endian)).max(1)) > MAX_SECTION_TABLE_LEN {
        return Err(corrupt(format!(
            "a program header table of {count} entries"
        )));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| corrupt(e.to_string()))?;
    // The loader maps every loadable segment: one reaching past the end of the file would
    // fault when touched, inside `dlopen`. Refuse it here.
    for segment in segments
        .iter()
        .filter(|s| s.p_type(endian) == object::elf::PT_LOAD)
    {
        let (offset, size): (u64, u64) = (
            segment.p_offset(endian).into(),
            segment.p_filesz(endian).into(),
        );
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(corrupt(format!(
                "a loadable segment spans bytes {offset}..{}, past the end of the {len}-byte file",
                offset.saturating_add(size)
            )));
        }
    }
    let big_endian = !header.is_little_endian();
    // Note segments are walked in memory, within a budget of bytes read: a hostile file
    // cannot make the reader loop over a huge segment or re-read one thousands of times.
    let mut budget = MAX_NOTE_BYTES;
    for segment in segments
        .iter()
        .filter(|s| s.p_type(endian) == object::elf::PT_NOTE)
    {
        let align = if segment.p_align(endian).into() == 8 {
            8
        } else {
            4
        };
        let range = (
            segment.p_offset(endian).into(),
            segment.p_filesz(endian).into(),
        );
        if let Some(blob) = find_note(path, data, big_endian, range, align, &mut budget)? {
            return Ok(blob);
        }
        if budget == 0 {
            break;
        }
    }

    // Not in a note segment: look for the section (bounding every size before reading it).
    let count = header
        .shnum(endian, data)
        .map_err(|e| corrupt(e.to_string()))? as u64;
    let entry = u64::from(header.e_shentsize(endian));
    if count.saturating_mul(entry.max(1)) > MAX_SECTION_TABLE_LEN {
        return Err(corrupt(format!("a section table of {count} entries")));
    }
    let sections = header
        .section_headers(endian, data)
        .map_err(|e| corrupt(e.to_string()))?;
    let names_index = header
        .shstrndx(endian, data)
        .map_err(|e| corrupt(e.to_string()))? as usize;
    let names = match sections.get(names_index).and_then(|s| s.file_range(endian)) {
        Some((offset, size)) if size <= MAX_SECTION_NAMES_LEN => {
            data.read_bytes_at(offset, size)
                .map_err(|()| corrupt("the section name table lies outside the file".into()))?
        }
        Some((_, size)) => return Err(corrupt(format!("a section name table of {size} bytes"))),
        None => &[][..],
    };
    let wanted = frame::SECTION_ELF.as_bytes();
    let section = sections.iter().find(|s| {
        let start = s.sh_name(endian) as usize;
        names.get(start..start + wanted.len()) == Some(wanted)
            && names.get(start + wanted.len()) == Some(&0)
    });
    let no_provenance = || ReadError::NoProvenance {
        path: path.to_owned(),
        format: "an ELF",
        section: frame::SECTION_ELF,
    };
    let Some(section) = section else {
        return Err(no_provenance());
    };
    let Some(range) = section.file_range(endian) else {
        return Err(ReadError::Malformed {
            path: path.to_owned(),
            detail: format!("section `{}` has no bytes in the file", frame::SECTION_ELF),
        });
    };
    let mut budget = NOTE_WINDOW;
    find_note(path, data, big_endian, range, 4, &mut budget)?.ok_or_else(no_provenance)
}

/// Walks the ELF notes in `(offset, size)` and returns the provenance note's descriptor.
///
/// The note headers are read in one window of at most [`NOTE_WINDOW`] bytes (taken from
/// `budget`) and walked in memory; a provenance note must start within that window.
fn find_note<'a, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    big_endian: bool,
    (offset, size): (u64, u64),
    align: u64,
    budget: &mut u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    let malformed = |detail: String| ReadError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let window_len = size.min(NOTE_WINDOW).min(*budget);
    *budget -= window_len;
    let Ok(window) = data.read_bytes_at(offset, window_len) else {
        return Ok(None); // a note segment outside the file holds no provenance
    };
    let pad = |n: u64| n.div_ceil(align) * align;
    let word = |at: usize| {
        let raw: [u8; 4] = window[at..at + 4].try_into().expect("4 bytes");
        u64::from(if big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    };
    let name = &frame::NOTE_NAME[..];
    let mut at: u64 = 0;
    while at + 12 <= window_len {
        let (name_size, desc_size) = (word(at as usize), word(at as usize + 4));
        let name_at = at + 12;
        let desc_at = name_at + pad(name_size);
        let is_ours = name_size == name.len() as u64
            && window.get(name_at as usize..(name_at + name_size) as usize) == Some(name);
        if is_ours {
            if desc_size > MAX_SECTION_LEN {
                return Err(malformed(format!(
                    "the provenance note claims {desc_size} bytes, more than the {MAX_SECTION_LEN}-byte limit"
                )));
            }
            if desc_at + desc_size > size {
                return Err(malformed(format!(
                    "the provenance note claims {desc_size} bytes, more than its segment holds"
                )));
            }
            let desc = match window.get(desc_at as usize..(desc_at + desc_size) as usize) {
                Some(desc) => desc,
                None => data
                    .read_bytes_at(offset + desc_at, desc_size)
                    .map_err(|()| malformed("the provenance note lies outside the file".into()))?,
            };
            return Ok(Some(desc.to_vec()));
        }
        at = desc_at.saturating_add(pad(desc_size));
    }
    Ok(None)
}

fn not_shared(path: &Path, what: &str) -> ReadError {
    ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("{what}, not a shared library"),
    }
}

/// PE on Windows, Mach-O on Apple platforms: through `object`'s generic reader.
fn native_section<'a, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    kind: FileKind,
) -> Result<Vec<u8>, ReadError> {
    use object::{Object, ObjectKind, ObjectSection};
    let (format, name) = match kind {
        FileKind::Pe32 | FileKind::Pe64 => ("a PE", frame::SECTION_PE),
        _ => ("a Mach-O", frame::SECTION_MACHO),
    };
    let file = object::File::parse(data).map_err(|e| ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("truncated or corrupt file ({format} header): {e}"),
    })?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(not_shared(
            path,
            &format!("{format} file of kind {:?}", file.kind()),
        ));
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
    Ok(bytes.to_vec())
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

#[cfg(unix)]
mod positioned {
    //! A [`ReadRef`] over a file that costs one `pread` per range read, with the first block
    //! read up front (it holds the file header): object's `ReadCache` pays an `lseek` and a
    //! `read` per range, which is most of the cost of verifying a file.

    use std::cell::RefCell;
    use std::fs::File;
    use std::ops::Range;
    use std::os::unix::fs::FileExt;

    use object::ReadRef;

    /// Bytes read up front: the ELF header and program headers fit.
    const HEAD: u64 = 4096;
    /// The longest string `read_bytes_at_until` looks through (as object's `ReadCache`).
    const MAX_STRING: u64 = 4096;

    pub(super) struct FileReader<'f> {
        file: &'f File,
        len: u64,
        head: [u8; HEAD as usize],
        head_len: usize,
        /// Every other range read; only ever pushed to, so the boxed bytes never move.
        ranges: RefCell<Vec<Box<[u8]>>>,
    }

    impl<'f> FileReader<'f> {
        pub(super) fn new(file: &'f File, len: u64) -> std::io::Result<Self> {
            let mut head = [0u8; HEAD as usize];
            let head_len = len.min(HEAD) as usize;
            file.read_exact_at(&mut head[..head_len], 0)?;
            Ok(FileReader {
                file,
                len,
                head,
                head_len,
                ranges: RefCell::new(Vec::new()),
            })
        }
    }

    impl<'a> ReadRef<'a> for &'a FileReader<'_> {
        fn len(self) -> Result<u64, ()> {
            Ok(self.len)
        }

        fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
            let end = offset.checked_add(size).ok_or(())?;
            if end > self.len {
                return Err(());
            }
            if end <= self.head_len as u64 {
                return Ok(&self.head[offset as usize..end as usize]);
            }
            let size = usize::try_from(size).map_err(|_| ())?;
            let mut bytes = Vec::new();
            bytes.try_reserve_exact(size).map_err(|_| ())?;
            bytes.resize(size, 0);
            self.file
                .read_exact_at(&mut bytes, offset)
                .map_err(|_| ())?;
            let bytes = bytes.into_boxed_slice();
            let slice: *const [u8] = &*bytes;
            self.ranges.borrow_mut().push(bytes);
            // SAFETY: `slice` points into a boxed buffer now owned by `self.ranges`, which only
            // ever grows: the buffer is neither moved (moving a `Box` does not move its heap
            // data) nor freed nor written to before `self` is dropped, and `'a` borrows `self`.
            Ok(unsafe { &*slice })
        }

        fn read_bytes_at_until(self, range: Range<u64>, delimiter: u8) -> Result<&'a [u8], ()> {
            let size = range
                .end
                .checked_sub(range.start)
                .ok_or(())?
                .min(MAX_STRING);
            let size = size.min(self.len.saturating_sub(range.start));
            let bytes = self.read_bytes_at(range.start, size)?;
            let end = bytes.iter().position(|&b| b == delimiter).ok_or(())?;
            Ok(&bytes[..end])
        }
    }
}
