//! The protocol between plugin-host and the worker processes that run isolated plugins.
//!
//! This crate has **no I/O** (nushell's split between protocol and transport): it defines the
//! [`Message`]s and a binary frame codec, [`encode`] and [`decode`]. The host and the worker
//! move frames over whatever transport they share (today a Unix socket pair). It does not
//! depend on `plugin-api` or on the toolchain's type layouts, and is versioned apart from
//! `plugin-api`: the crate's version is the codec's, [`PROTOCOL_VERSION`] the wire's.
//!
//! # Framing
//!
//! Every frame is `len: u32 LE` (the length of what follows, at most [`MAX_FRAME_LEN`]), then
//! `tag: u8` (the message type), then the message's fields in order. Integers are little
//! endian; a string or byte string is `len: u32 LE` and its bytes; a list is `count: u32 LE`
//! and its items. Strings are UTF-8 (checked). Every count and length is bounded
//! ([`MAX_COUNT`], [`MAX_NAME_LEN`], and the frame's own length), so a hostile peer can make
//! the decoder neither allocate beyond the frame nor panic; a frame with bytes left over after
//! its message is an error too.
//!
//! # Conversation
//!
//! 1. host → worker: [`Message::Hello`] (cookie, the protocol versions it speaks);
//!    worker → host: [`Message::Welcome`] (cookie, the version chosen, its pid).
//! 2. host → worker: [`Message::Load`] (which plugin, under which policy, with which config);
//!    worker → host: [`Message::Registered`] (the capabilities) or [`Message::Refused`].
//! 3. host → worker: [`Message::Call`]s, each answered by a [`Message::Reply`] with its id.
//! 4. At any time, worker → host: [`Message::Log`]. host → worker: [`Message::Shutdown`], or
//!    end of file, ends the worker.
//!
//! # Versions
//!
//! - **1**: everything over the one stream the host and worker share (the control socket).
//! - **2**: the same messages and encoding; the host also gives the worker a second channel
//!   (in plugin-host, a shared-memory ring pair, `__worker --fd N --shm M`). After its
//!   [`Message::Welcome`] on the control stream, the worker sends the same `Welcome` again on
//!   the second channel (proof that it mapped it); `Load`/`Registered`/`Refused` and `Log` stay
//!   on the control stream, while `Call`, `Reply` and `Shutdown` move to the second channel.
//!   A worker without a second channel offers at most version 1.
//!
//! # The hot path
//!
//! [`encode_call_args`], [`encode_call_bytes`], [`encode_reply`] and [`decode_call`] /
//! [`decode_reply`] write and read `Call` and `Reply` frames without building a [`Message`]:
//! from borrowed arguments, into borrowed views of the frame. The bytes are exactly those of
//! [`encode`] / [`decode`].
#![forbid(unsafe_code)]

use std::fmt;

/// The first protocol version this crate speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// The last (newest) protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 2;

/// The magic cookie both sides send in the handshake (go-plugin's idea): a process that is not
/// a plugin-host worker does not answer with it.
pub const COOKIE: [u8; 16] = *b"plugin-host:wkr\x01";

/// The most bytes a frame may carry after its length prefix.
pub const MAX_FRAME_LEN: usize = 64 << 20;
/// The most items in any list (command arguments, capabilities, policy checks).
pub const MAX_COUNT: usize = 1 << 16;
/// The longest name (plugin, kind, capability, log target, reason code, policy name).
pub const MAX_NAME_LEN: usize = 4096;

/// The bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// A capability a worker's plugin registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The kind's name (`command`, `transform`).
    pub kind: String,
    /// The capability's name.
    pub name: String,
}

/// What the host asks the worker to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Load {
    /// The plugin's name, as the host verified it.
    pub name: String,
    /// The plugin file as the host names it in messages.
    pub path: String,
    /// The descriptor (inherited by the worker) holding the verified file's bytes.
    pub file_fd: u32,
    /// The policy preset the host judged it under.
    pub policy: String,
    /// Every check's severity in that policy: `(check, severity)`.
    pub checks: Vec<(String, String)>,
    /// The configuration string handed to the plugin's `register`.
    pub config: String,
    /// The most detailed log level the host wants forwarded (0 off, 1 error … 5 trace).
    pub max_log_level: u8,
}

