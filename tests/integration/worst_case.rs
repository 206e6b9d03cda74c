//! The costliest file the provenance reader can be handed: a 4 GiB sparse copy of a library
//! with no reachable provenance, whose every table is as large as the reader accepts and whose
//! note segments hold endless runs of notes. Shared by the hostile-directory test (which holds
//! the reader to a bounded number of bytes read) and the loading benchmark (which times it).
//! 64-bit little-endian ELF only; `std` only, so both can include it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const PT_NOTE: u32 = 4;
const PT_INTERP: u32 = 3;
const SHT_STRTAB: u32 = 3;
const SHT_NOTE: u32 = 7;
/// The reader's limits, as this file fills them: a 16 KiB program header table (292 entries
/// of 56 bytes), a 64 KiB section header table (1 024 entries of 64 bytes) and a 64 KiB
/// section-name table.
const PROGRAM_HEADERS: usize = (16 << 10) / 56;
const SECTIONS: usize = (64 << 10) / 64;
const NAMES_LEN: usize = 64 << 10;
/// The file's length: sparse, so the segments may reach gigabytes into it.
pub const LEN: u64 = 4 << 30;

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(data[at..at + 2].try_into().unwrap())
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

fn put(data: &mut [u8], at: usize, bytes: &[u8]) {
    data[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Writes the worst case built from `library` (the bytes of a real shared library) to `out`.
///
/// The library's own note segments (its provenance, if any) and interpreter are dropped from
/// a new program header table that keeps its loadable and dynamic segments, and fills the
/// rest with note segments far into the sparse part of the file, each starting with a note
/// whose descriptor claims 256 MiB and then running on as empty notes. A new section table
/// with 1 024 sections, and 64 KiB of names that only nearly match `.note.plgprov`, replaces
/// the library's.
pub fn write(library: &[u8], out: &Path) {
    let (phoff, phentsize, phnum) = (
        u64_at(library, 0x20) as usize,
        u16_at(library, 0x36) as usize,
        u16_at(library, 0x38) as usize,
    );
    assert_eq!(phentsize, 56, "a 64-bit ELF library");
    let mut data = library.to_vec();
    data.resize(data.len().next_multiple_of(4096), 0);

    // Program headers: the library's, without notes or an interpreter, then note segments.
    let table = data.len();
    let mut headers: Vec<[u8; 56]> = (0..phnum)
        .map(|i| {
            library[phoff + i * 56..phoff + (i + 1) * 56]
                .try_into()
                .unwrap()
        })
        .filter(|h: &[u8; 56]| ![PT_NOTE, PT_INTERP].contains(&u32_at(h, 0)))
        .collect();
    let mut segment_offsets = Vec::new();
    while headers.len() < PROGRAM_HEADERS {
        let offset = (1u64 << 30) + (segment_offsets.len() as u64) * (1 << 20);
        let mut h = [0u8; 56];
        put(&mut h, 0, &PT_NOTE.to_le_bytes());
        put(&mut h, 8, &offset.to_le_bytes()); // p_offset
        put(&mut h, 32, &(LEN - offset).to_le_bytes()); // p_filesz
        put(&mut h, 48, &4u64.to_le_bytes()); // p_align
        headers.push(h);
        segment_offsets.push(offset);
    }
    data.extend(headers.iter().flatten());
    data.resize(data.len().next_multiple_of(4096), 0);

    // Section names: near misses of `.note.plgprov`, back to back.
    let names = data.len();
    let near_miss = b".note.plgprox\0";
    data.extend(near_miss.iter().cycle().take(NAMES_LEN));
    // Section headers: a null section, the name table, then notes named by the near misses.
    let sections = data.len();
    data.resize(sections + SECTIONS * 64, 0);
    for i in 1..SECTIONS {
        let h = sections + i * 64;
        if i == 1 {
            put(&mut data, h + 4, &SHT_STRTAB.to_le_bytes());
            put(&mut data, h + 0x18, &(names as u64).to_le_bytes());
            put(&mut data, h + 0x20, &(NAMES_LEN as u64).to_le_bytes());
        } else {
            let name = (i * near_miss.len()) % (NAMES_LEN - near_miss.len());
            put(&mut data, h, &(name as u32).to_le_bytes());
            put(&mut data, h + 4, &SHT_NOTE.to_le_bytes());
        }
    }

    put(&mut data, 0x20, &(table as u64).to_le_bytes()); // e_phoff
    put(&mut data, 0x28, &(sections as u64).to_le_bytes()); // e_shoff
    put(&mut data, 0x3a, &64u16.to_le_bytes()); // e_shentsize
    put(&mut data, 0x38, &(PROGRAM_HEADERS as u16).to_le_bytes()); // e_phnum
    put(&mut data, 0x3c, &(SECTIONS as u16).to_le_bytes()); // e_shnum
    put(&mut data, 0x3e, &1u16.to_le_bytes()); // e_shstrndx

    let file = File::create(out).unwrap();
    file.write_all_at(&data, 0).unwrap();
    // Each note segment opens with a `GNU` note claiming a 256 MiB descriptor.
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&(256u32 << 20).to_le_bytes());
    note.extend_from_slice(&1u32.to_le_bytes());
    note.extend_from_slice(b"GNU\0");
    for offset in segment_offsets {
        file.write_all_at(&note, offset).unwrap();
    }
    file.set_len(LEN).unwrap();
}
