//! The host side of the plugin logger: records arrive from the plugin's `log` macros and are
//! re-emitted as `tracing` events inside a `plugin{name=…}` span.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use plugin_api::logger::{LogLevel, LogRecord};
use plugin_api::Logger;
use tracing::level_filters::LevelFilter;

struct PluginLog {
    span: tracing::Span,
}

/// A logger that tags every record with `plugin`'s name.
///
/// Its context is leaked on purpose: it must outlive the plugin, and plugins are never
/// unloaded. That is one small allocation per loaded plugin.
pub(crate) fn logger_for(plugin: &str) -> Logger {
    let context: &'static PluginLog = Box::leak(Box::new(PluginLog {
        // An error-level span is enabled whenever any plugin event can be.
        span: tracing::error_span!("plugin", name = %plugin),
    }));
    let max_level = match LevelFilter::current() {
        LevelFilter::OFF => LogLevel::Off,
        LevelFilter::ERROR => LogLevel::Error,
        LevelFilter::WARN => LogLevel::Warn,
        LevelFilter::INFO => LogLevel::Info,
        LevelFilter::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    };
    // SAFETY: the context is `'static` and only read; `PluginLog` is `Sync` (a `Span`), so
    // `forward` may run on any thread concurrently; `forward` catches every panic.
    unsafe { Logger::from_raw_parts(std::ptr::from_ref(context).cast(), max_level, forward) }
}

unsafe extern "C" fn forward(context: *const c_void, record: &LogRecord<'_>) {
    // A panicking subscriber must not unwind into the plugin; the record is dropped instead.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `context` is the leaked `PluginLog` built in `logger_for`.
        let context = unsafe { &*context.cast::<PluginLog>() };
        // Plugin text: checked as UTF-8 (nothing forces a plugin to send it) and with
        // control characters escaped, so it cannot forge log lines or drive a terminal.
        let message = crate::text::lossy(record.message.as_rslice().as_slice());
        let message = crate::text::printable(&message);
        let module = crate::text::lossy(record.target.as_rslice().as_slice());
        let module = crate::text::printable(&module);
        let module = &*module;
        let span = &context.span;
        match record.level {
            LogLevel::Error => tracing::error!(target: "plugin", parent: span, module, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", parent: span, module, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", parent: span, module, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", parent: span, module, "{message}"),
            LogLevel::Trace => tracing::trace!(target: "plugin", parent: span, module, "{message}"),
            LogLevel::Off => {}
        }
    }));
}
