//! A [`ReadRef`] over a file that costs one `pread` per range read, with the first block
//! read up front (it holds the file header): object's `ReadCache` pays an `lseek` and a
//! `read` per range, which is most of the cost of verifying a file.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use object::ReadRef;

use super::ReadCost;

/// Bytes read up front: the ELF header and program headers fit.
const HEAD: u64 = 4096;

/// The room for a [`FileReader`]'s first block, kept by its caller: the reader borrows it,
/// so 4 KiB are not copied each time the reader is returned or moved (two copies per
/// verification when the reader held it).
///
/// Aligned as the headers read from it: `object` (without its `unaligned` feature) refuses
/// an ELF header or program header table at an address not aligned for their 8-byte
/// fields, and a byte array alone may be placed at any address.
#[repr(C, align(8))]
pub(crate) struct Head([MaybeUninit<u8>; HEAD as usize]);

/// Room for a first block, not written yet.
pub(crate) const fn head() -> Head {
    Head([MaybeUninit::uninit(); HEAD as usize])
}

/// The longest string `read_bytes_at_until` looks through (as object's `ReadCache`).
const MAX_STRING: u64 = 4096;

pub(super) struct FileReader<'f, 'h> {
    file: &'f File,
    len: u64,
    /// The file's first block (at most [`HEAD`] bytes), in the caller's [`Head`]; the rest
    /// of that room is never read, so never written: a verification does not pay for zeroing
    /// 4 KiB it overwrites.
    head: &'h [u8],
    /// Every other range read; only ever pushed to, so the boxed bytes never move.
    ranges: RefCell<Vec<Box<[u8]>>>,
    /// What was read from the file so far, the first block included.
    cost: Cell<ReadCost>,
}

impl<'f, 'h> FileReader<'f, 'h> {
    /// Reads the first block of `file` (`len` bytes long) into `room`.
    pub(super) fn new(file: &'f File, len: u64, room: &'h mut Head) -> std::io::Result<Self> {
        let head_len = len.min(HEAD) as usize;
        // Borrowed for all of `'h` (the borrow checker holds `room` to that).
        let first: &'h mut [MaybeUninit<u8>] = &mut room.0[..head_len];
        read_exact_at_uninit(file, first)?;
        // SAFETY: `read_exact_at_uninit` returned `Ok`, so it wrote every byte of `first`;
        // `MaybeUninit<u8>` has the layout of `u8`. The bytes are borrowed for `'h`, as
        // `room` is, and nothing writes them while they are.
        let head = unsafe { std::slice::from_raw_parts(first.as_ptr().cast::<u8>(), head_len) };
        Ok(FileReader {
            file,
            len,
            head,
            ranges: RefCell::new(Vec::new()),
            cost: Cell::new(ReadCost {
                reads: 1,
                bytes: head_len as u64,
            }),
        })
    }

    /// `bytes` as a borrow of the first block (for as long as the caller's room is
    /// borrowed), when they lie in it: bytes this reader returned from its first block. Told
    /// by address, so bytes equal to them elsewhere are not.
    pub(super) fn in_head(&self, bytes: &[u8]) -> Option<&'h [u8]> {
        let offset = (bytes.as_ptr() as usize).checked_sub(self.head.as_ptr() as usize)?;
        self.head.get(offset..offset.checked_add(bytes.len())?)
    }

    /// What was read from the file so far.
    pub(super) fn cost(&self) -> ReadCost {
        self.cost.get()
    }
}

/// `read_exact_at(buf, 0)` into memory not yet initialised: every byte of `buf` is written
/// when it returns `Ok`.
fn read_exact_at_uninit(file: &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let offset = libc::off_t::try_from(done).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: the pointer and length describe `rest`, memory this function may write;
        // `pread` writes at most that many bytes there. `MaybeUninit<u8>` has the layout of
        // `u8`.
        let got = unsafe {
            libc::pread(
                file.as_raw_fd(),
                rest.as_mut_ptr().cast::<libc::c_void>(),
                rest.len(),
                offset,
            )
        };
        match got {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "failed to fill whole buffer",
                ))
            }
            n if n > 0 => done += n as usize,
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

impl<'a> ReadRef<'a> for &'a FileReader<'_, '_> {
    fn len(self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        let end = offset.checked_add(size).ok_or(())?;
        if end > self.len {
            return Err(());
        }
        if end <= self.head.len() as u64 {
            return Ok(&self.head[offset as usize..end as usize]);
        }
        let size = usize::try_from(size).map_err(|_| ())?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(size).map_err(|_| ())?;
        bytes.resize(size, 0);
        let cost = self.cost.get();
        self.cost.set(ReadCost {
            reads: cost.reads + 1,
            bytes: cost.bytes + size as u64,
        });
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|_| ())?;
        let mut ranges = self.ranges.borrow_mut();
        ranges.push(bytes.into_boxed_slice());
        let slice: *const [u8] = &**ranges.last().expect("just pushed");
        // SAFETY: `slice` points into the boxed buffer just stored in `self.ranges` (taken
        // after the box was moved there). `ranges` only ever grows: the buffer is neither
        // moved (a `Vec` moving its `Box`es does not move their heap data) nor freed nor
        // written to before `self` is dropped, and `'a` borrows `self`.
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_first_block_lies_where_eight_byte_fields_may_be_read() {
        assert!(std::mem::align_of::<Head>() >= 8);
        // Behind a byte on the stack, still aligned.
        let (byte, room) = (std::hint::black_box(1u8), head());
        assert_eq!(room.0.as_ptr() as usize % 8, 0, "{byte}");
    }

    #[test]
    fn the_first_block_is_read_whole_or_not_at_all() {
        let mut file = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        file.write_all(&bytes).unwrap();
        let (mut room, mut short_room, mut failed_room) = (head(), head(), head());
        let reader = FileReader::new(&file, 5000, &mut room).unwrap();
        assert_eq!(reader.head, &bytes[..4096]);
        let in_head = (&reader).read_bytes_at(4000, 96).unwrap();
        assert_eq!(in_head, &bytes[4000..4096]);
        let across = (&reader).read_bytes_at(4090, 20).unwrap();
        assert_eq!(across, &bytes[4090..4110]);
        // Bytes of the first block are borrowed from it; bytes read apart, or equal bytes
        // elsewhere, are not.
        assert_eq!(
            reader.in_head(in_head).map(<[u8]>::as_ptr),
            Some(in_head.as_ptr())
        );
        assert_eq!(reader.in_head(&in_head[10..20]), Some(&bytes[4010..4020]));
        assert_eq!(reader.in_head(&[]), None);
        assert_eq!(reader.in_head(across), None);
        assert_eq!(reader.in_head(&bytes[4000..4096]), None);
        let short = FileReader::new(&file, 10, &mut short_room).unwrap();
        assert_eq!(short.head, &bytes[..10]);
        // A file shorter than it was said to be: an error, nothing half-read.
        file.set_len(100).unwrap();
        let error = FileReader::new(&file, 5000, &mut failed_room)
            .err()
            .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
