//! The in-process placement: the verified bytes mapped into this process, the plugin's
//! `register` run here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Placed, Refusal, Request, Verified};
use crate::error::PluginError;
use crate::load::{registered, Registering};
use crate::map::{LoadFrom, Mapper};
use crate::reason::ReasonCode;

/// How long plugin code may run while loading or registering before the host warns.
pub const DEFAULT_HANG_WARNING: Duration = Duration::from_secs(5);

/// The copies made ahead for one scan (see [`InProcess::copy_ahead`]).
pub(crate) struct ScanAhead {
    #[cfg(target_os = "linux")]
    ahead: Option<crate::ahead::CopyAhead>,
    #[cfg(not(target_os = "linux"))]
    ahead: (),
}

impl ScanAhead {
    /// The scan is at its file `index`.
    pub(crate) fn reached(&self, index: usize) {
        #[cfg(target_os = "linux")]
        if let Some(ahead) = &self.ahead {
            ahead.reached(index);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (index, self.ahead);
    }

    /// Gives `verified`, the scan's file `index` at `path`, the copy made of it ahead, if
    /// that copy holds what was verified.
    pub(crate) fn attach(&self, index: usize, path: &Path, verified: &mut Verified) {
        #[cfg(target_os = "linux")]
        if let Some(ahead) = &self.ahead {
            ahead.attach(index, path, verified);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (index, path, verified, self.ahead);
    }
}

/// Maps verified plugins into this process and registers their own capabilities.
pub struct InProcess {
    mapper: Mapper,
    hang_warning: Option<Duration>,
    check_layouts: bool,
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess {
            mapper: Mapper::default(),
            hang_warning: Some(DEFAULT_HANG_WARNING),
            check_layouts: false,
        }
    }
}

impl InProcess {
    pub(crate) fn set_load_from(&mut self, load_from: LoadFrom) {
        self.mapper.load_from = load_from;
    }

    pub(crate) fn load_from(&self) -> LoadFrom {
        self.mapper.load_from
    }

    pub(crate) fn set_copy_store(&mut self, dir: PathBuf) {
        self.mapper.store_dir = Some(dir);
    }

    pub(crate) fn set_hang_warning(&mut self, after: Option<Duration>) {
        self.hang_warning = after;
    }

    pub(crate) fn hang_warning(&self) -> Option<Duration> {
        self.hang_warning
    }

    pub(crate) fn set_layout_check_at_load(&mut self, eager: bool) {
        self.check_layouts = eager;
    }

    /// Starts copying a scan's files ahead when loading them from sealed copies (see
    /// `ahead`; nothing elsewhere than on Linux).
    pub(crate) fn copy_ahead(&self, paths: &[PathBuf], loading: bool) -> ScanAhead {
        #[cfg(target_os = "linux")]
        let ahead = match self.load_from() {
            LoadFrom::SealedCopy if loading => crate::ahead::CopyAhead::start(paths, None),
            LoadFrom::KeptCopy if loading => {
                crate::ahead::CopyAhead::start(paths, Some(self.mapper.store_dir()))
            }
            _ => None,
        };
        #[cfg(not(target_os = "linux"))]
        let ahead = {
            let _ = (paths, loading);
        };
        ScanAhead { ahead }
    }

    /// Maps the verified bytes, initialises the root module and runs `register`; with the
    /// layout check at load, every capability's layout is checked too.
    pub(crate) fn place(
        &self,
        request: &Request<'_>,
        verified: Verified,
    ) -> Result<Placed, Refusal> {
        let (path, name) = (request.path, request.name);
        tracing::debug!(
            "loading {}",
            crate::text::printable(&path.display().to_string())
        );
        let watch = crate::watch::enter(
            format!("loading plugin `{name}` from {}", path.display()),
            self.hang_warning,
        );
        let mapped = self.mapper.map(&verified, path, request.resolved)?;
        let root = self
            .mapper
            .init_root(&mapped, path, &verified.differences)?;
        tracing::debug!("registering {name}");
        watch.step(format!("registering plugin `{name}` ({})", path.display()));
        let registering = Registering {
            path,
            name,
            provenance: &verified.provenance,
            host: request.host,
            config: request.config,
            kinds: request.kinds,
        };
        let exports = registered(root.register(), &registering)?;
        drop(watch);
        if self.check_layouts {
            if let Err((kind, capability, detail)) = request.kinds.check_layouts(&exports) {
                return Err(PluginError::Load {
                    path: path.to_owned(),
                    reason: ReasonCode::LayoutMismatch,
                    detail: format!(
                        "its {kind} `{capability}` does not have the layout this host \
                         expects, so it could never be used: {detail}; {}",
                        crate::registry::layout_fix(&verified.differences)
                    ),
                }
                .into());
            }
        }
        Ok(Placed {
            exports,
            running: None,
        })
    }
}
