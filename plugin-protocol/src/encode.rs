//! Writing frames: any message, and the hot path's `Call` and `Reply` frames from borrowed
//! parts.

use crate::*;

/// Appends the frame of `message` to `out`.
///
/// A message larger than [`MAX_FRAME_LEN`] is still written: [`decode`] refuses it, so the
/// sender should check [`frame_fits`] (the host and worker turn such a call into an error).
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    let start = start_frame(out);
    let mut w = Writer(out);
    match message {
        Message::Hello {
            cookie,
            min_version,
            max_version,
        } => {
            w.u8(tag::HELLO);
            w.raw(cookie);
            w.u16(*min_version);
            w.u16(*max_version);
        }
        Message::Welcome {
            cookie,
            version,
            pid,
        } => {
            w.u8(tag::WELCOME);
            w.raw(cookie);
            w.u16(*version);
            w.u32(*pid);
        }
        Message::Load(load) => {
            w.u8(tag::LOAD);
            w.str(&load.name);
            w.str(&load.path);
            w.u32(load.file_fd);
            w.str(&load.policy);
            w.count(load.checks.len());
            for (check, severity) in &load.checks {
                w.str(check);
                w.str(severity);
            }
            w.str(&load.config);
            w.u8(load.max_log_level);
        }
        Message::Registered {
            name,
            version,
            capabilities,
        } => {
            w.u8(tag::REGISTERED);
            w.str(name);
            w.str(version);
            w.count(capabilities.len());
            for c in capabilities {
                w.str(&c.kind);
                w.str(&c.name);
            }
        }
        Message::Refused {
            status,
            reason,
            message,
        } => {
            w.u8(tag::REFUSED);
            w.str(status);
            w.str(reason);
            w.str(message);
        }
        Message::Call {
            id,
            kind,
            name,
            payload,
        } => {
            w.u8(tag::CALL);
            w.u64(*id);
            w.str(kind);
            w.str(name);
            match payload {
                Payload::Args(args) => {
                    w.u8(0);
                    w.count(args.len());
                    for a in args {
                        w.str(a);
                    }
                }
                Payload::Bytes(bytes) => {
                    w.u8(1);
                    w.bytes(bytes);
                }
            }
        }
        Message::CallHandle {
            id,
            handle,
            payload,
        } => {
            w.u8(tag::CALL_HANDLE);
            w.u64(*id);
            w.u32(*handle);
            match payload {
                Payload::Args(args) => {
                    w.u8(0);
                    w.count(args.len());
                    for a in args {
                        w.str(a);
                    }
                }
                Payload::Bytes(bytes) => {
                    w.u8(1);
                    w.bytes(bytes);
                }
            }
        }
        Message::Reply { id, result } => {
            w.u8(tag::REPLY);
            w.u64(*id);
            match result {
                Ok(bytes) => {
                    w.u8(0);
                    w.bytes(bytes);
                }
                Err(failure) => {
                    w.u8(if failure.panicked { 2 } else { 1 });
                    w.str(&failure.message);
                }
            }
        }
        Message::Log {
            level,
            target,
            message,
        } => {
            w.u8(tag::LOG);
            w.u8(*level as u8);
            w.str(target);
            w.str(message);
        }
        Message::Shutdown => w.u8(tag::SHUTDOWN),
    }
    finish_frame(out, start, 0);
}

/// Opens a frame at the end of `out`: room for its length prefix, which [`finish_frame`]
/// fills in. Returns where the frame starts.
pub(crate) fn start_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    start
}

/// Closes the frame opened at `start`: its length is what follows the prefix in `out`, plus
/// `trailing` bytes the caller sends after `out` (a payload not copied into it).
pub(crate) fn finish_frame(out: &mut [u8], start: usize, trailing: usize) {
    let len = (out.len() - start - PREFIX_LEN) as u64 + trailing as u64;
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[start..start + PREFIX_LEN].copy_from_slice(&len.to_le_bytes());
}

/// Appends the frame of a `command` call ([`Message::Call`] with [`Payload::Args`]) built from
/// borrowed arguments: the same bytes as [`encode`], no intermediate [`Message`].
pub fn encode_call_args<'a, I>(id: u64, kind: &str, name: &str, args: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: ExactSizeIterator,
{
    encode_call_args_to(id, Target::Named { kind, name }, args, out)
}

