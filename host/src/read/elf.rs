//! ELF: the provenance note, found from the program headers (or, failing that, through the
//! section table), with every size bounded before it is read.

use std::mem::size_of;
use std::path::Path;

use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{FileKind, ReadRef};
use plugin_api::frame;

use super::{not_shared, ReadError, MAX_SECTION_LEN};

/// The largest program header table read. Real libraries have about ten entries (56 bytes
/// each in 64-bit ELF); 16 KiB is 292 of them.
const MAX_PROGRAM_HEADER_TABLE_LEN: u64 = 16 << 10;
/// The most ELF notes examined in one file, in all note segments and the provenance section
/// together. Real libraries have three to six; a hostile file cannot make the reader walk
/// more, however many note segments or empty notes it holds.
const MAX_NOTES: u32 = 64;
/// The bytes read for each note examined: its header (`namesz`, `descsz`, `type`) and a name
/// as long as ours. A descriptor is read only when the note is ours.
const NOTE_PROBE_LEN: u64 = frame::NOTE_PREFIX_LEN as u64;
/// The largest section header table read (only when the note is not in a note segment).
/// A real `.so` has 30 to 40 sections (64 bytes each in 64-bit ELF); 64 KiB is 1 024.
const MAX_SECTION_TABLE_LEN: u64 = 64 << 10;
/// The largest section-name table read; real ones are a few hundred bytes.
const MAX_SECTION_NAMES_LEN: u64 = 64 << 10;
/// How much of the dynamic segment is searched for `DT_FLAGS_1` (to tell a position-
/// independent executable from a library); real ones have 30 to 60 entries of 16 bytes.
const MAX_DYNAMIC_LEN: u64 = 4 << 10;

/// What this host loads, as object file facts.
pub(super) struct Native {
    pub(super) kind: FileKind,
    pub(super) elf_machine: u16,
    pub(super) little_endian: bool,
}

