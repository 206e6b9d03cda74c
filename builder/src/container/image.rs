//! The base image (made locally with debootstrap: nothing is pulled) and the builder image
//! (built from a context, reused while its inputs are unchanged).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use host::HostIdentity;

use super::context::{self, ContextOptions, CONTEXT_LABEL};
use super::engine::{which, Engine};
use super::error::{tail, ContainerError};

/// What making an image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Made {
    /// It was built now.
    Built,
    /// An image of the same name (and, for the builder image, the same inputs) was there.
    Reused,
}

/// How to make the base image.
#[derive(Debug, Clone)]
pub struct BaseOptions {
    /// The image's name, e.g. [`context::DEFAULT_BASE`].
    pub image: String,
    /// The Debian suite (`bookworm`): its glibc is the C library plugins link against.
    pub suite: String,
    /// The Debian mirror; this machine's apt source when `None`.
    pub mirror: Option<String>,
}

/// Makes the base image with `debootstrap --variant=minbase --include=gcc,libc6-dev` and
/// imports it, unless an image of that name is there already.
pub fn make_base(engine: &Engine, options: &BaseOptions) -> Result<Made, ContainerError> {
    if engine.has_image(&options.image)? {
        return Ok(Made::Reused);
    }
    let debootstrap = which("debootstrap").or_else(|| {
        ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.is_file())
    });
    let Some(debootstrap) = debootstrap else {
        return Err(ContainerError::CommandFailed {
            command: "debootstrap".into(),
            status: "not installed".into(),
            detail: format!("install it (`apt-get install debootstrap`), or load a base image named `{}` made elsewhere", options.image),
        });
    };
    let mirror = options.mirror.clone().unwrap_or_else(apt_mirror);
    let root = tempfile::tempdir().map_err(ContainerError::io(std::env::temp_dir()))?;
    let out = Command::new(&debootstrap)
        .args(["--variant=minbase", "--include=gcc,libc6-dev"])
        .arg(&options.suite)
        .arg(root.path())
        .arg(&mirror)
        .output()
        .map_err(|source| ContainerError::Spawn {
            program: debootstrap.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ContainerError::CommandFailed {
            command: format!("debootstrap {} {mirror} (needs root)", options.suite),
            status: out.status.to_string(),
            detail: tail(&[out.stdout.as_slice(), &out.stderr].concat(), 20),
        });
    }
    // apt's caches are not part of a build environment.
    let _ = std::fs::remove_dir_all(root.path().join("var/cache/apt/archives"));
    import(engine, root.path(), &options.image)?;
    Ok(Made::Built)
}

/// `tar -C DIR -c . | ENGINE import - IMAGE`.
fn import(engine: &Engine, dir: &Path, image: &str) -> Result<(), ContainerError> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| ContainerError::Spawn {
            program: "tar".into(),
            source,
        })?;
    let stdout = tar.stdout.take().expect("piped");
    let out = engine.output(
        engine
            .command()
            .args(["import", "-", image])
            .stdin(Stdio::from(stdout)),
    )?;
    let tar_status = tar.wait().map_err(ContainerError::io(dir))?;
    if !out.status.success() || !tar_status.success() {
        return Err(ContainerError::CommandFailed {
            command: format!(
                "tar -C {} -c . | {} import - {image}",
                dir.display(),
                engine.name()
            ),
            status: out.status.to_string(),
            detail: tail(&out.stderr, 10),
        });
    }
    Ok(())
}

/// The first Debian mirror in this machine's apt sources (not the security archive), else
/// `http://deb.debian.org/debian`.
pub fn apt_mirror() -> String {
    let mut texts = Vec::new();
    for file in [
        "/etc/apt/sources.list",
        "/etc/apt/sources.list.d/debian.sources",
    ] {
        texts.extend(std::fs::read_to_string(file));
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with("http") && w.contains("debian") && !w.contains("security"))
        .map(str::to_owned)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// Builds the builder image for `host`, tagged [`context::image_tag`], unless an image of
/// that tag labelled with the same [`context::context_key`] is there. The context is written
/// to `context_dir` when given (kept), else to a temporary directory.
pub fn make_image(
    engine: &Engine,
    host: &HostIdentity,
    options: &ContextOptions,
    context_dir: Option<&Path>,
) -> Result<Made, ContainerError> {
    let tag = context::image_tag(host);
    let key = context::context_key(host, options)?;
    if engine.image_label(&tag, CONTEXT_LABEL)?.as_deref() == Some(key.as_str()) {
        return Ok(Made::Reused);
    }
    if !engine.has_image(&options.base_image)? {
        return Err(ContainerError::NoBaseImage {
            engine: engine.name().to_owned(),
            image: options.base_image.clone(),
        });
    }
    let scratch;
    let dir = match context_dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            scratch = tempfile::tempdir().map_err(ContainerError::io(std::env::temp_dir()))?;
            scratch.path().join("context")
        }
    };
    let written = context::write_context(host, options, &dir)?;
    let mut args: Vec<String> = vec!["build".into()];
    args.extend(engine.no_pull().iter().map(|s| s.to_string()));
    args.extend(engine.limits());
    args.extend([
        "--label".into(),
        format!("{CONTEXT_LABEL}={}", written.key),
        "-t".into(),
        tag,
        "-f".into(),
        dir.join("Containerfile").display().to_string(),
        dir.display().to_string(),
    ]);
    engine.run(&args)?;
    Ok(Made::Built)
}
