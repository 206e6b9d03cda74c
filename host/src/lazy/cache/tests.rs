//! The index cache against hostile and stale files: forged, truncated, linked, changed.
use super::*;

#[test]
fn an_entry_is_used_only_for_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("liba.so");
    std::fs::write(&lib, b"one").unwrap();
    let cache_path = dir.path().join("cache/index.bin");
    let mut p = crate::lazy::tests::provenance("a", Some(&[("command", &["hello"])]));
    let mut cache = Cache::load(cache_path.clone());
    assert!(cache.get(&lib).is_none());
    cache.put(&lib, &p);
    cache.save();
    assert!(cache_path.is_file(), "written");

    let mut cache = Cache::load(cache_path.clone());
    let found = cache.get(&lib).expect("a hit for the same file");
    assert_eq!(
        (found.name(), found.declared().map(declared_map)),
        ("a", p.capabilities.clone())
    );

    // Another content (another size, another ctime): a miss.
    std::fs::write(&lib, b"other").unwrap();
    let mut cache = Cache::load(cache_path.clone());
    assert!(cache.get(&lib).is_none());

    // An entry beyond the bounds (a forged cache) is not used.
    p.capabilities = Some(BTreeMap::from([("command".into(), vec!["x".repeat(500)])]));
    let mut cache = Cache::load(cache_path.clone());
    cache.put(&lib, &p);
    cache.save();
    assert!(Cache::load(cache_path.clone()).get(&lib).is_none());

    // Garbage: no cache, no error.
    std::fs::write(&cache_path, b"{not a cache").unwrap();
    assert!(Cache::load(cache_path).get(&lib).is_none());
}

/// A version as long as reading a plugin allows (512 bytes of pre-release and build, so
/// more in all) is written and read back, and the cache with it: a bound on the whole text
/// made every start with such a plugin throw the cache away and write it again.
#[test]
fn the_longest_version_a_plugin_may_have_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (long, other) = (
        dir.path().join("liblong.so"),
        dir.path().join("libother.so"),
    );
    std::fs::write(&long, b"one").unwrap();
    std::fs::write(&other, b"two").unwrap();
    let cache_path = dir.path().join("cache/index.bin");
    let mut p = crate::lazy::tests::provenance("long", Some(&[("command", &["hello"])]));
    let pre = "a".repeat(crate::limits::MAX_FIELD - "b.1.2".len());
    p.version =
        format!("18446744073709551615.18446744073709551615.18446744073709551615-{pre}+b.1.2")
            .parse()
            .unwrap();
    // As reading a plugin bounds it: accepted there.
    crate::limits::check_provenance(&p.view(), false).unwrap();
    let mut cache = Cache::load(cache_path.clone());
    cache.put(&long, &p);
    cache.put(&other, &crate::lazy::tests::provenance("other", None));
    cache.save();
    let mut cache = Cache::load(cache_path.clone());
    let found = cache.get(&long).expect("the entry with the long version");
    assert_eq!(found.version(), p.version.to_string().as_bytes());
    assert!(cache.get(&other).is_some(), "and the rest of the cache");
}

/// An entry is a position and three lengths into bytes laid out as the file has them: the
/// name, version and declaration read back the same from what this run added, from the file
/// after a save, and from a file written again around them (entries copied whole).
#[test]
fn an_entry_reads_back_the_same_from_added_saved_and_rewritten_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cache_path = dir.path().join("index.bin");
    let (a, b, c) = (
        dir.path().join("liba.so"),
        dir.path().join("libb.so"),
        dir.path().join("libc.so"),
    );
    for (lib, content) in [(&a, "one"), (&b, "two"), (&c, "three")] {
        std::fs::write(lib, content).unwrap();
    }
    let mut pa = crate::lazy::tests::provenance(
        "a",
        Some(&[("command", &["hello", "hi"]), ("transform", &["redact"])]),
    );
    pa.version = semver::Version::parse("1.22.333-rc.1+build.7").unwrap();
    let pb = crate::lazy::tests::provenance(&"b".repeat(crate::limits::MAX_PLUGIN_NAME), None);
    let expect = |cache: &mut Cache, lib: &Path, p: &plugin_api::provenance::Provenance| {
        let found = cache.get(lib).expect("an entry");
        assert_eq!(found.name(), p.name);
        assert_eq!(text(found.version()), p.version.to_string());
        assert_eq!(found.declared().map(declared_map), p.capabilities);
        assert_eq!(Some(found.id()), identity(lib).map(|(id, _)| id));
    };

    let mut cache = Cache::load(cache_path.clone());
    cache.put(&a, &pa);
    cache.put(&b, &pb);
    expect(&mut cache, &a, &pa);
    expect(&mut cache, &b, &pb);
    cache.save();

    let mut cache = Cache::load(cache_path.clone());
    expect(&mut cache, &a, &pa);
    expect(&mut cache, &b, &pb);
    // A third entry: the file is written again, the first two copied from the loaded bytes.
    let pc = crate::lazy::tests::provenance("c", Some(&[("command", &["c"])]));
    cache.put(&c, &pc);
    cache.save();
    let mut cache = Cache::load(cache_path.clone());
    for (lib, p) in [(&a, &pa), (&b, &pb), (&c, &pc)] {
        expect(&mut cache, lib, p);
    }
}