pub(super) const NATIVE: Native = Native {
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

pub(super) fn machine_name(machine: u16) -> String {
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

pub(super) fn format_name(kind: FileKind) -> &'static str {
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

/// `e_machine` of an ELF file of either class, read without trusting the class.
pub(super) fn elf_machine<'a, R: ReadRef<'a>>(data: R) -> Option<u16> {
    let ident = data.read_bytes_at(0, 20).ok()?;
    let raw = [ident[18], ident[19]];
    Some(if ident[5] == object::elf::ELFDATA2MSB {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    })
}

pub(super) fn elf_section<'a, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'a>>(
    path: &Path,
    data: R,
    wrong_target: &impl Fn(String) -> ReadError,
    expect: Expect,
) -> Result<&'a [u8], ReadError> {
    let executable = expect == Expect::Executable;
    let corrupt = |detail: String| ReadError::NotALibrary {
        path: path.to_owned(),
        detail: format!("truncated or corrupt ELF file: {detail}"),
    };
    let header = Elf::parse(data).map_err(|e| corrupt(e.to_string()))?;
    let endian = header.endian().map_err(|e| corrupt(e.to_string()))?;
    let machine = header.e_machine(endian);
    let foreign =
        machine != NATIVE.elf_machine || header.is_little_endian() != NATIVE.little_endian;
    if foreign && expect != Expect::AnyPlatform {
        let order = if header.is_little_endian() {
            "little"
        } else {
            "big"
        };
        return Err(wrong_target(format!(
            "{} for {} ({order}-endian)",
            format_name(if header.is_class_64() {
                FileKind::Elf64
            } else {
                FileKind::Elf32
            }),
            machine_name(machine)
        )));
    }
    match header.e_type(endian) {
        object::elf::ET_DYN => {}
        object::elf::ET_EXEC if executable => {}
        object::elf::ET_EXEC => return Err(not_shared(path, "an ELF executable")),
        object::elf::ET_REL => return Err(not_shared(path, "an ELF relocatable object")),
        object::elf::ET_CORE => return Err(not_shared(path, "an ELF core dump")),
        other => return Err(not_shared(path, &format!("an ELF file of type {other}"))),
    }

    let len = data
        .len()
        .map_err(|()| corrupt("its length cannot be read".into()))?;

    // Program headers: what the dynamic loader reads, and where the provenance note is found.
    // `phnum`, not `e_phnum`: with `PN_XNUM` the real count is in section 0, and that count
    // is what `program_headers` reads.
    let count = header
        .phnum(endian, data)
        .map_err(|e| corrupt(e.to_string()))? as u64;
    let entry = u64::from(header.e_phentsize(endian)).max(size_of::<Elf::ProgramHeader>() as u64);
    if count.saturating_mul(entry) > MAX_PROGRAM_HEADER_TABLE_LEN {
        return Err(corrupt(format!(
            "a program header table of {count} entries"
        )));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| corrupt(e.to_string()))?;
    // A position-independent executable is `ET_DYN` too; a program interpreter says it is
    // one. Refused even with a provenance note: the host loads libraries only.
    if !executable
        && segments
            .iter()
            .any(|s| s.p_type(endian) == object::elf::PT_INTERP)
    {
        return Err(not_shared(path, PIE));
    }
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
    let mut notes = NoteWalk {
        path,
        big_endian: !header.is_little_endian(),
        left: MAX_NOTES,
        name: if executable {
            &frame::WORKER_NOTE_NAME[..]
        } else {
            &frame::NOTE_NAME[..]
        },
    };
    for segment in segments
        .iter()
        .filter(|s| s.p_type(endian) == object::elf::PT_NOTE)
    {
        let range = (
            segment.p_offset(endian).into(),
            segment.p_filesz(endian).into(),
        );
        if let Some(blob) = notes.find(data, range, segment.p_align(endian).into())? {
            return Ok(blob);
        }
        if notes.left == 0 {
            break;
        }
    }
    // No provenance note: a static position-independent executable has no interpreter, but
    // says what it is in its dynamic flags. Only non-plugins pay for this read.
    if !executable && is_pie::<Elf, R>(data, endian, segments) {
        return Err(not_shared(path, PIE));
    }

    // Not in a note segment: look for the section (bounding every size before reading it).
    let count = header
        .shnum(endian, data)
        .map_err(|e| corrupt(e.to_string()))? as u64;
    let entry = u64::from(header.e_shentsize(endian)).max(size_of::<Elf::SectionHeader>() as u64);
    if count.saturating_mul(entry) > MAX_SECTION_TABLE_LEN {
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
        names
            .get(start..)
            .and_then(|name| name.strip_prefix(wanted))
            .and_then(|rest| rest.first())
            == Some(&0)
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
    let align = section.sh_addralign(endian).into();
    notes
        .find(data, range, align)?
        .ok_or_else(|| ReadError::Malformed {
            path: path.to_owned(),
            detail: format!(
                "section `{}` holds no readable PLGPROV note{}",
                frame::SECTION_ELF,
                if notes.left == 0 {
                    format!(" among the first {MAX_NOTES} notes of the file")
                } else {
                    String::new()
                }
            ),
        })
}

/// What kind of ELF file the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A shared library (a plugin): executables are refused, even with a provenance note.
    Library,
    /// An executable (a worker binary, [`crate::read_worker_provenance`]): a
    /// position-independent or fixed-address executable, or a library.
    Executable,
    /// A shared library for any platform and architecture (`inspect`): a `.dll` read on
    /// Linux, a `.so` for another machine. Loading never takes this path: a library for
    /// another target is refused by its headers before its provenance is read.
    AnyPlatform,
}

/// What a position-independent executable is called in messages.
const PIE: &str = "a position-independent executable";

/// Whether the dynamic segment's `DT_FLAGS_1` has `DF_1_PIE` (looking at its first
/// [`MAX_DYNAMIC_LEN`] bytes only). A dynamic segment that cannot be read says nothing.
fn is_pie<'a, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'a>>(
    data: R,
    endian: object::Endianness,
    segments: &[Elf::ProgramHeader],
) -> bool {
    use object::read::elf::Dyn;
    let Some(dynamic) = segments
        .iter()
        .find(|s| s.p_type(endian) == object::elf::PT_DYNAMIC)
    else {
        return false;
    };
    let (offset, size): (u64, u64) = (
        dynamic.p_offset(endian).into(),
        dynamic.p_filesz(endian).into(),
    );
    let count = size.min(MAX_DYNAMIC_LEN) as usize / size_of::<Elf::Dyn>();
    let Ok(entries) = data.read_slice_at::<Elf::Dyn>(offset, count) else {
        return false;
    };
    entries
        .iter()
        .take_while(|d| d.d_tag(endian).into() != u64::from(object::elf::DT_NULL))
        .any(|d| {
            d.d_tag(endian).into() == u64::from(object::elf::DT_FLAGS_1)
                && d.d_val(endian).into() & u64::from(object::elf::DF_1_PIE) != 0
        })
}

/// A walk of the ELF notes of one file, within a budget of [`MAX_NOTES`] notes in all.
///
/// Each note is examined on its own: its header and name are [`NOTE_PROBE_LEN`] bytes, taken
/// from the first page already read or with one small read; a descriptor that is not ours is
/// skipped without being read. The work per file is thus bounded by the note count, not by
/// the sizes the file claims.
struct NoteWalk<'p> {
    path: &'p Path,
    big_endian: bool,
    /// Notes that may still be examined.
    left: u32,
    /// The note's name: a plugin's, or a worker's.
    name: &'static [u8],
}

