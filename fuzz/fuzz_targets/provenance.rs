//! Feeds arbitrary bytes to the provenance reader, as if they were a file in a plugin
//! directory: object parsing, section lookup, frame and JSON decoding, then judging. The
//! record decoded in place (`ProvenanceRef`, what the host judges) must agree with the owned
//! decode, and `judge_in_place` with `judge`. A panic counts as a crash even where the
//! reader contains it (`verification-panicked`).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use host::{judge, judge_in_place, Policy, PreparedHost};
use libfuzzer_sys::fuzz_target;
use plugin_api::provenance::{Provenance, ProvenanceRef};

/// A host record unlike most inputs (release build, other dependencies), to judge against.
fn other_host() -> &'static (Provenance, PreparedHost) {
    static HOST: OnceLock<(Provenance, PreparedHost)> = OnceLock::new();
    HOST.get_or_init(|| {
        let json = br#"{"name":"host","version":"1.0.0","plugin_api":"0.1.0","abi_stable":"0.11.3","rustc":{"release":"1.95.0","commit_hash":"59807616e1fa2540724bfbac14d7976d7e4a3860","commit_date":"2026-04-14","channel":"stable","llvm":"22.1.2"},"target":"x86_64-unknown-linux-gnu","profile":{"name":"release","opt_level":"3","debug_assertions":false,"panic":"unwind"},"features":[],"dependencies":["abi_stable 0.11.3","log 0.4.29","plugin-api 0.1.0 (/w/plugin-api)"]}"#;
        let record = Provenance::decode(&plugin_api::frame::encode(json)).expect("a valid record");
        let prepared = PreparedHost::new(&record);
        (record, prepared)
    })
}

/// Decodes `blob` both ways: the same `Ok`/`Err` (and message), the same fields, and the
/// same verdicts against the record itself and another host under both presets.
fn compare_decodes(blob: &[u8]) {
    match (ProvenanceRef::decode(blob), Provenance::decode(blob)) {
        (Ok(view), Ok(owned)) => {
            assert_eq!(view.to_owned(), owned, "the in-place record differs");
            let own = PreparedHost::new(&owned);
            let (other, other_prepared) = other_host();
            for policy in [Policy::default(), Policy::preset("strict").unwrap()] {
                for (host, prepared) in [(&owned, &own), (other, other_prepared)] {
                    assert_eq!(
                        judge_in_place(host, prepared, &view, &policy),
                        judge(host, &owned, &policy),
                        "the verdicts differ"
                    );
                }
            }
        }
        (Err(in_place), Err(owned)) => assert_eq!(in_place.to_string(), owned.to_string()),
        (in_place, owned) => panic!(
            "in place {:?}, owned {:?}",
            in_place.map(|v| v.to_owned()),
            owned
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-input.so");
    match host::read_provenance_bytes(path, data) {
        Ok(provenance) => {
            // A decoded record must survive judging and re-encoding.
            let verdict = judge(&provenance, &provenance, &Policy::default());
            assert!(
                verdict.failure().is_none(),
                "a record judged against itself failed"
            );
            let blob = provenance.encode();
            let again = Provenance::decode(&blob);
            assert_eq!(again.ok().as_ref(), Some(&provenance));
            compare_decodes(&blob);
        }
        Err(error) => {
            // Every error renders a message and maps to a reason code. The reader contains
            // its own panics (a hostile file must not take a host down with it); libfuzzer-sys's
            // panic hook aborts before any unwinding, so they are crashes here all the same,
            // and so is a contained one should that hook ever change.
            assert_ne!(
                error.reason(),
                host::ReasonCode::VerificationPanicked,
                "{error}"
            );
            let _ = error.to_string();
        }
    }
    // The blob decoders alone see far more well-framed inputs.
    compare_decodes(data);
});