/// The arguments of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A `command`'s arguments.
    Args(Vec<String>),
    /// A `transform`'s input.
    Bytes(Vec<u8>),
}

/// A call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// Whether the plugin panicked (caught in the worker) rather than returned an error.
    pub panicked: bool,
    /// The error or panic message.
    pub message: String,
}

/// The log levels, as `log` numbers them (1 = error … 5 = trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `error`.
    Error = 1,
    /// `warn`.
    Warn = 2,
    /// `info`.
    Info = 3,
    /// `debug`.
    Debug = 4,
    /// `trace`.
    Trace = 5,
}

impl Level {
    /// The level numbered `n` (1 = error … 5 = trace).
    pub fn from_u8(n: u8) -> Option<Level> {
        Some(match n {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => return None,
        })
    }
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// host → worker: who speaks which versions.
    Hello {
        /// [`COOKIE`].
        cookie: [u8; 16],
        /// The oldest version the host speaks.
        min_version: u16,
        /// The newest version the host speaks.
        max_version: u16,
    },
    /// worker → host: the version chosen (the newest both speak).
    Welcome {
        /// [`COOKIE`].
        cookie: [u8; 16],
        /// The version chosen.
        version: u16,
        /// The worker's process id.
        pid: u32,
    },
    /// host → worker: verify, load and register a plugin.
    Load(Load),
    /// worker → host: the plugin loaded and registered these capabilities.
    Registered {
        /// The plugin's name.
        name: String,
        /// The plugin's version.
        version: String,
        /// What it registered.
        capabilities: Vec<Capability>,
    },
    /// worker → host: the plugin was refused or failed (its status, reason code and message,
    /// as an in-process load would report them).
    Refused {
        /// `rejected` or `failed`.
        status: String,
        /// The reason code (`register-failed`, …).
        reason: String,
        /// The message.
        message: String,
    },
    /// host → worker: call a capability.
    Call {
        /// Chosen by the host; the reply carries it back.
        id: u64,
        /// The kind's name.
        kind: String,
        /// The capability's name.
        name: String,
        /// The arguments.
        payload: Payload,
    },
    /// worker → host: the outcome of call `id`: the output bytes or the failure.
    Reply {
        /// The call's id.
        id: u64,
        /// The command's text (UTF-8 bytes) or the transform's output, or what went wrong.
        result: Result<Vec<u8>, CallFailure>,
    },
    /// worker → host: a log record of the plugin.
    Log {
        /// Its level.
        level: Level,
        /// Its target (module path).
        target: String,
        /// Its message.
        message: String,
    },
    /// host → worker: finish and exit.
    Shutdown,
}

mod tag {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const LOAD: u8 = 3;
    pub const REGISTERED: u8 = 4;
    pub const REFUSED: u8 = 5;
    pub const CALL: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const LOG: u8 = 8;
    pub const SHUTDOWN: u8 = 9;
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a whole frame yet: at least `needed` bytes in all are required.
    Incomplete {
        /// The bytes needed in all (prefix included) to go on.
        needed: usize,
    },
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    TooLong(u64),
    /// An unknown message tag.
    UnknownTag(u8),
    /// The frame ended inside a field, a bound was exceeded, a string was not UTF-8, or bytes
    /// were left over: what was wrong.
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete { needed } => {
                write!(f, "incomplete frame ({needed} bytes needed)")
            }
            DecodeError::TooLong(len) => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN}"
                )
            }
            DecodeError::UnknownTag(t) => write!(f, "unknown message tag {t}"),
            DecodeError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Message {
    /// The message's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Load(_) => "load",
            Message::Registered { .. } => "registered",
            Message::Refused { .. } => "refused",
            Message::Call { .. } => "call",
            Message::Reply { .. } => "reply",
            Message::Log { .. } => "log",
            Message::Shutdown => "shutdown",
        }
    }
}

/// The newest version both ranges contain, if any.
pub fn negotiate(min: u16, max: u16) -> Option<u16> {
    let top = max.min(PROTOCOL_VERSION);
    (top >= min.max(PROTOCOL_VERSION_MIN)).then_some(top)
}

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
fn start_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    start
}

