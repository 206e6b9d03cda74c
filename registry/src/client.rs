//! The OCI distribution API, as much of it as plugins need: manifests and blobs, read with a
//! bound and checked against their digests, and uploaded whole.
//!
//! Plain HTTP only to a registry on this machine (loopback) or with `insecure`; HTTPS (rustls,
//! the Mozilla roots) everywhere else. Credentials (see `auth`) are sent only when the
//! registry itself asks (a 401 from its own origin): as Basic auth, or to the token service it
//! names (`WWW-Authenticate: Bearer realm=…`, which must be HTTPS unless the registry is on
//! loopback) for a bearer token. Redirects are not followed but for blobs, by hand: to HTTPS
//! (or loopback to loopback), with no credentials unless the origin is the registry's.

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::reference::{is_loopback, url_host, Reference};
use crate::Error;

/// The most bytes a manifest or an index may hold.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The most bytes a token response may hold.
const MAX_TOKEN: u64 = 64 << 10;
/// The most bytes of an error body quoted in a message.
const MAX_ERROR_BODY: u64 = 4 << 10;

/// OCI manifest media types.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI index media type.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A connection to one registry.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    registry: String,
    loopback: bool,
    basic: Option<String>,
    /// What the registry asked for: nothing yet, Basic, or a bearer token.
    auth: Mutex<Auth>,
}

#[derive(Clone)]
enum Auth {
    None,
    Basic,
    Bearer(String),
}

/// The most redirects a blob download follows.
const MAX_REDIRECTS: usize = 5;

/// A manifest or an index as the registry served it.
pub struct Fetched {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its media type (from the document, else the response's `Content-Type`).
    pub media_type: String,
    /// `sha256:HEX` of the bytes.
    pub digest: String,
}

impl Client {
    /// A client for `reference`'s registry: HTTPS, or plain HTTP on loopback or when
    /// `insecure`.
    pub fn new(reference: &Reference, insecure: bool) -> Result<Client, Error> {
        let scheme = scheme(reference, insecure);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            // A whole request, however slowly the other side drips it: half an hour (a 1 GiB
            // library at 0.6 MB/s).
            .timeout(Duration::from_secs(1800))
            .timeout_read(Duration::from_secs(60))
            .timeout_write(Duration::from_secs(60))
            .redirects(0)
            .user_agent(concat!("plugin-host/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent,
            base: format!("{scheme}://{}", reference.registry),
            registry: reference.registry.clone(),
            loopback: reference.is_loopback(),
            basic: crate::auth::basic_for(&reference.registry)?,
            auth: Mutex::new(Auth::None),
        })
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port).
    fn same_origin(&self, url: &str) -> bool {
        url == self.base || url.starts_with(&format!("{}/", self.base))
    }

    fn url(&self, repository: &str, path: &str) -> String {
        format!("{}/v2/{repository}/{path}", self.base)
    }

    /// [`Client::send_following`], where a redirect is an error: only a blob download
    /// follows one (with no redirect followed by the agent, a 3xx comes back as an answer,
    /// which would otherwise be read as the manifest, or taken for a blob already there).
    fn send(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
        body: Option<(&[u8], &str)>,
        what: &str,
    ) -> Result<ureq::Response, Error> {
        let response = self.send_following(method, url, accept, body, what)?;
        if (300..400).contains(&response.status()) {
            return Err(Error::Status {
                what: what.to_owned(),
                status: response.status(),
                detail: "a redirect, which only a blob download follows".to_owned(),
            });
        }
        Ok(response)
    }

