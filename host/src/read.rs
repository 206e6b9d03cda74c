//! Reading a file's provenance without loading it.
//!
//! The file is opened once and read through [`object::ReadCache`], which fetches only the
//! byte ranges asked for: the file header, the section headers, the section-name strings and
//! the provenance section itself. Nothing is mapped executable, no constructor runs, and the
//! cost does not depend on the size of the library. Reading through `pread` rather than a
//! memory map also means a file truncated under our feet yields an error, not `SIGBUS`.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::read::elf::{FileHeader, SectionHeader};
use object::{FileKind, Object, ObjectKind, ObjectSection, ReadCache, ReadRef};
use plugin_api::frame;
use plugin_api::provenance::Provenance;

use crate::reason::ReasonCode;

/// The largest provenance section accepted: a full blob plus generous alignment padding.
const MAX_SECTION_LEN: u64 = (frame::HEADER_LEN + frame::MAX_PAYLOAD_LEN + 4096) as u64;

/// Why a file's provenance could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{}: cannot read the file: {source}; check that it exists and is readable", path.display())]
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
            ReadError::NoProvenance { .. } => ReasonCode::NoProvenance,
            ReadError::Malformed { .. } => ReasonCode::MalformedProvenance,
        }
    }
}

/// Reads the provenance embedded in the library at `path`, without loading it.
pub fn read_provenance(path: &Path) -> Result<Provenance, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_provenance_from(path, file)
}

/// Like [`read_provenance`], from a file already open (`path` is used in messages only).
pub fn read_provenance_from(path: &Path, file: File) -> Result<Provenance, ReadError> {
    let blob = provenance_section(path, &ReadCache::new(file))?;
    Provenance::decode(&blob).map_err(|e| ReadError::Malformed {
        path: path.to_owned(),
        detail: e.to_string(),
    })
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
    match kind {
        FileKind::Elf64 => {
            elf_section::<object::elf::FileHeader64<object::Endianness>, R>(path, data)
        }
        FileKind::Elf32 => {
            elf_section::<object::elf::FileHeader32<object::Endianness>, R>(path, data)
        }
        FileKind::Pe32 | FileKind::Pe64 => {
            generic_section(path, data, "a PE", frame::SECTION_ELF_PE)
        }
        FileKind::MachO32 | FileKind::MachO64 => {
            generic_section(path, data, "a Mach-O", frame::SECTION_MACHO)
        }
        other => Err(not_a_library(format!("a {other:?} file"))),
    }
}

fn elf_section<'a, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'a>>(
    path: &Path,
    data: R,
) -> Result<Vec<u8>, ReadError> {
    let corrupt = |e: object::Error| ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("truncated or corrupt ELF file: {e}"),
    };
    let header = Elf::parse(data).map_err(corrupt)?;
    let endian = header.endian().map_err(corrupt)?;
    match header.e_type(endian) {
        object::elf::ET_DYN => {}
        object::elf::ET_EXEC => return Err(corrupt_kind(path, "an ELF executable")),
        object::elf::ET_REL => return Err(corrupt_kind(path, "an ELF relocatable object")),
        other => return Err(corrupt_kind(path, &format!("an ELF file of type {other}"))),
    }
    let sections = header.sections(endian, data).map_err(corrupt)?;
    let Some((_, section)) = sections.section_by_name(endian, frame::SECTION_ELF_PE.as_bytes())
    else {
        return Err(ReadError::NoProvenance {
            path: path.to_owned(),
            format: "an ELF",
            section: frame::SECTION_ELF_PE,
        });
    };
    let size: u64 = section.sh_size(endian).into();
    check_section_size(path, size)?;
    let bytes = section
        .data(endian, data)
        .map_err(|e| ReadError::Malformed {
            path: path.to_owned(),
            detail: format!("section `{}` cannot be read: {e}", frame::SECTION_ELF_PE),
        })?;
    Ok(bytes.to_vec())
}

fn corrupt_kind(path: &Path, what: &str) -> ReadError {
    ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("{what}, not a shared library"),
    }
}

fn generic_section<'a, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    format: &'static str,
    name: &'static str,
) -> Result<Vec<u8>, ReadError> {
    let file = object::File::parse(data).map_err(|e| ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("truncated or corrupt file ({format} header): {e}"),
    })?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(corrupt_kind(
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
            detail: format!("the provenance section claims {size} bytes, more than the {MAX_SECTION_LEN}-byte limit"),
        });
    }
    Ok(())
}
