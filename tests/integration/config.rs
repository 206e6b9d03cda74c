//! `plugin-host config`: layered files found under temporary `HOME`/`XDG_*` directories and a
//! temporary project, printed with the file and line of every value; a broken file exits 2.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{stderr, stdout};

/// A temporary machine: `home/` (HOME), `etc/` (XDG_CONFIG_DIRS), `share/` (XDG_DATA_DIRS)
/// and a project `proj/` whose subdirectory `proj/src` is the working directory.
pub(crate) struct Machine {
    root: TempDir,
}

impl Machine {
    pub(crate) fn new() -> Machine {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proj/src")).unwrap();
        fs::create_dir_all(root.path().join("home")).unwrap();
        Machine { root }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    /// Runs `plugin-host ARGS` from `proj/src` with only this machine's files visible.
    pub(crate) fn run(&self, args: &[&str], explicit: Option<&Path>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugin-host"));
        cmd.args(args)
            .current_dir(self.path("proj/src"))
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_DIRS", self.path("etc"))
            .env("XDG_DATA_DIRS", self.path("share"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("PLUGIN_HOST_CONFIG")
            // The cache is under HOME; registry credentials are this machine's only.
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env("PLUGIN_HOST_LOG", "info")
            .stdin(Stdio::null());
        if let Some(file) = explicit {
            cmd.env("PLUGIN_HOST_CONFIG", file);
        }
        cmd.output().expect("run plugin-host")
    }

    /// Writes the project file `proj/plugin-host.toml` and trusts it (`config trust`), as its
    /// user would before its settings apply.
    pub(crate) fn project(&self, text: &str) -> PathBuf {
        let file = self.write("proj/plugin-host.toml", text);
        let out = self.run(&["config", "trust"], None);
        assert!(out.status.success(), "config trust: {}", stderr(&out));
        file
    }

    fn json(&self, explicit: Option<&Path>) -> Value {
        let out = self.run(&["config", "--json"], explicit);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(&out)))
    }

    /// The three layers: a system file, a user file and the project file, overriding each
    /// other in part.
    fn layered(&self) -> (PathBuf, PathBuf, PathBuf) {
        fs::create_dir_all(self.path("proj/plugins")).unwrap();
        let system = self.write(
            "etc/plugin-host/config.toml",
            "[policy]\npreset = \"strict\"\n\n[trust]\nsignatures = \"require\"\n",
        );
        let user = self.write(
            "home/.config/plugin-host/config.toml",
            "[trust]\nsignatures = \"warn\"\n\n[plugins.redact.config]\nreplacement = \"#\"\nkinds = \"email\"\n",
        );
        let project = self.project(
            "[search]\npaths = [\"plugins\"]\n\n[plugins.redact.config]\nkinds = \"ipv4\"\n",
        );
        (system, user, project)
    }
}

/// The `values[]` entry for `key`.
fn value<'a>(doc: &'a Value, key: &str) -> &'a Value {
    doc["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == key)
        .unwrap_or_else(|| panic!("no value {key} in {doc:#}"))
}

#[test]
fn config_prints_each_value_with_the_file_and_line_it_came_from() {
    let m = Machine::new();
    let (system, user, project) = m.layered();
    let out = m.run(&["config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |l: String| assert!(text.lines().any(|t| t == l), "no line {l:?} in:\n{text}");
    line(format!("#   system   {}", system.display()));
    line(format!("#   user     {}", user.display()));
    line(format!("#   project  {}", project.display()));
    line(format!(
        "search.paths[0] = \"{}\"  # {}:2:10",
        m.path("proj/plugins").display(),
        project.display()
    ));
    line(format!(
        "policy.preset = \"strict\"  # {}:2:10",
        system.display()
    ));
    // The user overrides the system, key by key; the project overrides one key of the
    // plugin's config table and keeps the user's other one.
    line(format!(
        "trust.signatures = \"warn\"  # {}:2:14",
        user.display()
    ));
    line(format!(
        "plugins.redact.config.kinds = \"ipv4\"  # {}:5:9",
        project.display()
    ));
    line(format!(
        "plugins.redact.config.replacement = \"#\"  # {}:5:15",
        user.display()
    ));
}

#[test]
fn config_lists_absent_layers_and_default_search_paths() {
    let m = Machine::new();
    let data = m.path("home/.local/share/plugin-host/plugins");
    fs::create_dir_all(&data).unwrap();
    let out = m.run(&["config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "#   system   {}  (absent)",
            m.path("etc/plugin-host/config.toml").display()
        )),
        "{text}"
    );
    assert!(
        text.contains("#   project  plugin-host.toml: none in "),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "search.paths = [\"{}\"]  # default",
            data.display()
        )),
        "{text}"
    );
}

