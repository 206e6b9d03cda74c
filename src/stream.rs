//! Streaming bytes through a chain of transforms with bounded memory.
//!
//! Input is read in blocks and handed to the transforms in chunks that end at a line
//! boundary (the contract of `plugin_api::Transform`); a line longer than [`MAX_CARRY`] is
//! passed on in pieces rather than buffered without bound. Buffers are reused from chunk to
//! chunk, so memory stays at a few blocks whatever the input size.

use std::io::{self, Read, Write};

use abi_stable::std_types::{RBox, RSlice, RVec};
use plugin_api::kinds::FfiTransform_TO;
use plugin_api::CallError;

/// Bytes read from the input at a time.
pub const BLOCK: usize = 256 * 1024;
/// The most bytes of an unfinished line kept back for the next chunk.
pub const MAX_CARRY: usize = 4 * 1024 * 1024;

/// Why a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A transform returned an error or panicked.
    #[error("transform #{index} {error}")]
    Transform {
        /// Its position in the chain (1-based).
        index: usize,
        /// What it reported.
        error: CallError,
    },
}

type Transform = FfiTransform_TO<'static, RBox<()>>;

/// Pipes `input` through `transforms` (in order) to `output`; returns the bytes read.
pub fn pipe(
    transforms: &[&Transform],
    mut input: impl Read,
    mut output: impl Write,
) -> Result<u64, StreamError> {
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK * 2);
    let (mut a, mut b) = (RVec::<u8>::new(), RVec::<u8>::new());
    let mut total = 0u64;
    loop {
        let start = buf.len();
        buf.resize(start + BLOCK, 0);
        let n = loop {
            match input.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        buf.truncate(start + n);
        total += n as u64;
        let eof = n == 0;
        let cut = if eof {
            buf.len()
        } else {
            match memchr_last_newline(&buf[start..]) {
                Some(i) => start + i + 1,
                None if buf.len() >= MAX_CARRY => buf.len(),
                None => continue,
            }
        };
        if cut > 0 {
            apply_chain(transforms, &buf[..cut], &mut a, &mut b)?;
            output.write_all(&a)?;
            buf.drain(..cut);
        }
        if eof {
            output.flush()?;
            return Ok(total);
        }
    }
}

fn memchr_last_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
}

/// Runs `chunk` through every transform; the result is left in `a`.
fn apply_chain(
    transforms: &[&Transform],
    chunk: &[u8],
    a: &mut RVec<u8>,
    b: &mut RVec<u8>,
) -> Result<(), StreamError> {
    a.clear();
    let Some((first, rest)) = transforms.split_first() else {
        a.extend_from_copy_slice(chunk);
        return Ok(());
    };
    first
        .apply(RSlice::from_slice(chunk), a)
        .into_result()
        .map_err(|error| StreamError::Transform { index: 1, error })?;
    for (i, t) in rest.iter().enumerate() {
        b.clear();
        t.apply(RSlice::from_slice(a), b)
            .into_result()
            .map_err(|error| StreamError::Transform {
                index: i + 2,
                error,
            })?;
        std::mem::swap(a, b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{CallResult, TransformKind};

    fn upper() -> Transform {
        TransformKind::object(|input: &[u8], out: &mut RVec<u8>| -> CallResult<()> {
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            Ok(())
        })
    }

    /// Records the chunk boundaries it sees by appending `|` after each chunk.
    fn marker() -> Transform {
        TransformKind::object(|input: &[u8], out: &mut RVec<u8>| -> CallResult<()> {
            out.extend_from_slice(input);
            out.push(b'|');
            Ok(())
        })
    }

    #[test]
    fn chains_in_order_and_cuts_at_lines() {
        let (u, m) = (upper(), marker());
        let mut out = Vec::new();
        let n = pipe(&[&u, &m], &b"ab\ncd\nef"[..], &mut out).unwrap();
        assert_eq!(n, 8);
        assert_eq!(out, b"AB\nCD\n|EF|");
    }

    #[test]
    fn long_lines_are_bounded() {
        let m = marker();
        let input = vec![b'x'; MAX_CARRY + BLOCK + 10];
        let mut out = Vec::new();
        pipe(&[&m], &input[..], &mut out).unwrap();
        let pieces = out.split(|&b| b == b'|').filter(|p| !p.is_empty()).count();
        assert!(
            pieces >= 2,
            "a line longer than MAX_CARRY is passed on in pieces"
        );
        assert_eq!(out.iter().filter(|&&b| b == b'x').count(), input.len());
    }

    #[test]
    fn reports_failing_transform_position() {
        let u = upper();
        let bad = TransformKind::object(|_: &[u8], _: &mut RVec<u8>| -> CallResult<()> {
            panic!("nope")
        });
        let err = pipe(&[&u, &bad], &b"x\n"[..], Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("transform #2 panicked: nope"),
            "{err}"
        );
    }
}
