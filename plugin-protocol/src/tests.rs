use super::*;

fn samples() -> Vec<Message> {
    vec![
        Message::Hello {
            cookie: COOKIE,
            min_version: 1,
            max_version: 7,
        },
        Message::Welcome {
            cookie: COOKIE,
            version: 1,
            pid: 4242,
        },
        Message::Load(Load {
            name: "hello".into(),
            path: "/p/libhello.so".into(),
            file_fd: 4,
            policy: "strict".into(),
            checks: vec![
                ("rustc".into(), "fail".into()),
                ("profile".into(), "warn".into()),
            ],
            config: "greeting = \"hi\"".into(),
            max_log_level: 3,
        }),
        Message::Registered {
            name: "hello".into(),
            version: "1.2.3".into(),
            capabilities: vec![
                Capability {
                    kind: "command".into(),
                    name: "hello".into(),
                },
                Capability {
                    kind: "transform".into(),
                    name: "shout".into(),
                },
            ],
        },
        Message::Refused {
            status: "failed".into(),
            reason: "register-failed".into(),
            message: "no ✓".into(),
        },
        Message::Call {
            id: u64::MAX,
            kind: "command".into(),
            name: "hello".into(),
            payload: Payload::Args(vec!["Ada".into(), String::new(), "ünï".into()]),
        },
        Message::Call {
            id: 0,
            kind: "transform".into(),
            name: "redact".into(),
            payload: Payload::Bytes(vec![0, 255, 10]),
        },
        Message::CallHandle {
            id: 3,
            handle: 0,
            payload: Payload::Args(vec!["Ada".into(), "ünï".into()]),
        },
        Message::CallHandle {
            id: u64::MAX,
            handle: u32::MAX,
            payload: Payload::Bytes(vec![0, 255, 10]),
        },
        Message::Reply {
            id: 9,
            result: Ok(b"out".to_vec()),
        },
        Message::Reply {
            id: 10,
            result: Err(CallFailure {
                panicked: true,
                message: "boom".into(),
            }),
        },
        Message::Reply {
            id: 11,
            result: Err(CallFailure {
                panicked: false,
                message: String::new(),
            }),
        },
        Message::Log {
            level: Level::Warn,
            target: "plugin::x".into(),
            message: "careful".into(),
        },
        Message::Shutdown,
    ]
}

#[test]
fn every_message_round_trips_and_reports_its_length() {
    let mut stream = Vec::new();
    for m in samples() {
        let mut one = Vec::new();
        encode(&m, &mut one);
        assert!(frame_fits(&one));
        assert_eq!(decode(&one), Ok((m.clone(), one.len())), "{}", m.name());
        stream.extend_from_slice(&one);
    }
    // Frames back to back decode one after the other.
    let mut at = 0;
    for m in samples() {
        let (got, used) = decode(&stream[at..]).unwrap();
        assert_eq!(got, m);
        at += used;
    }
    assert_eq!(at, stream.len());
}

#[test]
fn every_strict_prefix_is_incomplete_and_asks_for_more() {
    for m in samples() {
        let mut frame = Vec::new();
        encode(&m, &mut frame);
        for cut in 0..frame.len() {
            match decode(&frame[..cut]) {
                Err(DecodeError::Incomplete { needed }) => {
                    assert!(needed > cut && needed <= frame.len(), "{cut} {needed}")
                }
                other => panic!("{} cut at {cut}: {other:?}", m.name()),
            }
        }
    }
}

#[test]
fn bounds_and_garbage_are_refused() {
    // Too long a frame, before any allocation.
    let too_long = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
    assert_eq!(
        decode(&too_long),
        Err(DecodeError::TooLong(MAX_FRAME_LEN as u64 + 1))
    );
    // Unknown tag, empty body.
    assert_eq!(
        decode(&[1, 0, 0, 0, 200]),
        Err(DecodeError::UnknownTag(200))
    );
    assert!(matches!(
        decode(&[0, 0, 0, 0]),
        Err(DecodeError::Malformed(_))
    ));
    // A list claiming four billion arguments in a tiny frame.
    let mut frame = vec![0; 4];
    frame.push(6);
    frame.extend_from_slice(&1u64.to_le_bytes());
    for s in ["command", "x"] {
        frame.extend_from_slice(&(s.len() as u32).to_le_bytes());
        frame.extend_from_slice(s.as_bytes());
    }
    frame.push(0);
    frame.extend_from_slice(&u32::MAX.to_le_bytes());
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    assert!(matches!(decode(&frame), Err(DecodeError::Malformed(_))));
    // Bytes left over after a whole message.
    let mut shutdown = Vec::new();
    encode(&Message::Shutdown, &mut shutdown);
    shutdown.push(0);
    shutdown[0] = 2;
    assert_eq!(
        decode(&shutdown),
        Err(DecodeError::Malformed("bytes left over after the message"))
    );
    // A string that is not UTF-8.
    let mut log = Vec::new();
    encode(
        &Message::Log {
            level: Level::Info,
            target: "t".into(),
            message: "ab".into(),
        },
        &mut log,
    );
    let n = log.len();
    log[n - 1] = 0xff;
    assert_eq!(
        decode(&log),
        Err(DecodeError::Malformed("a string is not UTF-8"))
    );
    // A name over the limit.
    let long = Message::Refused {
        status: "x".repeat(MAX_NAME_LEN + 1),
        reason: "r".into(),
        message: "m".into(),
    };
    let mut frame = Vec::new();
    encode(&long, &mut frame);
    assert!(matches!(decode(&frame), Err(DecodeError::Malformed(_))));
}

