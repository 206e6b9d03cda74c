//! The trust commands and flags: `lock`, `keygen`, `sign`; `--lock-file`, `--locked`,
//! `--trusted-key`, `--signatures`. Verification is the host library's (`host::trust`);
//! making keys and signatures (the `minisign` crate) lives here, in the CLI only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use host::config::{Config, LayerKind};
use host::small_file::{Links, SmallFile};
use host::text::printable;
use host::trust::{signature_path, LOCK_FILE_NAME};
use host::{Lock, PluginSettings, ScanMode, SignatureMode, Status, TrustedKey};

use crate::configured::Setup;

/// How key files (`--trusted-key FILE`, `sign --key FILE`) are read: regular files (links
/// followed), at most 64 KiB — a minisign key file is a few hundred bytes.
const KEY_FILE: SmallFile = SmallFile {
    what: "key file",
    limit: 64 << 10,
    links: Links::Follow,
};

/// What `keygen` writes without `--out`: `plugin-host.pub` and `plugin-host.key` in the
/// working directory; `sign` without `--key` uses that `.key`.
pub const DEFAULT_KEY_PREFIX: &str = "plugin-host";

/// Signature checking, for every command that verifies plugins.
#[derive(Args)]
pub struct SignatureArgs {
    /// Trust signatures by this minisign public key: the base64 line of a `.pub` file (always
    /// that key, whatever a file of that name holds), or the path of one (repeatable).
    /// Trusting a key makes `--signatures` default to `warn`.
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
    /// What to do about plugin signatures (FILE.minisig): ignore, warn, require. Default:
    /// `warn` when a key is trusted, else `ignore`.
    #[arg(long, value_name = "MODE")]
    signatures: Option<SignatureMode>,
}

impl SignatureArgs {
    /// Applies the configuration's `[trust]` table and per-plugin `signatures`, then these
    /// flags: `--trusted-key` adds keys, `--signatures` replaces every configured mode.
    pub fn apply(&self, config: &Config, mut setup: Setup) -> Result<Setup> {
        let mut host = setup.host;
        let trust = config.trust();
        // Set in the project's file (the one found by walking up, or named by the
        // environment), as the configuration recorded its layers.
        let from_project = |origin: &Path| {
            config.files().any(|(kind, file)| {
                matches!(kind, LayerKind::Project | LayerKind::Explicit) && file == origin
            })
        };
        // Keys trusted on the command line, where neither the user's nor the system's files
        // trust a key or set a mode, make the mode `warn`: a project file may not lower that,
        // for all its plugins or for one (the project floor holds it only to the user's and
        // the system's files, which did not know of the flag).
        let flags_imply_warn = self.signatures.is_none()
            && !self.trusted_keys.is_empty()
            && trust.keys.iter().all(|key| from_project(&key.origin.file))
            && trust
                .signatures
                .as_ref()
                .is_none_or(|mode| from_project(&mode.origin.file));
        let lowers_the_flags = |mode: &host::config::Valued<SignatureMode>| {
            flags_imply_warn && from_project(&mode.origin.file) && mode.value < SignatureMode::Warn
        };
        for key in &trust.keys {
            let parsed = TrustedKey::parse(&key.value)
                .map_err(|e| anyhow!("{}: in [trust] keys: {e}", key.origin))?;
            host = host.trusted_key(parsed);
        }
        if let Some(mode) = &trust.signatures {
            if lowers_the_flags(mode) {
                tracing::warn!(
                    "{}: `[trust] signatures = \"{}\"` is not applied: --trusted-key makes \
                     signatures `warn`, and a project file may not lower that",
                    mode.origin,
                    mode.value.as_str()
                );
            } else {
                host = host.signatures(mode.value);
            }
        }
        if self.signatures.is_none() {
            for (name, settings) in config.plugins() {
                let Some(mode) = &settings.signatures else {
                    continue;
                };
                if lowers_the_flags(mode) {
                    tracing::warn!(
                        "{}: `[plugins.{}] signatures = \"{}\"` is not applied: --trusted-key \
                         makes signatures `warn`, and a project file may not lower that for \
                         one of its plugins",
                        mode.origin,
                        host::text::printable(name),
                        mode.value.as_str()
                    );
                    continue;
                }
                host = host.plugin(name, PluginSettings::new().signatures(mode.value));
            }
        }
        for key in &self.trusted_keys {
            // A key given as a key is that key, whatever a file of that name holds (a
            // repository could ship one named like the key it would replace). Anything else
            // is a path, read as a `.pub` file: a regular file, bounded, never blocking on a
            // FIFO.
            let key = match TrustedKey::parse(key) {
                Ok(key) => key,
                Err(_) if Path::new(key).symlink_metadata().is_ok() => {
                    let text = KEY_FILE
                        .read_to_string(Path::new(key))
                        .with_context(|| format!("--trusted-key {key}"))?;
                    TrustedKey::parse(&text).map_err(|e| anyhow!("--trusted-key {key}: {e}"))?
                }
                Err(e) => return Err(anyhow!("--trusted-key: {e}")),
            };
            host = host.trusted_key(key);
        }
        if let Some(mode) = self.signatures {
            host = host.signatures(mode);
        }
        setup.host = host;
        Ok(setup)
    }
}

