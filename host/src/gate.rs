//! The gate: whether one file may run, decided before any of its code runs — open, read its
//! provenance, apply the per-plugin settings, the trust step (lock, signatures), and the
//! judge (the policy against the host's identity).

use std::collections::HashMap;
use std::fs::Metadata;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::error::PluginError;
use crate::identity::HostIdentity;
use crate::map::LoadFrom;
use crate::place::{Placement, Verified};
use crate::policy::{judge_in_place, CheckKind, Policy, PreparedHost};
use crate::read::{decode_in_place, open_sized, read_blob, ReadError};
use crate::reason::ReasonCode;
use crate::report::{PluginReport, Status};
use crate::settings::PluginSettings;
use crate::trust::Trust;

/// What the host knows to decide: its identity, its policy, the settings by plugin name and
/// the trust settings.
pub(crate) struct Gate {
    pub(crate) identity: HostIdentity,
    host_deps: PreparedHost,
    pub(crate) policy: Policy,
    /// Settings by plugin name.
    pub(crate) plugins: HashMap<String, PluginSettings>,
    /// Files configured for a plugin, in the order given, with the name each must carry.
    files: Vec<(PathBuf, String)>,
    pub(crate) trust: Trust,
}

/// The outcome of the first path to a file in a scan, for the other paths to it.
pub(crate) struct Seen {
    pub(crate) first: PathBuf,
    pub(crate) status: Status,
    pub(crate) reason: Option<ReasonCode>,
    pub(crate) message: Option<String>,
}

/// What else one verification depends on: the host's parts beyond the gate.
pub(crate) struct Context<'a> {
    /// What the loader will map (the trust step seals a copy when it must).
    pub load_from: LoadFrom,
    /// The placement out of process, if any: it may rescue a toolchain refusal.
    pub placement: Option<&'a dyn Placement>,
    /// The plugin that already holds a name: its path and whether it is a builtin.
    pub taken: &'a dyn Fn(&str) -> Option<(PathBuf, bool)>,
    /// The outcomes of other paths to the same files, in a scan.
    pub seen: Option<&'a HashMap<(u64, u64), Seen>>,
    /// Whether the caller places a verified file: when not, the report is all it needs, and
    /// no [`Verified`] (nor an owned copy of the record) is made.
    pub place: bool,
}

impl Gate {
    pub(crate) fn new(
        identity: HostIdentity,
        policy: Policy,
        plugins: HashMap<String, PluginSettings>,
        files: Vec<(PathBuf, String)>,
        trust: Trust,
    ) -> Self {
        Gate {
            host_deps: PreparedHost::new(&identity.provenance),
            identity,
            policy,
            plugins,
            files,
            trust,
        }
    }

    /// The policy the plugin named `name` is judged under.
    pub(crate) fn policy_for(&self, name: &str) -> &Policy {
        self.plugins
            .get(name)
            .and_then(|s| s.policy.as_ref())
            .unwrap_or(&self.policy)
    }

    /// The configuration string of the plugin named `name` (empty when none was set).
    pub(crate) fn config_for(&self, name: &str) -> &str {
        self.plugins
            .get(name)
            .and_then(|s| s.config.as_deref())
            .unwrap_or("")
    }

    /// Whether the plugin named `name` is disabled.
    pub(crate) fn is_disabled(&self, name: &str) -> bool {
        self.plugins.get(name).is_some_and(|s| s.disabled)
    }