#[test]
fn config_json_has_an_object_per_value() {
    let m = Machine::new();
    let (system, user, project) = m.layered();
    let doc = m.json(None);
    assert_eq!(doc["env"], "PLUGIN_HOST_CONFIG");
    assert_eq!(doc["project_dir"], m.path("proj").to_str().unwrap());
    let layers: Vec<(&str, &str, bool)> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["layer"].as_str().unwrap(),
                f["path"].as_str().unwrap(),
                f["found"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        layers,
        vec![
            ("system", system.to_str().unwrap(), true),
            ("user", user.to_str().unwrap(), true),
            ("project", project.to_str().unwrap(), true),
        ]
    );
    let preset = value(&doc, "policy.preset");
    assert_eq!(preset["value"], "strict");
    assert_eq!(preset["file"], system.to_str().unwrap());
    assert_eq!(
        (preset["line"].as_u64(), preset["column"].as_u64()),
        (Some(2), Some(10))
    );
    let kinds = value(&doc, "plugins.redact.config.kinds");
    assert_eq!(kinds["value"], "ipv4");
    assert_eq!(kinds["file"], project.to_str().unwrap());
    assert_eq!(kinds["line"], 5);
    let signatures = value(&doc, "trust.signatures");
    assert_eq!(signatures["file"], user.to_str().unwrap());
}

#[test]
fn plugin_host_config_names_the_only_file() {
    let m = Machine::new();
    m.layered();
    let only = m.write("elsewhere/mine.toml", "[policy]\npreset = \"default\"\n");
    let doc = m.json(Some(&only));
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{doc:#}");
    assert_eq!(files[0]["layer"], "explicit");
    let values = doc["values"].as_array().unwrap();
    let keys: Vec<&str> = values.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["search.paths", "policy.preset"], "{doc:#}");
    assert_eq!(value(&doc, "policy.preset")["file"], only.to_str().unwrap());

    let out = m.run(&["config"], Some(&m.path("missing.toml")));
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("$PLUGIN_HOST_CONFIG"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_file_exits_2_naming_file_line_and_column() {
    let m = Machine::new();
    m.layered();
    let user = m.path("home/.config/plugin-host/config.toml");
    fs::write(
        &user,
        "[trust]\nsignatures = \"warn\"\n[plugins.redact]\nenabeld = true\n",
    )
    .unwrap();
    for args in [&["config"][..], &["config", "--json"]] {
        let out = m.run(args, None);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        assert!(
            out.stdout.is_empty(),
            "half a configuration printed: {}",
            stdout(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: {}:4:1: unknown key `enabeld` in [plugins.redact]; did you mean `enabled`?",
                user.display()
            )),
            "{err}"
        );
    }

    // Trusted, then broken without a change to its text: the path it names is removed.
    fs::create_dir_all(m.path("proj/gone")).unwrap();
    let project = m.project("[search]\npaths = [\"gone\"]\n");
    fs::remove_dir(m.path("proj/gone")).unwrap();
    fs::write(&user, "").unwrap();
    let out = m.run(&["config"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:2:10: `search.paths`", project.display())),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// `redact` through the CLI with a TOML configuration string, as the config file's
/// `[plugins.redact.config]` table becomes.
fn redact(dir: &Path, config: &str, input: &[u8]) -> Output {
    crate::support::cli_with(
        &[
            "transform",
            "--plugins",
            dir.to_str().unwrap(),
            "--plugin-config",
            &format!("redact={config}"),
            "redact",
        ],
        &[],
        Some(input),
    )
}

#[test]
fn redact_reads_its_typed_config_table() {
    let dir = crate::support::plugin_dir(&["redact"]);
    let input = b"TICKET-7 from ada@example.com at 10.0.0.1\n";
    let out = redact(
        dir.path(),
        "kinds = [\"email\"]\npatterns = [\"TICKET-[0-9]+\"]\nreplacement = \"<{kind}>\"\n",
        input,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<custom> from <email> at 10.0.0.1\n");

    // Without configuration: every built-in kind, the default replacement.
    let out = redact(dir.path(), "", input);
    assert_eq!(
        stdout(&out),
        "TICKET-7 from [REDACTED:email] at [REDACTED:ipv4]\n"
    );

    // A key redact does not have: registration fails with the plugin-facing message.
    let out = redact(dir.path(), "replacment = \"#\"", input);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid plugin configuration: unknown field `replacment`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_config_files_plugin_table_reaches_the_plugin() {
    // Through the library: the lead wires the CLI's commands to the configuration later.
    use abi_stable::std_types::RSlice;
    use host::config::{Config, Locations};
    use plugin_api::{RVec, TransformKind};

    let m = Machine::new();
    m.write(
        "home/.config/plugin-host/config.toml",
        "[plugins.redact.config]\nreplacement = \"user-{kind}\"\nkinds = [\"email\"]\n",
    );
    m.project("[plugins.redact.config]\nkinds = [\"ipv4\"]\n");
    let mut locations = Locations::project_only("plugin-host", m.path("proj/src"));
    locations.user = Some(m.path("home/.config/plugin-host/config.toml"));
    let config = Config::load(&locations).unwrap();
    let text = config.plugin("redact").unwrap().config_text().unwrap();

    let dir = crate::support::plugin_dir(&["redact"]);
    let mut host = crate::support::builder()
        .plugin("redact", host::PluginSettings::new().config(text))
        .build();
    host.scan(&[dir.path()], host::ScanMode::Load).unwrap();
    let redact = host.registry().get::<TransformKind>("redact").unwrap();
    let mut out = RVec::new();
    redact
        .apply(RSlice::from_slice(b"ada@example.com 10.0.0.1"), &mut out)
        .into_result()
        .unwrap();
    assert_eq!(out.as_slice(), b"ada@example.com user-ipv4");
}