    /// Sends a request (`body` with its content type) to the registry's origin,
    /// authenticating once when it asks (Basic, or a bearer token from its realm); a
    /// redirect is handed back for the caller to follow or not.
    fn send_following(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
        body: Option<(&[u8], &str)>,
        what: &str,
    ) -> Result<ureq::Response, Error> {
        let mut retried = false;
        loop {
            let mut request = self.agent.request(method, url);
            if let Some(accept) = accept {
                request = request.set("Accept", accept);
            }
            if self.same_origin(url) {
                match self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    Auth::None => {}
                    Auth::Basic => {
                        if let Some(basic) = &self.basic {
                            request = request.set("Authorization", &format!("Basic {basic}"));
                        }
                    }
                    Auth::Bearer(token) => {
                        request = request.set("Authorization", &format!("Bearer {token}"));
                    }
                }
            }
            let sent = match body {
                Some((bytes, content_type)) => {
                    request.set("Content-Type", content_type).send_bytes(bytes)
                }
                None => request.call(),
            };
            match sent {
                Ok(response) => return Ok(response),
                Err(ureq::Error::Status(401, response))
                    if !retried && self.same_origin(response.get_url()) =>
                {
                    retried = true;
                    let challenge = response
                        .header("WWW-Authenticate")
                        .map(|c| host::text::bounded(c, 2048).into_owned())
                        .unwrap_or_default();
                    if self.authenticate(&challenge)? {
                        continue;
                    }
                    return Err(self.status_error(401, response, what));
                }
                Err(ureq::Error::Status(code, response)) => {
                    return Err(self.status_error(code, response, what))
                }
                Err(ureq::Error::Transport(e)) => {
                    return Err(Error::Unreachable {
                        registry: self.registry.clone(),
                        detail: e.to_string(),
                    })
                }
            }
        }
    }

