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
                "start the docker daemon (`systemctl start docker`, or `dockerd &`), use `--engine podman`, or build on this machine with `--engine none`"
            } else {
                "check `podman info` (install runc: `apt-get install runc`), use `--engine docker`, or build on this machine with `--engine none`"
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
