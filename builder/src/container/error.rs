//! What can go wrong making a builder image or building a plugin in it: each error says what
//! happened and what to do about it.

use std::path::PathBuf;

/// An error of the builder image or of a build through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The container engine's program is not installed (not on `PATH`).
    #[error("{engine} is not installed (no `{engine}` on PATH); install it (Debian: `apt-get install podman runc debootstrap`), choose another with `--engine podman|docker`, or build on this machine with `builder build --engine none`")]
    EngineMissing {
        /// `podman` or `docker`.
        engine: String,
    },
    /// The engine is installed but cannot run containers.
    #[error("{engine} is installed but does not work (`{engine} info` failed: {detail}); {fix}")]
    EngineBroken {
        /// `podman` or `docker`.
        engine: String,
        /// What it printed.
        detail: String,
        /// How to get it working.
        fix: String,
    },
    /// No engine was named and none works.
    #[error("no container engine works here (podman: {podman}; docker: {docker}); install podman (Debian: `apt-get install podman runc debootstrap`), start the docker daemon, or build on this machine with `builder build --engine none`")]
    NoEngine {
        /// Why podman cannot be used.
        podman: String,
        /// Why docker cannot be used.
        docker: String,
    },
    /// The base image the builder image starts from is not there.
    #[error("the base image `{image}` is not in {engine}'s local images; make it with `plugin-host builder base --engine {engine}` (debootstrap, nothing is pulled), or load the one your host project publishes (`{engine} load -i FILE`)")]
    NoBaseImage {
        /// The engine asked.
        engine: String,
        /// The base image's name.
        image: String,
    },
    /// The builder image for this host is not there.
    #[error("the builder image `{image}` is not in {engine}'s local images; make it with `plugin-host builder image --engine {engine}`, or load the one the host project publishes (`{engine} load -i FILE`)")]
    NoImage {
        /// The engine asked.
        engine: String,
        /// The image's tag.
        image: String,
    },
    /// No installed toolchain is the host's compiler.
    #[error("no installed Rust toolchain is the host's rustc {release} (commit {commit}); install it with `rustup toolchain install {release}`")]
    ToolchainNotFound {
        /// The host's rustc release.
        release: String,
        /// The host's rustc commit hash.
        commit: String,
    },
    /// A path crate the host was built with is gone or has changed since.
    #[error("the host's path crate {name} is not at {} as its provenance records, or its content changed since the host was built ({detail}); build the image from the host's own checkout, unchanged since the host was built (or rebuild the host)", path.display())]
    HostCrateChanged {
        /// The crate.
        name: String,
        /// Where the host's provenance says it is.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// The host's `Cargo.lock` could not be found.
    #[error("cannot find the host's Cargo.lock above {}; pass it with `--lockfile PATH`", from.display())]
    NoLockfile {
        /// Where the search started.
        from: PathBuf,
    },
    /// The plugin crate's manifest could not be read by cargo.
    #[error("{} is not a plugin crate cargo can read: {detail}", dir.display())]
    NotACrate {
        /// The crate directory.
        dir: PathBuf,
        /// What cargo said.
        detail: String,
    },
    /// The plugin crate does not build a `cdylib`.
    #[error("{} builds no shared library: its [lib] has no `cdylib` crate type; add `[lib] crate-type = [\"cdylib\", \"rlib\"]` to its Cargo.toml", dir.display())]
    NotACdylib {
        /// The crate directory.
        dir: PathBuf,
    },
    /// The plugin crate does not record its provenance.
    #[error("{} does not record its provenance ({missing}); add `[build-dependencies] plugin-api = {{ …, default-features = false, features = [\"build\"] }}` and a build.rs calling `plugin_api::build::record()`", dir.display())]
    NoRecorder {
        /// The crate directory.
        dir: PathBuf,
        /// What is missing.
        missing: String,
    },
    /// The plugin crate is a member of a larger workspace.
    #[error("{} is a member of the workspace at {}; the builder builds one crate on its own: give it an empty `[workspace]` table (and a copy of the host's Cargo.lock)", dir.display(), root.display())]
    NotStandalone {
        /// The crate directory.
        dir: PathBuf,
        /// Its workspace root.
        root: PathBuf,
    },
    /// A path dependency of the plugin cannot be reached inside the image.
    #[error("{} depends on `{path}`, a path the builder image does not have (it holds only the host's path crates: {known}); depend on the host's copy of each path crate, or on a crates.io release", dir.display())]
    UnreachablePath {
        /// The crate directory.
        dir: PathBuf,
        /// The path as the manifest names it.
        path: String,
        /// The host's path crates.
        known: String,
    },
    /// The build itself failed.
    #[error("building {name} {where_} failed:\n{log}\n{advice}")]
    BuildFailed {
        /// The plugin.
        name: String,
        /// `in the image TAG` or `on this machine`.
        where_: String,
        /// The end of the build's output.
        log: String,
        /// What to do: the exact `cargo update` commands when the crate's lock names crates
        /// the image does not hold.
        advice: String,
    },
    /// The built file was refused by the host's strict check.
    #[error("the host refused the build of {name} under --policy strict:\n{report}")]
    Refused {
        /// The plugin.
        name: String,
        /// What `plugin-host check` printed.
        report: String,
    },
    /// The built file needs a newer C library than the host does.
    #[error("the build of {name} needs glibc {needs}, newer than the host's floor glibc {floor}: it would not load where the host runs; build it in the builder image (its C library is the host's), or on a machine with glibc {floor} or older")]
    GlibcTooNew {
        /// The plugin.
        name: String,
        /// Highest `GLIBC_` version the file needs.
        needs: String,
        /// Highest `GLIBC_` version the host needs.
        floor: String,
    },
    /// The build left something other than a regular file where its library should be.
    #[error("{} is {kind}, not a regular file: the build left it where the library should be, and it is not copied (a build's output is copied only as a regular file, never through a link); nothing was written to the output directory", path.display())]
    NotARegularFile {
        /// The file the build left.
        path: PathBuf,
        /// What it is (`a symbolic link`, `a FIFO`, …).
        kind: &'static str,
    },
    /// A program the builder runs failed.
    #[error("`{command}` failed ({status}):\n{detail}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        detail: String,
    },
    /// A program the builder runs could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A crate or toolchain tree could not be copied (a FIFO, a link out of it, …).
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ContainerError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ContainerError {
        let path = path.into();
        move |source| ContainerError::Io { path, source }
    }
}

/// The last `lines` lines of a program's output, for an error message.
pub(crate) fn tail(text: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.trim_end().lines().collect();
    // A crate's build wrote these: shown as text, never as terminal control sequences, and
    // each line within bounds.
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| host::text::shown(line, MAX_LINE))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The most characters of one quoted line of a build's output.
const MAX_LINE: usize = 2048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builds_output_is_quoted_as_text_its_last_lines_each_bounded() {
        let log = format!(
            "early\n\x1b]52;c;Y2xpcA==\x07copied\n\x1b[2Kdist/libx.so sha256:forged\n{}\n\nlast\n",
            "z".repeat(10_000)
        );
        let quoted = tail(log.as_bytes(), 4);
        let lines: Vec<&str> = quoted.lines().collect();
        assert_eq!(lines.len(), 4, "{quoted}");
        assert!(
            !quoted.contains('\x1b') && !quoted.contains('\x07'),
            "{quoted:?}"
        );
        assert_eq!(lines[0], "\\u{1b}[2Kdist/libx.so sha256:forged");
        assert!(lines[1].chars().count() <= MAX_LINE, "{}", lines[1].len());
        assert_eq!(lines[3], "last");
    }
}
