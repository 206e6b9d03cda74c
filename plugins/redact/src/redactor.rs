//! The redaction engine, without any plugin plumbing (benchmarks compile it in directly).

use std::fmt;

use regex::bytes::Regex;

/// A kind of secret `redact` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// `user@example.com`
    Email,
    /// `192.168.0.1`
    Ipv4,
    /// The token after `Bearer `.
    BearerToken,
    /// `AKIA…` / `ASIA…` access key ids.
    AwsAccessKey,
}

impl Secret {
    /// Every kind.
    pub const ALL: [Secret; 4] = [
        Secret::Email,
        Secret::Ipv4,
        Secret::BearerToken,
        Secret::AwsAccessKey,
    ];

    /// The name used in configuration and in the replacement text.
    pub fn name(self) -> &'static str {
        match self {
            Secret::Email => "email",
            Secret::Ipv4 => "ipv4",
            Secret::BearerToken => "token",
            Secret::AwsAccessKey => "aws-key",
        }
    }

    /// The kind called `name`.
    pub fn named(name: &str) -> Result<Secret, UnknownSecret> {
        Secret::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| UnknownSecret(name.to_owned()))
    }

    fn pattern(self) -> &'static str {
        match self {
            Secret::Email => {
                r"(?:[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})"
            }
            Secret::Ipv4 => {
                r"(?:\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b)"
            }
            Secret::BearerToken => r"\b[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+(?:[A-Za-z0-9\-._~+/]+=*)",
            Secret::AwsAccessKey => {
                r"(?:\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b)"
            }
        }
    }
}

/// A configuration string named a kind `redact` does not know.
#[derive(Debug)]
pub struct UnknownSecret(String);

impl fmt::Display for UnknownSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<_> = Secret::ALL.iter().map(|s| s.name()).collect();
        write!(
            f,
            "unknown secret kind `{}` in redact's configuration (known: {})",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownSecret {}

/// The compiled redactor.
pub struct Redactor {
    regex: Regex,
    /// The extra patterns, anchored, to tell their matches from the built-in kinds'.
    custom: Option<Regex>,
    /// What a secret becomes: `before`, the kind's name, `after` (or `before` alone when the
    /// template has no `{kind}`).
    before: Vec<u8>,
    after: Option<Vec<u8>>,
}

/// The default replacement template.
pub const DEFAULT_REPLACEMENT: &str = "[REDACTED:{kind}]";

/// The kind name matches of extra patterns are reported as.
pub const CUSTOM: &str = "custom";

impl Redactor {
    /// A redactor for the given kinds (all of them when empty).
    pub fn new(kinds: &[Secret]) -> Self {
        Self::with_options(kinds, &[], DEFAULT_REPLACEMENT).expect("redact patterns compile")
    }

    /// A redactor for the given kinds (all of them when empty), plus `patterns` (regular
    /// expressions whose matches are secrets of kind [`CUSTOM`]; checked before the built-in
    /// kinds when both could match), each secret replaced by `replacement` with `{kind}`
    /// standing for the kind's name.
    pub fn with_options(
        kinds: &[Secret],
        patterns: &[String],
        replacement: &str,
    ) -> Result<Self, regex::Error> {
        let kinds = if kinds.is_empty() {
            &Secret::ALL[..]
        } else {
            kinds
        };
        let custom: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
        let pattern: Vec<&str> = custom
            .iter()
            .map(String::as_str)
            .chain(kinds.iter().map(|k| k.pattern()))
            .collect();
        // ASCII-only classes keep the automaton small and fast; log lines may not be UTF-8.
        let regex = Regex::new(&format!("(?-u){}", pattern.join("|")))?;
        let custom = if custom.is_empty() {
            None
        } else {
            Some(Regex::new(&format!("(?-u)^(?:{})$", custom.join("|")))?)
        };
        let (before, after) = match replacement.split_once("{kind}") {
            Some((b, a)) => (b.as_bytes().to_vec(), Some(a.as_bytes().to_vec())),
            None => (replacement.as_bytes().to_vec(), None),
        };
        Ok(Redactor {
            regex,
            custom,
            before,
            after,
        })
    }

    /// Parses a configuration string: comma-separated kind names, empty for all.
    pub fn from_config(config: &str) -> Result<Self, UnknownSecret> {
        let kinds = config
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::named)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redactor::new(&kinds))
    }

    /// Appends `input` with every secret masked to `out` (through `emit`).
    pub fn redact(&self, input: &[u8], mut emit: impl FnMut(&[u8])) {
        // `find_iter` runs the fast lazy DFA only; which kind of secret matched is told from
        // the match itself (the kinds cannot be confused), which avoids capture groups and the
        // much slower engines that resolve them.
        let mut last = 0;
        for found in self.regex.find_iter(input) {
            emit(&input[last..found.start()]);
            self.emit_replacement(found.as_bytes(), &mut emit);
            last = found.end();
        }
        emit(&input[last..]);
    }

    /// Convenience: the redacted copy of `input`.
    pub fn redact_to_vec(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.redact(input, |s| out.extend_from_slice(s));
        out
    }
}

