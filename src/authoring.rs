//! The plugin author's commands: `new` and `preflight`, on the `builder` crate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use builder::preflight::{Alignment, Preflight, Report};
use builder::scaffold::{Kind, PluginApiSource, Scaffold};
use clap::{Args, ValueEnum};
use host::text::printable;
use host::{CheckStatus, HostIdentity, Policy};

/// `plugin-host new`.
#[derive(Args)]
pub struct NewArgs {
    /// The plugin's package name (also the name of the capability it registers).
    name: String,
    /// Where to create it (default: ./NAME). Must be empty or absent unless --force.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// What the plugin registers.
    #[arg(long, value_enum, default_value_t = KindArg::Command)]
    kind: KindArg,
    /// Depend on the plugin-api checkout in DIR instead of the host's own copy.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["plugin_api_git", "plugin_api_version"])]
    plugin_api_path: Option<PathBuf>,
    /// Depend on plugin-api from this git repository instead of the host's own copy.
    #[arg(long, value_name = "URL", conflicts_with = "plugin_api_version")]
    plugin_api_git: Option<String>,
    /// With --plugin-api-git: the commit, tag or branch (`rev = …`).
    #[arg(long, value_name = "REV", requires = "plugin_api_git")]
    plugin_api_rev: Option<String>,
    /// Depend on plugin-api from crates.io with this version requirement.
    #[arg(long, value_name = "REQ")]
    plugin_api_version: Option<String>,
    /// Write into a non-empty directory, replacing the scaffold's own files there.
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Command,
    Transform,
}