/// File names are told in order by their first eight bytes where they differ there, and in
/// full where not: the same order as comparing them whole, for names of every length around
/// eight and bytes at the edges (no NUL: a file name holds none).
#[test]
fn sorts_before_is_the_order_of_names_compared_whole() {
    let alphabet: [u8; 5] = [0x01, b'a', b'b', 0x7f, 0xff];
    let mut names: Vec<Vec<u8>> = Vec::new();
    for len in [1usize, 2, 7, 8, 9, 10, 16, 17] {
        for fill in alphabet {
            for (at, byte) in [(0, b'a'), (len / 2, 0x01), (len - 1, 0xff), (len - 1, b'b')] {
                let mut name = vec![fill; len];
                name[at] = byte;
                names.push(name);
            }
        }
    }
    for a in &names {
        for b in &names {
            assert_eq!(sorts_before(a, b), a < b, "{a:?} {b:?}");
        }
    }
}

/// A cache with one entry for `lib`, written at `cache_path`.
#[cfg(unix)]
fn one_entry(lib: &Path, cache_path: &Path) {
    let p = crate::lazy::tests::provenance("a", Some(&[("command", &["hello"])]));
    let mut cache = Cache::load(cache_path.to_owned());
    cache.put(lib, &p);
    cache.save();
}

#[cfg(unix)]
#[test]
fn a_fifo_a_device_or_a_link_as_the_cache_is_no_cache_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("liba.so");
    std::fs::write(&lib, b"one").unwrap();
    let cache_path = dir.path().join("index.bin");
    let fifo = std::ffi::CString::new(cache_path.to_str().unwrap()).unwrap();
    // SAFETY: `fifo` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert!(Cache::load(cache_path.clone()).get(&lib).is_none());
    std::fs::remove_file(&cache_path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &cache_path).unwrap();
    assert!(Cache::load(cache_path.clone()).get(&lib).is_none());

    // A link to a real cache is not followed either.
    std::fs::remove_file(&cache_path).unwrap();
    let real = dir.path().join("real.bin");
    one_entry(&lib, &real);
    assert!(Cache::load(real.clone()).get(&lib).is_some());
    std::os::unix::fs::symlink(&real, &cache_path).unwrap();
    assert!(Cache::load(cache_path.clone()).get(&lib).is_none());

    // Larger than the limit: not read.
    std::fs::remove_file(&cache_path).unwrap();
    std::fs::copy(&real, &cache_path).unwrap();
    assert!(Cache::load(cache_path.clone()).get(&lib).is_some());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cache_path)
        .unwrap();
    f.set_len(CACHE_FILE.limit + 1).unwrap();
    assert!(Cache::load(cache_path).get(&lib).is_none());
}

#[cfg(unix)]
#[test]
fn the_temporary_file_is_never_written_through_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("liba.so");
    std::fs::write(&lib, b"one").unwrap();
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir(&cache_dir).unwrap();
    let cache_path = cache_dir.join("index.bin");
    // Links at the temporary names this process would use, to a file of the victim's.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let pid = std::process::id();
    for name in [
        format!(".index.bin.{pid}.tmp"),
        format!(".index.bin.tmp.{pid}.0"),
        format!(".index.bin.tmp.{pid}.1"),
    ] {
        std::os::unix::fs::symlink(&victim, cache_dir.join(name)).unwrap();
    }
    one_entry(&lib, &cache_path);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!cache_path.is_symlink() && cache_path.is_file());
    assert!(
        Cache::load(cache_path).get(&lib).is_some(),
        "the cache was written"
    );
}