    /// Answers a `WWW-Authenticate` challenge from the registry: Basic with the credentials,
    /// or a bearer token fetched from its realm (HTTPS, unless the registry is on loopback).
    /// `false` when there is nothing to try.
    fn authenticate(&self, challenge: &str) -> Result<bool, Error> {
        if challenge.starts_with("Basic") {
            if self.basic.is_none() {
                return Ok(false);
            }
            *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = Auth::Basic;
            return Ok(true);
        }
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return Ok(false);
        };
        let params = challenge_params(params);
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let Some(realm) = param("realm") else {
            return Ok(false);
        };
        let realm_loopback = url_host(&realm).is_some_and(is_loopback);
        let realm_allowed = realm.starts_with("https://") || (self.loopback && realm_loopback);
        if !realm_allowed {
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                detail: format!(
                    "its token service `{}` is not HTTPS; credentials are not sent there",
                    host::text::printable(&realm)
                ),
            });
        }
        let mut request = self.agent.get(&realm);
        for name in ["service", "scope"] {
            if let Some(value) = param(name) {
                request = request.query(name, &value);
            }
        }
        if let Some(basic) = &self.basic {
            request = request.set("Authorization", &format!("Basic {basic}"));
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => {
                return Err(Error::Unauthorized {
                    registry: self.registry.clone(),
                    detail: format!("its token service ({realm}) answered {code}"),
                })
            }
            Err(ureq::Error::Transport(e)) => {
                return Err(Error::Unreachable {
                    registry: realm,
                    detail: e.to_string(),
                })
            }
        };
        let body = self.read_bounded(response, MAX_TOKEN, "its token response")?;
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Error::Malformed {
                what: "token response".to_owned(),
                detail: e.to_string(),
            })?;
        let token = value["token"]
            .as_str()
            .or(value["access_token"].as_str())
            .ok_or_else(|| Error::Malformed {
                what: "token response".to_owned(),
                detail: "no `token`".to_owned(),
            })?;
        *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = Auth::Bearer(token.to_owned());
        Ok(true)
    }

    fn status_error(&self, code: u16, response: ureq::Response, what: &str) -> Error {
        let body = self
            .read_bounded(response, MAX_ERROR_BODY, "its error")
            .unwrap_or_default();
        let detail = String::from_utf8_lossy(&body);
        let detail = host::text::printable(detail.trim()).into_owned();
        match code {
            401 | 403 if self.basic.is_none() => Error::Unauthorized {
                registry: self.registry.clone(),
                detail: format!(
                    "{what}: {code} {detail}(no credentials for {} were found)",
                    self.registry
                ),
            },
            401 | 403 => Error::Unauthorized {
                registry: self.registry.clone(),
                detail: format!("{what}: {code} {detail}"),
            },
            404 => Error::NotFound {
                what: what.to_owned(),
            },
            _ => Error::Status {
                what: what.to_owned(),
                status: code,
                detail,
            },
        }
    }

    /// Reads a response body of at most `limit` bytes.
    fn read_bounded(
        &self,
        response: ureq::Response,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Unreachable {
                registry: self.registry.clone(),
                detail: format!("reading {what}: {e}"),
            })?;
        if bytes.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// The manifest or index at `reference` (a tag or a digest), at most [`MAX_MANIFEST`]
    /// bytes; a digest reference must match what arrived.
    pub fn manifest(&self, reference: &Reference) -> Result<Fetched, Error> {
        let url = self.url(
            &reference.repository,
            &format!("manifests/{}", reference.reference),
        );
        let what = format!("{reference}");
        let response = self.send(
            "GET",
            &url,
            Some(&format!("{INDEX}, {MANIFEST}")),
            None,
            &what,
        )?;
        let content_type = response.content_type().to_owned();
        let bytes = self.read_bounded(response, MAX_MANIFEST, &what)?;
        let digest = sha256_digest(&bytes);
        if reference.is_digest() && digest != reference.reference {
            return Err(Error::DigestMismatch {
                what,
                expected: reference.reference.clone(),
                found: digest,
            });
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
            .unwrap_or(content_type);
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Streams blob `digest` of `size` bytes into `out`, checking its size and digest as it
    /// arrives: nothing more than `size` bytes is read.
    pub fn blob_to(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        let url = self.url(repository, &format!("blobs/{digest}"));
        let what = format!("blob {digest}");
        let mut response = self.send_following("GET", &url, None, None, &what)?;
        // A registry may send blobs from elsewhere (object storage): followed by hand, to
        // HTTPS (or loopback to loopback), without the registry's credentials.
        for _ in 0..MAX_REDIRECTS {
            if !(300..400).contains(&response.status()) {
                break;
            }
            let location = response.header("Location").unwrap_or("").to_owned();
            let allowed = location.starts_with("https://")
                || (self.loopback && url_host(&location).is_some_and(is_loopback));
            if !allowed {
                return Err(Error::Status {
                    what,
                    status: response.status(),
                    detail: format!(
                        "a redirect to `{}`, which is not HTTPS, is not followed",
                        host::text::bounded(&location, 200)
                    ),
                });
            }
            response = match self.agent.get(&location).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(code, r)) => return Err(self.status_error(code, r, &what)),
                Err(ureq::Error::Transport(e)) => {
                    return Err(Error::Unreachable {
                        registry: url_host(&location).unwrap_or("?").to_owned(),
                        detail: e.to_string(),
                    })
                }
            };
        }
        if !(200..300).contains(&response.status()) {
            return Err(Error::Status {
                what,
                status: response.status(),
                detail: "too many redirects, or an answer without the blob".to_owned(),
            });
        }
        let registry = self.registry.clone();
        copy_checked(response.into_reader(), out, digest, size, &what, |e| {
            Error::Unreachable {
                registry: registry.clone(),
                detail: format!("reading {what}: {e}"),
            }
        })
    }

    /// Uploads `bytes` as a blob (once: a blob the repository has is not sent again); its
    /// digest.
    pub fn put_blob(&self, repository: &str, bytes: &[u8]) -> Result<String, Error> {
        let digest = sha256_digest(bytes);
        let what = format!("blob {digest}");
        let head = self.url(repository, &format!("blobs/{digest}"));
        match self.send("HEAD", &head, None, None, &what) {
            Ok(_) => return Ok(digest),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let start = self.url(repository, "blobs/uploads/");
        let response = self.send(
            "POST",
            &start,
            None,
            Some((&[], "application/octet-stream")),
            &what,
        )?;
        let upload_status = response.status();
        let location = response
            .header("Location")
            .ok_or_else(|| Error::Malformed {
                what: "upload session".to_owned(),
                detail: "no Location header".to_owned(),
            })?
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        // The upload (and the credentials with it) go nowhere but to the registry.
        if !self.same_origin(&location) {
            return Err(Error::Status {
                what,
                status: upload_status,
                detail: format!(
                    "it sent the upload to `{}`, another origin: refused",
                    host::text::bounded(&location, 200)
                ),
            });
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        self.send(
            "PUT",
            &put,
            None,
            Some((bytes, "application/octet-stream")),
            &what,
        )?;
        Ok(digest)
    }

    /// Uploads a manifest or an index at `reference` (a tag, or its own digest); its digest.
    pub fn put_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, Error> {
        let url = self.url(
            &reference.repository,
            &format!("manifests/{}", reference.reference),
        );
        self.send(
            "PUT",
            &url,
            None,
            Some((bytes, media_type)),
            &reference.to_string(),
        )?;
        Ok(sha256_digest(bytes))
    }
}

/// `http` on loopback or when `insecure`, else `https`.
fn scheme(reference: &Reference, insecure: bool) -> &'static str {
    if reference.is_loopback() || insecure {
        "http"
    } else {
        "https"
    }
}

