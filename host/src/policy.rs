//! Judging a plugin's provenance against the host's, under a policy.
//!
//! Every check reports both values. Checks that guard soundness (target, `plugin-api`,
//! `abi_stable`) always fail on a difference; the others have a [`Severity`] set by the
//! policy: the `default` preset warns where a difference cannot cause undefined behaviour,
//! the `strict` preset has Go-plugin semantics (same compiler, same panic strategy, same
//! version of every shared crate).

mod dependencies;
mod fix;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use plugin_api::provenance::{Provenance, ProvenanceRef};
use semver::{Version, VersionReq};
use serde::Serialize;

use crate::reason::ReasonCode;
use dependencies::HostCrates;
use fix::{one_series, series};

pub use dependencies::CrateDifference;
pub use fix::{dependency_line, dependency_source, toolchain_name};

/// One aspect of provenance that is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CheckKind {
    /// Target triple.
    Target,
    /// `plugin-api` semver compatibility.
    PluginApi,
    /// `abi_stable` series.
    AbiStable,
    /// rustc release and commit.
    Rustc,
    /// Panic strategy.
    PanicStrategy,
    /// Profile: opt-level and debug assertions.
    Profile,
    /// Versions of crates linked by both host and plugin.
    Dependencies,
}

impl CheckKind {
    /// Every check, in the order they are run and reported.
    pub const ALL: [CheckKind; 7] = [
        CheckKind::Target,
        CheckKind::PluginApi,
        CheckKind::AbiStable,
        CheckKind::Rustc,
        CheckKind::PanicStrategy,
        CheckKind::Profile,
        CheckKind::Dependencies,
    ];

    /// The check's kebab-case name (as used by `--set`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Target => "target",
            CheckKind::PluginApi => "plugin-api",
            CheckKind::AbiStable => "abi-stable",
            CheckKind::Rustc => "rustc",
            CheckKind::PanicStrategy => "panic-strategy",
            CheckKind::Profile => "profile",
            CheckKind::Dependencies => "dependencies",
        }
    }

    /// The reason code a failure of this check is reported under.
    pub fn reason(self) -> ReasonCode {
        match self {
            CheckKind::Target => ReasonCode::TargetMismatch,
            CheckKind::PluginApi => ReasonCode::ApiIncompatible,
            CheckKind::AbiStable => ReasonCode::AbiStableMismatch,
            CheckKind::Rustc => ReasonCode::RustcMismatch,
            CheckKind::PanicStrategy => ReasonCode::PanicStrategyMismatch,
            CheckKind::Profile => ReasonCode::ProfileMismatch,
            CheckKind::Dependencies => ReasonCode::DependencyMismatch,
        }
    }

    /// Whether a policy may lower this check (soundness checks always fail).
    pub fn adjustable(self) -> bool {
        !matches!(
            self,
            CheckKind::Target | CheckKind::PluginApi | CheckKind::AbiStable
        )
    }

    /// Parses a check name.
    pub fn parse(name: &str) -> Option<CheckKind> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a policy does when an adjustable check finds a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Report it as passing (the values are still shown).
    Ignore,
    /// Report a warning; the plugin still loads.
    Warn,
    /// Refuse the plugin.
    Fail,
}

impl Severity {
    /// Parses `ignore`, `warn` or `fail`.
    pub fn parse(name: &str) -> Option<Severity> {
        match name {
            "ignore" => Some(Severity::Ignore),
            "warn" => Some(Severity::Warn),
            "fail" => Some(Severity::Fail),
            _ => None,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// Equal, or a difference the policy ignores.
    Pass,
    /// A difference the policy tolerates.
    Warn,
    /// A difference the policy refuses.
    Fail,
}

/// One check's result, with both values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was compared.
    pub check: CheckKind,
    /// The outcome.
    pub status: CheckStatus,
    /// The host's value. Shared (`Arc`): the host's values are formatted once per host, and
    /// a plugin built like the host shows the same text, so judging one copies none.
    #[serde(serialize_with = "text")]
    pub host: Arc<str>,
    /// The plugin's value.
    #[serde(serialize_with = "text")]
    pub plugin: Arc<str>,
    /// For a difference: what it means and how to fix it (empty when there is none).
    pub message: String,
}

/// A shared text, serialized as the string it is.
fn text<S: serde::Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// Errors building a policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// No preset of that name.
    #[error("unknown policy `{0}`; the presets are `default` and `strict`")]
    UnknownPreset(String),
    /// A soundness check cannot be lowered.
    #[error("the `{0}` check guards soundness and always fails on a difference; it cannot be set")]
    NotAdjustable(CheckKind),
}

