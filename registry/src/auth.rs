//! Registry credentials from the usual files: `$REGISTRY_AUTH_FILE` (podman, skopeo), else
//! podman's `$XDG_RUNTIME_DIR/containers/auth.json` when it exists, else
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. Only inline credentials
//! (`auth`, or `username` and `password`) are read; credential helpers (`credsStore`,
//! `credHelpers`) are not run.

use std::path::PathBuf;

use base64::Engine as _;
use host::small_file::{Links, SmallFile};

use crate::Error;

const AUTH_FILE: SmallFile = SmallFile {
    what: "registry credentials file",
    limit: 1 << 20,
    links: Links::Follow,
};

/// The file credentials are read from, if any is named or exists.
fn auth_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        let podman = PathBuf::from(dir).join("containers/auth.json");
        if podman.is_file() {
            return Some(podman);
        }
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"))?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// The Basic credentials (`user:password` in Base64) for `registry`, when the credentials file
/// has some; a file that exists but cannot be read or parsed is an error naming it.
pub(crate) fn basic_for(registry: &str) -> Result<Option<String>, Error> {
    let Some(path) = auth_file() else {
        return Ok(None);
    };
    let text = match AUTH_FILE.read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(Error::Credentials {
                detail: e.to_string(),
            })
        }
    };
    parse(&text, registry).map_err(|detail| Error::Credentials {
        detail: format!("{}: {detail}", path.display()),
    })
}

/// The credentials for `registry` in a Docker `config.json` text.
fn parse(text: &str, registry: &str) -> Result<Option<String>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(auths) = value.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    // Keys are written as `host`, `host:port` or `https://host/v1/`.
    let entry = auths.iter().find_map(|(key, entry)| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        (key == registry).then_some(entry)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|e| format!("`auths.{registry}.auth` is not Base64: {e}"))?;
        if !decoded.contains(&b':') {
            return Err(format!("`auths.{registry}.auth` is not `user:password`"));
        }
        return Ok(Some(auth.to_owned()));
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(user), Some(password)) => Ok(Some(crate::client::basic(user, password))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_by_registry_in_each_form() {
        let auth = crate::client::basic("ada", "secret");
        let text = format!(
            r#"{{"auths": {{"https://ghcr.io/v1/": {{"auth": "{auth}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw"}}}}}}"#
        );
        assert_eq!(parse(&text, "ghcr.io").unwrap(), Some(auth));
        assert_eq!(
            parse(&text, "127.0.0.1:5000").unwrap(),
            Some(crate::client::basic("bob", "pw"))
        );
        assert_eq!(parse(&text, "quay.io").unwrap(), None);
        assert_eq!(parse("{}", "quay.io").unwrap(), None);
        let bad = r#"{"auths": {"r": {"auth": "!!!"}}}"#;
        assert!(parse(bad, "r").unwrap_err().contains("not Base64"));
        assert!(parse("not json", "r").is_err());
    }
}