/// Copies a blob of `size` bytes named `digest` from `reader` into `out`, hashing it as it
/// goes: at most `size` + 1 bytes are read, and more than `size`, fewer, or other bytes are a
/// [`Error::DigestMismatch`]. A read error is `read_error`'s.
pub(crate) fn copy_checked(
    reader: impl Read,
    out: &mut dyn Write,
    digest: &str,
    size: u64,
    what: &str,
    read_error: impl Fn(std::io::Error) -> Error,
) -> Result<(), Error> {
    let mut reader = reader.take(size + 1);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer).map_err(&read_error)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n]).map_err(|e| Error::Io {
            what: format!("writing {what}"),
            source: e,
        })?;
    }
    let hashed = format!("sha256:{}", hex(&hasher.finalize()));
    if total == size && hashed == digest {
        return Ok(());
    }
    let found = if total > size {
        format!("more than {size} bytes")
    } else {
        format!("{hashed} ({total} bytes)")
    };
    Err(Error::DigestMismatch {
        what: what.to_owned(),
        expected: format!("{digest} ({size} bytes)"),
        found,
    })
}

/// `sha256:HEX` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `user:password`, Base64, as HTTP Basic auth sends it.
pub(crate) fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_or_when_asked() {
        let at = |text: &str| Reference::parse(text).unwrap();
        assert_eq!(scheme(&at("oci://127.0.0.1:5000/x:1"), false), "http");
        assert_eq!(scheme(&at("oci://localhost/x:1"), false), "http");
        assert_eq!(scheme(&at("oci://ghcr.io/x:1"), false), "https");
        assert_eq!(scheme(&at("oci://10.0.0.7:5000/x:1"), false), "https");
        assert_eq!(scheme(&at("oci://10.0.0.7:5000/x:1"), true), "http");
    }
}

/// The `key=value` parameters of a `WWW-Authenticate` challenge (RFC 9110 §11.2: a value is a
/// token or a quoted string, in which a backslash escapes the next character), in order. A
/// quoted value may hold commas: distribution's push challenge asks for
/// `scope="repository:NAME:pull,push"`.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            return params;
        };
        let key = key.trim();
        let after = after.trim_start();
        let mut value = String::new();
        if let Some(quoted) = after.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value.push_str(after[..end].trim());
            rest = &after[end..];
        }
        params.push((key.to_owned(), value));
    }
}

#[cfg(test)]
mod challenge_tests {
    use super::challenge_params;

    #[test]
    fn a_quoted_value_keeps_its_commas_and_escapes() {
        let pairs = |text: &str| -> Vec<(String, String)> { challenge_params(text) };
        let push = r#"realm="https://auth.example/token",service="registry.example",scope="repository:team/hello:pull,push""#;
        assert_eq!(
            pairs(push),
            [
                ("realm".to_owned(), "https://auth.example/token".to_owned()),
                ("service".to_owned(), "registry.example".to_owned()),
                (
                    "scope".to_owned(),
                    "repository:team/hello:pull,push".to_owned()
                ),
            ]
        );
        assert_eq!(
            pairs(r#"realm=https://a/t, error="a \"quote\", and more""#),
            [
                ("realm".to_owned(), "https://a/t".to_owned()),
                ("error".to_owned(), r#"a "quote", and more"#.to_owned()),
            ]
        );
        // An unterminated quote ends the list with what it holds; garbage yields nothing.
        assert_eq!(
            pairs(r#"realm="https://a"#),
            [("realm".to_owned(), "https://a".to_owned())]
        );
        assert!(pairs("no parameters here").is_empty());
    }
}
