//! The gate: whether one file may run, decided before any of its code runs — open, read its
//! provenance, apply the per-plugin settings, the trust step (lock, signatures), and the
//! judge (the policy against the host's identity).

use std::any::Any;
use std::cell::Cell;
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

/// What one contained verification leaves outside its containment (see [`Gate::verify`]).
#[derive(Default)]
struct Watch {
    /// The file's identity, once it is open.
    file_id: Cell<Option<(u64, u64)>>,
    /// A panic in the application's own code, to go on unwinding once out.
    application_panic: Cell<Option<Box<dyn Any + Send>>>,
}

impl Watch {
    /// Runs the application's code `f`: its result, or `None` when it panicked (the panic
    /// kept to be resumed, and the verification to end at once).
    fn application<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        // Unwind safety: nothing of the gate's is changed by the application's code; the
        // panic is resumed as soon as the verification returns.
        catch_unwind(AssertUnwindSafe(f))
            .map_err(|payload| self.application_panic.set(Some(payload)))
            .ok()
    }
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
    /// does not unwind into the host's caller because of one file. A panic in the
    /// application's own code reached from here (its [`Placement`]) is the application's,
    /// and goes on unwinding as before. (A host built with `panic = "abort"` aborts: nothing
    /// can be caught there.)
    pub(crate) fn verify(&self, path: &Path, cx: &Context<'_>) -> (PluginReport, Option<Verified>) {
        let watch = Watch::default();
        let outcome = crate::read::contained(|| self.verify_uncontained(path, cx, &watch));
        if let Some(payload) = watch.application_panic.take() {
            std::panic::resume_unwind(payload);
        }
        outcome.unwrap_or_else(|message| {
            let mut report = PluginReport::new(path.to_owned());
            // Other paths to the same file in a scan are then reported as that same file.
            report.file_id = watch.file_id.get();
            let error = ReadError::Panicked {
                path: path.to_owned(),
                message,
            };
            (report.with_error(Status::Rejected, error.into()), None)
        })
    }

    fn verify_uncontained(
        &self,
        path: &Path,
        cx: &Context<'_>,
        watch: &Watch,
    ) -> (PluginReport, Option<Verified>) {
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
        report.file_id = file_id(&file, &meta);
        watch.file_id.set(report.file_id);
        // Where reading starts: a planted panic here stands for one in the reader.
        #[cfg(test)]
        if let Some(outcome) = tests::planted(path, watch) {
            return outcome;
        }
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
            let rescued = watch.application(|| placement.rescue(host, owned(), policy, refused));
            let Some(rescued) = rescued else {
                return (report, None);
            };
            if let Some((choice, against)) = rescued {
                verdict = against;
                report.worker = Some(choice);
            }
        }
        let failure = verdict.failure().map(|c| {
            let mut message = c.message.clone();
            if matches!(c.check, CheckKind::Rustc | CheckKind::Dependencies) {
                if let Some(placement) = cx.placement {
                    let hint = watch.application(|| placement.hint(host, owned(), policy));
                    message.push_str(&hint.unwrap_or_default());
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
            provenance: std::sync::Arc::new(
                owned_once
                    .into_inner()
                    .unwrap_or_else(|| provenance.to_owned()),
            ),
            file,
            meta,
            differences,
            sealed,
            ahead: None,
            #[cfg(target_os = "linux")]
            kept_ahead: Default::default(),
        };
        (report, Some(verified))
    }
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

/// The identity of the open file `file`, whose `fstat` is `meta`: device and inode; on
/// Windows volume serial number and file index (so a file reached by two names, hard links,
/// is judged and loaded once there too).
pub(crate) fn file_id(file: &std::fs::File, meta: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = file;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(windows)]
    {
        let _ = meta;
        crate::windows::identity(file)
            .map(|(volume, high, low)| (u64::from(volume), u64::from(high) << 32 | u64::from(low)))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, meta);
        None
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    use super::Watch;
    use crate::place::Verified;
    use crate::read::ReadError;
    use crate::reason::ReasonCode;
    use crate::report::{PluginReport, Status};
    use crate::{Host, HostIdentity, ScanMode};

    /// Where a planted panic comes from.
    #[derive(Clone, Copy)]
    enum Planted {
        /// This crate's own code, as a bug would.
        Host,
        /// The application's code reached from the gate (its placement).
        Application,
    }

    thread_local! {
        /// The file whose verification panics on this thread, and from where.
        static PLANTED: RefCell<Option<(PathBuf, Planted)>> = const { RefCell::new(None) };
    }

    fn plant(planted: Option<(&Path, Planted)>) {
        PLANTED.with(|p| *p.borrow_mut() = planted.map(|(path, from)| (path.to_owned(), from)));
    }

    /// Panics as planted for `path`; an application's panic ends the verification as the
    /// gate's own calls into the application do.
    pub(super) fn planted(path: &Path, watch: &Watch) -> Option<(PluginReport, Option<Verified>)> {
        let from = PLANTED.with(|p| {
            p.borrow()
                .as_ref()
                .filter(|(planted, _)| planted == path)
                .map(|(_, from)| *from)
        })?;
        match from {
            Planted::Host => {
                let at = 4096;
                panic!(
                    "byte index {at} is out of range of `\u{1b}[31mred\u{1b}[0m`: a planted bug"
                );
            }
            Planted::Application => {
                let ran = watch.application(|| -> () { std::panic::panic_any(42_u32) });
                assert!(ran.is_none());
                Some((PluginReport::new(path.to_owned()), None))
            }
        }
    }

    fn host() -> Host {
        let provenance = crate::policy::tests::record(&[]);
        let identity = HostIdentity {
            name: "app".into(),
            version: "1.0.0".into(),
            provenance,
        };
        Host::builder(identity).build()
    }

    #[test]
    fn a_verification_that_panics_refuses_that_file_and_the_scan_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (bad, next) = (dir.path().join("liba.so"), dir.path().join("libb.so"));
        std::fs::write(&bad, b"not a library").unwrap();
        std::fs::write(&next, b"not a library either").unwrap();
        // A second name for the file that panics.
        std::fs::hard_link(&bad, dir.path().join("libc.so")).unwrap();
        let mut host = host();

        // Unplanted, every file is refused for what it is.
        let reports = host.scan(&[dir.path()], ScanMode::VerifyOnly).unwrap();
        assert_eq!(reports.len(), 3);
        assert!(reports
            .iter()
            .all(|r| r.reason == Some(ReasonCode::NotALibrary)));

        plant(Some((&bad, Planted::Host)));
        let single = host.verify(&bad);
        let reports = host.scan(&[dir.path()], ScanMode::Load).unwrap();
        plant(None);

        let scanned = reports.iter().find(|r| r.path == bad).unwrap();
        for report in [&single, scanned] {
            assert_eq!(report.status, Status::Rejected);
            assert_eq!(report.reason, Some(ReasonCode::VerificationPanicked));
            let message = report.message.as_deref().unwrap();
            assert!(message.contains("liba.so"), "{message}");
            // The panic's message, escaped: no terminal escape reaches the user raw.
            assert!(
                message.contains(
                    "(byte index 4096 is out of range of `\\u{1b}[31mred\\u{1b}[0m`: a planted bug; \
                     where it panicked is printed on standard error)"
                ),
                "{message}"
            );
            assert!(!message.contains('\u{1b}'), "{message}");
            assert!(message.contains(env!("CARGO_PKG_VERSION")), "{message}");
            assert!(message.contains("none of its code ran"), "{message}");
            assert!(
                message.contains("report it to plugin-host's authors"),
                "{message}"
            );
        }
        // The other name for that file is told to be the same file, not verified again.
        let other_name = reports
            .iter()
            .find(|r| r.path.ends_with("libc.so"))
            .unwrap();
        assert_eq!(other_name.reason, Some(ReasonCode::VerificationPanicked));
        assert!(
            other_name.message.as_deref().unwrap().contains("liba.so"),
            "{:?}",
            other_name.message
        );
        // The scan went on to the next file, judged as before.
        let other = reports.iter().find(|r| r.path == next).unwrap();
        assert_eq!(other.reason, Some(ReasonCode::NotALibrary));
        // And the host still verifies the file once nothing panics.
        assert_eq!(host.verify(&bad).reason, Some(ReasonCode::NotALibrary));
    }

    #[test]
    fn a_panic_of_the_application_s_own_code_goes_on_unwinding() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("liba.so");
        std::fs::write(&file, b"not a library").unwrap();
        let host = host();
        plant(Some((&file, Planted::Application)));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.verify(&file)));
        plant(None);
        let payload = unwound.expect_err("the application's panic reaches its caller");
        assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
        assert_eq!(host.verify(&file).reason, Some(ReasonCode::NotALibrary));
    }

    #[test]
    fn a_reader_that_panics_is_an_error_for_its_file() {
        let path = Path::new("/plugins/libx.so");
        let error = crate::read::contained(|| -> () { panic!("{}", "é".repeat(400)) })
            .map_err(|message| ReadError::Panicked {
                path: path.to_owned(),
                message,
            })
            .unwrap_err();
        assert_eq!(error.reason(), ReasonCode::VerificationPanicked);
        let ReadError::Panicked { message, .. } = &error else {
            unreachable!()
        };
        // Cut short at a character boundary.
        assert_eq!(message.chars().count(), 240);
        assert!(message.ends_with('…'), "{message}");
        assert!(error
            .to_string()
            .starts_with("/plugins/libx.so: plugin-host "));
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
