//! The container engine: podman or docker, found and probed, with the flags this kind of
//! machine needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::error::{tail, ContainerError};

/// Which engine to use, as the user asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineChoice {
    /// podman if it works, else docker.
    Auto,
    /// podman.
    Podman,
    /// docker.
    Docker,
    /// No engine: build with the pinned toolchain on this machine.
    None,
}

impl EngineChoice {
    /// Parses `auto`, `podman`, `docker` or `none`.
    pub fn parse(text: &str) -> Option<EngineChoice> {
        Some(match text {
            "auto" => EngineChoice::Auto,
            "podman" => EngineChoice::Podman,
            "docker" => EngineChoice::Docker,
            "none" => EngineChoice::None,
            _ => return None,
        })
    }
}

/// A container engine that answered `info`.
#[derive(Debug, Clone)]
pub struct Engine {
    name: &'static str,
    program: PathBuf,
    runc: bool,
}

impl Engine {
    /// The engine asked for, probed; `Ok(None)` for [`EngineChoice::None`].
    pub fn find(choice: EngineChoice) -> Result<Option<Engine>, ContainerError> {
        match choice {
            EngineChoice::None => Ok(None),
            EngineChoice::Podman => Engine::probe("podman").map(Some),
            EngineChoice::Docker => Engine::probe("docker").map(Some),
            EngineChoice::Auto => match Engine::probe("podman") {
                Ok(engine) => Ok(Some(engine)),
                Err(podman) => match Engine::probe("docker") {
                    Ok(engine) => Ok(Some(engine)),
                    Err(docker) => Err(ContainerError::NoEngine {
                        podman: podman.to_string(),
                        docker: docker.to_string(),
                    }),
                },
            },
        }
    }

    fn probe(name: &'static str) -> Result<Engine, ContainerError> {
        let program = which(name).ok_or_else(|| ContainerError::EngineMissing {
            engine: name.to_owned(),
        })?;
        // crun, podman's usual runtime, cannot set up containers on some cgroup setups
        // (this machine's among them); runc can, and is the one docker uses.
        let engine = Engine {
            name,
            program,
            runc: name == "podman" && which("runc").is_some(),
        };
        let out = engine.output(engine.command().arg("info"))?;
        if !out.status.success() {
            let fix = if name == "docker" {
                "start the docker daemon (`systemctl start docker`, or `dockerd &`), use `--engine podman`, or build on this machine with `builder build --engine none`"
            } else {
                "check `podman info` (install runc: `apt-get install runc`), use `--engine docker`, or build on this machine with `builder build --engine none`"
            };
            return Err(ContainerError::EngineBroken {
                engine: name.to_owned(),
                detail: tail(&out.stderr, 3),
                fix: fix.to_owned(),
            });
        }
        Ok(engine)
    }

    /// `podman` or `docker`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The engine's program with its global options.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if self.runc {
            cmd.args(["--runtime", "runc"]);
        }
        cmd
    }

    /// Options every `build` and `run` gets: limits no higher than this process's own, and
    /// at most 1024 (an engine's default limits may be higher than a container may raise
    /// them to on a restricted machine; 1024 is ample for a build).
    pub(crate) fn limits(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (name, key) in [("nofile", "Max open files"), ("nproc", "Max processes")] {
            if let Some(soft) = soft_limit(key).map(|n| n.min(1024)) {
                args.push("--ulimit".to_owned());
                args.push(format!("{name}={soft}:{soft}"));
            }
        }
        args
    }

    /// Runs a prepared command, capturing its output.
    pub(crate) fn output(&self, cmd: &mut Command) -> Result<Output, ContainerError> {
        cmd.output().map_err(|source| ContainerError::Spawn {
            program: self.program.display().to_string(),
            source,
        })
    }

    /// [`Engine::output`] of a command that runs a crate's own code (a build): at most
    /// [`MAX_CAPTURED`] bytes of each of its outputs are kept, the last ones.
    pub(crate) fn output_bounded(&self, cmd: &mut Command) -> Result<Output, ContainerError> {
        bounded_output(cmd).map_err(|source| ContainerError::Spawn {
            program: self.program.display().to_string(),
            source,
        })
    }

    /// Runs an engine command that must succeed.
    pub(crate) fn run(&self, args: &[String]) -> Result<Output, ContainerError> {
        let out = self.output(self.command().args(args))?;
        if !out.status.success() {
            return Err(ContainerError::CommandFailed {
                command: format!("{} {}", self.name, args.join(" ")),
                status: out.status.to_string(),
                detail: tail(&[out.stdout.as_slice(), &out.stderr].concat(), 30),
            });
        }
        Ok(out)
    }

    /// The value of label `key` on local image `image`; `None` when there is no such image.
    pub fn image_label(&self, image: &str, key: &str) -> Result<Option<String>, ContainerError> {
        let format = format!("{{{{index .Config.Labels \"{key}\"}}}}");
        let out = self.output(
            self.command()
                .args(["image", "inspect", "--format", &format, image]),
        )?;
        if !out.status.success() {
            return Ok(None);
        }
        let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(Some(value))
    }

    /// Whether local image `image` exists.
    pub fn has_image(&self, image: &str) -> Result<bool, ContainerError> {
        let out = self.output(self.command().args(["image", "inspect", image]))?;
        Ok(out.status.success())
    }

    /// Options that keep `build` from reaching any registry.
    pub(crate) fn no_pull(&self) -> &'static [&'static str] {
        if self.name == "podman" {
            &["--pull=never"]
        } else {
            // docker builds from a local image without pulling it when it is there.
            &[]
        }
    }
}

