//! The FFI logger the host hands every plugin.
//!
//! Each `cdylib` carries its own copy of the `log` crate and its globals, so without help a
//! plugin's `log::info!` goes nowhere. The host passes a [`Logger`] to `register`;
//! [`crate::export_plugin!`] installs it as the plugin's `log` logger before the plugin's
//! registration function runs, and from then on plain `log` macros reach the host's
//! `tracing` output with the plugin's name attached.

use std::ffi::c_void;

use abi_stable::std_types::RStr;
use abi_stable::StableAbi;

/// Severity of a log record, ordered like `log::Level` (`Off` is below everything).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Nothing is logged.
    Off = 0,
    /// Errors.
    Error = 1,
    /// Warnings.
    Warn = 2,
    /// Information.
    Info = 3,
    /// Debugging detail.
    Debug = 4,
    /// Tracing detail.
    Trace = 5,
}

impl From<log::Level> for LogLevel {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        }
    }
}

impl LogLevel {
    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// One log record crossing the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogRecord<'a> {
    /// Severity.
    pub level: LogLevel,
    /// The `log` target (by default the plugin's module path).
    pub target: RStr<'a>,
    /// The formatted message.
    pub message: RStr<'a>,
}

// By hand, not derived: the texts are plugin bytes that nothing forces to be UTF-8, and
// `RStr`'s own `Debug` reads them as a `str`. Shown with invalid bytes replaced.
impl std::fmt::Debug for LogRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lossy =
            |text: &RStr<'_>| String::from_utf8_lossy(text.as_rslice().as_slice()).into_owned();
        f.debug_struct("LogRecord")
            .field("level", &self.level)
            .field("target", &lossy(&self.target))
            .field("message", &lossy(&self.message))
            .finish()
    }
}

/// The host's log sink, as an FFI-safe value: an opaque context, the most verbose level the
/// host wants, and the function that receives records.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct Logger {
    context: *const c_void,
    max_level: LogLevel,
    log: unsafe extern "C" fn(*const c_void, &LogRecord<'_>),
}

// SAFETY: `from_raw_parts` requires the context to be usable from any thread for the rest of
// the process and the function to be thread-safe.
unsafe impl Send for Logger {}
// SAFETY: as above.
unsafe impl Sync for Logger {}

impl Logger {
    /// Builds a logger from its parts (host side).
    ///
    /// # Safety
    /// `context` must stay valid for the rest of the process and `log` must accept it from any
    /// thread, concurrently; `log` must not unwind.
    pub unsafe fn from_raw_parts(
        context: *const c_void,
        max_level: LogLevel,
        log: unsafe extern "C" fn(*const c_void, &LogRecord<'_>),
    ) -> Self {
        Logger {
            context,
            max_level,
            log,
        }
    }

    /// The most verbose level the host accepts.
    pub fn max_level(&self) -> LogLevel {
        self.max_level
    }

    /// Sends one record to the host.
    pub fn log(&self, record: &LogRecord<'_>) {
        if record.level <= self.max_level && record.level != LogLevel::Off {
            // SAFETY: upheld by the contract of `from_raw_parts`.
            unsafe { (self.log)(self.context, record) }
        }
    }
}

struct Forward(Logger);

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        LogLevel::from(metadata.level()) <= self.0.max_level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let formatted;
        let message = match record.args().as_str() {
            Some(text) => text,
            None => {
                formatted = record.args().to_string();
                &formatted
            }
        };
        self.0.log(&LogRecord {
            level: record.level().into(),
            target: record.target().into(),
            message: message.into(),
        });
    }

    fn flush(&self) {}
}

/// Makes `logger` this plugin's `log` logger. [`crate::export_plugin!`] calls it before the
/// registration function; a plugin that was already given a logger keeps the first one.
pub fn install(logger: Logger) {
    let max = logger.max_level.filter();
    if log::set_boxed_logger(Box::new(Forward(logger))).is_ok() {
        log::set_max_level(max);
    }
}
