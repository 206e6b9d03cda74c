//! `publish`, `pull` and `sync`: plugins from an OCI registry (the `plugin-registry` crate).
//! Every failure is an error (exit 2) that says what to do.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use host::config::Config;
use host::text::printable;
use host::trust::Lock;
use host::HostIdentity;
use plugin_registry::{Cache, PullOptions, Reference, Source};

use crate::host_flags::PolicyArgs;

/// How to reach the registry and where to keep what was pulled.
#[derive(Args)]
pub struct RegistryArgs {
    /// Plain HTTP to a registry that is not on this machine (loopback always is).
    #[arg(long)]
    insecure: bool,
}

/// The flags of `pull` and `sync`.
#[derive(Args)]
pub struct PullArgs {
    /// The plugin directory to place plugins in (default: the first configured search path).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The lock file to record pulled plugins in (default: `plugin-host.lock` beside the
    /// project file, else in the working directory).
    #[arg(long, value_name = "PATH")]
    lock_file: Option<PathBuf>,
    /// Refuse a tag whose build is not the one the lock pins (its manifest digest).
    #[arg(long)]
    locked: bool,
    /// Fetch nothing: use what earlier pulls left in the cache (`$XDG_CACHE_HOME/plugin-host/oci`).
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    signatures: crate::trust_cli::SignatureArgs,
}

fn reference(text: &str) -> Result<Reference> {
    Ok(Reference::parse(text)?)
}

/// `publish FILE oci://…`: the file (and FILE.minisig) as a build for `for_host` (default:
/// this host) in the tag's index.
pub fn publish(
    file: &Path,
    to: &str,
    for_host: Option<&str>,
    args: &RegistryArgs,
    me: &HostIdentity,
) -> Result<ExitCode> {
    let reference = reference(to)?;
    let (name, version) = match for_host {
        Some(text) => {
            let (name, version) = text
                .split_once('@')
                .filter(|(n, v)| !n.is_empty() && v.parse::<semver::Version>().is_ok())
                .ok_or_else(|| {
                    anyhow!(
                        "--for-host expects NAME@VERSION (e.g. plugin-host@0.1.0), got `{text}`"
                    )
                })?;
            (name.to_owned(), version.to_owned())
        }
        None => (me.name.clone(), me.version.clone()),
    };
    let published = plugin_registry::publish(file, &reference, &name, &version, args.insecure)?;
    let verb = if published.replaced {
        "replaced"
    } else {
        "published"
    };
    outln!(
        "{verb} {} in {reference} (manifest {}, index {})",
        published.build,
        published.manifest,
        published.index
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The pull context: the host that judges (no lock: the pulled file is new; digests on, to
/// lock it), the lock, the source, and the directory.
struct Puller {
    host: host::Host,
    lock: Lock,
    dir: PathBuf,
    cache: Option<Cache>,
}

impl Puller {
    fn new(args: &PullArgs, config: &Config) -> Result<Puller> {
        let mut setup = args.signatures.apply(config, args.policy.host(config)?)?;
        setup.host = setup.host.digests(true);
        let host = setup.build();
        crate::trust_cli::no_ignored_projects_lock(args.lock_file.as_deref(), config)?;
        let lock_file = crate::trust_cli::lock_file(args.lock_file.as_deref(), config);
        let lock = Lock::read_if_exists(&lock_file)?.unwrap_or_else(|| Lock::new(&lock_file));
        let dir = match &args.dir {
            Some(dir) => dir.clone(),
            None => config.search_paths().into_iter().next().ok_or_else(|| {
                anyhow!("no plugin directory to pull into: give --dir DIR, or set `[search] paths`")
            })?,
        };
        Ok(Puller {
            host,
            lock,
            dir,
            cache: Cache::default_dir().map(Cache::new),
        })
    }

    /// Pulls `reference` (which must hold plugin `expect`, when given).
    fn pull(&mut self, reference: &Reference, args: &PullArgs, expect: Option<&str>) -> Result<()> {
        let source = if args.offline {
            let cache = self.cache.clone().ok_or_else(|| {
                anyhow!("--offline: no cache directory ($XDG_CACHE_HOME or $HOME is unset)")
            })?;
            Source::offline(cache)
        } else {
            Source::online(reference, args.registry.insecure, self.cache.clone())?
        };
        let options = PullOptions {
            dir: &self.dir,
            lock: Some(&mut self.lock),
            locked: args.locked,
            expect,
        };
        let pulled = plugin_registry::pull(&source, reference, &self.host, options)?;
        let how = if pulled.exact {
            String::new()
        } else {
            " (not built for this host version; the policy accepts it)".to_owned()
        };
        outln!(
            "pulled {} {} from {}@{}{how} -> {}",
            printable(&pulled.name),
            printable(&pulled.version),
            reference,
            pulled.manifest,
            printable(&pulled.path.display().to_string())
        )?;
        Ok(())
    }
}

/// `pull oci://…`: the build for this host, judged, placed and locked.
pub fn pull(from: &str, args: &PullArgs, config: &Config) -> Result<ExitCode> {
    let reference = reference(from)?;
    let mut puller = Puller::new(args, config)?;
    puller.pull(&reference, args, None)?;
    Ok(ExitCode::SUCCESS)
}

/// `sync`: every `[plugins.NAME] source` whose plugin is in no search path, pulled.
pub fn sync(args: &PullArgs, config: &Config) -> Result<ExitCode> {
    let declared: Vec<(String, host::config::Valued<String>)> = config
        .plugins()
        .filter_map(|(name, s)| Some((name.to_owned(), s.source.clone()?)))
        .collect();
    if declared.is_empty() {
        outln!("nothing to sync: no plugin has a `source` in the configuration")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut puller = Puller::new(args, config)?;
    let mut dirs = config.search_paths();
    if !dirs.contains(&puller.dir) {
        dirs.push(puller.dir.clone());
    }
    let present: Vec<String> = dirs
        .iter()
        .filter(|d| d.is_dir())
        .flat_map(|d| host::discover(&[d]).unwrap_or_default())
        .filter_map(|path| host::read_provenance(&path).ok().map(|p| p.name))
        .collect();
    for (name, source) in declared {
        if present.contains(&name) {
            outln!("present {name}")?;
            continue;
        }
        let reference = Reference::parse(&source.value)
            .with_context(|| format!("{}: [plugins.{name}] source", source.origin))?;
        puller
            .pull(&reference, args, Some(&name))
            .with_context(|| format!("syncing plugin `{name}`"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `builder build --publish oci://…`: the built file published as a build for this host.
#[cfg(unix)]
pub fn publish_built(file: &Path, to: &str, me: &HostIdentity) -> Result<()> {
    let reference = reference(to)?;
    if !file.is_file() {
        anyhow::bail!("{}: the built file is missing", file.display());
    }
    let published = plugin_registry::publish(file, &reference, &me.name, &me.version, false)?;
    outln!(
        "published {} as {reference} ({})",
        published.build,
        published.manifest
    )?;
    Ok(())
}
