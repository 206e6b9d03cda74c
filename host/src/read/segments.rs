//! What the dynamic loader will use of a verified ELF library: the file ranges it maps, and
//! the libraries it needs with the directories it searches for them (`DT_NEEDED`,
//! `DT_RUNPATH`/`DT_RPATH`), read from the program headers and the dynamic segment.

use std::fs::File;

use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind, ReadRef};

use super::positioned::FileReader;

/// The most program headers looked at (verification refused larger tables already).
const MAX_SEGMENTS: usize = 4096;
/// The largest dynamic string table read.
const MAX_DYNSTR: u64 = 1 << 20;
/// The most `DT_NEEDED` entries kept.
const MAX_NEEDED: usize = 1024;
/// The largest dynamic segment read (real ones hold a few dozen 16-byte entries).
const MAX_DYNAMIC: u64 = 64 << 10;
/// The most search directories kept.
const MAX_SEARCH: usize = 64;

/// The parts of a library the dynamic loader reads.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoadInfo {
    /// File ranges `(offset, size)` the loader reads or maps: the ELF header, the program
    /// headers, every loadable and note segment.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// `DT_NEEDED`: the libraries it links, as recorded.
    pub(crate) needed: Vec<String>,
    /// The directories searched for them: `DT_RUNPATH`, or `DT_RPATH` when there is none,
    /// split at `:`, tokens such as `$ORIGIN` unexpanded.
    pub(crate) search: Vec<String>,
}

/// Reads the [`LoadInfo`] of the ELF library `file` (`len` bytes long).
pub(crate) fn load_info(file: &File, len: u64) -> Result<LoadInfo, String> {
    // Hostile bytes too (a plugin, or a library beside it that was never verified): a panic
    // in reading them is an error for that file, not an unwinding into the loader.
    super::contained(|| load_info_uncontained(file, len)).unwrap_or_else(|message| {
        Err(format!(
            "reading its ELF headers panicked ({message}): a bug in plugin-host"
        ))
    })
}

fn load_info_uncontained(file: &File, len: u64) -> Result<LoadInfo, String> {
    let mut room = super::positioned::head();
    let reader = FileReader::new(file, len, &mut room).map_err(|e| e.to_string())?;
    let data = &reader;
    match FileKind::parse(data).map_err(|e| e.to_string())? {
        FileKind::Elf64 => info::<FileHeader64<Endianness>, _>(data, len),
        FileKind::Elf32 => info::<FileHeader32<Endianness>, _>(data, len),
        other => Err(format!("{other:?} is not an ELF file")),
    }
}

fn info<'a, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'a>>(
    data: R,
    len: u64,
) -> Result<LoadInfo, String> {
    let header = Elf::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?;
    if segments.len() > MAX_SEGMENTS {
        return Err(format!("{} program headers", segments.len()));
    }
    let mut info = LoadInfo::default();
    let phdrs = header.e_phoff(endian).into();
    let phdrs_len = (segments.len() * header.e_phentsize(endian) as usize) as u64;
    info.ranges
        .push((0, u64::from(header.e_ehsize(endian)).min(len)));
    info.ranges.push((phdrs, phdrs_len));
    for segment in segments {
        if matches!(
            segment.p_type(endian),
            object::elf::PT_LOAD | object::elf::PT_NOTE | object::elf::PT_DYNAMIC
        ) {
            let (offset, size) = (
                segment.p_offset(endian).into(),
                segment.p_filesz(endian).into(),
            );
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(format!(
                    "a segment spans bytes {offset}..+{size}, past the end"
                ));
            }
            info.ranges.push((offset, size));
        }
    }

    let Some(dynamic_segment) = segments
        .iter()
        .find(|s| s.p_type(endian) == object::elf::PT_DYNAMIC)
    else {
        return Ok(info);
    };
    let dynamic_size: u64 = dynamic_segment.p_filesz(endian).into();
    if dynamic_size > MAX_DYNAMIC {
        return Err(format!("a dynamic segment of {dynamic_size} bytes"));
    }
    let Some(dynamic) = dynamic_segment
        .dynamic(endian, data)
        .map_err(|e| e.to_string())?
    else {
        return Ok(info);
    };
    // The loader stops at the first `DT_NULL`; so does this.
    let end = dynamic
        .iter()
        .position(|d| d.d_tag(endian).into() == u64::from(object::elf::DT_NULL))
        .unwrap_or(dynamic.len());
    let dynamic = &dynamic[..end];
    // The dynamic string table is addressed by virtual address: find it through the
    // loadable segment that maps it.
    let value = |tag: u32| {
        dynamic
            .iter()
            .find(|d| d.d_tag(endian).into() == u64::from(tag))
            .map(|d| d.d_val(endian).into())
    };
    let (Some(strtab), Some(strsz)) = (value(object::elf::DT_STRTAB), value(object::elf::DT_STRSZ))
    else {
        return Ok(info);
    };
    let strtab_offset = segments
        .iter()
        .filter(|s| s.p_type(endian) == object::elf::PT_LOAD)
        .find_map(|s| {
            let (vaddr, filesz): (u64, u64) = (s.p_vaddr(endian).into(), s.p_filesz(endian).into());
            let delta = strtab.checked_sub(vaddr)?;
            (delta < filesz).then(|| s.p_offset(endian).into() + delta)
        })
        .ok_or("the dynamic string table is outside the loadable segments")?;
    if strsz > MAX_DYNSTR {
        return Err(format!("a dynamic string table of {strsz} bytes"));
    }
    let strings = data
        .read_bytes_at(strtab_offset, strsz)
        .map_err(|()| "the dynamic string table lies outside the file".to_owned())?;
    let string = |offset: u64| -> Option<String> {
        let rest = strings.get(usize::try_from(offset).ok()?..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let (mut runpath, mut rpath) = (Vec::new(), Vec::new());
    let mut has_runpath = false;
    for d in dynamic {
        let tag: u64 = d.d_tag(endian).into();
        if tag == u64::from(object::elf::DT_RUNPATH) {
            has_runpath = true; // then the loader ignores DT_RPATH, readable or not
        }
        let Some(text) = string(d.d_val(endian).into()) else {
            continue;
        };
        match u32::try_from(tag) {
            Ok(object::elf::DT_NEEDED)
                if info.needed.len() < MAX_NEEDED && !info.needed.contains(&text) =>
            {
                info.needed.push(text);
            }
            Ok(object::elf::DT_RUNPATH) => runpath.extend(text.split(':').map(str::to_owned)),
            Ok(object::elf::DT_RPATH) => rpath.extend(text.split(':').map(str::to_owned)),
            _ => {}
        }
    }
    let mut search = if has_runpath { runpath } else { rpath };
    let mut seen = std::collections::HashSet::new();
    search.retain(|entry| seen.insert(entry.clone()));
    search.truncate(MAX_SEARCH);
    info.search = search;
    Ok(info)
}
