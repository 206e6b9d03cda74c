//! The index: path order, shadowing, declarations and the errors that name the fix.

use super::*;
use plugin_api::provenance::Provenance;

pub(crate) fn provenance(name: &str, declared: Option<&[(&str, &[&str])]>) -> Provenance {
    let blob = r#"{"name":"x","version":"0.1.0","plugin_api":"0.1.0","abi_stable":"0.11.3",
        "rustc":{"release":"1.95.0","commit_hash":"h","commit_date":"d","channel":"stable","llvm":null},
        "target":"t","profile":{"name":"debug","opt_level":"0","debug_assertions":true,"panic":"unwind"},
        "features":[],"dependencies":[]}"#;
    let mut p: Provenance = serde_json::from_str(blob).unwrap();
    p.name = name.to_owned();
    p.capabilities = declared.map(|kinds| {
        kinds
            .iter()
            .map(|(k, names)| (k.to_string(), names.iter().map(|n| n.to_string()).collect()))
            .collect()
    });
    p
}

#[test]
fn first_in_path_order_wins_and_later_names_are_shadowed() {
    let mut index = Index::default();
    let a = provenance("hello", Some(&[("command", &["hello"])]));
    let b = provenance(
        "redact",
        Some(&[("transform", &["redact"]), ("command", &["hello"])]),
    );
    let old = provenance("wc", None);
    assert_eq!(
        index.add(
            Path::new("/1/libhello.so"),
            &a.name,
            a.capabilities.as_ref()
        ),
        Placed::Indexed
    );
    assert_eq!(
        index.add(
            Path::new("/1/libredact.so"),
            &b.name,
            b.capabilities.as_ref()
        ),
        Placed::Indexed
    );
    assert_eq!(
        index.add(
            Path::new("/1/libwc.so"),
            &old.name,
            old.capabilities.as_ref()
        ),
        Placed::Undeclared
    );
    assert_eq!(
        index.add(
            Path::new("/2/libhello.so"),
            &a.name,
            a.capabilities.as_ref()
        ),
        Placed::Shadowed(PathBuf::from("/1/libhello.so"))
    );
    assert_eq!(
        index.add(
            Path::new("/2/libwc.so"),
            &old.name,
            old.capabilities.as_ref()
        ),
        Placed::Shadowed(PathBuf::from("/1/libwc.so")),
        "an undeclared plugin shadows later files of its name too"
    );
    // Two plugins declare `command hello`: both are candidates, in path order.
    assert_eq!(index.candidates("command", "hello"), [0, 1]);
    assert_eq!(index.candidates("transform", "redact"), [1]);
    assert!(index.candidates("transform", "hello").is_empty());
    assert_eq!(index.plugins.len(), 2, "only declaring plugins are indexed");
    let mut names = index.names("command");
    names.sort();
    assert_eq!(names, ["hello", "hello"]);
    index.set_state(
        0,
        IndexedState::Refused(ReasonCode::RustcMismatch, "x".into()),
    );
    assert_eq!(
        index.names("command"),
        ["hello"],
        "refused ones are not offered"
    );
}

#[test]
fn declaring_nothing_is_indexed_under_nothing() {
    let mut index = Index::default();
    let none = provenance("quiet", Some(&[]));
    assert_eq!(
        index.add(
            Path::new("/1/libquiet.so"),
            &none.name,
            none.capabilities.as_ref()
        ),
        Placed::Indexed
    );
    assert!(index.candidates("command", "quiet").is_empty());
    assert!(index.names("command").is_empty());
}