/// Appends the frame of a `transform` call ([`Message::Call`] with [`Payload::Bytes`]) built
/// from a borrowed input: the same bytes as [`encode`].
pub fn encode_call_bytes(id: u64, kind: &str, name: &str, bytes: &[u8], out: &mut Vec<u8>) {
    encode_call_bytes_head(id, kind, name, bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// Appends the frame of a `transform` call whose `len` input bytes are not copied: the frame
/// is what this appends followed by the input, to be sent as two pieces (a transport that
/// gathers them writes the input once). Same bytes as [`encode_call_bytes`].
pub fn encode_call_bytes_head(id: u64, kind: &str, name: &str, len: usize, out: &mut Vec<u8>) {
    encode_call_bytes_head_to(id, Target::Named { kind, name }, len, out)
}

/// The capability a call names: by kind and name (every version), or by its position in the
/// worker's [`Message::Registered`] list ([`Message::CallHandle`], version 3 on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// By kind and name: a [`Message::Call`].
    Named {
        /// The kind's name.
        kind: &'a str,
        /// The capability's name.
        name: &'a str,
    },
    /// By position: a [`Message::CallHandle`].
    Handle(u32),
}

/// Writes the tag, id and target of a call frame.
fn call_head(w: &mut Writer<'_>, id: u64, target: Target<'_>) {
    match target {
        Target::Named { kind, name } => {
            w.u8(tag::CALL);
            w.u64(id);
            w.str(kind);
            w.str(name);
        }
        Target::Handle(handle) => {
            w.u8(tag::CALL_HANDLE);
            w.u64(id);
            w.u32(handle);
        }
    }
}

/// [`encode_call_args`] for any [`Target`]: the same bytes as [`encode`] of a
/// [`Message::Call`] or [`Message::CallHandle`] with [`Payload::Args`].
pub fn encode_call_args_to<'a, I>(id: u64, target: Target<'_>, args: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: ExactSizeIterator,
{
    let start = start_frame(out);
    let mut w = Writer(out);
    call_head(&mut w, id, target);
    w.u8(0);
    let args = args.into_iter();
    w.count(args.len());
    for a in args {
        w.str(a);
    }
    finish_frame(out, start, 0);
}

/// [`encode_call_bytes_head`] for any [`Target`]: the frame's head, to be followed by the
/// `len` input bytes.
pub fn encode_call_bytes_head_to(id: u64, target: Target<'_>, len: usize, out: &mut Vec<u8>) {
    let start = start_frame(out);
    let mut w = Writer(out);
    call_head(&mut w, id, target);
    w.u8(1);
    w.count(len);
    finish_frame(out, start, len);
}

/// Appends the frame of [`Message::Reply`] from a borrowed result: the same bytes as
/// [`encode`].
pub fn encode_reply(id: u64, result: Result<&[u8], (bool, &str)>, out: &mut Vec<u8>) {
    match result {
        Ok(bytes) => {
            encode_reply_head(id, bytes.len(), out);
            out.extend_from_slice(bytes);
        }
        Err((panicked, message)) => {
            let start = start_frame(out);
            let mut w = Writer(out);
            w.u8(tag::REPLY);
            w.u64(id);
            w.u8(if panicked { 2 } else { 1 });
            w.str(message);
            finish_frame(out, start, 0);
        }
    }
}

/// Appends the frame of a successful [`Message::Reply`] whose `len` output bytes are not
/// copied: the frame is what this appends ([`REPLY_HEAD_LEN`] bytes) followed by the output.
/// Same bytes as [`encode_reply`].
pub fn encode_reply_head(id: u64, len: usize, out: &mut Vec<u8>) {
    let start = start_frame(out);
    let mut w = Writer(out);
    w.u8(tag::REPLY);
    w.u64(id);
    w.u8(0);
    w.count(len);
    finish_frame(out, start, len);
}

pub(crate) struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.raw(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }
    /// A length or count: one that does not fit in a `u32` is written as `u32::MAX`, which
    /// the decoder refuses (it exceeds every bound).
    pub(crate) fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.raw(b);
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}
