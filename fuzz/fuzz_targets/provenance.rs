//! Feeds arbitrary bytes to the provenance reader, as if they were a file in a plugin
//! directory: object parsing, section lookup, frame and JSON decoding, then judging.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-input.so");
    match host::read_provenance_bytes(path, data) {
        Ok(provenance) => {
            // A decoded record must survive judging and re-encoding.
            let verdict = host::judge(&provenance, &provenance, &host::Policy::default());
            assert!(verdict.failure().is_none(), "a record judged against itself failed");
            let again = plugin_api::provenance::Provenance::decode(&provenance.encode());
            assert_eq!(again.ok().as_ref(), Some(&provenance));
        }
        Err(error) => {
            // Every error renders a message and maps to a reason code.
            let _ = (error.to_string(), error.reason());
        }
    }
    // The blob decoder alone sees far more well-framed inputs.
    let _ = plugin_api::provenance::Provenance::decode(data);
});
