//! Argument parsing and command dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use abi_stable::std_types::{RSlice, RStr};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use host::text::printable;
use host::{Host, ReadError, ScanMode, Status};
use plugin_api::{CapabilityKind, CommandKind, TransformKind};

use crate::authoring::{NewArgs, PreflightArgs};
use crate::config_cli::load_config;
use crate::host_flags::{identity, LoadArgs, PluginArgs, PolicyArgs};
use crate::output;

/// Load native Rust plugins safely: verify their build provenance before any of their code runs.
#[derive(Parser)]
#[command(name = "plugin-host", version, about, long_about = None)]
pub struct Cli {
    /// Log filter for host and plugin logs on stderr (e.g. `info`, `debug`, `plugin=trace`);
    /// defaults to $PLUGIN_HOST_LOG, else `info`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the host's own provenance: what plugins must match.
    HostInfo {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a file's provenance, read without loading it (a library for any platform: a
    /// `.dll` on Linux too).
    Inspect {
        /// The plugin file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Judge one file against this host without loading it. Exit 0 compatible, 1 rejected, 2 error.
    Check {
        /// The plugin file.
        file: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Discover, verify, load and register every plugin in the directories (default: the
    /// configured search paths); report each.
    Scan {
        /// Plugin directories (default: `[search] paths` of the configuration, else the
        /// default search paths).
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Verify only: load nothing, run no plugin code.
        #[arg(long)]
        no_load: bool,
        /// Check the layout of every capability while loading (a plugin with a capability
        /// the host could never use is then `failed`, not `loaded`).
        #[arg(long)]
        check_layouts: bool,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        trust: crate::trust_cli::TrustArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin command.
    Run {
        #[command(flatten)]
        plugins: PluginArgs,
        /// The command's name, then its arguments: every word after the name is the
        /// command's, passed as it is, even one that looks like an option of `run`.
        #[arg(
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            value_names = ["COMMAND", "ARGS"]
        )]
        call: Vec<String>,
    },
    /// Create a plugin crate whose first build this host accepts under `--policy strict`.
    New(NewArgs),
    /// Predict this host's verdict on a plugin crate's build, without building it; `--fix`
    /// aligns the crate. Exit 0 accepted, 1 rejected, 2 error.
    Preflight {
        #[command(flatten)]
        args: PreflightArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Stream stdin through the named plugin transforms, in order, to stdout.
    Transform {
        #[command(flatten)]
        plugins: PluginArgs,
        /// Transform names, comma-separated (applied left to right).
        #[arg(value_delimiter = ',', required = true)]
        names: Vec<String>,
    },
    /// The builder container image for this host, and plugin builds through it.
    #[command(subcommand)]
    Builder(crate::builder_cli::BuilderCommand),
    /// Show the effective configuration (system, user and project files, or the one
    /// $PLUGIN_HOST_CONFIG names) and the file and line each value comes from.
    ///
    /// A project file (`plugin-host.toml` found by walking up) is ignored until you trust it
    /// with `config trust`.
    Config {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<crate::config_cli::ConfigAction>,
    },
    /// Verify every plugin in the directories and write the lock file (sha256, size and
    /// provenance digest of each). Exit 0 all locked, 1 some rejected (not locked), 2 error.
    Lock {
        /// Plugin directories (default: the configured search paths).
        dirs: Vec<PathBuf>,
        /// The lock file to write (default: `plugin-host.lock` beside the project file
        /// `plugin-host.toml`, else in the working directory).
        #[arg(long, value_name = "PATH")]
        lock_file: Option<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        signatures: crate::trust_cli::SignatureArgs,
    },
    /// Publish a plugin file (and FILE.minisig) to an OCI registry as a build for this host
    /// (or `--for-host`), added to the tag's index of builds.
    Publish {
        /// The plugin file.
        file: PathBuf,
        /// Where: oci://REGISTRY/REPOSITORY:TAG.
        reference: String,
        /// The host the build is for (default: this one), e.g. `plugin-host@0.2.0`.
        #[arg(long, value_name = "NAME@VERSION")]
        for_host: Option<String>,
        #[command(flatten)]
        registry: crate::registry_cli::RegistryArgs,
    },
    /// Pull the build of oci://REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST) that matches this
    /// host: checked, judged and only then placed in the plugin directory, and locked.
    Pull {
        /// oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST.
        reference: String,
        #[command(flatten)]
        args: crate::registry_cli::PullArgs,
    },
    /// Pull every plugin the configuration declares (`[plugins.NAME] source = "oci://…"`)
    /// that is in no search path.
    Sync {
        #[command(flatten)]
        args: crate::registry_cli::PullArgs,
    },
    /// Make a minisign key pair for signing plugins: PREFIX.pub and PREFIX.key (unencrypted,
    /// mode 0600); never overwrites.
    Keygen {
        /// Where to write the keys: PREFIX.pub and PREFIX.key.
        #[arg(long, value_name = "PREFIX", default_value = crate::trust_cli::DEFAULT_KEY_PREFIX)]
        out: PathBuf,
    },
    /// Serve one isolated plugin for a host, on the control socket `--fd` (started by the
    /// host itself; see the book's "Isolation" chapter).
    #[command(name = "__worker", hide = true)]
    Worker {
        /// The inherited control socket.
        #[arg(long)]
        fd: i32,
        /// The inherited shared-memory call channel (protocol version 2), if the host made one.
        #[arg(long)]
        shm: Option<i32>,
    },
    /// Sign plugin files: writes FILE.minisig beside each (minisign's format; `minisign -Vm
    /// FILE -p KEY.pub` verifies it).
    Sign {
        /// The files to sign.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The secret key (from `plugin-host keygen`, or `minisign -G -W`); default:
        /// `plugin-host.key` in the working directory, where `keygen` writes it.
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
}

/// The longest log filter taken (`--log`, `PLUGIN_HOST_LOG`).
const MAX_LOG_FILTER: usize = 4096;

/// Sets up `tracing` output on stderr.
pub fn init_logging(filter: &Option<String>) -> Result<()> {
    let filter = match filter {
        Some(f) => f.clone(),
        None => std::env::var("PLUGIN_HOST_LOG").unwrap_or_else(|_| "info".into()),
    };
    // A filter may come from a script's environment: field values are matched as plain
    // text, never compiled as regular expressions (a crafted one took minutes and hundreds
    // of megabytes to compile before any command ran), and its length is bounded.
    if filter.len() > MAX_LOG_FILTER {
        bail!(
            "bad log filter: {} bytes, more than {MAX_LOG_FILTER}",
            filter.len()
        );
    }
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(&filter)
        .with_context(|| format!("bad log filter `{filter}`"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    Ok(())
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::HostInfo { json } => {
            let id = identity()?;
            output::provenance(&id.provenance, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { file, json } => match host::read_provenance_any_platform(&file) {
            Ok(p) => {
                output::provenance(&p, json)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ ReadError::Io { .. }) => Err(e.into()),
            Err(e) => {
                errln!("error[{}]: {}", e.reason(), printable(&e.to_string()));
                Ok(ExitCode::from(1))
            }
        },
        Command::Check { file, policy, json } => {
            if !file.exists() && file.symlink_metadata().is_err() {
                bail!("{}: no such file", file.display());
            }
            let host = policy.host(&load_config()?)?.build();
            let report = host.verify(&file);
            if let Some(host::PluginError::Read(ReadError::Io { .. })) = &report.error {
                bail!("{}", report.message.unwrap_or_default());
            }
            let ok = report.status == Status::Verified;
            output::reports(&host, &[report], json)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Scan {
            dirs,
            policy,
            no_load,
            check_layouts,
            load,
            trust,
            json,
        } => {
            let config = load_config()?;
            let dirs = crate::configured::search_paths(&dirs, &config, "scan DIR")?;
            crate::isolation_flags::check_names(&load.isolate, &dirs, &config)?;
            let mut setup = policy.host(&config)?;
            setup.host = setup.host.layout_check_at_load(check_layouts);
            let mut host = trust.apply(&config, load.apply(&config, setup)?)?.build();
            let mode = if no_load {
                ScanMode::VerifyOnly
            } else {
                ScanMode::Load
            };
            if json {
                let reports = host.scan(&dirs, mode)?;
                output::reports_json(&host, &reports)?;
            } else {
                // Rows go out as plugins finish: if one crashes the process, the rows
                // before it (and the debug log's `loading PATH`) say how far it got.
                let mut table = output::Table::start(&host)?;
                let mut failed = Ok(());
                host.scan_each(&dirs, mode, |report| {
                    if failed.is_ok() {
                        failed = table.row(&report);
                    }
                })?;
                failed?;
                table.finish()?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { plugins, call } => {
            let (command, args) = call.split_first().expect("clap requires the command");
            let command = command.clone();
            crate::reload_signal::block_sighup();
            let (mut host, no_dirs) = lazy(&plugins)?;
            let loaded = host.load_capability(CommandKind::KIND, &command);
            log_reports_but(host.lazy_reports(), &loaded);
            if let Err(e) = loaded {
                return not_loaded(&e, no_dirs);
            }
            crate::isolation_flags::warn_timeout_in_process(
                &host,
                plugins.load.call_timeout,
                &[(CommandKind::KIND, &command)],
            );
            let cmd = match host.registry().get::<CommandKind>(&command) {
                Ok(cmd) => cmd,
                Err(e) => return Ok(unavailable(&e)),
            };
            let args: Vec<RStr<'_>> = args.iter().map(|a| RStr::from(a.as_str())).collect();
            // An exit or a crash in an in-process plugin's call names it and the command.
            let watch = host.calling(&[(CommandKind::KIND, &command)]);
            let called = crate::reload_signal::reloading_on_sighup(&host, || {
                cmd.call(RSlice::from_slice(&args)).into_result()
            });
            drop(watch);
            match called {
                Ok(out) => {
                    // The command's output is its data; only made valid UTF-8.
                    outln!("{}", String::from_utf8_lossy(out.as_bytes()))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let provider = host.registry().provider("command", &command).unwrap_or("?");
                    let message = e.to_string();
                    if message.contains(&format!("plugin `{provider}`")) {
                        // An isolated plugin's failure names the plugin and the command.
                        errln!("error: {}", printable(&message));
                    } else {
                        errln!(
                            "error: command `{}` (plugin `{provider}`) {}",
                            printable(&command),
                            printable(&message)
                        );
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::New(args) => crate::authoring::new(args, &identity()?),
        Command::Preflight { args, policy } => {
            crate::authoring::preflight(args, &identity()?, policy.build(&load_config()?)?)
        }
        Command::Builder(command) => crate::builder_cli::run(command, identity()?),
        Command::Config { json, action } => crate::config_cli::run(json, action),
        Command::Lock {
            dirs,
            lock_file,
            policy,
            signatures,
        } => {
            let config = load_config()?;
            let dirs = crate::configured::search_paths(&dirs, &config, "lock DIR")?;
            // A lock the next scan would not read (an untrusted project's) is not written.
            crate::trust_cli::no_ignored_projects_lock(lock_file.as_deref(), &config)?;
            let lock_file = crate::trust_cli::lock_file(lock_file.as_deref(), &config);
            let setup = signatures.apply(&config, policy.host(&config)?)?;
            crate::trust_cli::lock(setup, &dirs, &lock_file)
        }
        Command::Keygen { out } => crate::trust_cli::keygen(&out),
        Command::Publish {
            file,
            reference,
            for_host,
            registry,
        } => crate::registry_cli::publish(
            &file,
            &reference,
            for_host.as_deref(),
            &registry,
            &identity()?,
        ),
        Command::Pull { reference, args } => {
            crate::registry_cli::pull(&reference, &args, &load_config()?)
        }
        Command::Sync { args } => crate::registry_cli::sync(&args, &load_config()?),
        #[cfg(unix)]
        Command::Worker { fd, shm } => Ok(plugin_isolate::worker::serve_with_channel(
            identity()?,
            fd,
            shm,
        )),
        #[cfg(not(unix))]
        Command::Worker { .. } => Err(crate::unix_only::isolation("`plugin-host __worker`")),
        Command::Sign { files, key } => crate::trust_cli::sign(&files, key.as_deref()),
        Command::Transform { plugins, names } => {
            crate::reload_signal::block_sighup();
            let (mut host, no_dirs) = lazy(&plugins)?;
            for name in &names {
                // Each load logs only the reports it added (the list keeps them all).
                let seen = host.lazy_reports().len();
                let loaded = host.load_capability(TransformKind::KIND, name);
                log_reports_but(&host.lazy_reports()[seen..], &loaded);
                if let Err(e) = loaded {
                    return not_loaded(&e, no_dirs);
                }
            }
            let called: Vec<(&str, &str)> = names
                .iter()
                .map(|n| (TransformKind::KIND, n.as_str()))
                .collect();
            crate::isolation_flags::warn_timeout_in_process(
                &host,
                plugins.load.call_timeout,
                &called,
            );
            let transforms = match names
                .iter()
                .map(|n| host.registry().get::<TransformKind>(n))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(transforms) => transforms,
                Err(e) => return Ok(unavailable(&e)),
            };
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            let watch = host.calling(&called);
            let piped = crate::reload_signal::reloading_on_sighup(&host, || {
                // One isolated transform: pipelined, two chunks in flight.
                #[cfg(unix)]
                if let Some((name, input)) = single_isolated(&host, &names) {
                    return crate::stream::pipe_isolated(&host, name, input, stdout);
                }
                crate::stream::pipe(&transforms, stdin, stdout)
            });
            drop(watch);
            match piped {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(crate::stream::StreamError::Io(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    Ok(ExitCode::SUCCESS)
                }
                // Reading stdin or writing stdout failed: the environment's error (exit 2),
                // not the plugin's (exit 1).
                Err(crate::stream::StreamError::Io(e)) => {
                    Err(anyhow::Error::new(e)
                        .context("reading the input or writing the output failed"))
                }
                Err(e) => {
                    errln!("error: {}", printable(&e.to_string()));
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// When `names` is one transform, of an isolated plugin: its name, and standard input to
/// read it from (a descriptor of its own, read without the standard library's buffer).
#[cfg(unix)]
fn single_isolated<'n>(host: &Host, names: &'n [String]) -> Option<(&'n str, std::fs::File)> {
    use std::os::fd::AsFd;
    let [name] = names else { return None };
    let provider = host.registry().provider(TransformKind::KIND, name)?;
    if !plugin_isolate::isolated(host)
        .iter()
        .any(|p| p.name == provider)
    {
        return None;
    }
    let input = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    tracing::debug!("transform `{name}` is isolated: its chunks are pipelined, two in flight");
    Some((name, input.into()))
}

/// A host with the capability index of the plugin directories: builtins registered, plugins
/// that declare no capabilities loaded, the others loaded on first use
/// ([`Host::load_capability`]). Refusals so far are logged.
///
/// With no plugin directory at all the builtins still answer (`run version`): the error that
/// says where plugins are looked for comes back beside the host, for the caller to give when
/// anything else is asked for.
fn lazy(args: &PluginArgs) -> Result<(Host, Option<anyhow::Error>)> {
    let config = load_config()?;
    let (dirs, no_dirs) =
        match crate::configured::search_paths(&args.dirs, &config, "--plugins DIR") {
            Ok(dirs) => (dirs, None),
            Err(e) => (Vec::new(), Some(e)),
        };
    crate::isolation_flags::check_names(&args.load.isolate, &dirs, &config)?;
    let mut setup = args.policy.host(&config)?;
    if let Some(cache) = index_cache(&identity()?.name) {
        setup.host = setup.host.index_cache(cache);
    }
    let setup = args.load.apply(&config, setup)?;
    let mut host = args.trust.apply(&config, setup)?.build();
    log_reports(&host.index(&dirs)?);
    Ok((host, no_dirs))
}

/// `$XDG_CACHE_HOME/<app>/index.bin` (else under `~/.cache`): where the capability index
/// keeps what it read from each plugin file.
fn index_cache(app: &str) -> Option<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let cache = host::config::Locations::from_env(app, cwd).cache?;
    Some(cache.join("index.bin"))
}

/// A capability `run` or `transform` asked for that no plugin provides, or whose plugin was
/// refused or failed: said once, exit status 1 (the book's exit-status table).
/// A capability `run`/`transform` asked for could not be loaded: with no plugin directory at
/// all, the error that says where plugins are looked for (exit 2); else this one, exit 1.
fn not_loaded(error: &host::LazyError, no_dirs: Option<anyhow::Error>) -> Result<ExitCode> {
    match no_dirs {
        Some(no_dirs) => Err(no_dirs),
        None => Ok(unavailable(error)),
    }
}

fn unavailable(error: &dyn std::error::Error) -> ExitCode {
    errln!("error: {}", printable(&error.to_string()));
    ExitCode::from(1)
}

/// [`log_reports`], except the refusal that `loaded` reports as its error: that one is
/// printed once, as the error, not also as a warning before it.
fn log_reports_but(reports: &[host::PluginReport], loaded: &Result<(), host::LazyError>) {
    let refused = match loaded {
        Err(host::LazyError::Refused { path, .. }) => Some(path.as_path()),
        _ => None,
    };
    log_reports_where(reports, |r| Some(r.path.as_path()) != refused);
}

/// Logs the plugins that were refused, failed or shadowed, and every warning.
fn log_reports(reports: &[host::PluginReport]) {
    log_reports_where(reports, |_| true);
}

/// [`log_reports`], the refusal line only for the reports `refusal` accepts.
fn log_reports_where(
    reports: &[host::PluginReport],
    refusal: impl Fn(&host::PluginReport) -> bool,
) {
    for report in reports {
        // A report left out still has its warnings logged: the error does not repeat them.
        if let (true, Some(reason), Some(message)) =
            (refusal(report), report.reason, &report.message)
        {
            tracing::warn!(
                "{} [{reason}]: {}",
                report.status.as_str(),
                printable(message)
            );
        }
        for w in report.warnings() {
            tracing::warn!(
                "[{}] {}",
                w.check.reason(),
                crate::output::shown(&w.message)
            );
        }
        for w in &report.trust_warnings {
            tracing::warn!(
                "{} [{}]: {}",
                printable(&report.path.to_string_lossy()),
                w.reason,
                printable(&w.message)
            );
        }
    }
}