#[test]
fn errors_name_the_capability_and_the_fix() {
    let refused = LazyError::Refused {
        kind: "command".into(),
        name: "hello".into(),
        plugin: "hello".into(),
        path: "/p/libhello.so".into(),
        reason: ReasonCode::RustcMismatch,
        message: "built by another rustc".into(),
    };
    assert_eq!(refused.reason(), Some(ReasonCode::RustcMismatch));
    assert!(refused
        .to_string()
        .contains("command `hello` is declared by plugin `hello`"));
    let missing = LazyError::NotRegistered {
        kind: "command".into(),
        name: "ghost".into(),
        plugin: "liar".into(),
        path: "/p/libliar.so".into(),
        registered: vec!["command:real".into()],
    };
    let text = missing.to_string();
    assert!(
        text.contains("declares command `ghost` but did not register it"),
        "{text}"
    );
    assert!(text.contains("command:real"), "{text}");
    assert_eq!(missing.reason(), None);
}

/// A host that records what it is asked to load and refuses it (as a file that fails
/// verification would be), so the path lazy loading chose is in the error.
#[derive(Default)]
struct Recorder {
    registry: Registry,
    loaded: Vec<PathBuf>,
}

impl Loader for Recorder {
    fn candidates(&self, found: Vec<PathBuf>) -> Vec<PathBuf> {
        found
    }
    fn register_builtins(&mut self, _: &dyn Fn() -> Vec<PathBuf>) -> Vec<PluginReport> {
        Vec::new()
    }
    fn load_as(&mut self, path: &Path, _: &str) -> PluginReport {
        self.load(path)
    }
    fn load(&mut self, path: &Path) -> PluginReport {
        self.loaded.push(path.to_owned());
        let error = PluginError::Shadowed {
            path: path.to_owned(),
            name: "refused".into(),
            first: path.to_owned(),
        };
        PluginReport::new(path.to_owned()).with_error(Status::Rejected, error)
    }
    fn verify(&self, path: &Path) -> PluginReport {
        PluginReport::new(path.to_owned())
    }
    fn refused_by_settings(&self, _: &Path, _: &str) -> bool {
        false
    }
    fn disabled(&self) -> Vec<String> {
        Vec::new()
    }
    fn is_builtin(&self, _: &[u8]) -> bool {
        false
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// `count` files `libpNNNN.so` in a new directory (their content is no plugin: only the
/// index cache, written here, says what they are), and a warm cache of them.
#[cfg(unix)]
fn cached_dir(count: usize) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cache_path = elsewhere.path().join("index.bin");
    let mut cache = cache::Cache::load(cache_path.clone());
    for i in 0..count {
        let (file, name) = (format!("libp{i:04}.so"), format!("p{i:04}"));
        let lib = dir.path().join(&file);
        std::fs::write(&lib, b"not a library").unwrap();
        // Every 400th (from the fourth) also declares transform `shared`.
        let shared: &[(&str, &[&str])] = &[("command", &[&name]), ("transform", &["shared"])];
        let declared = if i % 400 == 3 { shared } else { &shared[..1] };
        cache.put(&lib, &provenance(&name, Some(declared)));
    }
    cache.save();
    // Settled, and indexed once (each file checked by its own identity, none read): the
    // directory's identity is recorded, so the next index trusts it and lists nothing.
    std::thread::sleep(cache::SETTLE * 2);
    let mut lazy = Lazy {
        cache: Some(cache_path.clone()),
        ..Lazy::default()
    };
    let reports = lazy.index(&mut Recorder::default(), &[dir.path()]).unwrap();
    assert!(reports.is_empty(), "{reports:?}");
    assert!(
        lazy.index.unchecked.is_empty(),
        "not trusted by the directory yet"
    );
    (dir, elsewhere, cache_path)
}

#[cfg(unix)]
#[test]
fn a_command_from_a_warm_cache_of_many_plugins_resolves_to_its_file() {
    let (dir, _elsewhere, cache_path) = cached_dir(1000);
    let mut lazy = Lazy {
        cache: Some(cache_path.clone()),
        ..Lazy::default()
    };
    let mut host = Recorder::default();
    // The files are no libraries: reading any of them would report it refused.
    assert!(lazy.index(&mut host, &[dir.path()]).unwrap().is_empty());
    assert_eq!(lazy.index.plugins().len(), 1000);
    assert_eq!(
        lazy.index.unchecked.len(),
        1000,
        "all trusted by the directory"
    );
    let want = dir.path().join("libp0765.so");
    match lazy.load_capability(&mut host, "command", "p0765") {
        Err(LazyError::Refused { path, plugin, .. }) => {
            assert_eq!((path, plugin.as_str()), (want.clone(), "p0765"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        host.loaded,
        std::slice::from_ref(&want),
        "only that file was tried"
    );
    let indexed = lazy.index.plugins();
    assert_eq!(indexed[765].path, want);
    assert_eq!(indexed[765].capabilities["command"], ["p0765"]);
    assert!(matches!(indexed[765].state, IndexedState::Refused(..)));
    assert_eq!(indexed[764].state, IndexedState::Pending);
    // A capability three plugins declare: tried in path order.
    host.loaded.clear();
    assert!(lazy
        .load_capability(&mut host, "transform", "shared")
        .is_err());
    let tried: Vec<PathBuf> = ["libp0003.so", "libp0403.so", "libp0803.so"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    assert_eq!(host.loaded, tried);
    // Unknown: the names offered come from the cache's declarations, but the refused ones.
    match lazy.load_capability(&mut host, "command", "nope") {
        Err(LazyError::Lookup(LookupError::NotFound { available, .. })) => {
            assert_eq!(available.len(), 996);
            assert!(available.iter().any(|a| a == "p0999"));
            assert!(!available.iter().any(|a| a == "p0765" || a == "p0403"));
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_file_replaced_after_indexing_is_read_again_not_trusted() {
    let (dir, _elsewhere, cache_path) = cached_dir(50);
    let lib = dir.path().join("libp0020.so");
    // Replaced (a new inode, the directory changed): the cache's word is not taken, the
    // file is read, and what it is (no library) is reported before anything can load it.
    std::fs::remove_file(&lib).unwrap();
    std::fs::write(&lib, b"still not a library, now longer").unwrap();
    let mut lazy = Lazy {
        cache: Some(cache_path),
        ..Lazy::default()
    };
    let mut host = Recorder::default();
    let reports = lazy.index(&mut host, &[dir.path()]).unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].path, lib);
    assert_eq!(reports[0].status, Status::Rejected);
    assert_eq!(lazy.index.plugins().len(), 49);
    assert!(
        lazy.index.unchecked.is_empty(),
        "each file checked on its own"
    );
    match lazy.load_capability(&mut host, "command", "p0020") {
        Err(LazyError::Lookup(LookupError::NotFound { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(host.loaded.is_empty(), "nothing loaded");
}

#[cfg(unix)]
#[test]
fn a_directory_given_twice_is_listed_again_both_times_once_it_changed() {
    let (dir, _elsewhere, cache_path) = cached_dir(50);
    // Removed since the cache was written, and the directory's new identity settled.
    std::fs::remove_file(dir.path().join("libp0020.so")).unwrap();
    std::thread::sleep(cache::SETTLE * 2);
    // The same directory twice (`dir` and `dir/` name one record): the second time must
    // not take the record the first time just stamped as fresh, with its old file list.
    let twice = [dir.path().to_owned(), dir.path().join("")];
    for round in 0..2 {
        let mut lazy = Lazy {
            cache: Some(cache_path.clone()),
            ..Lazy::default()
        };
        let mut host = Recorder::default();
        lazy.index(&mut host, &twice).unwrap();
        assert!(
            !lazy.index.plugins().iter().any(|p| p.name == "p0020"),
            "round {round}: a removed file is indexed"
        );
        match lazy.load_capability(&mut host, "command", "p0020") {
            Err(LazyError::Lookup(LookupError::NotFound { .. })) => {}
            other => panic!("round {round}: {other:?}"),
        }
        assert!(host.loaded.is_empty(), "round {round}: {:?}", host.loaded);
    }
}

#[cfg(unix)]
#[test]
fn a_file_overwritten_in_place_is_checked_before_a_capability_is_said_missing() {
    let (dir, _elsewhere, cache_path) = cached_dir(50);
    let mut lazy = Lazy {
        cache: Some(cache_path.clone()),
        ..Lazy::default()
    };
    let mut host = Recorder::default();
    assert!(lazy.index(&mut host, &[dir.path()]).unwrap().is_empty());
    // Overwritten in place after indexing (same inode, the directory untouched): the index
    // still has the cache's word, so the capability it now lacks is looked for by reading
    // the files again — the changed one is then reported, and the cache dropped.
    std::fs::write(dir.path().join("libp0030.so"), b"changed").unwrap();
    match lazy.load_capability(&mut host, "command", "p9999") {
        Err(LazyError::Lookup(LookupError::NotFound { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(!cache_path.exists(), "the cache is removed");
    assert!(host.loaded.is_empty());
    assert_eq!(lazy.reports.len(), 50, "every file read again and refused");
}

#[test]
fn every_name_met_again_is_shadowed_by_its_first_file() {
    let mut index = Index::default();
    let declared = BTreeMap::from([("command".to_owned(), vec!["c".to_owned()])]);
    for round in 0..2 {
        for i in 0..5000 {
            let path = PathBuf::from(format!("/{round}/lib{i}.so"));
            let placed = index.add(&path, &format!("n{i}"), Some(&declared));
            let want = match round {
                0 => Placed::Indexed,
                _ => Placed::Shadowed(PathBuf::from(format!("/0/lib{i}.so"))),
            };
            assert_eq!(placed, want);
        }
    }
    assert_eq!(index.plugins().len(), 5000);
    assert_eq!(index.candidates("command", "c").len(), 5000);
}

#[cfg(unix)]
#[test]
fn a_warm_index_copies_nothing_per_plugin() {
    let (dir, _elsewhere, cache_path) = cached_dir(1000);
    let mut lazy = Lazy {
        cache: Some(cache_path),
        ..Lazy::default()
    };
    assert!(lazy
        .index(&mut Recorder::default(), &[dir.path()])
        .unwrap()
        .is_empty());
    // File names, plugin names, declarations and identities are used where the cache's
    // bytes have them — mapped, not read, on a local file system (the cache is ~100 KB).
    #[cfg(target_os = "linux")]
    {
        let cache = std::fs::File::open(lazy.cache.as_ref().unwrap()).unwrap();
        let local = crate::small_file::Mapped::on_local_fs(&cache);
        let shared = lazy.index.shared.as_deref().expect("the cache's bytes");
        assert_eq!(
            matches!(shared, crate::small_file::FileBytes::Mapped(_)),
            local,
            "{shared:?}"
        );
    }
    assert_eq!(lazy.index.text.len(), 0, "nothing copied");
    assert!(lazy.index.unchecked_ids.is_empty());
    assert_eq!(lazy.index.unchecked.len(), 1000);
    let indexed = lazy.index.plugins();
    assert_eq!(indexed[999].path, dir.path().join("libp0999.so"));
    assert_eq!(indexed[999].name, "p0999");
    assert_eq!(indexed[403].capabilities["transform"], ["shared"]);
    // The identity the cache recorded is the file's own.
    let (file, id) = lazy.index.unchecked[999];
    let recorded = lazy.index.unchecked_id(id);
    assert_eq!(
        cache::identity(&lazy.index.considered_path(file)).map(|(id, _)| id),
        Some(recorded)
    );
}

/// Directories of files (no libraries) carrying the plugin names given, one cache of them
/// all, warm: the directories' identities are recorded.
#[cfg(unix)]
fn cached_dirs(names: &[&[&str]]) -> (Vec<tempfile::TempDir>, tempfile::TempDir, PathBuf) {
    let elsewhere = tempfile::tempdir().unwrap();
    let cache_path = elsewhere.path().join("index.bin");
    let mut cache = cache::Cache::load(cache_path.clone());
    let dirs: Vec<_> = names
        .iter()
        .map(|names| {
            let dir = tempfile::tempdir().unwrap();
            for (i, name) in names.iter().enumerate() {
                let lib = dir.path().join(format!("lib{i}.so"));
                std::fs::write(&lib, b"not a library").unwrap();
                cache.put(&lib, &provenance(name, Some(&[("command", &[name])])));
            }
            dir
        })
        .collect();
    cache.save();
    std::thread::sleep(cache::SETTLE * 2);
    let paths: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
    let mut lazy = Lazy {
        cache: Some(cache_path.clone()),
        ..Lazy::default()
    };
    lazy.index(&mut Recorder::default(), &paths).unwrap();
    (dirs, elsewhere, cache_path)
}

#[cfg(unix)]
#[test]
fn a_name_met_again_in_a_warm_cache_is_shadowed() {
    let (dirs, _elsewhere, cache_path) = cached_dirs(&[&["a", "b", "a"], &["b", "c"]]);
    let shadowed = |reports: &[PluginReport]| -> Vec<(PathBuf, String)> {
        reports
            .iter()
            .map(|r| {
                assert_eq!(r.status, Status::Shadowed);
                (r.path.clone(), r.message.clone().unwrap_or_default())
            })
            .collect()
    };
    let (one, two) = (dirs[0].path(), dirs[1].path());
    let want = [
        (one.join("lib2.so"), "a", one.join("lib0.so")),
        (two.join("lib0.so"), "b", one.join("lib1.so")),
    ];
    // Both directories at once (every name where the cache's bytes have it), then one index
    // each (the second copies its names: the first took the cache's bytes).
    let mut lazy = Lazy {
        cache: Some(cache_path.clone()),
        ..Lazy::default()
    };
    let mut host = Recorder::default();
    let at_once = lazy.index(&mut host, &[one, two]).unwrap();
    assert_eq!(lazy.index.text.len(), 0, "nothing copied");
    let mut lazy = Lazy {
        cache: Some(cache_path),
        ..Lazy::default()
    };
    let mut each = lazy.index(&mut host, &[one]).unwrap();
    each.extend(lazy.index(&mut host, &[two]).unwrap());
    assert!(!lazy.index.text.is_empty(), "the second index copied");
    for reports in [at_once, each] {
        let got = shadowed(&reports);
        assert_eq!(got.len(), 2, "{got:?}");
        for ((path, message), (file, name, first)) in got.iter().zip(&want) {
            assert_eq!(path, file);
            assert!(
                message.contains(&format!("`{name}`"))
                    && message.contains(&*first.to_string_lossy()),
                "{message}"
            );
        }
        assert!(host.loaded.is_empty(), "nothing read or loaded");
    }
    assert_eq!(lazy.index.plugins().len(), 3);
}

#[test]
fn a_chain_of_overlapping_declarations_loads_in_path_order_without_recursion() {
    // Plugin i declares c_i and c_{i-1}: asking for the last loads every one before it,
    // in path order. On a small stack: one frame a plugin overflowed it.
    const N: usize = 5_000;
    let loaded = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let mut lazy = Lazy::default();
            for i in 0..N {
                let mut names = vec![format!("c{i}")];
                if i > 0 {
                    names.push(format!("c{}", i - 1));
                }
                let declared: BTreeMap<String, Vec<String>> =
                    [("command".to_owned(), names)].into();
                let path = PathBuf::from(format!("/d/libp{i:05}.so"));
                assert_eq!(
                    lazy.index.add(&path, &format!("p{i}"), Some(&declared)),
                    Placed::Indexed
                );
            }
            let mut host = Recorder::default();
            assert!(lazy
                .load_capability(&mut host, "command", &format!("c{}", N - 1))
                .is_err());
            host.loaded
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(loaded.len(), N);
    let in_order: Vec<PathBuf> = (0..N)
        .map(|i| PathBuf::from(format!("/d/libp{i:05}.so")))
        .collect();
    assert_eq!(loaded, in_order);
}
