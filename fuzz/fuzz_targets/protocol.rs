//! Feeds arbitrary bytes to the host-worker frame decoder, as a lying or broken worker could
//! send them: it must never panic, never claim more bytes than it got, and whatever it
//! accepts must re-encode to a frame that decodes the same. The host's hot-path reply
//! decoders (in place, and the head alone) must agree with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugin_protocol::{decode, decode_reply, decode_reply_head, encode, DecodeError, Message};

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    assert_eq!(decode_reply(data).is_ok(), whole.is_ok());
    let head = decode_reply_head(data);
    if let Ok((Message::Reply { id, .. }, _)) = &whole {
        assert_eq!(head.map(|h| h.map(|h| h.id)), Ok(Some(*id)));
    }
    let mut at = 0;
    // A stream of frames, as the host reads them.
    while at < data.len() {
        match decode(&data[at..]) {
            Ok((message, used)) => {
                assert!(used > 0 && used <= data.len() - at);
                let mut again = Vec::new();
                encode(&message, &mut again);
                assert_eq!(decode(&again), Ok((message, again.len())));
                at += used;
            }
            Err(DecodeError::Incomplete { needed }) => {
                assert!(needed > data.len() - at);
                break;
            }
            Err(error) => {
                let _ = error.to_string();
                break;
            }
        }
    }
});