#[test]
fn negotiation_picks_the_newest_common_version() {
    assert_eq!(negotiate(1, 1), Some(1));
    assert_eq!(negotiate(1, 2), Some(2));
    assert_eq!(negotiate(1, 99), Some(PROTOCOL_VERSION));
    assert_eq!(negotiate(PROTOCOL_VERSION + 1, 99), None);
    assert_eq!(negotiate(0, 0), None);
    assert_eq!(negotiate(5, 2), None);
}

/// xorshift64*: a deterministic source of garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes, random frames with a valid prefix and tag, and valid frames with bytes
/// flipped, cut or extended: `decode` never panics, never claims more bytes than it got,
/// and whatever it accepts re-encodes to a frame it decodes the same.
#[test]
fn decode_survives_random_and_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut valid = Vec::new();
    for m in samples() {
        let mut frame = Vec::new();
        encode(&m, &mut frame);
        valid.push(frame);
    }
    let mut accepted = 0;
    for round in 0..200_000 {
        let input: Vec<u8> = match round % 3 {
            0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            1 => {
                let body: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
                let mut f = ((body.len() + 1) as u32).to_le_bytes().to_vec();
                f.push(1 + rng.below(9) as u8);
                f.extend_from_slice(&body);
                f
            }
            _ => {
                let mut f = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(3) {
                    match rng.below(3) {
                        0 if !f.is_empty() => {
                            let at = rng.below(f.len());
                            f[at] ^= 1 << rng.below(8);
                        }
                        1 => f.truncate(rng.below(f.len() + 1)),
                        _ => f.push(rng.next() as u8),
                    }
                }
                f
            }
        };
        match decode(&input) {
            Ok((message, used)) => {
                accepted += 1;
                assert!(used <= input.len());
                let mut again = Vec::new();
                encode(&message, &mut again);
                assert_eq!(decode(&again), Ok((message, again.len())));
            }
            Err(DecodeError::Incomplete { needed }) => assert!(needed > input.len()),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    assert!(accepted > 100, "the mutations reached valid frames too");
}

#[test]
fn the_hot_path_codec_writes_and_reads_the_same_bytes() {
    for message in samples() {
        let mut whole = Vec::new();
        encode(&message, &mut whole);
        let mut fast = Vec::new();
        match &message {
            Message::Call {
                id,
                kind,
                name,
                payload: Payload::Args(args),
            } => encode_call_args(*id, kind, name, args.iter().map(String::as_str), &mut fast),
            Message::Call {
                id,
                kind,
                name,
                payload: Payload::Bytes(bytes),
            } => encode_call_bytes(*id, kind, name, bytes, &mut fast),
            Message::CallHandle {
                id,
                handle,
                payload: Payload::Args(args),
            } => encode_call_args_to(
                *id,
                Target::Handle(*handle),
                args.iter().map(String::as_str),
                &mut fast,
            ),
            Message::CallHandle {
                id,
                handle,
                payload: Payload::Bytes(bytes),
            } => {
                encode_call_bytes_head_to(*id, Target::Handle(*handle), bytes.len(), &mut fast);
                fast.extend_from_slice(bytes);
            }
            Message::Reply { id, result } => encode_reply(
                *id,
                result
                    .as_ref()
                    .map(Vec::as_slice)
                    .map_err(|f| (f.panicked, f.message.as_str())),
                &mut fast,
            ),
            _ => fast = whole.clone(),
        }
        assert_eq!(fast, whole, "{message:?}");
        // Read back in place: the same fields.
        match (&message, decode_call(&whole).unwrap()) {
            (
                Message::Call {
                    id,
                    kind,
                    name,
                    payload,
                },
                (Borrowed::Expected(call), n),
            ) => {
                assert_eq!(n, whole.len());
                let target = Target::Named { kind, name };
                assert_eq!((call.id, call.target), (*id, target));
                same_payload(payload, call.payload);
            }
            (
                Message::CallHandle {
                    id,
                    handle,
                    payload,
                },
                (Borrowed::Expected(call), n),
            ) => {
                assert_eq!(n, whole.len());
                assert_eq!((call.id, call.target), (*id, Target::Handle(*handle)));
                same_payload(payload, call.payload);
            }
            (other, (Borrowed::Other(m), _)) => assert_eq!(&m, other),
            other => panic!("{other:?}"),
        }
        match (&message, decode_reply(&whole).unwrap()) {
            (Message::Reply { id, result }, (Borrowed::Expected(reply), _)) => {
                assert_eq!(reply.id, *id);
                let want = result
                    .as_ref()
                    .map(Vec::as_slice)
                    .map_err(|f| (f.panicked, f.message.as_str()));
                assert_eq!(reply.result, want);
            }
            (other, (Borrowed::Other(m), _)) => assert_eq!(&m, other),
            other => panic!("{other:?}"),
        }
    }
}

fn same_payload(payload: &Payload, got: PayloadRef<'_>) {
    match (payload, got) {
        (Payload::Args(args), p @ PayloadRef::Args { .. }) => {
            assert_eq!(p.args().collect::<Vec<_>>(), *args)
        }
        (Payload::Bytes(b), PayloadRef::Bytes(got)) => assert_eq!(got, &b[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_hot_path_decoders_refuse_what_decode_refuses() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for message in samples() {
        let mut frame = Vec::new();
        encode(&message, &mut frame);
        for _ in 0..300 {
            let mut bad = frame.clone();
            let at = PREFIX_LEN + rng.below(bad.len() - PREFIX_LEN);
            bad[at] = rng.next() as u8;
            let decoded = decode(&bad);
            let whole = decoded.is_ok();
            assert_eq!(decode_call(&bad).is_ok(), whole, "{bad:?}");
            assert_eq!(decode_reply(&bad).is_ok(), whole, "{bad:?}");
            // A reply's head read alone never panics, and agrees with the whole reply.
            let head = decode_reply_head(&bad);
            if let Ok((Message::Reply { id, result }, _)) = &decoded {
                let h = head.unwrap().expect("a reply's head");
                assert_eq!(h.id, *id);
                match result {
                    Ok(out) => assert_eq!((h.failed, h.len), (None, out.len())),
                    Err(f) => assert_eq!((h.failed, h.len), (Some(f.panicked), f.message.len())),
                }
            }
        }
        // Every strict prefix is incomplete for them too.
        for cut in 0..frame.len() {
            assert!(matches!(
                decode_reply(&frame[..cut]),
                Err(DecodeError::Incomplete { .. })
            ));
        }
    }
}

#[test]
fn heads_with_a_trailing_payload_are_the_same_frames_and_read_back() {
    for message in samples() {
        let mut whole = Vec::new();
        encode(&message, &mut whole);
        // The head encoders plus the payload sent after them: the same bytes.
        let mut head = Vec::new();
        match &message {
            Message::Call {
                id,
                kind,
                name,
                payload: Payload::Bytes(bytes),
            } => {
                encode_call_bytes_head(*id, kind, name, bytes.len(), &mut head);
                head.extend_from_slice(bytes);
                assert_eq!(head, whole, "{message:?}");
            }
            Message::Reply {
                id,
                result: Ok(out),
            } => {
                encode_reply_head(*id, out.len(), &mut head);
                assert_eq!(head.len(), REPLY_HEAD_LEN);
                head.extend_from_slice(out);
                assert_eq!(head, whole, "{message:?}");
            }
            _ => {}
        }
        // A reply's head read alone: its id, outcome and payload length.
        if whole.len() < REPLY_HEAD_LEN {
            assert!(matches!(
                decode_reply_head(&whole),
                Err(DecodeError::Incomplete { .. })
            ));
            continue;
        }
        match (
            &message,
            decode_reply_head(&whole[..REPLY_HEAD_LEN]).unwrap(),
        ) {
            (Message::Reply { id, result }, Some(h)) => {
                assert_eq!(h.id, *id);
                match result {
                    Ok(out) => assert_eq!((h.failed, h.len), (None, out.len())),
                    Err(f) => assert_eq!((h.failed, h.len), (Some(f.panicked), f.message.len())),
                }
                assert_eq!(&whole[REPLY_HEAD_LEN..].len(), &h.len);
            }
            (Message::Reply { .. }, None) => panic!("a reply not read as one"),
            (_, Some(h)) => panic!("{message:?} read as a reply {h:?}"),
            (_, None) => {}
        }
    }
}

#[test]
fn a_reply_head_that_disagrees_with_its_frame_is_refused() {
    let mut frame = Vec::new();
    encode_reply(7, Ok(b"output"), &mut frame);
    // The payload's length one more than the frame holds.
    let mut bad = frame.clone();
    bad[REPLY_HEAD_LEN - 4] += 1;
    assert_eq!(
        decode_reply_head(&bad),
        Err(DecodeError::Malformed(
            "a reply's length disagrees with its frame's"
        ))
    );
    // An unknown outcome, and a frame over the limit.
    let mut bad = frame.clone();
    bad[PREFIX_LEN + 9] = 3;
    assert!(matches!(
        decode_reply_head(&bad),
        Err(DecodeError::Malformed(_))
    ));
    let mut bad = frame.clone();
    bad[..PREFIX_LEN].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_reply_head(&bad),
        Err(DecodeError::TooLong(_))
    ));
}