    /// The name the file at `path` must carry, when it was configured for a plugin.
    pub(crate) fn configured_name(&self, path: &Path) -> Option<&str> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, n)| n.as_str())
    }

    /// The configured files, then the `found` ones (a configured file found again in a
    /// directory is listed once, first).
    pub(crate) fn candidates(&self, found: Vec<PathBuf>) -> Vec<PathBuf> {
        if self.files.is_empty() {
            return found;
        }
        let mut all: Vec<PathBuf> = self.files.iter().map(|(p, _)| p.clone()).collect();
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        for path in found {
            if !all.iter().any(|c| same(c, &path)) {
                all.push(path);
            }
        }
        all
    }

    /// Opens, reads, runs the trust step on and judges one file: its report, and the file
    /// when it may run.
    ///
    /// Every byte read here is hostile input. Should reading or judging it set off a panic
    /// (a bug in this crate that the file found), the file is refused with
    /// [`ReasonCode::VerificationPanicked`] and the caller goes on to the next one: a scan
    /// never unwinds into the host's caller because of one file. (A host built with
    /// `panic = "abort"` aborts instead; nothing can be caught there.)
    pub(crate) fn verify(&self, path: &Path, cx: &Context<'_>) -> (PluginReport, Option<Verified>) {
        // Unwind safety: a panic leaves nothing half-changed that is used afterwards. The
        // gate is only read here, and whatever this verification made (the report, an open
        // file, a sealed copy) is dropped during the unwind.
        match catch_unwind(AssertUnwindSafe(|| self.verify_unguarded(path, cx))) {
            Ok(outcome) => outcome,
            Err(payload) => (panicked(path, payload.as_ref()), None),
        }
    }

    fn verify_unguarded(&self, path: &Path, cx: &Context<'_>) -> (PluginReport, Option<Verified>) {
        #[cfg(test)]
        tests::panic_here_if_asked(path);
        let mut report = PluginReport::new(path.to_owned());
        let (file, meta) = match open_sized(path) {
            Ok(opened) => opened,
            Err(ReadError::Io { path, source })
                if crate::error::out_of_descriptors(&source).is_some() =>
            {
                let detail = crate::error::out_of_descriptors(&source).unwrap_or_default();
                let error = PluginError::Resources { path, detail };
                return (report.with_error(Status::Rejected, error), None);
            }
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };
        report.file_id = file_id(&meta);
        if let Some(first) = report.file_id.and_then(|id| cx.seen?.get(&id)) {
            return (same_file(report, path, first), None);
        }
        // Read in place: the record's strings stay in `blob`; only what a report shows, and
        // the record a placed plugin keeps, are copied out.
        let mut room = crate::read::room();
        let blob = match read_blob(path, &file, meta.len(), &mut room) {
            Ok(blob) => blob,
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };
        let provenance = match decode_in_place(path, &blob) {
            Ok(p) => p,
            Err(e) => return (report.with_error(Status::Rejected, e.into()), None),
        };
        let name = provenance.name.as_str();
        report.name = Some(name.to_owned());
        report.version = Some(version_text(&provenance.version));
        let configured = self.configured_name(path);
        if let Some(expected) = configured.filter(|n| *n != name) {
            let error = PluginError::NameMismatch {
                path: path.to_owned(),
                expected: expected.to_owned(),
                found: name.to_owned(),
            };
            return (report.with_error(Status::Rejected, error), None);
        }
        if self.is_disabled(name) {
            report.status = Status::Disabled;
            report.message = Some(format!(
                "plugin `{name}` is disabled in the configuration (`enabled = false`)"
            ));
            return (report, None);
        }
        let bound = configured.is_some();
        let trusted = self.trust.step(
            cx.load_from,
            bound,
            path,
            &file,
            &meta,
            &provenance,
            &mut report,
        );
        let sealed = match trusted {
            Ok(sealed) => sealed,
            Err(e) => return (report.with_error(Status::Rejected, e), None),
        };
        let policy = self.policy_for(name);
        let host = &self.identity.provenance;
        let mut verdict = judge_in_place(host, &self.host_deps, &provenance, policy);
        // An owned copy of the record, made only for what needs one (a placement's rescue or
        // hint, a placed plugin).
        let owned_once = std::cell::OnceCell::new();
        let owned = || owned_once.get_or_init(|| provenance.to_owned());
        // Refused for a toolchain difference: the placement out of process may run it
        // elsewhere (a worker built with the plugin's toolchain), judged against that.
        if let (Some(refused), Some(placement)) = (verdict.failure().map(|c| c.check), cx.placement)
        {
            if let Some((choice, against)) = placement.rescue(host, owned(), policy, refused) {
                verdict = against;
                report.worker = Some(choice);
            }
        }
        let failure = verdict.failure().map(|c| {
            let mut message = c.message.clone();
            if matches!(c.check, CheckKind::Rustc | CheckKind::Dependencies) {
                if let Some(placement) = cx.placement {
                    message.push_str(&placement.hint(host, owned(), policy));
                }
            }
            (c.check.reason(), message)
        });
        report.checks = verdict.checks;
        let differences = verdict
            .differences
            .iter()
            .map(|d| {
                if d.content_only {
                    format!("{} {}, not the host's copy ({})", d.name, d.plugin, d.host)
                } else {
                    format!("{} {} (host: {})", d.name, d.plugin, d.host)
                }
            })
            .collect();
        if let Some((reason, message)) = failure {
            let error = PluginError::Rejected {
                path: path.to_owned(),
                reason,
                message,
            };
            return (report.with_error(Status::Rejected, error), None);
        }
        if let Some((first, builtin)) = (cx.taken)(name) {
            let (path, name) = (path.to_owned(), name.to_owned());
            // A builtin's name taken by a file is a conflict to resolve; a file that repeats
            // a plugin found earlier in the search path is shadowed by it.
            let (status, error) = if builtin {
                (
                    Status::Rejected,
                    PluginError::DuplicateBuiltin { path, name },
                )
            } else {
                (
                    Status::Shadowed,
                    PluginError::Shadowed { path, name, first },
                )
            };
            return (report.with_error(status, error), None);
        }
        report.status = Status::Verified;
        if !cx.place {
            return (report, None);
        }
        let verified = Verified {
            provenance: owned_once
                .into_inner()
                .unwrap_or_else(|| provenance.to_owned()),
            file,
            meta,
            differences,
            sealed,
            ahead: None,
        };
        (report, Some(verified))
    }
}