impl NoteWalk<'_> {
    /// Walks the notes in `(offset, size)` and returns the provenance note's descriptor.
    fn find<'a, R: ReadRef<'a>>(
        &mut self,
        data: R,
        (offset, size): (u64, u64),
        align: u64,
    ) -> Result<Option<&'a [u8]>, ReadError> {
        let malformed = |detail: String| ReadError::Malformed {
            path: self.path.to_owned(),
            detail,
        };
        // Notes are 4-byte aligned, or 8 in an 8-aligned segment (`.note.gnu.property`).
        let align = if align == 8 { 8 } else { 4 };
        let pad = |n: u64| n.checked_next_multiple_of(align);
        let name = self.name;
        // `at` is relative to the start of the notes, which are themselves aligned.
        let mut at: u64 = 0;
        while size.saturating_sub(at) >= 12 && self.left > 0 {
            self.left -= 1;
            let Some(probe) = offset.checked_add(at).and_then(|start| {
                data.read_bytes_at(start, NOTE_PROBE_LEN.min(size - at))
                    .ok()
            }) else {
                return Ok(None); // notes outside the file hold no provenance
            };
            let word = |i: usize| {
                let raw: [u8; 4] = probe[i..i + 4].try_into().expect("4 bytes");
                u64::from(if self.big_endian {
                    u32::from_be_bytes(raw)
                } else {
                    u32::from_le_bytes(raw)
                })
            };
            let (name_size, desc_size) = (word(0), word(4));
            // As glibc and binutils lay notes out: the descriptor, and the next note, start
            // aligned.
            // (`at + 12` is at most `size`; a size near 2^64 could overflow the rest.)
            let Some(desc_at) = (at + 12).checked_add(name_size).and_then(pad) else {
                return Ok(None);
            };
            if name_size == name.len() as u64 && probe.get(12..) == Some(name) {
                if desc_size > MAX_SECTION_LEN {
                    return Err(malformed(format!(
                        "the provenance note claims {desc_size} bytes, more than the {MAX_SECTION_LEN}-byte limit"
                    )));
                }
                if desc_at.saturating_add(desc_size) > size {
                    return Err(malformed(format!(
                        "the provenance note claims {desc_size} bytes, more than its segment holds"
                    )));
                }
                let desc = offset
                    .checked_add(desc_at)
                    .and_then(|start| data.read_bytes_at(start, desc_size).ok())
                    .ok_or_else(|| malformed("the provenance note lies outside the file".into()))?;
                return Ok(Some(desc));
            }
            match desc_at.checked_add(desc_size).and_then(pad) {
                Some(next) => at = next,
                None => return Ok(None),
            }
        }
        Ok(None)
    }
}