/// Closes the frame opened at `start`: its length is what follows the prefix in `out`, plus
/// `trailing` bytes the caller sends after `out` (a payload not copied into it).
fn finish_frame(out: &mut [u8], start: usize, trailing: usize) {
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
    let start = start_frame(out);
    let mut w = Writer(out);
    w.u8(tag::CALL);
    w.u64(id);
    w.str(kind);
    w.str(name);
    w.u8(0);
    let args = args.into_iter();
    w.count(args.len());
    for a in args {
        w.str(a);
    }
    finish_frame(out, start, 0);
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
    let start = start_frame(out);
    let mut w = Writer(out);
    w.u8(tag::CALL);
    w.u64(id);
    w.str(kind);
    w.str(name);
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

/// The length of a reply frame up to its output or error message: prefix, tag, id, outcome
/// and the payload's length. A receiver can read this much first and the rest straight to
/// where it belongs ([`decode_reply_head`]).
pub const REPLY_HEAD_LEN: usize = PREFIX_LEN + 1 + 8 + 1 + 4;

/// What a reply's head says ([`decode_reply_head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHead {
    /// The call's id.
    pub id: u64,
    /// `None`: the call succeeded; `Some(panicked)`: it failed, and the payload is the
    /// error message (UTF-8).
    pub failed: Option<bool>,
    /// How many payload bytes follow the head.
    pub len: usize,
}

/// Reads the first [`REPLY_HEAD_LEN`] bytes of a frame (`head`, at least that long) as a
/// reply's head, checking that the frame's length agrees with the payload's. `Ok(None)`: the
/// frame is another message (decode it whole with [`decode`]). The payload itself is the
/// caller's to check (an error message must be UTF-8).
pub fn decode_reply_head(head: &[u8]) -> Result<Option<ReplyHead>, DecodeError> {
    let Some(head) = head.get(..REPLY_HEAD_LEN) else {
        return Err(DecodeError::Incomplete {
            needed: REPLY_HEAD_LEN,
        });
    };
    let frame_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if frame_len > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong(frame_len as u64));
    }
    let mut r = Reader {
        bytes: &head[PREFIX_LEN..],
        at: 0,
    };
    if r.u8()? != tag::REPLY {
        return Ok(None);
    }
    let id = r.u64()?;
    let failed = match r.u8()? {
        0 => None,
        outcome @ (1 | 2) => Some(outcome == 2),
        _ => return Err(DecodeError::Malformed("unknown reply outcome")),
    };
    let len = r.u32()? as usize;
    if frame_len.checked_sub(REPLY_HEAD_LEN - PREFIX_LEN) != Some(len) {
        return Err(DecodeError::Malformed(
            "a reply's length disagrees with its frame's",
        ));
    }
    Ok(Some(ReplyHead { id, failed, len }))
}

/// A [`Message::Reply`] read in place ([`decode_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRef<'a> {
    /// The call's id.
    pub id: u64,
    /// The output, or `(panicked, message)`.
    pub result: Result<&'a [u8], (bool, &'a str)>,
}

/// A [`Message::Call`]'s arguments read in place ([`decode_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadRef<'a> {
    /// A `command`'s arguments: `count` strings, read with [`PayloadRef::args`].
    Args {
        /// How many.
        count: usize,
        /// Their encoding (each a `u32 LE` length and UTF-8 bytes, already checked).
        raw: &'a [u8],
    },
    /// A `transform`'s input.
    Bytes(&'a [u8]),
}

impl<'a> PayloadRef<'a> {
    /// The arguments of an [`PayloadRef::Args`] payload (none for bytes).
    pub fn args(&self) -> impl Iterator<Item = &'a str> {
        let (count, raw) = match *self {
            PayloadRef::Args { count, raw } => (count, raw),
            PayloadRef::Bytes(_) => (0, &[][..]),
        };
        let mut r = Reader { bytes: raw, at: 0 };
        // Checked by `decode_call`: every item is there and UTF-8.
        (0..count).map_while(move |_| r.bytes().ok().and_then(|b| std::str::from_utf8(b).ok()))
    }
}

/// A [`Message::Call`] read in place ([`decode_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef<'a> {
    /// The call's id.
    pub id: u64,
    /// The kind's name.
    pub kind: &'a str,
    /// The capability's name.
    pub name: &'a str,
    /// The arguments.
    pub payload: PayloadRef<'a>,
}