#[cfg(unix)]
#[test]
fn a_settled_directory_is_trusted_by_its_identity_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("liba.so");
    std::fs::write(&lib, b"one").unwrap();
    // The cache lives elsewhere: writing it must not change the plugin directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let cache_path = elsewhere.path().join("index.bin");
    let p = crate::lazy::tests::provenance("a", Some(&[("command", &["hello"])]));
    std::thread::sleep(SETTLE * 2);

    let mut cache = Cache::load(cache_path.clone());
    assert!(cache.listing(dir.path()).is_none(), "nothing recorded yet");
    assert!(cache.get(&lib).is_none());
    cache.put(&lib, &p);
    cache.save();

    // The directory is unchanged: its listing and entry are used, the file not checked.
    let mut cache = Cache::load(cache_path.clone());
    let d = cache.listing(dir.path()).expect("the record");
    assert_eq!(cache.listed(d), 1);
    assert_eq!(cache.dir_path(d).join(cache.file_name(d, 0)), lib);
    let found = cache.get(&lib).expect("a hit");
    assert!(!found.checked);
    assert_eq!(found.name(), "a");

    // Overwritten in place (same inode, the directory untouched): still used on the
    // directory's word — the file is judged afresh when loaded, and `Lazy` checks it one by
    // one before saying a capability is not found (`cache::identity` differs).
    std::fs::write(&lib, b"other content").unwrap();
    let mut cache = Cache::load(cache_path.clone());
    assert!(cache.listing(dir.path()).is_some());
    let found = cache.get(&lib).expect("used on the directory's word");
    assert!(!found.checked);
    assert_ne!(identity(&lib).map(|(id, _)| id), Some(found.id()));

    // A file added: the directory changed. Listed again, each file checked on its own
    // (the overwritten one misses), and, changed just now, its identity is not recorded.
    std::fs::write(dir.path().join("libb.so"), b"b").unwrap();
    let mut cache = Cache::load(cache_path.clone());
    assert!(cache.listing(dir.path()).is_none());
    assert!(cache.get(&lib).is_none(), "checked by its own identity");
    cache.put(&lib, &p);
    cache.save();
    let mut cache = Cache::load(cache_path.clone());
    assert!(
        cache.listing(dir.path()).is_none(),
        "not settled: not trusted"
    );
    assert!(cache.get(&lib).is_some_and(|f| f.checked));
}

#[cfg(unix)]
#[test]
fn a_linked_file_is_always_checked_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let real = target.path().join("real.so");
    std::fs::write(&real, b"one").unwrap();
    let lib = dir.path().join("liba.so");
    std::os::unix::fs::symlink(&real, &lib).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cache_path = elsewhere.path().join("index.bin");
    let p = crate::lazy::tests::provenance("a", Some(&[("command", &["hello"])]));
    std::thread::sleep(SETTLE * 2);
    let mut cache = Cache::load(cache_path.clone());
    assert!(cache.listing(dir.path()).is_none());
    cache.put(&lib, &p);
    cache.save();
    let mut cache = Cache::load(cache_path.clone());
    assert!(
        cache.listing(dir.path()).is_some(),
        "the directory is trusted"
    );
    assert!(
        cache.get(&lib).is_some_and(|f| f.checked),
        "the link is not"
    );
    // The link's target changes; the directory does not.
    std::fs::write(&real, b"other content").unwrap();
    let mut cache = Cache::load(cache_path);
    assert!(cache.listing(dir.path()).is_some());
    assert!(cache.get(&lib).is_none());
}

