//! Feeds arbitrary bytes to the lazy index's cache decoder, as if they were the cache file a
//! host finds in its cache directory (hostile input like any other): decoding never panics,
//! what decodes encodes back to the same bytes, and every part a start reads from it (file
//! names, plugin names, versions, identities, declaration blocks) reads back consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    host::fuzz_index_cache(data);
});
