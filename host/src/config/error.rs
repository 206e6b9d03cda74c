//! Everything that can be wrong with configuration, each naming the file, line and column.

use std::path::PathBuf;

use super::origin::Origin;

/// A configuration file that cannot be used. Loading stops at the first one and returns no
/// configuration at all: nothing from a broken file is half-applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file that exists (or was named explicitly) but cannot be read, or is not a regular
    /// file, or is larger than [`MAX_CONFIG_LEN`](super::MAX_CONFIG_LEN).
    #[error("{source}{}", named_by(.env))]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// The environment variable that named it, when one did.
        env: Option<String>,
        /// Why (naming the file).
        source: crate::small_file::SmallFileError,
    },
    /// Not TOML.
    #[error("{origin}: malformed TOML: {message}")]
    Malformed {
        /// Where the parser stopped.
        origin: Origin,
        /// The parser's message (one line).
        message: String,
    },
    /// A key the schema does not have.
    #[error("{origin}: unknown key `{key}` in {table}{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// Where the key is.
        origin: Origin,
        /// The key as written.
        key: String,
        /// The table it is in (`the top level`, `[policy]`, …).
        table: String,
        /// A known key that is close to it.
        suggestion: Option<String>,
    },
    /// A value of the wrong type.
    #[error("{origin}: `{key}`: expected {expected}, found {found}")]
    WrongType {
        /// Where the value is.
        origin: Origin,
        /// The dotted key.
        key: String,
        /// What the schema wants (`a string`, …).
        expected: &'static str,
        /// What the file has (`an integer`, …).
        found: &'static str,
    },
    /// A string that is not one of the allowed words.
    #[error("{origin}: `{key}`: unknown value `{value}`; expected one of: {}", allowed.join(", "))]
    BadValue {
        /// Where the value is.
        origin: Origin,
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// The allowed values.
        allowed: Vec<String>,
    },
    /// A value of the right type that is not acceptable, for the reason given.
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        /// Where the value (or key) is.
        origin: Origin,
        /// The dotted key.
        key: String,
        /// Why it is refused.
        message: String,
    },
    /// A path that does not exist.
    #[error("{origin}: `{key}`: {} does not exist", path.display())]
    MissingPath {
        /// Where the path is written.
        origin: Origin,
        /// The dotted key.
        key: String,
        /// The path, resolved against the directory of the file that names it.
        path: PathBuf,
    },
    /// A project file that cannot be trusted (another user owns it, or there is nowhere to
    /// record trust).
    #[error("{message}")]
    Untrusted {
        /// What is wrong and what to do.
        message: String,
    },
    /// The record of trusted project files cannot be read or written.
    #[error("{}: the record of trusted project files: {detail}", file.display())]
    TrustRecord {
        /// The record.
        file: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl ConfigError {
    /// Where the problem is, when it is inside a file.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::Unreadable { .. }
            | ConfigError::Untrusted { .. }
            | ConfigError::TrustRecord { .. } => None,
            ConfigError::Malformed { origin, .. }
            | ConfigError::UnknownKey { origin, .. }
            | ConfigError::WrongType { origin, .. }
            | ConfigError::BadValue { origin, .. }
            | ConfigError::Invalid { origin, .. }
            | ConfigError::MissingPath { origin, .. } => Some(origin),
        }
    }
}

fn named_by(env: &Option<String>) -> String {
    env.as_ref()
        .map(|var| format!(" (it is named by ${var})"))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}