/// A named preset plus per-check overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    severities: BTreeMap<CheckKind, Severity>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::preset("default").expect("the default preset exists")
    }
}

impl Policy {
    /// The preset names.
    pub const PRESETS: [&'static str; 2] = ["default", "strict"];

    /// A preset: `default` or `strict`.
    pub fn preset(name: &str) -> Result<Policy, PolicyError> {
        use CheckKind::*;
        use Severity::*;
        let severities = match name {
            "default" => [
                (Rustc, Warn),
                (PanicStrategy, Warn),
                (Profile, Ignore),
                (Dependencies, Warn),
            ],
            "strict" => [
                (Rustc, Fail),
                (PanicStrategy, Fail),
                (Profile, Warn),
                (Dependencies, Fail),
            ],
            other => return Err(PolicyError::UnknownPreset(other.to_owned())),
        };
        Ok(Policy {
            name: name.to_owned(),
            severities: severities.into_iter().collect(),
        })
    }

    /// The policy's name: the preset, with `+overrides` when any were set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Overrides the severity of one adjustable check.
    pub fn set(&mut self, check: CheckKind, severity: Severity) -> Result<(), PolicyError> {
        if !check.adjustable() {
            return Err(PolicyError::NotAdjustable(check));
        }
        self.severities.insert(check, severity);
        let tag = match severity {
            Severity::Ignore => "ignore",
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        };
        self.name.push_str(&format!("+{check}={tag}"));
        Ok(())
    }

    /// How a user can accept a difference this policy refuses: `--policy default` when the
    /// preset is what fails it and `default` tolerates it, else an override (`--set`
    /// applies last, so it helps whatever set the check to fail: `--set CHECK=fail`, a
    /// configuration's `[policy.checks]`). Empty for soundness checks, which nothing may lower.
    fn escape_hint(&self, check: CheckKind) -> String {
        if !check.adjustable() {
            return String::new();
        }
        let default = Policy::default();
        // `set` tags the name with each override: `strict+rustc=fail`.
        let overridden = self.name.contains(&format!("+{check}="));
        if !overridden
            && self.name.split('+').next() != Some(default.name.as_str())
            && default.severity(check) != Severity::Fail
        {
            " or use --policy default".to_owned()
        } else {
            format!(" or accept it with `--set {check}=warn`")
        }
    }

    /// The severity of a check under this policy.
    pub fn severity(&self, check: CheckKind) -> Severity {
        self.severities
            .get(&check)
            .copied()
            .unwrap_or(Severity::Fail)
    }
}

/// The result of judging one plugin: every check, in [`CheckKind::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The checks.
    pub checks: Vec<Check>,
    /// The crates host and plugin both link but not identically (other versions, or the same
    /// version with other contents), whatever the policy makes of them: the ones to suspect
    /// when a layout check fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<CrateDifference>,
}

impl Verdict {
    /// The first failed check, which decides the rejection reason.
    pub fn failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == CheckStatus::Fail)
    }

    /// The checks that warn.
    pub fn warnings(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Warn)
    }

    /// The crates linked by both sides that differ (see [`Verdict::differences`]).
    pub fn differences(&self) -> &[CrateDifference] {
        &self.differences
    }
}

/// Judges `plugin` against `host` under `policy`.
pub fn judge(host: &Provenance, plugin: &Provenance, policy: &Policy) -> Verdict {
    judge_with(host, &PreparedHost::new(host), plugin, policy)
}

/// [`judge`], with the host's dependencies indexed beforehand (what [`crate::Host`] does).
pub fn judge_with(
    host: &Provenance,
    prepared: &PreparedHost,
    plugin: &Provenance,
    policy: &Policy,
) -> Verdict {
    judge_in_place(host, prepared, &plugin.view(), policy)
}