/// The report of a file whose verification panicked, carrying the panic's message.
#[cold]
fn panicked(path: &Path, payload: &(dyn std::any::Any + Send)) -> PluginReport {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let error = PluginError::Rejected {
        path: path.to_owned(),
        reason: ReasonCode::VerificationPanicked,
        message: format!(
            "plugin-host panicked while reading or judging this file ({what}): a bug in \
             plugin-host that this file sets off, so the file is refused and nothing of it \
             ran; please report it with the file to plugin-host's authors, and remove the \
             file or move it out of the plugin directory meanwhile"
        ),
    };
    PluginReport::new(path.to_owned()).with_error(Status::Rejected, error)
}

/// `version` as text, as its `Display` writes it; a plain `major.minor.patch` (nearly every
/// plugin's) is written by hand, at a fraction of the formatter's cost.
fn version_text(version: &semver::Version) -> String {
    if !version.pre.is_empty() || !version.build.is_empty() {
        return version.to_string();
    }
    let mut text = String::with_capacity(24);
    for (at, part) in [version.major, version.minor, version.patch]
        .into_iter()
        .enumerate()
    {
        if at > 0 {
            text.push('.');
        }
        text.push_str(crate::text::decimal(part, &mut [0; 20]));
    }
    text
}

/// The report of another path to a file already judged in this scan: nothing of this path
/// is loaded, the first outcome stands for both.
fn same_file(report: PluginReport, path: &Path, first: &Seen) -> PluginReport {
    let reason = first.reason.unwrap_or(ReasonCode::DuplicatePlugin);
    let message = match &first.message {
        Some(message) => message.clone(),
        None => "that file is already loaded or verified; remove one of the two paths".to_owned(),
    };
    let error = PluginError::SameFile {
        path: path.to_owned(),
        first: first.first.clone(),
        reason,
        message,
    };
    // A path to a plugin in use (or shadowed) is shadowed by the first path to it.
    let status = match first.status {
        Status::Rejected | Status::Failed => Status::Rejected,
        _ => Status::Shadowed,
    };
    report.with_error(status, error)
}

/// The identity of a file: device and inode.
pub(crate) fn file_id(meta: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    use crate::reason::ReasonCode;
    use crate::report::Status;
    use crate::{Host, HostIdentity, ScanMode};

    thread_local! {
        /// The file whose verification panics on this thread, as a bug would.
        static PANIC_ON: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
    }

    pub(super) fn panic_here_if_asked(path: &Path) {
        if PANIC_ON.with(|p| p.borrow().as_deref() == Some(path)) {
            let at = 4096;
            panic!("byte index {at} is out of range: a planted bug");
        }
    }

    #[test]
    fn a_verification_that_panics_refuses_that_file_and_the_scan_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (bad, next) = (dir.path().join("liba.so"), dir.path().join("libb.so"));
        std::fs::write(&bad, b"not a library").unwrap();
        std::fs::write(&next, b"not a library either").unwrap();
        let provenance = crate::policy::tests::record(&[]);
        let identity = HostIdentity {
            name: "app".into(),
            version: "1.0.0".into(),
            provenance,
        };
        let mut host = Host::builder(identity).build();

        // Unplanted, both files are refused for what they are.
        let reports = host.scan(&[dir.path()], ScanMode::VerifyOnly).unwrap();
        assert_eq!(reports.len(), 2);
        assert!(reports
            .iter()
            .all(|r| r.reason == Some(ReasonCode::NotALibrary)));

        PANIC_ON.with(|p| *p.borrow_mut() = Some(bad.clone()));
        let single = host.verify(&bad);
        let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
        PANIC_ON.with(|p| *p.borrow_mut() = None);

        let scanned = reports.iter().find(|r| r.path == bad).unwrap();
        for report in [&single, scanned] {
            assert_eq!(report.status, Status::Rejected);
            assert_eq!(report.reason, Some(ReasonCode::VerificationPanicked));
            let message = report.message.as_deref().unwrap();
            assert!(message.contains("liba.so"), "{message}");
            assert!(
                message.contains("(byte index 4096 is out of range: a planted bug)"),
                "{message}"
            );
            assert!(message.contains("nothing of it ran"), "{message}");
            assert!(
                message.contains("please report it with the file"),
                "{message}"
            );
        }
        // The scan went on to the next file, judged as before.
        let other = reports.iter().find(|r| r.path == next).unwrap();
        assert_eq!(other.reason, Some(ReasonCode::NotALibrary));
        // And the host still verifies the file once nothing panics.
        assert_eq!(host.verify(&bad).reason, Some(ReasonCode::NotALibrary));
    }

    #[test]
    fn a_version_is_written_as_its_display_writes_it() {
        for text in [
            "0.0.0",
            "0.1.0",
            "1.95.0",
            "10.200.3000",
            "18446744073709551615.0.18446744073709551615",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-rc.1+b2",
        ] {
            let version: semver::Version = text.parse().unwrap();
            assert_eq!(super::version_text(&version), version.to_string());
            assert_eq!(super::version_text(&version), text);
        }
    }
}