/// What [`decode_reply`] / [`decode_call`] found: the message expected, read in place, or
/// another valid message (decoded whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Borrowed<T> {
    /// The message expected.
    Expected(T),
    /// Another message.
    Other(Message),
}

/// Decodes the frame at the start of `bytes` as [`decode`] does, reading a `Reply` in place
/// (no allocation); any other message is decoded whole. Same checks, same errors.
pub fn decode_reply(bytes: &[u8]) -> Result<(Borrowed<ReplyRef<'_>>, usize), DecodeError> {
    let (body, total) = frame_body(bytes)?;
    if body.first() != Some(&tag::REPLY) {
        return decode(bytes).map(|(m, n)| (Borrowed::Other(m), n));
    }
    let mut r = Reader { bytes: body, at: 1 };
    let reply = r.reply_ref()?;
    r.end()?;
    Ok((Borrowed::Expected(reply), total))
}

/// Decodes the frame at the start of `bytes` as [`decode`] does, reading a `Call` in place
/// (no allocation); any other message is decoded whole. Same checks, same errors.
pub fn decode_call(bytes: &[u8]) -> Result<(Borrowed<CallRef<'_>>, usize), DecodeError> {
    let (body, total) = frame_body(bytes)?;
    if body.first() != Some(&tag::CALL) {
        return decode(bytes).map(|(m, n)| (Borrowed::Other(m), n));
    }
    let mut r = Reader { bytes: body, at: 1 };
    let call = r.call_ref()?;
    r.end()?;
    Ok((Borrowed::Expected(call), total))
}

/// The body of the frame at the start of `bytes` (after its prefix) and the frame's length.
fn frame_body(bytes: &[u8]) -> Result<(&[u8], usize), DecodeError> {
    let Some(prefix) = bytes.get(..PREFIX_LEN) else {
        return Err(DecodeError::Incomplete { needed: PREFIX_LEN });
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong(len as u64));
    }
    let total = PREFIX_LEN + len;
    match bytes.get(PREFIX_LEN..total) {
        Some(body) => Ok((body, total)),
        None => Err(DecodeError::Incomplete { needed: total }),
    }
}

/// Whether an encoded frame (prefix included) is within [`MAX_FRAME_LEN`].
pub fn frame_fits(frame: &[u8]) -> bool {
    frame.len().saturating_sub(PREFIX_LEN) <= MAX_FRAME_LEN
}

