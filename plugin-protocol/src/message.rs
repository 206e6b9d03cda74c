//! The messages host and worker exchange, and what can be wrong with a frame.

use std::fmt;

use crate::*;

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
    /// host → worker (version 3): call the capability at position `handle` of the worker's
    /// [`Message::Registered`] list, without naming it (the worker resolved it once).
    CallHandle {
        /// Chosen by the host; the reply carries it back.
        id: u64,
        /// The capability's position in the worker's `Registered` list.
        handle: u32,
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

pub(crate) mod tag {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const LOAD: u8 = 3;
    pub const REGISTERED: u8 = 4;
    pub const REFUSED: u8 = 5;
    pub const CALL: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const LOG: u8 = 8;
    pub const SHUTDOWN: u8 = 9;
    pub const CALL_HANDLE: u8 = 10;
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
            Message::CallHandle { .. } => "call-handle",
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
