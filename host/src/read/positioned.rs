//! A [`ReadRef`] over a file that costs one `pread` per range read, with the first block
//! read up front (it holds the file header): object's `ReadCache` pays an `lseek` and a
//! `read` per range, which is most of the cost of verifying a file.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use object::ReadRef;

use super::ReadCost;

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
    /// What was read from the file so far, the first block included.
    cost: Cell<ReadCost>,
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
            cost: Cell::new(ReadCost {
                reads: 1,
                bytes: head_len as u64,
            }),
        })
    }

    /// What was read from the file so far.
    pub(super) fn cost(&self) -> ReadCost {
        self.cost.get()
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