#[test]
fn a_truncated_forged_or_corrupted_cache_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache_path = dir.path().join("index.bin");
    let mut cache = Cache::load(cache_path.clone());
    for (file, name) in [("liba.so", "a"), ("libb.so", "b")] {
        let lib = dir.path().join(file);
        std::fs::write(&lib, name).unwrap();
        let p = crate::lazy::tests::provenance(name, Some(&[("command", &[name])]));
        cache.put(&lib, &p);
    }
    cache.unreadable(&dir.path().join("libc.so"));
    cache.save();
    let bytes = std::fs::read(&cache_path).unwrap();
    let dirs = decode(&bytes).expect("its own output decodes");
    let names: Vec<&[u8]> = dirs[0].files.iter().map(|f| f.name.of(&bytes)).collect();
    assert_eq!(names, [&b"liba.so"[..], b"libb.so", b"libc.so"]);
    assert_eq!(dirs[0].files.len(), 3);
    assert!(
        dirs[0].files[2].entry.is_none(),
        "the unreadable file stays listed"
    );
    assert_eq!(
        encode(
            Bytes {
                loaded: &bytes,
                added: &[]
            },
            &dirs
        ),
        bytes,
        "decoding and encoding again is the identity"
    );

    for end in 0..bytes.len() {
        assert!(decode(&bytes[..end]).is_none(), "truncated at {end}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer).is_none(), "trailing bytes");
    // Read back whole, as the fuzz target reads every input.
    fuzz_index_cache(&bytes);
    // Any byte flipped: decoded or refused, never a panic or an allocation beyond the file;
    // what still decodes reads back whole and encodes back to the same bytes.
    for at in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0xff;
        fuzz_index_cache(&flipped);
    }
    // A count far beyond the bytes left.
    let mut huge = MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode(&huge).is_none());
    // Files out of order, or a name that is a path: refused.
    let forged = |names: &[&str]| {
        let mut text = Vec::new();
        let files = names
            .iter()
            .map(|n| {
                let start = text.len() as u32;
                text.extend_from_slice(n.as_bytes());
                FileRecord {
                    name: Span {
                        start,
                        len: n.len() as u32,
                    },
                    entry: None,
                    seen: true,
                }
            })
            .collect();
        let dirs = [DirRecord {
            path: "/d".into(),
            stamp: None,
            files,
            indexed: false,
            fresh: false,
        }];
        decode(&encode(
            Bytes {
                loaded: &text,
                added: &[],
            },
            &dirs,
        ))
        .is_some()
    };
    assert!(forged(&["a.so", "b.so"]));
    assert!(!forged(&["b.so", "a.so"]));
    assert!(!forged(&["a.so", "a.so"]));
    assert!(!forged(&["../x.so"]));
    assert!(!forged(&[".."]));
    assert!(!forged(&[""]));
    // The JSON cache of the format before: ignored (and rewritten).
    std::fs::write(&cache_path, br#"{"version":1,"entries":{}}"#).unwrap();
    assert!(Cache::load(cache_path).dirs.is_empty());
}

#[test]
fn entries_of_directories_not_listed_are_kept_while_their_files_exist() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cache_path = elsewhere.path().join("index.bin");
    let (a, b) = (dir.path().join("liba.so"), dir.path().join("libb.so"));
    let mut cache = Cache::load(cache_path.clone());
    for lib in [&a, &b] {
        std::fs::write(lib, b"x").unwrap();
        cache.put(lib, &crate::lazy::tests::provenance("a", None));
    }
    cache.save();
    // Another run that lists nothing there: `a` is kept, `b` (removed) dropped.
    std::fs::remove_file(&b).unwrap();
    Cache::load(cache_path.clone()).save();
    let bytes = std::fs::read(&cache_path).unwrap();
    let dirs = decode(&bytes).unwrap();
    let names: Vec<_> = dirs[0].files.iter().map(|f| f.name.of(&bytes)).collect();
    assert_eq!(names, [b"liba.so"]);
}

/// Where the first file record's fields are in a cache of one directory: the offsets of
/// its name's length, the plugin name's length, the version's length and the declaration
/// block (whose first field is its number of kinds).
fn one_file_layout(bytes: &[u8]) -> (usize, usize, usize, usize) {
    let mut r = Reader { bytes, at: 0 };
    r.take(MAGIC.len()).unwrap();
    r.u32().unwrap();
    r.bytes().unwrap();
    assert_eq!(r.u8(), Some(0), "no directory identity recorded");
    r.u32().unwrap();
    let file_name = r.at;
    r.bytes().unwrap();
    r.u8().unwrap();
    r.id().unwrap();
    let plugin = r.at;
    r.bytes().unwrap();
    let version = r.at;
    r.bytes().unwrap();
    assert_eq!(r.u8(), Some(1), "declared");
    (file_name, plugin, version, r.at)
}

