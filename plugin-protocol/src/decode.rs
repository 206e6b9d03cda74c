//! Reading frames: any message, and the hot path's `Call` and `Reply` frames as borrowed views
//! (a reply's head first, so the rest can go straight where it belongs).

use crate::*;

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

/// A [`Message::Call`] or [`Message::CallHandle`] read in place ([`decode_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef<'a> {
    /// The call's id.
    pub id: u64,
    /// The capability called: by kind and name, or by handle.
    pub target: Target<'a>,
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

/// Decodes the frame at the start of `bytes` as [`decode`] does, reading a `Call` or a
/// `CallHandle` in place (no allocation); any other message is decoded whole. Same checks,
/// same errors.
pub fn decode_call(bytes: &[u8]) -> Result<(Borrowed<CallRef<'_>>, usize), DecodeError> {
    let (body, total) = frame_body(bytes)?;
    let by_handle = match body.first() {
        Some(&tag::CALL) => false,
        Some(&tag::CALL_HANDLE) => true,
        _ => return decode(bytes).map(|(m, n)| (Borrowed::Other(m), n)),
    };
    let mut r = Reader { bytes: body, at: 1 };
    let call = r.call_ref(by_handle)?;
    r.end()?;
    Ok((Borrowed::Expected(call), total))
}

/// The body of the frame at the start of `bytes` (after its prefix) and the frame's length.
pub(crate) fn frame_body(bytes: &[u8]) -> Result<(&[u8], usize), DecodeError> {
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

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

pub(crate) const SHORT: DecodeError = DecodeError::Malformed("the frame ends inside a field");

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(SHORT)?;
        let out = self.bytes.get(self.at..end).ok_or(SHORT)?;
        self.at = end;
        Ok(out)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items, each taking at least `min_item` bytes: bounded by [`MAX_COUNT`] and
    /// by what is left of the frame, so no list is allocated beyond the frame's size.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
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
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn text(&mut self) -> Result<String, DecodeError> {
        self.str_ref().map(str::to_owned)
    }
    pub(crate) fn str_ref(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::Malformed("a string is not UTF-8"))
    }
    pub(crate) fn name_ref(&mut self) -> Result<&'a str, DecodeError> {
        let s = self.str_ref()?;
        if s.len() > MAX_NAME_LEN {
            return Err(DecodeError::Malformed("a name exceeds the length limit"));
        }
        Ok(s)
    }
    pub(crate) fn end(&self) -> Result<(), DecodeError> {
        if self.at != self.bytes.len() {
            return Err(DecodeError::Malformed("bytes left over after the message"));
        }
        Ok(())
    }
    pub(crate) fn name(&mut self) -> Result<String, DecodeError> {
        self.name_ref().map(str::to_owned)
    }
    /// A counted list of items, each read by `item` and taking at least `min_item` bytes.
    pub(crate) fn list<T>(
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
    /// A call's fields after its tag (`CALL_HANDLE` if `by_handle`, else `CALL`), in place.
    pub(crate) fn call_ref(&mut self, by_handle: bool) -> Result<CallRef<'a>, DecodeError> {
        let id = self.u64()?;
        let target = if by_handle {
            Target::Handle(self.u32()?)
        } else {
            Target::Named {
                kind: self.name_ref()?,
                name: self.name_ref()?,
            }
        };
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
            target,
            payload,
        })
    }
    /// A reply's fields after its tag, in place.
    pub(crate) fn reply_ref(&mut self) -> Result<ReplyRef<'a>, DecodeError> {
        let id = self.u64()?;
        let result = match self.u8()? {
            0 => Ok(self.bytes()?),
            outcome @ (1 | 2) => Err((outcome == 2, self.str_ref()?)),
            _ => return Err(DecodeError::Malformed("unknown reply outcome")),
        };
        Ok(ReplyRef { id, result })
    }

    pub(crate) fn message(&mut self) -> Result<Message, DecodeError> {
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
            tag::CALL | tag::CALL_HANDLE => {
                let call = self.call_ref(t == tag::CALL_HANDLE)?;
                let payload = match call.payload {
                    args @ PayloadRef::Args { .. } => {
                        Payload::Args(args.args().map(str::to_owned).collect())
                    }
                    PayloadRef::Bytes(bytes) => Payload::Bytes(bytes.to_vec()),
                };
                match call.target {
                    Target::Named { kind, name } => Message::Call {
                        id: call.id,
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        payload,
                    },
                    Target::Handle(handle) => Message::CallHandle {
                        id: call.id,
                        handle,
                        payload,
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