impl Redactor {
    /// Emits the replacement for one match. A match of an extra pattern is `custom`; of the
    /// built-in kinds, an e-mail address is the only one with an `@`; a bearer token starts
    /// with the word `bearer` (kept, with its spacing); an IPv4 address is digits and dots;
    /// anything else the pattern matches is an access key id.
    fn emit_replacement(&self, secret: &[u8], emit: &mut impl FnMut(&[u8])) {
        let kind: &[u8] = if self.custom.as_ref().is_some_and(|c| c.is_match(secret)) {
            CUSTOM.as_bytes()
        } else if secret.contains(&b'@') {
            b"email"
        } else if secret.len() > 6 && secret[..6].eq_ignore_ascii_case(b"bearer") {
            let token = secret[6..]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map_or(secret.len(), |i| 6 + i);
            emit(&secret[..token]);
            b"token"
        } else if secret.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            b"ipv4"
        } else {
            b"aws-key"
        };
        emit(&self.before);
        if let Some(after) = &self.after {
            emit(kind);
            emit(after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> String {
        String::from_utf8(Redactor::new(&[]).redact_to_vec(s.as_bytes())).unwrap()
    }

    #[test]
    fn masks_each_kind() {
        assert_eq!(
            redact("mail ada.l+x@example.co.uk now"),
            "mail [REDACTED:email] now"
        );
        assert_eq!(redact("from 10.0.0.255:443"), "from [REDACTED:ipv4]:443");
        assert_eq!(
            redact("Authorization: Bearer abc.DEF-123_~+/=="),
            "Authorization: Bearer [REDACTED:token]"
        );
        assert_eq!(
            redact("key=AKIAIOSFODNN7EXAMPLE;"),
            "key=[REDACTED:aws-key];"
        );
    }

    #[test]
    fn leaves_lookalikes_alone() {
        let clean = "version 1.2.3 at 999.1.1.1 user@localhost AKIA123 bearer";
        assert_eq!(redact(clean), clean);
    }

    #[test]
    fn config_selects_kinds() {
        let only_ip = Redactor::from_config("ipv4").unwrap();
        let out = only_ip.redact_to_vec(b"a@b.io 1.2.3.4");
        assert_eq!(out, b"a@b.io [REDACTED:ipv4]");
        let err = Redactor::from_config("email,phone").err().unwrap();
        assert!(
            err.to_string().contains("unknown secret kind `phone`"),
            "{err}"
        );
    }

    #[test]
    fn extra_patterns_and_replacement_template() {
        let r = Redactor::with_options(
            &[Secret::Email],
            &["TICKET-[0-9]+".to_owned()],
            "<{kind} hidden>",
        )
        .unwrap();
        let out = r.redact_to_vec(b"TICKET-42 by a@b.io from 1.2.3.4");
        assert_eq!(out, b"<custom hidden> by <email hidden> from 1.2.3.4");
        let fixed = Redactor::with_options(&[], &[], "***").unwrap();
        assert_eq!(fixed.redact_to_vec(b"at 1.2.3.4."), b"at ***.");
        assert!(Redactor::with_options(&[], &["(".to_owned()], "x").is_err());
    }

    #[test]
    fn non_utf8_passes_through() {
        let out = Redactor::new(&[]).redact_to_vec(b"\xff\xfe 8.8.8.8 \xc3");
        assert_eq!(out, b"\xff\xfe [REDACTED:ipv4] \xc3");
    }
}
