//! `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:DIGEST`): where a plugin lives in a registry.

use std::fmt;
use std::net::IpAddr;

use crate::Error;

/// A plugin's place in an OCI registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `name/with/slashes`.
    pub repository: String,
    /// A tag or `sha256:HEX`.
    pub reference: String,
}

impl Reference {
    /// Parses `oci://REGISTRY/REPOSITORY:TAG` or `oci://REGISTRY/REPOSITORY@sha256:HEX`.
    pub fn parse(text: &str) -> Result<Reference, Error> {
        let bad = |why: &str| Error::BadReference {
            text: host::text::printable(text).into_owned(),
            why: why.to_owned(),
        };
        if text.len() > 1024 {
            return Err(bad("longer than 1024 bytes"));
        }
        let rest = text
            .strip_prefix("oci://")
            .ok_or_else(|| bad("it must start with `oci://`"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository after the registry"))?;
        if registry.is_empty()
            || registry.starts_with('.')
            || !registry.chars().any(|c| c.is_ascii_alphanumeric())
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(bad(
                "the registry must be a host name or address, with an optional port",
            ));
        }
        let (repository, reference) = if let Some((repo, digest)) = path.split_once('@') {
            if !is_digest(digest) {
                return Err(bad("a digest is `sha256:` and 64 lowercase hex digits"));
            }
            (repo, digest)
        } else {
            match path.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag),
                _ => return Err(bad("no tag: add `:TAG` (or `@sha256:DIGEST`)")),
            }
        };
        if !is_repository(repository) {
            return Err(bad(
                "a repository is lowercase letters and digits, separated by `.`, `_`, `__`, `-` \
                 or `/`",
            ));
        }
        if !is_digest(reference) && !is_tag(reference) {
            return Err(bad(
                "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
            ));
        }
        Ok(Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
        })
    }

    /// Whether it names a digest rather than a tag.
    pub fn is_digest(&self) -> bool {
        is_digest(&self.reference)
    }

    /// The same repository at `digest`, which must be one (`sha256:` and 64 hex digits):
    /// a registry's word for a digest is checked before it becomes part of a URL or a path.
    pub fn at_digest(&self, digest: &str) -> Result<Reference, Error> {
        if !is_digest(digest) {
            return Err(Error::Malformed {
                what: format!("{self}"),
                detail: format!(
                    "`{}` is not a digest (`sha256:` and 64 lowercase hex digits)",
                    host::text::bounded(digest, 80)
                ),
            });
        }
        Ok(Reference {
            reference: digest.to_owned(),
            ..self.clone()
        })
    }

    /// Whether it names a tag (checked when parsed): what may name a file in the cache.
    pub(crate) fn is_tag(&self) -> bool {
        is_tag(&self.reference)
    }

    /// Whether the registry is on this machine (plain HTTP is allowed there).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.is_digest() { '@' } else { ':' };
        write!(
            f,
            "oci://{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

/// Whether `host[:port]` is this machine: `localhost` or a loopback address.
pub fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `host[:port]` of an `http(s)://` URL.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// `sha256:` and 64 lowercase hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn is_tag(text: &str) -> bool {
    let first = text.bytes().next();
    (1..=128).contains(&text.len())
        && first.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The OCI distribution spec's repository grammar: components of `[a-z0-9]+` joined by `.`,
/// `_`, `__` or `-`s, separated by `/`.
fn is_repository(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && !component.contains("..")
                && !component.contains("___")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        let r = Reference::parse("oci://127.0.0.1:5000/team/hello:0.1.0-linux").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/hello");
        assert_eq!(r.reference, "0.1.0-linux");
        assert!(r.is_loopback() && !r.is_digest());
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/team/hello:0.1.0-linux");
        let digest = format!("sha256:{}", "a".repeat(64));
        let d = Reference::parse(&format!("oci://ghcr.io/acme/wc@{digest}")).unwrap();
        assert!(d.is_digest() && !d.is_loopback());
        assert_eq!(d.to_string(), format!("oci://ghcr.io/acme/wc@{digest}"));
        assert!(Reference::parse("oci://localhost/x:1")
            .unwrap()
            .is_loopback());
        assert!(Reference::parse("oci://[::1]:5000/x:1")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (text, why) in [
            ("docker://r/x:1", "must start with `oci://`"),
            ("oci://r", "no repository"),
            ("oci://r/x", "no tag"),
            ("oci://r/Upper:1", "a repository is lowercase"),
            ("oci://r/x:-bad", "a tag is 1 to 128"),
            ("oci://r/x@sha256:12", "a digest is"),
            ("oci://r/../x:1", "a repository is"),
            ("oci://r r/x:1", "the registry must be"),
            ("oci://../x:1", "the registry must be"),
            ("oci://./x:1", "the registry must be"),
        ] {
            let e = Reference::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
