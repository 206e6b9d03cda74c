//! The host side of the plugin logger: records arrive from the plugin's `log` macros and are
//! re-emitted as `tracing` events inside a `plugin{name=…}` span; and what a placement out of
//! process uses to forward a plugin's records from its worker and emit them in the host.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use plugin_api::logger::{LogLevel, LogRecord};
use plugin_api::Logger;
use tracing::level_filters::LevelFilter;

struct PluginLog {
    span: tracing::Span,
}

/// Where a worker process sends its plugin's records instead of to `tracing`: `(level,
/// target, message)`, already checked as UTF-8 (see [`forward_records_to`]).
type Forward = Box<dyn Fn(LogLevel, &str, &str) + Send + Sync>;

static FORWARD: OnceLock<(LogLevel, Forward)> = OnceLock::new();

/// In a worker process (the `plugin-isolate` crate's worker): hands every plugin record up to
/// `max_level` to `forward` (which sends it to the host) instead of emitting it here.
pub fn forward_records_to(
    max_level: LogLevel,
    forward: impl Fn(LogLevel, &str, &str) + Send + Sync + 'static,
) {
    let _ = FORWARD.set((max_level, Box::new(forward)));
}

/// The level numbered `n` as [`LogLevel`] numbers them (0 off, 1 error … 5 trace; anything
/// higher: trace). The worker protocol numbers its levels the same way
/// (`plugin_protocol::Level`, 1 … 5), so this reads both.
pub fn level_numbered(n: u8) -> LogLevel {
    match n {
        0 => LogLevel::Off,
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// The level filter a plugin logger starts with: the host's `tracing` filter.
pub fn current_level() -> LogLevel {
    match LevelFilter::current() {
        LevelFilter::OFF => LogLevel::Off,
        LevelFilter::ERROR => LogLevel::Error,
        LevelFilter::WARN => LogLevel::Warn,
        LevelFilter::INFO => LogLevel::Info,
        LevelFilter::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

/// Emits one plugin record as a `tracing` event in `span` (a `plugin{name=…}` span). The
/// text is plugin text: control characters are escaped, so it cannot forge log lines.
pub fn emit(span: &tracing::Span, level: LogLevel, module: &str, message: &str) {
    let message = crate::text::printable(message);
    let module = crate::text::printable(module);
    let module = &*module;
    match level {
        LogLevel::Error => tracing::error!(target: "plugin", parent: span, module, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "plugin", parent: span, module, "{message}"),
        LogLevel::Info => tracing::info!(target: "plugin", parent: span, module, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "plugin", parent: span, module, "{message}"),
        LogLevel::Trace => tracing::trace!(target: "plugin", parent: span, module, "{message}"),
        LogLevel::Off => {}
    }
}

/// The span a plugin's records are emitted in.
pub fn span_for(plugin: &str) -> tracing::Span {
    // An error-level span is enabled whenever any plugin event can be.
    tracing::error_span!("plugin", name = %plugin)
}

/// A logger that tags every record with `plugin`'s name.
///
/// Its context is leaked on purpose: it must outlive the plugin, and plugins are never
/// unloaded. That is one small allocation per loaded plugin.
pub(crate) fn logger_for(plugin: &str) -> Logger {
    let context: &'static PluginLog = Box::leak(Box::new(PluginLog {
        span: span_for(plugin),
    }));
    let max_level = match FORWARD.get() {
        Some((level, _)) => *level,
        None => current_level(),
    };
    // SAFETY: the context is `'static` and only read; `PluginLog` is `Sync` (a `Span`), so
    // `forward` may run on any thread concurrently; `forward` catches every panic.
    unsafe { Logger::from_raw_parts(std::ptr::from_ref(context).cast(), max_level, forward) }
}

unsafe extern "C" fn forward(context: *const c_void, record: &LogRecord<'_>) {
    // A panicking subscriber must not unwind into the plugin; the record is dropped instead.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` is the leaked `PluginLog` built in `logger_for`.
        let context = unsafe { &*context.cast::<PluginLog>() };
        // Plugin text: checked as UTF-8 (nothing forces a plugin to send it) and cut to
        // `MAX_PLUGIN_TEXT` first; `emit` escapes control characters, so it cannot forge
        // log lines or drive a terminal.
        let cut = |bytes: &[u8]| {
            let text = crate::text::lossy(bytes);
            crate::text::bounded(&text, crate::limits::MAX_PLUGIN_TEXT).into_owned()
        };
        let message = cut(record.message.as_rslice().as_slice());
        let module = cut(record.target.as_rslice().as_slice());
        match FORWARD.get() {
            Some((_, forward)) => forward(record.level, &module, &message),
            None => emit(&context.span, record.level, &module, &message),
        }
    }));
    // A payload whose drop panicked again would unwind from here: it is not dropped.
    if let Err(payload) = caught {
        std::mem::forget(payload);
    }
}
