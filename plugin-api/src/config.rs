//! Typed access to a plugin's configuration (feature `config`).
//!
//! A host built on `host::config` hands each plugin its `[plugins.NAME.config]` table as TOML
//! text; [`Initializer::config_as`](crate::Initializer::config_as) (or [`parse`]) deserialises
//! it into the plugin's own type:
//!
//! ```
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Settings {
//!     greeting: Option<String>,
//!     repeat: u32,
//! }
//!
//! let s: Settings = plugin_api::config::parse("greeting = \"hi\"\nrepeat = 2\n").unwrap();
//! assert_eq!((s.greeting.as_deref(), s.repeat), (Some("hi"), 2));
//! // No configuration is an empty table.
//! let s: Settings = plugin_api::config::parse("").unwrap();
//! assert_eq!(s.repeat, 0);
//! ```

use std::fmt;

use serde::de::DeserializeOwned;

/// The plugin's configuration is not what the plugin expects: not TOML, a missing or unknown
/// key, or a value of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
    line: Option<String>,
}

impl ConfigError {
    /// What is wrong (the deserialiser's message, e.g. ``unknown field `x`, expected `y` ``).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The line of the configuration text the problem is on, when known.
    pub fn line(&self) -> Option<&str> {
        self.line.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid plugin configuration: {}", self.message)?;
        if let Some(line) = &self.line {
            write!(f, " (in `{line}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Deserialises configuration text (TOML; empty text is an empty table) into `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().and_then(|span| {
            let start = text[..span.start.min(text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            let line = text[start..end].trim();
            (!line.is_empty()).then(|| line.to_owned())
        });
        ConfigError {
            message: e.message().trim().replace('\n', " "),
            line,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        mask: Option<String>,
        patterns: Vec<String>,
        nested: Nested,
    }

    #[derive(Debug, serde::Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Nested {
        depth: u8,
    }

    #[test]
    fn deserialises_tables_arrays_and_nested_tables() {
        let s: Settings =
            parse("mask = \"#\"\npatterns = [\"a\", \"b\"]\n[nested]\ndepth = 3\n").unwrap();
        assert_eq!(
            s,
            Settings {
                mask: Some("#".into()),
                patterns: vec!["a".into(), "b".into()],
                nested: Nested { depth: 3 },
            }
        );
        assert_eq!(parse::<Settings>("").unwrap(), Settings::default());
    }

    #[test]
    fn errors_name_the_problem_and_its_line() {
        let e = parse::<Settings>("mask = \"#\"\nmsak = 1\n").unwrap_err();
        assert!(e.message().contains("unknown field `msak`"), "{e}");
        assert_eq!(e.line(), Some("msak = 1"));
        assert!(
            e.to_string().starts_with("invalid plugin configuration: "),
            "{e}"
        );

        let e = parse::<Settings>("[nested]\ndepth = \"deep\"\n").unwrap_err();
        assert!(e.message().contains("invalid type: string"), "{e}");
        assert_eq!(e.line(), Some("depth = \"deep\""));

        let e = parse::<Settings>("email,ipv4").unwrap_err();
        assert!(!e.message().is_empty(), "{e}");
    }
}