#[test]
fn lengths_past_the_end_huge_counts_and_bad_text_refuse_the_cache_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("liba.so");
    std::fs::write(&lib, b"one").unwrap();
    let cache_path = dir.path().join("index.bin");
    one_entry(&lib, &cache_path);
    let bytes = std::fs::read(&cache_path).unwrap();
    assert!(Cache::load(cache_path.clone()).get(&lib).is_some());
    let (file_name, plugin, version, block) = one_file_layout(&bytes);
    let patched = |at: usize, value: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + value.len()].copy_from_slice(value);
        b
    };
    let cases = [
        (
            "a file name's length past the end",
            patched(file_name, &u32::MAX.to_le_bytes()),
        ),
        (
            "a plugin name's length past the end",
            patched(plugin, &0x00ff_ffffu32.to_le_bytes()),
        ),
        // One byte longer: the name takes the version's first length byte, and every
        // field after it is read one byte off.
        (
            "a plugin name's length one too long",
            patched(plugin, &2u32.to_le_bytes()),
        ),
        (
            "a version's length past the end",
            patched(version, &u32::MAX.to_le_bytes()),
        ),
        (
            "a huge number of kinds",
            patched(block, &u32::MAX.to_le_bytes()),
        ),
        ("a name that is not one", patched(plugin + 4, b"/")),
        (
            "another format version",
            patched(MAGIC.len() - 1, &[MAGIC[7] + 1]),
        ),
    ];
    for (what, forged) in cases {
        assert!(decode(&forged).is_none(), "{what}");
        std::fs::write(&cache_path, &forged).unwrap();
        let mut cache = Cache::load(cache_path.clone());
        assert!(cache.dirs.is_empty(), "{what}: ignored whole");
        assert!(cache.get(&lib).is_none(), "{what}");
        // And replaced by what this run finds.
        cache.put(&lib, &crate::lazy::tests::provenance("a", None));
        cache.save();
        assert!(
            Cache::load(cache_path.clone()).get(&lib).is_some(),
            "{what}"
        );
    }
    // A declared capability name that is no name (a control character, not UTF-8).
    for bad in [&b"\x1b[2J"[..], b"\xff\xfe"] {
        let mut forged = bytes[..block].to_vec();
        forged.extend_from_slice(&1u32.to_le_bytes());
        put_bytes(&mut forged, b"command");
        forged.extend_from_slice(&1u32.to_le_bytes());
        put_bytes(&mut forged, bad);
        assert!(decode(&forged).is_none(), "{bad:?}");
    }
}

