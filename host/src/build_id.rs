//! Which build of the host this is, told by the GNU build ID the linker writes into every
//! object it links (a hash of what it linked, by default): the key under which a kept copy's
//! layout check is remembered ([`crate::store::Store::layout_mark`]).
//!
//! The layout a plugin's root module is checked against is compiled into the object that
//! holds [`plugin_api::PluginRootRef`]'s layout, and checked by the code of the object that
//! holds this crate: the key names both objects' build IDs (one, as a rule: both are linked
//! into the application). An object without a build ID gives no key, and every layout is
//! then checked on every load.

use std::ffi::c_void;
use std::sync::OnceLock;

use abi_stable::StableAbi;
use plugin_api::PluginRootRef;

/// The most bytes of notes read in one note segment of our own image.
const MAX_NOTES: usize = 64 << 10;

/// This host build's key: the hex build IDs of the objects holding the expected root layout
/// and this code, `None` when one has none.
pub(crate) fn host_build() -> Option<&'static str> {
    static KEY: OnceLock<Option<String>> = OnceLock::new();
    KEY.get_or_init(|| {
        let layout = <PluginRootRef as StableAbi>::LAYOUT as *const _ as usize;
        let code = host_build as fn() -> Option<&'static str> as usize;
        let mut ids = vec![build_id_at(layout)?];
        let of_code = build_id_at(code)?;
        if !ids.contains(&of_code) {
            ids.push(of_code);
        }
        Some(ids.iter().map(|id| hex(id)).collect::<Vec<_>>().join("."))
    })
    .as_deref()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Search {
    address: usize,
    found: Option<Option<Vec<u8>>>,
}

/// The build ID of the loaded object one of whose segments holds `address`.
fn build_id_at(address: usize) -> Option<Vec<u8>> {
    let mut search = Search {
        address,
        found: None,
    };
    // SAFETY: `visit` matches the callback type, never unwinds (see there), and is given a
    // pointer to `search`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    search.found.flatten()
}

/// `dl_iterate_phdr`'s callback: stops (returns 1) at the object holding the address.
unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
    // Nothing below panics (checked arithmetic, `get`), and a panic would abort rather than
    // unwind out of an `extern "C"` function all the same.
    // SAFETY: `data` is the `Search` `build_id_at` passed, used by nothing else meanwhile;
    // `info` is valid for this call (the loader's lock is held).
    let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the loader gives `dlpi_phnum` program headers at `dlpi_phdr`, mapped with the
    // object.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let base = info.dlpi_addr as usize;
    let holds = headers.iter().any(|h| {
        h.p_type == libc::PT_LOAD
            && base.checked_add(h.p_vaddr as usize).is_some_and(|start| {
                search.address >= start && search.address - start < h.p_memsz as usize
            })
    });
    if !holds {
        return 0;
    }
    let mut found = None;
    for h in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
        let Some(start) = base.checked_add(h.p_vaddr as usize) else {
            continue;
        };
        let len = (h.p_memsz as usize).min(MAX_NOTES);
        // SAFETY: a note segment lies within a loaded, readable segment of this object (the
        // linker puts it there: the loader reads notes from memory), which stays mapped while
        // the loader's lock is held; at most `p_memsz` bytes from its start are read.
        let notes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
        let align = if h.p_align == 8 { 8 } else { 4 };
        if let Some(id) = gnu_build_id(notes, align) {
            found = Some(id.to_vec());
            break;
        }
    }
    search.found = Some(found);
    1
}

/// The description of the `NT_GNU_BUILD_ID` note among `notes`, each aligned to `align`.
fn gnu_build_id(notes: &[u8], align: usize) -> Option<&[u8]> {
    let word = |at: usize| -> Option<usize> {
        let bytes = notes.get(at..at.checked_add(4)?)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?) as usize)
    };
    let pad = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    let mut at = 0;
    while at < notes.len() {
        let (name_size, desc_size, kind) = (word(at)?, word(at + 4)?, word(at + 8)?);
        let name_at = at.checked_add(12)?;
        // As the loader reads notes: the description, and the next note, begin aligned.
        let desc_at = pad(name_at.checked_add(name_size)?)?;
        let end = pad(desc_at.checked_add(desc_size)?)?;
        let name = notes.get(name_at..name_at.checked_add(name_size)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_size)?)?;
        if kind == object::elf::NT_GNU_BUILD_ID as usize && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((name.len() as u32).to_ne_bytes());
        out.extend((desc.len() as u32).to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend(name);
        out.resize(out.len().next_multiple_of(align), 0);
        out.extend(desc);
        out.resize(out.len().next_multiple_of(align), 0);
        out
    }

    #[test]
    fn the_build_id_note_is_found_among_others_and_cut_notes_give_none() {
        for align in [4, 8] {
            let mut notes = note(b"GNU\0", 5, &[1, 2, 3, 4, 5, 6, 7, 8], align);
            notes.extend(note(b"Go\0", 3, b"not gnu", align));
            notes.extend(note(b"GNU\0", 3, &[0xab; 20], align));
            assert_eq!(gnu_build_id(&notes, align), Some(&[0xab; 20][..]));
            // Cut anywhere in the last note before its description ends: not found, and
            // nothing read past the end.
            let desc_end = notes.len() - (20usize.next_multiple_of(align) - 20);
            for cut in desc_end - 36..desc_end {
                assert_eq!(gnu_build_id(&notes[..cut], align), None, "cut at {cut}");
            }
        }
        // A size that would overflow.
        let mut huge = note(b"GNU\0", 3, &[1; 4], 4);
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(gnu_build_id(&huge, 4), None);
        assert_eq!(gnu_build_id(&[], 4), None);
    }

    #[test]
    fn this_build_has_a_key_that_is_the_executables_build_id() {
        // The test executable links this crate and plugin-api statically: one object, whose
        // build ID the file itself holds.
        let key = host_build().expect("the linker wrote no build ID");
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let file = object::File::parse(&exe[..]).unwrap();
        let id = object::Object::build_id(&file).unwrap().unwrap();
        assert_eq!(key, hex(id));
    }
}
