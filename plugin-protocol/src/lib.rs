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
//! - **3**: version 2, and [`Message::CallHandle`]: a call may name its capability by its
//!   position in the worker's [`Message::Registered`] list instead of by kind and name, so
//!   the worker resolves each capability once, not on every call. The host sends it only to
//!   a worker that chose version 3; a worker answers a handle out of range with a failed
//!   reply.
//!
//! # The hot path
//!
//! [`encode_call_args`], [`encode_call_bytes`], [`encode_reply`] and [`decode_call`] /
//! [`decode_reply`] write and read `Call` and `Reply` frames without building a [`Message`]:
//! from borrowed arguments, into borrowed views of the frame. The bytes are exactly those of
//! [`encode`] / [`decode`].
#![forbid(unsafe_code)]

/// The first protocol version this crate speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// The last (newest) protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 3;

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

mod decode;
mod encode;
mod message;

pub use decode::{
    decode, decode_call, decode_reply, decode_reply_head, frame_fits, Borrowed, CallRef,
    PayloadRef, ReplyHead, ReplyRef, REPLY_HEAD_LEN,
};
pub use encode::{
    encode, encode_call_args, encode_call_args_to, encode_call_bytes, encode_call_bytes_head,
    encode_call_bytes_head_to, encode_reply, encode_reply_head, Target,
};
use message::tag;
pub use message::{negotiate, CallFailure, Capability, DecodeError, Level, Load, Message, Payload};

#[cfg(test)]
mod tests;