#[test]
fn a_declaration_block_is_read_within_its_bytes() {
    let declared = BTreeMap::from([
        ("command".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
        ("transform".to_owned(), vec![]),
    ]);
    let mut block = Vec::new();
    encode_declared(&mut block, &declared);
    let pairs: Vec<_> = super::declared(&block).collect();
    assert_eq!(pairs, [(&b"command"[..], &b"a"[..]), (b"command", b"b")]);
    assert_eq!(declared_map(&block), declared);
    assert!(declares(&block, b"command", b"b"));
    assert!(!declares(&block, b"transform", b"b"));
    assert!(!declares(&block, b"command", b"c"));
    // Cut anywhere, or with counts beyond its bytes: the pairs before the cut, never a panic.
    for end in 0..block.len() {
        let got: Vec<_> = super::declared(&block[..end]).collect();
        assert!(pairs.starts_with(&got), "cut at {end}");
        assert_eq!(declares(&block[..end], b"command", b"b"), got.len() == 2);
        let _ = declared_map(&block[..end]);
    }
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    put_bytes(&mut huge, b"command");
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(super::declared(&huge).count(), 0);
    assert_eq!(declared_map(&huge).len(), 1);
}

#[test]
fn a_pair_is_told_as_declares_tells_it_in_every_block() {
    let blocks: Vec<BTreeMap<String, Vec<String>>> = vec![
        BTreeMap::new(),
        BTreeMap::from([("command".to_owned(), vec!["hello".to_owned()])]),
        BTreeMap::from([("command".to_owned(), vec!["hell".to_owned()])]),
        BTreeMap::from([("command".to_owned(), vec![])]),
        BTreeMap::from([("transform".to_owned(), vec!["hello".to_owned()])]),
        BTreeMap::from([(
            "command".to_owned(),
            vec!["hello".to_owned(), "other".to_owned()],
        )]),
        BTreeMap::from([
            ("command".to_owned(), vec!["x".to_owned()]),
            ("transform".to_owned(), vec!["hello".to_owned()]),
        ]),
    ];
    let asked = [
        ("command", "hello"),
        ("transform", "hello"),
        ("command", "hell"),
        ("command", "other"),
        ("", ""),
    ];
    for declared in &blocks {
        let mut block = Vec::new();
        encode_declared(&mut block, declared);
        // The block whole, cut anywhere, with a byte changed anywhere, with a byte more.
        let mut variants = vec![block.clone()];
        variants.extend((0..block.len()).map(|end| block[..end].to_vec()));
        for at in 0..block.len() {
            for byte in [0u8, 1, 2, b'h', 0xff] {
                let mut changed = block.clone();
                changed[at] = byte;
                variants.push(changed);
            }
        }
        let mut longer = block.clone();
        longer.push(0);
        variants.push(longer);
        for (kind, name) in asked {
            let pair = Declares::new(kind, name);
            for v in &variants {
                assert_eq!(
                    pair.by(v),
                    declares(v, kind.as_bytes(), name.as_bytes()),
                    "{kind} {name} in {v:?}"
                );
            }
        }
    }
}

#[test]
fn a_slash_or_a_nul_is_found_at_every_position() {
    for len in [1, 7, 8, 9, 16, 23] {
        for at in 0..len {
            for byte in 0..=255u8 {
                let mut name = vec![b'a'; len];
                name[at] = byte;
                assert_eq!(
                    slash_or_nul(&name),
                    byte == b'/' || byte == 0,
                    "{byte:#04x} at {at} of {len}"
                );
            }
        }
    }
}

/// The bytes of a cache holding the directory records `dirs`: (path, number of files), each
/// file recorded without an entry.
fn forged(dirs: &[(&[u8], usize)]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put_u32(&mut out, dirs.len());
    for (path, files) in dirs {
        put_bytes(&mut out, path);
        out.push(0);
        put_u32(&mut out, *files);
        for i in 0..*files {
            // Names in order: `a000000`, `a000001`, …
            put_bytes(&mut out, format!("a{i:06}").as_bytes());
            out.push(0);
        }
    }
    out
}

/// A forged cache cannot make a start hold more than a host could have written: too many
/// directories, too many files in all, a directory twice (as `d` and `d/`), or a directory
/// without a name, and the cache is not used, before anything is made per record.
#[test]
fn a_forged_cache_of_too_many_records_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let cache_path = dir.path().join("index.bin");
    let d = dir.path().as_os_str().as_encoded_bytes().to_vec();
    let slashed = [d.as_slice(), b"/"].concat();
    let (other, empty) = (b"/nonexistent/x".as_slice(), b"".as_slice());
    let used = |bytes: Vec<u8>| {
        std::fs::write(&cache_path, bytes).unwrap();
        !Cache::load(cache_path.clone()).dirs.is_empty()
    };
    assert!(used(forged(&[(&d, 3), (other, 2)])), "a well-formed cache");
    assert!(
        !used(forged(&[(&d, 3), (&slashed, 2)])),
        "a directory twice"
    );
    assert!(
        !used(forged(&[(&d, 3), (empty, 0)])),
        "a nameless directory"
    );
    let names: Vec<Vec<u8>> = (0..=MAX_DIRS)
        .map(|i| format!("/d{i}").into_bytes())
        .collect();
    let many: Vec<(&[u8], usize)> = names.iter().map(|n| (n.as_slice(), 0)).collect();
    assert!(
        used(forged(&many[..MAX_DIRS])),
        "as many directories as allowed"
    );
    assert!(!used(forged(&many)), "one directory more");
    let half = MAX_FILES / 2;
    assert!(
        used(forged(&[(&d, half), (other, half)])),
        "as many files as allowed"
    );
    assert!(
        !used(forged(&[(&d, half), (other, half + 1)])),
        "one file more"
    );
}

/// Only a cache its own user alone can write is used (root's too: root can write anything
/// anyway); one its group or anyone may write, or another user's, could say what the
/// directories hold. The host writes its cache so, whatever the umask.
#[cfg(unix)]
#[test]
fn a_cache_others_could_write_is_not_used_and_the_host_writes_its_own_so() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("liba.so");
    std::fs::write(&lib, b"one").unwrap();
    let cache_path = dir.path().join("cache/index.bin");
    one_entry(&lib, &cache_path);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_path), 0o600);
    assert!(Cache::load(cache_path.clone()).get(&lib).is_some());
    for writable in [0o620, 0o602, 0o666] {
        std::fs::set_permissions(&cache_path, std::fs::Permissions::from_mode(writable)).unwrap();
        assert!(
            Cache::load(cache_path.clone()).get(&lib).is_none(),
            "mode {writable:o}"
        );
    }
    // Written again by the next start: its owner's alone.
    one_entry(&lib, &cache_path);
    assert_eq!(mode(&cache_path), 0o600);
    assert!(Cache::load(cache_path.clone()).get(&lib).is_some());
    // SAFETY: `geteuid` has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Another user's (only root can give a file away).
        std::os::unix::fs::chown(&cache_path, Some(65534), Some(65534)).unwrap();
        assert!(Cache::load(cache_path.clone()).get(&lib).is_none());
    }
}