/// The lock file and signatures, for the commands that load plugins.
#[derive(Args)]
pub struct TrustArgs {
    /// The lock file: when it exists, every plugin it lists must match it
    /// (`checksum-mismatch`). Default: `plugin-host.lock` beside the project file
    /// (`plugin-host.toml`), else in the working directory.
    #[arg(long, value_name = "PATH")]
    lock_file: Option<PathBuf>,
    /// Refuse plugins the lock file does not list (`not-locked`); the lock file must exist.
    #[arg(long)]
    locked: bool,
    #[command(flatten)]
    signatures: SignatureArgs,
}

/// An ignored (untrusted) project's lock is the project's too: not read, not written, unless
/// named with `--lock-file` (`named`). For the commands that write the lock.
pub fn no_ignored_projects_lock(named: Option<&Path>, config: &Config) -> Result<()> {
    match config.ignored().first() {
        Some(ignored) if named.is_none() => bail!(
            "the project file {} is not used (see the warning above), so neither is a lock \
             beside it; trust the project file (`plugin-host config trust`), or name the lock \
             with --lock-file",
            ignored.path.display()
        ),
        _ => Ok(()),
    }
}

impl TrustArgs {
    /// Applies the lock file (when it exists) and the signature settings.
    pub fn apply(&self, config: &Config, mut setup: Setup) -> Result<Setup> {
        let lock_file = lock_file(self.lock_file.as_deref(), config);
        // An ignored (untrusted) project's lock is the project's too: not read unless named.
        if self.lock_file.is_none() && !config.ignored().is_empty() {
            if self.locked {
                bail!(
                    "--locked: the project file {} is not used (see the warning above), so \
                     neither is a lock beside it; trust the project file, or name the lock with \
                     --lock-file",
                    config.ignored()[0].path.display()
                );
            }
            return self.signatures.apply(config, setup);
        }
        match Lock::read_if_exists(&lock_file)? {
            Some(lock) => setup.host = setup.host.lock(lock, self.locked),
            None if self.locked => bail!(
                "{}: no lock file, and --locked loads only locked plugins; run `plugin-host \
                 lock` first (or give its path with --lock-file)",
                lock_file.display()
            ),
            None => {}
        }
        self.signatures.apply(config, setup)
    }
}

/// A file to sign, opened as the host opens a plugin to verify it ([`host::open_candidate`]:
/// without blocking on a FIFO, a regular file only), of at most [`host::trust::MAX_HASHED`]
/// bytes, as the host checks signatures.
fn open_to_sign(file: &Path) -> Result<fs::File> {
    let data = match host::open_candidate(file) {
        Ok(data) => data,
        Err(host::ReadError::NotALibrary { detail, .. }) => bail!(
            "{}: not a regular file ({detail}), so not a plugin to sign",
            file.display()
        ),
        Err(e) => return Err(e).context("cannot read the file to sign"),
    };
    let len = data
        .metadata()
        .with_context(|| format!("{}: cannot read the file to sign", file.display()))?
        .len();
    if len > host::trust::MAX_HASHED {
        bail!(
            "{}: {len} bytes, more than the {} bytes a plugin file may be to have its \
             signature checked",
            file.display(),
            host::trust::MAX_HASHED
        );
    }
    Ok(data)
}