/// The program `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// This process's soft limit named `key` in /proc/self/limits.
fn soft_limit(key: &str) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices() {
        assert_eq!(EngineChoice::parse("none"), Some(EngineChoice::None));
        assert_eq!(EngineChoice::parse("podman"), Some(EngineChoice::Podman));
        assert_eq!(EngineChoice::parse("lxc"), None);
    }

    #[test]
    fn reads_this_machines_limits() {
        assert!(soft_limit("Max open files").is_some_and(|n| n > 0));
    }
}

/// The most bytes of a build's standard output, and of its standard error, kept: what is
/// quoted of them is their last lines.
pub(crate) const MAX_CAPTURED: usize = 1 << 20;

/// Runs `cmd` as [`Command::output`] does (no input, both outputs read to their end), but
/// keeping only the last [`MAX_CAPTURED`] bytes of each: a build that prints without end
/// cannot fill this process's memory.
pub(crate) fn bounded_output(cmd: &mut Command) -> std::io::Result<Output> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let err_reader = std::thread::spawn(move || stderr.map(last_bytes).unwrap_or_default());
    let out = stdout.map(last_bytes).unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    Ok(Output {
        status: child.wait()?,
        stdout: out,
        stderr: err,
    })
}

/// All of `from`, but at most its last [`MAX_CAPTURED`] bytes (cut at a line's start when
/// one is near).
fn last_bytes(mut from: impl std::io::Read) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut cut = false;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => kept.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if kept.len() > 2 * MAX_CAPTURED {
            kept.drain(..kept.len() - MAX_CAPTURED);
            cut = true;
        }
    }
    if kept.len() > MAX_CAPTURED {
        kept.drain(..kept.len() - MAX_CAPTURED);
        cut = true;
    }
    if cut {
        if let Some(line) = kept.iter().position(|&b| b == b'\n') {
            kept.drain(..=line);
        }
    }
    kept
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn a_command_printing_without_end_keeps_only_its_last_output() {
        // 40 MiB on each output, the last line told apart.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "head -c 41943040 /dev/zero | tr '\\0' 'x'; echo; echo the-end; \
             head -c 41943040 /dev/zero | tr '\\0' 'y' >&2; echo >&2; echo err-end >&2; exit 3",
        ]);
        let out = bounded_output(&mut cmd).unwrap();
        assert_eq!(out.status.code(), Some(3));
        for (bytes, end) in [(&out.stdout, "the-end\n"), (&out.stderr, "err-end\n")] {
            assert!(bytes.len() <= MAX_CAPTURED, "{}", bytes.len());
            assert!(bytes.ends_with(end.as_bytes()));
        }
        // A short output is kept whole.
        let out = bounded_output(Command::new("sh").args(["-c", "echo a; echo b >&2"])).unwrap();
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"a\n"[..], &b"b\n"[..])
        );
    }
}
