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
/// The longest path the loader opens (`PATH_MAX`): a needed name or a search entry longer
/// than this can be no file it loads.
const MAX_PATH: usize = 4096;
/// The most bytes of dynamic strings looked at in all: the string table's cap four times
/// over, where a library's names and search path take a few kilobytes.
const MAX_STRING_BYTES: usize = 4 * MAX_DYNSTR as usize;

/// The parts of a library the dynamic loader reads.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoadInfo {
    /// File ranges `(offset, size)` the loader reads or maps: the ELF header, the program
    /// headers, every loadable and note segment.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// `DT_NEEDED`: the libraries it links, as recorded.
    pub(crate) needed: Vec<String>,
    /// Whether some `DT_NEEDED` entry is missing from [`LoadInfo::needed`] (its name could
    /// not be read, was longer than a path, or came past the most kept).
    pub(crate) needed_partial: bool,
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
    // Counted before the table is read (a count past `PN_XNUM` is in section 0, and a
    // sparse file may be as long as a forged count needs).
    let count = header.phnum(endian, data).map_err(|e| e.to_string())?;
    if count > MAX_SEGMENTS {
        return Err(format!("{count} program headers"));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?;
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
    // Entries may all point into one long string (offsets anywhere in the table): the bytes
    // looked at are counted, and a string the loader could not use is passed over.
    let mut budget = MAX_STRING_BYTES;
    let mut string = |offset: u64| -> Result<Option<&[u8]>, String> {
        let Some(rest) = usize::try_from(offset)
            .ok()
            .and_then(|at| strings.get(at..))
        else {
            return Ok(None);
        };
        let end = rest.iter().position(|&b| b == 0);
        let looked = end.map_or(rest.len(), |end| end + 1);
        budget = budget.checked_sub(looked).ok_or_else(|| {
            format!("dynamic entries whose strings add up to more than {MAX_STRING_BYTES} bytes")
        })?;
        Ok(end.map(|end| &rest[..end]))
    };
    let (mut runpath, mut rpath) = (Vec::new(), Vec::new());
    let mut has_runpath = false;
    for d in dynamic {
        let tag: u64 = d.d_tag(endian).into();
        if tag == u64::from(object::elf::DT_RUNPATH) {
            has_runpath = true; // then the loader ignores DT_RPATH, readable or not
        }
        let Ok(tag @ (object::elf::DT_NEEDED | object::elf::DT_RUNPATH | object::elf::DT_RPATH)) =
            u32::try_from(tag)
        else {
            continue;
        };
        let Some(bytes) = string(d.d_val(endian).into())? else {
            info.needed_partial |= tag == object::elf::DT_NEEDED;
            continue;
        };
        match tag {
            object::elf::DT_NEEDED => {
                if bytes.len() <= MAX_PATH && info.needed.len() < MAX_NEEDED {
                    let text = String::from_utf8_lossy(bytes);
                    if !info.needed.iter().any(|n| *n == text) {
                        info.needed.push(text.into_owned());
                    }
                } else {
                    info.needed_partial = true;
                }
            }
            object::elf::DT_RUNPATH => search_entries(&mut runpath, bytes),
            _ => search_entries(&mut rpath, bytes),
        }
    }
    info.search = if has_runpath { runpath } else { rpath };
    Ok(info)
}