/// Decodes the frame at the start of `bytes`: the message and the bytes it used (prefix
/// included). [`DecodeError::Incomplete`] when `bytes` holds only part of a frame (read more
/// and try again); any other error means the stream is not a valid conversation.
///
/// Never panics, and allocates at most what the frame itself holds.
pub fn decode(bytes: &[u8]) -> Result<(Message, usize), DecodeError> {
    let (body, total) = frame_body(bytes)?;
    let mut r = Reader { bytes: body, at: 0 };
    let message = r.message()?;
    r.end()?;
    Ok((message, total))
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.raw(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }
    /// A length or count: one that does not fit in a `u32` is written as `u32::MAX`, which
    /// the decoder refuses (it exceeds every bound).
    fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.raw(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

const SHORT: DecodeError = DecodeError::Malformed("the frame ends inside a field");

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(SHORT)?;
        let out = self.bytes.get(self.at..end).ok_or(SHORT)?;
        self.at = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items, each taking at least `min_item` bytes: bounded by [`MAX_COUNT`] and
    /// by what is left of the frame, so no list is allocated beyond the frame's size.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > MAX_COUNT {
            return Err(DecodeError::Malformed("a list exceeds the item limit"));
        }
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(min_item) > left {
            return Err(SHORT);
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Result<String, DecodeError> {
        self.str_ref().map(str::to_owned)
    }
    fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::Malformed("a string is not UTF-8"))
    }
    fn name_ref(&mut self) -> Result<&'a str, DecodeError> {
        let s = self.str_ref()?;
        if s.len() > MAX_NAME_LEN {
            return Err(DecodeError::Malformed("a name exceeds the length limit"));
        }
        Ok(s)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.at != self.bytes.len() {
            return Err(DecodeError::Malformed("bytes left over after the message"));
        }
        Ok(())
    }
    fn name(&mut self) -> Result<String, DecodeError> {
        self.name_ref().map(str::to_owned)
    }
    /// A counted list of items, each read by `item` and taking at least `min_item` bytes.
    fn list<T>(
        &mut self,
        min_item: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.count(min_item)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(item(self)?);
        }
        Ok(items)
    }
    /// A call's fields after its tag, in place.
    fn call_ref(&mut self) -> Result<CallRef<'a>, DecodeError> {
        let id = self.u64()?;
        let kind = self.name_ref()?;
        let name = self.name_ref()?;
        let payload = match self.u8()? {
            0 => {
                let count = self.count(4)?;
                let from = self.at;
                for _ in 0..count {
                    self.str_ref()?;
                }
                PayloadRef::Args {
                    count,
                    raw: &self.bytes[from..self.at],
                }
            }
            1 => PayloadRef::Bytes(self.bytes()?),
            _ => return Err(DecodeError::Malformed("unknown payload type")),
        };
        Ok(CallRef {
            id,
            kind,
            name,
            payload,
        })
    }
    /// A reply's fields after its tag, in place.
    fn reply_ref(&mut self) -> Result<ReplyRef<'a>, DecodeError> {
        let id = self.u64()?;
        let result = match self.u8()? {
            0 => Ok(self.bytes()?),
            outcome @ (1 | 2) => Err((outcome == 2, self.str_ref()?)),
            _ => return Err(DecodeError::Malformed("unknown reply outcome")),
        };
        Ok(ReplyRef { id, result })
    }

    fn message(&mut self) -> Result<Message, DecodeError> {
        let t = self.u8()?;
        Ok(match t {
            tag::HELLO => Message::Hello {
                cookie: self.array()?,
                min_version: self.u16()?,
                max_version: self.u16()?,
            },
            tag::WELCOME => Message::Welcome {
                cookie: self.array()?,
                version: self.u16()?,
                pid: self.u32()?,
            },
            tag::LOAD => {
                let name = self.name()?;
                let path = self.text()?;
                let file_fd = self.u32()?;
                let policy = self.name()?;
                let checks = self.list(8, |r| Ok((r.name()?, r.name()?)))?;
                let config = self.text()?;
                let max_log_level = self.u8()?;
                if max_log_level > 5 {
                    return Err(DecodeError::Malformed("unknown log level"));
                }
                Message::Load(Load {
                    name,
                    path,
                    file_fd,
                    policy,
                    checks,
                    config,
                    max_log_level,
                })
            }
            tag::REGISTERED => {
                let name = self.name()?;
                let version = self.name()?;
                let capabilities = self.list(8, |r| {
                    Ok(Capability {
                        kind: r.name()?,
                        name: r.name()?,
                    })
                })?;
                Message::Registered {
                    name,
                    version,
                    capabilities,
                }
            }
            tag::REFUSED => Message::Refused {
                status: self.name()?,
                reason: self.name()?,
                message: self.text()?,
            },
            tag::CALL => {
                let call = self.call_ref()?;
                Message::Call {
                    id: call.id,
                    kind: call.kind.to_owned(),
                    name: call.name.to_owned(),
                    payload: match call.payload {
                        args @ PayloadRef::Args { .. } => {
                            Payload::Args(args.args().map(str::to_owned).collect())
                        }
                        PayloadRef::Bytes(bytes) => Payload::Bytes(bytes.to_vec()),
                    },
                }
            }
            tag::REPLY => {
                let reply = self.reply_ref()?;
                Message::Reply {
                    id: reply.id,
                    result: reply
                        .result
                        .map(<[u8]>::to_vec)
                        .map_err(|(panicked, message)| CallFailure {
                            panicked,
                            message: message.to_owned(),
                        }),
                }
            }
            tag::LOG => Message::Log {
                level: Level::from_u8(self.u8()?)
                    .ok_or(DecodeError::Malformed("unknown log level"))?,
                target: self.name()?,
                message: self.text()?,
            },
            tag::SHUTDOWN => Message::Shutdown,
            other => return Err(DecodeError::UnknownTag(other)),
        })
    }
}

#[cfg(test)]
mod tests;
