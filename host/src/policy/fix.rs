//! The fixes messages suggest: each one, applied as written, makes the next build of the
//! plugin match the host (the integration tests apply them and rebuild).

use plugin_api::provenance::{Dependency, Provenance, Rustc, SourceKind};
use semver::Version;

/// Whether two versions are in the same semver-compatible series (`1.x`, `0.11.x`), so a
/// requirement accepting one accepts the other.
pub(super) fn same_series(a: &str, b: &str) -> bool {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(a), Ok(b)) => one_series(&a, &b),
        _ => false,
    }
}

/// Whether `a` and `b` are of one semver series (what [`series`] writes), told without
/// writing it.
pub(super) fn one_series(a: &Version, b: &Version) -> bool {
    a.major == b.major && (a.major > 0 || a.minor == b.minor)
}

/// The semver-compatible series of a version: `1` for `1.4.2`, `0.11` for `0.11.3`.
pub(super) fn series(v: &Version) -> String {
    if v.major > 0 {
        v.major.to_string()
    } else {
        format!("0.{}", v.minor)
    }
}

/// The `Cargo.toml` line that depends on exactly the host's copy of a crate: its path, its git
/// commit, or its exact crates.io version.
pub fn dependency_line(host: &Dependency) -> String {
    let name = host.name();
    match host.source_kind() {
        SourceKind::Path(_) | SourceKind::Git { .. } => {
            format!("{name} = {{ {} }}", dependency_source(host))
        }
        // crates.io, or another registry (whose name in the plugin's Cargo config is not
        // recorded): the exact version.
        _ => format!("{name} = \"={}\"", host.version()),
    }
}

/// The fields of an inline dependency table that select exactly the host's copy of a crate:
/// `path = "…"`, `git = "…", rev = "…"`, or `version = "=…"` (crates.io, or another registry
/// whose name in the plugin's Cargo config is not recorded).
pub fn dependency_source(host: &Dependency) -> String {
    match host.source_kind() {
        SourceKind::Path(path) => format!("path = {}", toml_string(path)),
        SourceKind::Git { repository, commit } => {
            format!("git = {}, rev = \"{commit}\"", toml_string(repository))
        }
        _ => format!("version = \"={}\"", host.version()),
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// How to build against the host's `plugin-api`: the dependency line (the host's own, as its
/// record lists it; an exact version when it lists none) for both dependency tables.
pub(super) fn plugin_api(host: Option<&Dependency>, version: &Version) -> String {
    let line = host.map(dependency_line).unwrap_or_else(|| {
        dependency_line(&Dependency::new("plugin-api", &version.to_string(), None))
    });
    format!(
        "rebuild the plugin against the host's plugin-api: `{line}` in [dependencies], and the \
         same source with `default-features = false, features = [\"build\"]` in \
         [build-dependencies]"
    )
}

/// How to rebuild with the host's compiler.
pub(super) fn rustc(host: &Provenance) -> String {
    let r = &host.rustc;
    let Some((toolchain, guessed)) = toolchain_name(r) else {
        return format!(
            "rebuild the plugin with a rustc built from commit {} (the host's compiler is a \
             {} build, which has no rustup toolchain name)",
            r.commit_hash, r.channel
        );
    };
    let profile = match host.profile.name.as_str() {
        "debug" => String::new(),
        "release" => " --release".to_owned(),
        other => format!(" --profile {other}"),
    };
    // One command that wins over whatever chose the plugin's compiler (a `+toolchain`, a
    // rust-toolchain.toml, `RUSTUP_TOOLCHAIN`): telling a user who typed `cargo +nightly` to
    // "pin" a toolchain would tell them to do what they did.
    let guess = if guessed {
        format!(
            " (name guessed: `rustc +{toolchain} -vV` must show commit-hash {})",
            r.commit_hash.get(..9).unwrap_or(&r.commit_hash)
        )
    } else {
        String::new()
    };
    format!(
        "rebuild it with exactly the host's compiler: `cargo +{toolchain} build{profile}`{guess}"
    )
}

/// The rustup toolchain name of a compiler, and whether it is a guess: the release for
/// stable; for nightly and beta the channel and the day after the commit date (what the
/// nightly is usually named after). `None` for a dev build or an unknown date.
pub fn toolchain_name(r: &Rustc) -> Option<(String, bool)> {
    match r.channel.as_str() {
        "stable" => Some((r.release.clone(), false)),
        channel @ ("nightly" | "beta") => {
            let date = next_day(&r.commit_date)?;
            Some((format!("{channel}-{date}"), true))
        }
        _ => None,
    }
}

/// `YYYY-MM-DD` plus one day.
fn next_day(date: &str) -> Option<String> {
    let mut parts = date.splitn(3, '-').map(str::parse::<u32>);
    let (mut y, mut m, mut d) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days {
        return None;
    }
    d += 1;
    if d > days {
        d = 1;
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
    }
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_day_rolls_over() {
        assert_eq!(next_day("2026-05-19").as_deref(), Some("2026-05-20"));
        assert_eq!(next_day("2026-04-30").as_deref(), Some("2026-05-01"));
        assert_eq!(next_day("2024-02-28").as_deref(), Some("2024-02-29"));
        assert_eq!(next_day("2025-02-28").as_deref(), Some("2025-03-01"));
        assert_eq!(next_day("2025-12-31").as_deref(), Some("2026-01-01"));
        assert_eq!(next_day("unknown"), None);
        assert_eq!(next_day("2025-02-30"), None);
    }

    #[test]
    fn dependency_lines_name_the_hosts_source() {
        let line = |spec: &str| dependency_line(&Dependency::parse(spec).unwrap());
        assert_eq!(
            line("plugin-api 0.1.0 (/w/plugin-api)"),
            "plugin-api = { path = \"/w/plugin-api\" }"
        );
        assert_eq!(
            line("kinds 0.2.0 (https://x.test/kinds?rev=abc#abc123def)"),
            "kinds = { git = \"https://x.test/kinds\", rev = \"abc123def\" }"
        );
        assert_eq!(line("plugin-api 0.1.0"), "plugin-api = \"=0.1.0\"");
    }
}