/// `plugin-host preflight`.
#[derive(Args)]
pub struct PreflightArgs {
    /// The plugin crate's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Predict a build with this cargo profile (`dev`, `release`) instead of the host's.
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Align the crate with the host: its lock, its rust-toolchain.toml, its profile.
    #[arg(long)]
    fix: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Scaffolds a plugin crate; exit 0 when written.
pub fn new(args: NewArgs, host: &HostIdentity) -> Result<ExitCode> {
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let plugin_api = match (
        args.plugin_api_path,
        args.plugin_api_git,
        args.plugin_api_version,
    ) {
        (Some(path), _, _) => PluginApiSource::Path(path),
        (_, Some(url), _) => PluginApiSource::Git {
            url,
            rev: args.plugin_api_rev,
        },
        (_, _, Some(req)) => PluginApiSource::Registry(req),
        _ => PluginApiSource::Host,
    };
    let mut scaffold = Scaffold::new(
        &args.name,
        match args.kind {
            KindArg::Command => Kind::Command,
            KindArg::Transform => Kind::Transform,
        },
    );
    scaffold.plugin_api = plugin_api;
    scaffold.force = args.force;
    let done = scaffold
        .write(host, &dir)
        .with_context(|| format!("cannot create plugin `{}`", args.name))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &done)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "created plugin `{}` in {}",
        args.name,
        printable(&done.dir.display().to_string())
    )?;
    for step in &done.applied {
        writeln!(out, "  lock: {}", printable(step))?;
    }
    if done.report.accepted {
        writeln!(
            out,
            "preflight --policy strict: a build would be accepted by {}",
            done.report.host
        )?;
    } else {
        writeln!(out, "preflight --policy strict: a build would be REJECTED:")?;
        report_lines(&mut out, &done.report)?;
    }
    image_lines(&mut out, &done.report)?;
    not_aligned_lines(&mut out, "not aligned", &done.not_aligned)?;
    writeln!(out, "next:")?;
    writeln!(
        out,
        "  cd {} && {}",
        printable(&done.dir.display().to_string()),
        done.build_command
    )?;
    writeln!(
        out,
        "  {} check --policy strict {}",
        host.name,
        printable(&done.library.display().to_string())
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Predicts the host's verdict on a build of the crate; exit 0 accepted, 1 refused.
pub fn preflight(args: PreflightArgs, host: &HostIdentity, policy: Policy) -> Result<ExitCode> {
    let mut preflight = Preflight::new(host, policy);
    if let Some(profile) = &args.profile {
        preflight = preflight.with_cargo_profile(profile);
    }
    let dir = &args.dir;
    let mut out = std::io::stdout().lock();
    let (report, alignment) = if args.fix {
        let a = preflight
            .align(dir)
            .with_context(|| format!("cannot align {}", dir.display()))?;
        (a.report.clone(), Some(a))
    } else {
        let r = preflight
            .run(dir)
            .with_context(|| format!("cannot preflight {}", dir.display()))?;
        (r, None)
    };
    if args.json {
        match &alignment {
            Some(a) => serde_json::to_writer_pretty(&mut out, &FixedJson::from(a))?,
            None => serde_json::to_writer_pretty(&mut out, &report)?,
        }
        writeln!(out)?;
    } else {
        text(&mut out, &report, alignment.as_ref(), dir)?;
    }
    Ok(if report.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--fix --json`: the report after fixing, with what was applied and what was not.
#[derive(serde::Serialize)]
struct FixedJson<'a> {
    #[serde(flatten)]
    report: &'a Report,
    applied: &'a [String],
    not_aligned: &'a [builder::preflight::NotAligned],
}

impl<'a> From<&'a Alignment> for FixedJson<'a> {
    fn from(a: &'a Alignment) -> Self {
        FixedJson {
            report: &a.report,
            applied: &a.applied,
            not_aligned: &a.not_aligned,
        }
    }
}

fn text(
    out: &mut impl Write,
    report: &Report,
    alignment: Option<&Alignment>,
    dir: &Path,
) -> Result<()> {
    let k = &report.krate;
    // What decides the compiler: a toolchain file, or what overrides it.
    let toolchain = format!(", toolchain from {}", k.toolchain);
    writeln!(
        out,
        "{}",
        printable(&format!(
            "preflight of {} {} ({}) against {} under policy `{}` (cargo profile {}{toolchain})",
            k.name,
            k.version,
            dir.display(),
            report.host,
            report.policy,
            k.cargo_profile
        ))
    )?;
    if let Some(a) = alignment {
        for step in &a.applied {
            writeln!(out, "  fixed: {}", printable(step))?;
        }
        not_aligned_lines(out, "NOT aligned", &a.not_aligned)?;
        if a.applied.is_empty() && a.not_aligned.is_empty() {
            writeln!(out, "  nothing to fix")?;
        }
    }
    report_lines(out, report)?;
    image_lines(out, report)?;
    let in_image = match &report.builder_image {
        Some(image) if !image.missing.is_empty() => {
            "; a build in the builder image would fail (`plugin-host preflight --fix` moves those crates to the host's versions)"
        }
        _ => "",
    };
    match &report.reason {
        None => writeln!(out, "a build would be accepted{in_image}")?,
        Some(reason) => writeln!(out, "a build would be rejected [{reason}]{in_image}")?,
    }
    Ok(())
}

/// What a build in the builder image would miss: the crates of the lock it does not hold.
fn image_lines(out: &mut impl Write, report: &Report) -> Result<()> {
    match &report.builder_image {
        None => writeln!(
            out,
            "  builder image: not predicted (the host's Cargo.lock is not found)"
        )?,
        Some(image) if image.missing.is_empty() => {}
        Some(image) => {
            writeln!(
                out,
                "  builder image: a build there would fail: it holds only the crates of {}, and not these of the crate's lock:",
                printable(&image.host_lockfile.display().to_string())
            )?;
            for gap in &image.missing {
                writeln!(out, "    {}", printable(&gap.to_string()))?;
            }
        }
    }
    Ok(())
}

/// One line per check (have vs want, the message for a difference), then the fixes.
/// One line per difference `--fix` could not align, after `label`.
fn not_aligned_lines(
    out: &mut impl Write,
    label: &str,
    not_aligned: &[builder::preflight::NotAligned],
) -> Result<()> {
    for n in not_aligned {
        writeln!(
            out,
            "  {label} [{}] {}: {}",
            n.check,
            printable(&n.what),
            printable(&n.reason)
        )?;
    }
    Ok(())
}

fn report_lines(out: &mut impl Write, report: &Report) -> Result<()> {
    for c in &report.verdict.checks {
        let status = match c.status {
            CheckStatus::Pass => "ok  ",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        };
        writeln!(
            out,
            "  {status} {:<15} crate: {}  host: {}",
            c.check.as_str(),
            printable(&c.plugin),
            printable(&c.host)
        )?;
    }
    for f in &report.fixes {
        match &f.command {
            Some(cmd) => writeln!(
                out,
                "  fix [{}]: {}  (run: {})",
                f.check,
                printable(&f.action),
                printable(cmd)
            )?,
            None => writeln!(out, "  fix [{}]: {}", f.check, printable(&f.action))?,
        }
    }
    Ok(())
}
