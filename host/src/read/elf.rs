//! ELF: the provenance note, found from the program headers (or, failing that, through the
//! section table), with every size bounded before it is read.

use std::path::Path;

use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::{FileKind, ReadRef};
use plugin_api::frame;

use super::{not_shared, ReadError, MAX_SECTION_LEN};

/// The largest section header table read (65 536 64-byte entries).
const MAX_SECTION_TABLE_LEN: u64 = 4 << 20;
/// How much of a note segment is read to look for the provenance note.
const NOTE_WINDOW: u64 = MAX_SECTION_LEN + (64 << 10);
/// How much of all note segments together is read.
const MAX_NOTE_BYTES: u64 = 4 * NOTE_WINDOW;
/// The largest section-name table read; real ones are a few hundred bytes.
const MAX_SECTION_NAMES_LEN: u64 = 1 << 20;

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
    let mut budget = NOTE_WINDOW;
    find_note(path, data, big_endian, range, 4, &mut budget)?.ok_or_else(|| ReadError::Malformed {
        path: path.to_owned(),
        detail: format!(
            "section `{}` holds no readable PLGPROV note",
            frame::SECTION_ELF
        ),
    })
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