/// Adds the entries of the colon-separated search path `bytes` to `list`: each once, in
/// order, at most [`MAX_SEARCH`] in all, none longer than a path can be.
fn search_entries(list: &mut Vec<String>, bytes: &[u8]) {
    for entry in bytes.split(|&b| b == b':') {
        if list.len() >= MAX_SEARCH {
            return;
        }
        if entry.len() > MAX_PATH {
            continue;
        }
        let text = String::from_utf8_lossy(entry);
        if !list.iter().any(|e| *e == text) {
            list.push(text.into_owned());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A little-endian ELF64 library: a loadable segment over the whole file and a dynamic
    /// segment holding `entries` (tag, value) after `DT_STRTAB`/`DT_STRSZ`, with `strings`
    /// as its string table; `phnum` and `section0_info` forge the program header count.
    pub(crate) fn library(
        entries: &[(u64, u64)],
        strings: &[u8],
        phnum: u16,
        section0_info: u32,
    ) -> Vec<u8> {
        let dyn_off = 64 + 2 * 56u64;
        let dyn_size = (entries.len() as u64 + 3) * 16;
        let str_off = dyn_off + dyn_size;
        // Section 0 aligned, as a real table is.
        let pad = (8 - strings.len() % 8) % 8;
        let sh_off = str_off + (strings.len() + pad) as u64;
        let total = sh_off + 64;
        let mut out = Vec::new();
        let u16s = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
        let u32s = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        let u64s = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        u16s(&mut out, 3); // ET_DYN
        u16s(&mut out, 62); // x86-64
        u32s(&mut out, 1);
        u64s(&mut out, 0); // entry
        u64s(&mut out, 64); // program headers
        u64s(&mut out, sh_off); // section headers (one: section 0)
        u32s(&mut out, 0);
        u16s(&mut out, 64);
        u16s(&mut out, 56);
        u16s(&mut out, phnum);
        u16s(&mut out, 64);
        u16s(&mut out, 1);
        u16s(&mut out, 0);
        for (kind, flags, offset, size, align) in [
            (object::elf::PT_LOAD, 5, 0, total, 0x1000),
            (object::elf::PT_DYNAMIC, 6, dyn_off, dyn_size, 8),
        ] {
            u32s(&mut out, kind);
            u32s(&mut out, flags);
            u64s(&mut out, offset);
            u64s(&mut out, offset); // vaddr: the file is mapped at 0
            u64s(&mut out, offset);
            u64s(&mut out, size);
            u64s(&mut out, size);
            u64s(&mut out, align);
        }
        let all = [
            (u64::from(object::elf::DT_STRTAB), str_off),
            (u64::from(object::elf::DT_STRSZ), strings.len() as u64),
        ]
        .into_iter()
        .chain(entries.iter().copied())
        .chain([(u64::from(object::elf::DT_NULL), 0)]);
        for (tag, value) in all {
            u64s(&mut out, tag);
            u64s(&mut out, value);
        }
        out.extend_from_slice(strings);
        out.extend_from_slice(&[0; 8][..pad]);
        // Section 0: where a count past `PN_XNUM` is kept (`sh_info`).
        out.extend_from_slice(&[0; 44]);
        u32s(&mut out, section0_info);
        out.extend_from_slice(&[0; 16]);
        assert_eq!(out.len() as u64, total);
        out
    }

    fn info_of(bytes: &[u8]) -> Result<LoadInfo, String> {
        info_of_sparse(bytes, bytes.len() as u64)
    }

    /// `bytes`, then a hole up to `len`.
    fn info_of_sparse(bytes: &[u8], len: u64) -> Result<LoadInfo, String> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file.set_len(len).unwrap();
        load_info(&file, len)
    }

    #[test]
    fn names_and_search_entries_are_kept_once_in_order_within_their_bounds() {
        let long = "d".repeat(MAX_PATH + 1);
        let strings = format!("libfoo.so\0$ORIGIN:/usr/lib:$ORIGIN::{long}:/opt\0libbar.so\0");
        let needed = u64::from(object::elf::DT_NEEDED);
        let runpath = u64::from(object::elf::DT_RUNPATH);
        let entries = [
            (needed, 0),
            (runpath, 10),
            (needed, 0),
            (needed, strings.len() as u64 - 10),
        ];
        let info = info_of(&library(&entries, strings.as_bytes(), 2, 0)).unwrap();
        assert_eq!(info.needed, ["libfoo.so", "libbar.so"]);
        // The empty entry is kept (the loader reads it as the working directory); the one
        // longer than a path is not.
        assert_eq!(info.search, ["$ORIGIN", "/usr/lib", "", "/opt"]);
    }

    #[test]
    fn entries_pointing_into_one_long_string_are_refused_not_expanded() {
        // A string table as large as allowed, all separators, and every entry of a dynamic
        // segment as large as allowed pointing at it: splitting each copy would make
        // billions of strings.
        let mut strings = vec![b':'; MAX_DYNSTR as usize - 1];
        strings.push(0);
        let count = (MAX_DYNAMIC / 16 - 3) as usize;
        for tag in [
            object::elf::DT_RUNPATH,
            object::elf::DT_RPATH,
            object::elf::DT_NEEDED,
        ] {
            let entries = vec![(u64::from(tag), 0); count];
            let error = info_of(&library(&entries, &strings, 2, 0)).unwrap_err();
            assert!(
                error.contains(&format!("add up to more than {MAX_STRING_BYTES} bytes")),
                "{error}"
            );
        }
        // One such search path alone is read, into one empty entry.
        let entries = [(u64::from(object::elf::DT_RUNPATH), 0)];
        let info = info_of(&library(&entries, &strings, 2, 0)).unwrap();
        assert_eq!(info.search, [""]);
    }

    #[test]
    fn a_forged_program_header_count_is_refused_before_the_table_is_read() {
        // `PN_XNUM`: the count is section 0's `sh_info`. In a file made as long as the
        // forged table by a hole (2.8 GB, which reading it would allocate and fill).
        let bytes = library(&[], b"\0", 0xffff, 50_000_000);
        let error = info_of_sparse(&bytes, 64 + 50_000_000 * 56).unwrap_err();
        assert!(error.contains("50000000 program headers"), "{error}");
    }
}