/// [`judge_with`], for a record read in place (what [`crate::Host`] judges: nothing of the
/// plugin's record is copied unless a check shows it).
pub fn judge_in_place(
    host: &Provenance,
    prepared: &PreparedHost,
    plugin: &ProvenanceRef<'_>,
    policy: &Policy,
) -> Verdict {
    let mut checks = Vec::with_capacity(CheckKind::ALL.len());
    let mut push = |check: CheckKind, host: Arc<str>, plugin: Arc<str>, differs: Option<String>| {
        let (status, message) = match differs {
            None => (CheckStatus::Pass, String::new()),
            Some(message) => match policy.severity(check) {
                Severity::Fail => (
                    CheckStatus::Fail,
                    format!("{message}{}", policy.escape_hint(check)),
                ),
                Severity::Warn => (CheckStatus::Warn, message),
                Severity::Ignore => (
                    CheckStatus::Pass,
                    format!("{message} (ignored by policy `{}`)", policy.name()),
                ),
            },
        };
        checks.push(Check {
            check,
            status,
            host,
            plugin,
            message,
        });
    };

    let (h, p) = (host.target.as_str(), plugin.target.as_str());
    push(CheckKind::Target, prepared.target.clone(), same_text(h, p, &prepared.target), (h != p).then(|| {
        format!("built for target {p}, but this host runs on {h}; rebuild the plugin with `cargo build --target {h}`")
    }));

    let (h, p) = (&host.plugin_api, &plugin.plugin_api);
    push(
        CheckKind::PluginApi,
        prepared.plugin_api.clone(),
        same_version_text(p, h, &prepared.plugin_api),
        (!api_compatible(h, p)).then(|| {
            format!(
            "built against plugin-api {p}, but this host provides plugin-api {h}, which serves \
             plugins built against {}; {}",
            series_req(h),
            fix::plugin_api(prepared.crates.plugin_api(), h)
        )
        }),
    );

    let (h, p) = (&host.abi_stable, &plugin.abi_stable);
    push(
        CheckKind::AbiStable,
        prepared.abi_stable.clone(),
        same_version_text(p, h, &prepared.abi_stable),
        (!one_series(h, p)).then(|| {
            format!(
            "built with abi_stable {p}, but this host uses abi_stable {h}; their layouts are not \
             comparable: rebuild the plugin with `abi_stable = \"{}\"`",
            series(h)
        )
        }),
    );

    let (hr, pr) = (&host.rustc, &plugin.rustc);
    let same_rustc = hr.release == *pr.release && hr.commit_hash == *pr.commit_hash;
    // The same compiler (release and commit) prints the same short form: the host's, made once.
    let plugin_rustc = if same_rustc {
        prepared.rustc.clone()
    } else {
        pr.short().into()
    };
    push(
        CheckKind::Rustc,
        prepared.rustc.clone(),
        plugin_rustc,
        (!same_rustc).then(|| {
            format!(
                "built with rustc {}, but this host was built with rustc {}; {}",
                pr.short(),
                hr.short(),
                fix::rustc(host)
            )
        }),
    );

    let (h, p) = (host.profile.panic.as_str(), plugin.profile.panic.as_str());
    push(
        CheckKind::PanicStrategy,
        prepared.panic.clone(),
        same_text(h, p, &prepared.panic),
        (h != p).then(|| {
            let consequence = if p == "abort" {
                "a panic in the plugin aborts the whole host instead of coming back as an error"
            } else {
                "panics behave differently on the two sides"
            };
            format!(
            "built with panic = \"{p}\", but this host uses panic = \"{h}\": {consequence}; set \
             `panic = \"{h}\"` in the plugin's Cargo profile and rebuild"
        )
        }),
    );

    let (hp, pp) = (&host.profile, &plugin.profile);
    let same_profile = hp.name == *pp.name
        && hp.opt_level == *pp.opt_level
        && hp.debug_assertions == pp.debug_assertions;
    let p = if same_profile {
        prepared.profile.clone()
    } else {
        profile_text(&pp.name, &pp.opt_level, pp.debug_assertions).into()
    };
    let h = prepared.profile.clone();
    let differs = (hp.opt_level != *pp.opt_level
        || host.profile.debug_assertions != plugin.profile.debug_assertions)
        .then(|| {
            format!(
                "built with profile {p}, but this host was built with {h}; rebuild the plugin \
                 with the host's profile ({})",
                match host.profile.name.as_str() {
                    "release" => "`cargo build --release`".to_owned(),
                    "debug" => "a plain `cargo build`".to_owned(),
                    other => format!("`cargo build --profile {other}`"),
                }
            )
        });
    push(CheckKind::Profile, h, p, differs);

    let dependencies = dependencies::compare(&prepared.crates, plugin);
    push(
        CheckKind::Dependencies,
        dependencies.host,
        dependencies.plugin,
        dependencies.message,
    );

    Verdict {
        checks,
        differences: dependencies.differences,
    }
}

