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
        let Some(cut) = cut(&buf, start, eof) else {
            continue;
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

/// Where the chunk in `buf` ends, the bytes from `start` on just read (none at the end of the
/// input, `eof`): after the last newline read, or everything at the end of the input or once
/// the unfinished line is [`MAX_CARRY`] long; `None` to read more first.
fn cut(buf: &[u8], start: usize, eof: bool) -> Option<usize> {
    if eof {
        return Some(buf.len());
    }
    match memchr_last_newline(&buf[start..]) {
        Some(i) => Some(start + i + 1),
        None if buf.len() >= MAX_CARRY => Some(buf.len()),
        None => None,
    }
}

/// Pipes `input` through the transform `name` of `host` to `output` as [`pipe`] does with
/// it alone (the same chunks, so the same bytes out, in order), with
/// [`plugin_isolate::transform_chunks`]: for an isolated plugin, two chunks in flight, the
/// worker computing one while the next is read and copied in. Returns the bytes read.
///
/// Only chunks already readable join a stream in flight: the stream ends when reading the
/// next chunk would wait (the input is a terminal or a slow pipe), so that every chunk read
/// is answered before the next read waits, as [`pipe`] answers it; and when a `SIGHUP`
/// reload is pending ([`crate::reload_signal::reload_pending`]), so that it takes the worker
/// between two chunks. The next stream then starts once a chunk is read.
#[cfg(unix)]
pub fn pipe_isolated(
    host: &host::Host,
    name: &str,
    input: std::fs::File,
    mut output: impl Write,
) -> Result<u64, StreamError> {
    let mut chunks = Chunks {
        input,
        buf: Vec::new(),
        total: 0,
        eof: false,
    };
    loop {
        // Waits for input with no worker held.
        let Some(first) = chunks.next(true)? else {
            output.flush()?;
            return Ok(chunks.total);
        };
        while crate::reload_signal::reload_pending() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut first = Some(first);
        let mut read_error = None;
        let mut write_error = None;
        // Set once writing failed: no chunk is read after it.
        let write_failed = std::cell::Cell::new(false);
        let stream = std::iter::from_fn(|| {
            if let Some(chunk) = first.take() {
                return Some(chunk);
            }
            if write_failed.get() || crate::reload_signal::reload_pending() {
                return None;
            }
            chunks.next(false).unwrap_or_else(|e| {
                read_error = Some(e);
                None
            })
        });
        let done = plugin_isolate::transform_chunks(host, name, stream, |out| {
            if write_error.is_none() {
                if let Err(e) = output.write_all(out) {
                    write_error = Some(e);
                    write_failed.set(true);
                }
            }
        });
        if let Some(e) = write_error {
            return Err(e.into());
        }
        match done {
            Ok(_) => {}
            Err(plugin_isolate::ChunkError::Chunk { index, mut error }) => {
                // The message a call by the handle gives (`pipe`): without the chunk's
                // position in this stream, which is not the input's.
                let note = format!(" (chunk {index} of a stream)");
                let message = error.message.as_str().replacen(&note, "", 1);
                error.message = message.into();
                return Err(StreamError::Transform { index: 1, error });
            }
            Err(plugin_isolate::ChunkError::Lookup(e)) => {
                let error = plugin_api::CallError {
                    kind: plugin_api::CallErrorKind::Failed,
                    message: e.to_string().into(),
                };
                return Err(StreamError::Transform { index: 1, error });
            }
        }
        if let Some(e) = read_error {
            return Err(e.into());
        }
    }
}

/// The input of [`pipe_isolated`], read in the chunks [`pipe`] reads, each a buffer of its
/// own (handed on, not reused).
#[cfg(unix)]
struct Chunks {
    input: std::fs::File,
    /// What was read and not handed on: the start of an unfinished line.
    buf: Vec<u8>,
    total: u64,
    eof: bool,
}

#[cfg(unix)]
impl Chunks {
    /// The next chunk; `None` at the end of the input, or, unless `wait`, once the input has
    /// nothing to read without waiting (what was read so far stays for the next call).
    fn next(&mut self, wait: bool) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.eof || (!wait && !readable(&self.input)) {
                return Ok(None);
            }
            let start = self.buf.len();
            self.buf.resize(start + BLOCK, 0);
            let n = loop {
                match self.input.read(&mut self.buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(start);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(start + n);
            self.total += n as u64;
            self.eof = n == 0;
            let Some(cut) = cut(&self.buf, start, self.eof) else {
                continue;
            };
            if cut > 0 {
                let rest = self.buf.split_off(cut);
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
        }
    }
}

/// Whether `file` can be read without waiting (data, its end, or an error to report).
#[cfg(unix)]
fn readable(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one initialized `pollfd` for an open descriptor, a count of 1, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready != 0 && !(ready < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted)
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
