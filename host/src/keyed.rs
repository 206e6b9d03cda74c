//! A keyed hash of short byte strings, for the host's tables whose keys come from files it
//! has not judged yet (the lazy index's plugin names, the crates a record lists): keyed by
//! two random words per table, so keys cannot be chosen to collide without knowing them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Two random words and the hash they key (see the [module](self)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyedHash {
    key: [u64; 2],
}

impl Default for KeyedHash {
    fn default() -> KeyedHash {
        let random = RandomState::new();
        KeyedHash {
            key: [random.hash_one(0u8), random.hash_one(1u8)],
        }
    }
}

/// The high and low halves of a 128-bit product, folded.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl KeyedHash {
    /// The hash of `bytes` (a name or a short key), eight bytes at a time.
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        let [k0, k1] = self.key;
        let mut h = k0 ^ bytes.len() as u64;
        match bytes.last_chunk::<8>() {
            // Eight bytes or more: a word at a time, and the last eight bytes as one more word
            // where they do not end on a word (overlapping the one before: the length is in
            // the hash already).
            Some(last) => {
                let mut words = bytes.chunks_exact(8);
                for word in &mut words {
                    h = fold(
                        h ^ u64::from_le_bytes(word.try_into().expect("eight bytes")),
                        k1,
                    );
                }
                if !words.remainder().is_empty() {
                    h = fold(h ^ u64::from_le_bytes(*last), k1);
                }
            }
            // Fewer (most plugin names): one word padded with zeros, the bytes shifted in
            // (no call to copy them).
            None if !bytes.is_empty() => {
                let word = bytes
                    .iter()
                    .rev()
                    .fold(0u64, |word, &b| word << 8 | u64::from(b));
                h = fold(h ^ word, k1);
            }
            None => {}
        }
        fold(h, k0 | 1)
    }
}

/// [`KeyedHash`] for std's tables: a key's bytes (a `str`'s, then the `0xff` its `Hash`
/// writes after them) folded into the state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyedHasher {
    keyed: KeyedHash,
    state: u64,
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.state = self.state.rotate_left(29) ^ self.keyed.hash(bytes);
    }

    fn write_u8(&mut self, byte: u8) {
        self.state = fold(self.state ^ u64::from(byte), self.keyed.key[1]);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            keyed: *self,
            state: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyedHash;

    #[test]
    fn every_byte_and_the_length_change_the_hash() {
        let hasher = KeyedHash::default();
        for len in 0..24 {
            let base = vec![b'a'; len];
            let h = hasher.hash(&base);
            // A zero byte added changes the length, not the padded word: still told apart.
            assert_ne!(h, hasher.hash(&[&base[..], &[0]].concat()), "{len}");
            for at in 0..len {
                let mut other = base.clone();
                other[at] = b'b';
                assert_ne!(h, hasher.hash(&other), "{at} of {len}");
            }
        }
        // Another key, another hash.
        assert_ne!(hasher.hash(b"serde"), KeyedHash::default().hash(b"serde"));
    }
}