/// A plugin built against `plugin` can be served by a host providing `host` when the host's
/// version satisfies `^plugin`: same semver series, and not older than what the plugin expects.
pub fn api_compatible(host: &Version, plugin: &Version) -> bool {
    if host.pre.is_empty() && plugin.pre.is_empty() {
        // What `^plugin` means for plain releases (build metadata never counts), without
        // writing and parsing the requirement: not older, and the same left-most non-zero part.
        let series = match (plugin.major, plugin.minor) {
            (0, 0) => host.major == 0 && host.minor == 0 && host.patch == plugin.patch,
            (0, minor) => host.major == 0 && host.minor == minor,
            (major, _) => host.major == major,
        };
        return series
            && (host.major, host.minor, host.patch) >= (plugin.major, plugin.minor, plugin.patch);
    }
    VersionReq::parse(&format!("^{plugin}")).is_ok_and(|req| req.matches(host))
}

/// `version` as text; `known` when it is `same` (whose text that is, prepared once per host),
/// so that judging a plugin built like the host formats nothing.
fn same_version_text(version: &Version, same: &Version, known: &Arc<str>) -> Arc<str> {
    if version == same {
        known.clone()
    } else {
        version.to_string().into()
    }
}

/// `plugin`'s text: the host's (`known`, prepared once per host) when it is the same.
fn same_text(host: &str, plugin: &str, known: &Arc<str>) -> Arc<str> {
    if host == plugin {
        known.clone()
    } else {
        plugin.into()
    }
}

fn series_req(host: &Version) -> String {
    format!("{}.0 ..= {host}", series(host))
}

/// The host's side of judging, prepared once per host: its dependencies by name, and the
/// host values every report shows, already formatted.
#[derive(Debug, Clone, Default)]
pub struct PreparedHost {
    crates: HostCrates,
    target: Arc<str>,
    plugin_api: Arc<str>,
    abi_stable: Arc<str>,
    rustc: Arc<str>,
    profile: Arc<str>,
    panic: Arc<str>,
}

impl PreparedHost {
    /// Prepares `host`'s side.
    pub fn new(host: &Provenance) -> Self {
        PreparedHost {
            crates: HostCrates::new(host),
            target: host.target.as_str().into(),
            plugin_api: host.plugin_api.to_string().into(),
            abi_stable: host.abi_stable.to_string().into(),
            rustc: host.rustc.short().into(),
            profile: profile_text(
                &host.profile.name,
                &host.profile.opt_level,
                host.profile.debug_assertions,
            )
            .into(),
            panic: host.profile.panic.as_str().into(),
        }
    }
}

fn profile_text(name: &str, opt_level: &str, debug_assertions: bool) -> String {
    let assertions = if debug_assertions { "on" } else { "off" };
    format!("{name} (opt-level {opt_level}, debug-assertions {assertions})")
}

/// Whether two builds come from the same compiler: the same release and commit.
pub fn same_rustc(a: &plugin_api::provenance::Rustc, b: &plugin_api::provenance::Rustc) -> bool {
    a.release == b.release && a.commit_hash == b.commit_hash
}

#[cfg(test)]
pub(crate) mod tests;