/// The lock file: the one given, else `plugin-host.lock` beside the project file, else in
/// the working directory.
pub fn lock_file(given: Option<&Path>, config: &Config) -> PathBuf {
    match (given, config.project_dir()) {
        (Some(path), _) => path.to_owned(),
        (None, Some(dir)) => dir.join(LOCK_FILE_NAME),
        (None, None) => PathBuf::from(LOCK_FILE_NAME),
    }
}

/// `plugin-host lock`: verifies every plugin file in `dirs` and writes the lock file.
/// Exit 0 when every file was locked, 1 when some were rejected (and so not locked).
pub fn lock(mut setup: Setup, dirs: &[PathBuf], lock_file: &Path) -> Result<ExitCode> {
    setup.host = setup.host.digests(true);
    let mut host = setup.build();
    let mut lock = Lock::new(lock_file);
    let mut skipped = 0;
    for report in host.scan(dirs, ScanMode::VerifyOnly)? {
        let path = printable(&report.path.to_string_lossy()).into_owned();
        if lock.lock_report(&report) {
            let digest = report.digest.as_ref().map(|d| d.sha256_hex());
            outln!(
                "locked   {} {}  {path}  sha256:{}",
                printable(report.name.as_deref().unwrap_or("-")),
                printable(report.version.as_deref().unwrap_or("-")),
                digest.unwrap_or_default()
            )?;
        } else if matches!(report.status, Status::Disabled | Status::Shadowed) {
            // Not used by this configuration, so not locked; nothing is wrong with it.
            outln!(
                "skipped  {path}: {}",
                printable(report.message.as_deref().unwrap_or(report.status.as_str()))
            )?;
        } else {
            skipped += 1;
            let reason = report.reason.map(|r| r.as_str()).unwrap_or("-");
            outln!(
                "rejected {path}: not locked [{reason}]: {}",
                printable(report.message.as_deref().unwrap_or(""))
            )?;
        }
    }
    // Where pulled plugins came from is the old lock's to tell: kept for the same bytes. A
    // lock that cannot be read is written anew, as it would be without one.
    match Lock::read_if_exists(lock_file) {
        Ok(Some(previous)) => lock.keep_sources(&previous),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "the lock file is written anew: {}",
            printable(&e.to_string())
        ),
    }
    lock.write()?;
    let count = lock.entries().count();
    outln!(
        "\nwrote {}: {count} plugin{} locked{}",
        lock_file.display(),
        if count == 1 { "" } else { "s" },
        match skipped {
            0 => String::new(),
            n => format!(
                ", {n} rejected file{} not locked",
                if n == 1 { "" } else { "s" }
            ),
        }
    )?;
    Ok(if skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `plugin-host keygen`: a minisign key pair, `PREFIX.pub` and `PREFIX.key` (unencrypted,
/// as `minisign -G -W` writes it, mode 0600). Refuses to overwrite either file.
pub fn keygen(prefix: &Path) -> Result<ExitCode> {
    // A prefix names the files: `DIR/` (or `.`) would make the hidden `DIR/.key`.
    let ends_in_separator = prefix
        .as_os_str()
        .as_encoded_bytes()
        .last()
        .is_some_and(|&b| std::path::is_separator(b as char));
    if ends_in_separator
        || prefix.is_dir()
        || !matches!(prefix.components().next_back(), Some(Component::Normal(_)))
    {
        bail!(
            "--out {}: a prefix for the two files' names (`--out DIR/mykey` writes DIR/mykey.pub \
             and DIR/mykey.key), not a directory",
            prefix.display()
        );
    }
    let with = |ext: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let (public, secret) = (with(".pub"), with(".key"));
    for path in [&public, &secret] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{}: already exists; keygen never overwrites a key (choose another --out)",
                path.display()
            );
        }
    }
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| anyhow!("cannot generate a key pair: {e}"))?;
    let pk = pair
        .pk
        .to_box()
        .map_err(|e| anyhow!("cannot encode the public key: {e}"))?
        .into_string();
    let sk = pair
        .sk
        .to_box(Some(
            "minisign secret key (unencrypted, made by plugin-host keygen)",
        ))
        .map_err(|e| anyhow!("cannot encode the secret key: {e}"))?
        .into_string();
    write_new(&secret, sk.as_bytes(), true)?;
    write_new(&public, pk.as_bytes(), false)?;
    let line = pk.lines().nth(1).unwrap_or_default();
    outln!("public key  {}", public.display())?;
    outln!(
        "secret key  {} (unencrypted: keep it private)",
        secret.display()
    )?;
    outln!("\ntrust it with:  --trusted-key {line}")?;
    outln!("or in config:   [trust] keys = [\"{line}\"]")?;
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let created = if secret {
        // Only the user may read it, from its creation (on Windows too: an access list of
        // its own, not the directory's).
        host::secret_file::create_new_secret(path)
    } else {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o644);
        }
        options.open(path)
    };
    let mut file = created.with_context(|| format!("{}: cannot create", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// `plugin-host sign`: writes `FILE.minisig` for each file (prehashed, minisign's format,
/// with a trusted comment naming the file and the time). Without `--key`, the secret key
/// `keygen` writes by default: `plugin-host.key` in the working directory.
pub fn sign(files: &[PathBuf], key: Option<&Path>) -> Result<ExitCode> {
    let default = PathBuf::from(format!("{DEFAULT_KEY_PREFIX}.key"));
    let text = match (key, KEY_FILE.read_to_string(key.unwrap_or(&default))) {
        (_, Ok(text)) => text,
        (None, Err(e)) if e.is_not_found() => {
            let cwd = std::env::current_dir().unwrap_or_default();
            bail!(
                "no secret key {}: without --key, `sign` uses the key `plugin-host keygen` writes \
                 by default, in the working directory ({}); make one with `plugin-host keygen` \
                 (and trust its public key, {DEFAULT_KEY_PREFIX}.pub, where plugins are loaded), \
                 or give one with --key PATH",
                default.display(),
                cwd.display()
            )
        }
        (_, Err(e)) => return Err(e).context("cannot read the secret key"),
    };
    let key = key.unwrap_or(&default);
    let sk = minisign::SecretKeyBox::from_string(&text)
        .and_then(|b| b.into_unencrypted_secret_key())
        .map_err(|e| {
            anyhow!(
                "{}: not an unencrypted minisign secret key ({e}); make one with `plugin-host \
                 keygen`, or sign with `minisign -Sm FILE` for a password-protected key",
                key.display()
            )
        })?;
    let pk =
        minisign::PublicKey::from_secret_key(&sk).map_err(|e| anyhow!("{}: {e}", key.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for file in files {
        let data = open_to_sign(file)?;
        // One line of printable text: a name with a line break in it would end the trusted
        // comment early and leave a signature file no one can read.
        let name = file
            .file_name()
            .map(|n| printable(&n.to_string_lossy()).into_owned())
            .unwrap_or_default();
        let trusted = format!("timestamp:{now}\tfile:{name}\thashed");
        let signature = minisign::sign(
            Some(&pk),
            &sk,
            std::io::Read::take(data, host::trust::MAX_HASHED),
            Some(&trusted),
            Some("signature from plugin-host secret key"),
        )
        .map_err(|e| anyhow!("{}: cannot sign: {e}", file.display()))?;
        let out = signature_path(file);
        // Never through a link planted at FILE.minisig: a new file renamed over it.
        host::small_file::write_atomically(&out, signature.into_string().as_bytes())
            .with_context(|| format!("{}: cannot write the signature", out.display()))?;
        outln!(
            "signed {}  ->  {}",
            host::text::printable(&file.display().to_string()),
            host::text::printable(&out.display().to_string())
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
