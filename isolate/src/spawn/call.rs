//! A started worker's calls: a request out, its reply back (or why there is none), and
//! stopping it.

use super::*;

impl Worker {
    /// Encodes and sends one message over the control socket, by `deadline` (a worker that
    /// stops reading fails the send then; the caller ends the worker).
    pub(crate) fn send(&mut self, message: &Message, deadline: Instant) -> Result<(), SendError> {
        self.frame.clear();
        encode(message, &mut self.frame);
        if !plugin_protocol::frame_fits(&self.frame) {
            return Err(SendError::TooLarge(format!(
                "the {} message is larger than the protocol's limit of {} bytes",
                message.name(),
                plugin_protocol::MAX_FRAME_LEN
            )));
        }
        self.sender
            .send(&self.frame, Some(deadline))
            .map_err(|e| SendError::Io(format!("sending to the worker failed: {e}")))
    }

    /// Asks the worker to finish, on the channel it reads (best effort).
    pub(crate) fn shutdown(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(100);
        match &mut self.shm {
            Some(channel) => {
                self.frame.clear();
                encode(&Message::Shutdown, &mut self.frame);
                let _ = channel.send(&self.frame, Some(deadline));
            }
            None => {
                let _ = self.send(&Message::Shutdown, deadline);
            }
        }
    }

    /// Resolves the handles of this worker: `proxied` are the capabilities the host holds a
    /// proxy for, `registered` what this worker registered. Until this is called (and with a
    /// worker older than version 3, or one without the call channel), calls go by name.
    pub(crate) fn resolve(&mut self, proxied: &[Capability], registered: &[Capability]) {
        self.handles.clear();
        if self.version < HANDLE_VERSION || self.shm.is_none() {
            return;
        }
        self.handles.extend(handles(proxied, registered));
    }

    /// The handle of `target` in this worker, if it takes calls by handle.
    pub(crate) fn handle(&self, target: Target<'_>) -> Option<u32> {
        *self.handles.get(target.index?)?
    }

    /// One round trip: sends call `id` and waits for its reply until `deadline`. A successful
    /// call's output is appended to `output`, copied straight out of the channel.
    pub(crate) fn exchange(
        &mut self,
        id: u64,
        target: Target<'_>,
        input: Input<'_>,
        deadline: Instant,
        output: &mut dyn ByteSink,
    ) -> Exchange {
        if self.shm.is_none() {
            self.frame.clear();
            let payload = self.encode_call(id, target, input);
            if let Err(e) = self.fits(payload) {
                return e;
            }
            self.frame.extend_from_slice(payload);
            return self.exchange_over_socket(id, deadline, output);
        }
        if let Err(e) = self.send_call(id, target, input, deadline) {
            return e;
        }
        self.recv_reply(id, deadline, output)
    }

    /// Encodes the head of call `id` into `self.frame` (by handle when the worker has one for
    /// `target`): the payload that follows it, not copied (a transform's input).
    fn encode_call<'i>(&mut self, id: u64, target: Target<'_>, input: Input<'i>) -> &'i [u8] {
        let to = match self.handle(target) {
            Some(handle) => {
                self.sent.by_handle += 1;
                plugin_protocol::Target::Handle(handle)
            }
            None => {
                self.sent.by_name += 1;
                plugin_protocol::Target::Named {
                    kind: target.kind,
                    name: target.name,
                }
            }
        };
        match input {
            Input::Args(args) => {
                let args = args.iter().map(|a| a.as_str());
                encode_call_args_to(id, to, args, &mut self.frame);
                &[]
            }
            Input::Bytes(bytes) => {
                encode_call_bytes_head_to(id, to, bytes.len(), &mut self.frame);
                bytes
            }
        }
    }

    /// Whether the call in `self.frame` followed by `payload` fits in a frame.
    fn fits(&self, payload: &[u8]) -> Result<(), Exchange> {
        if self.frame.len() - PREFIX_LEN + payload.len() > MAX_FRAME_LEN {
            return Err(Exchange::TooLarge(format!(
                "the call message is larger than the protocol's limit of {MAX_FRAME_LEN} bytes"
            )));
        }
        Ok(())
    }

    /// The bytes call `input` takes in the worker's ring once sent ([`Worker::send_call`]):
    /// its frame and the ring's length word. At least that much is free in an empty ring.
    pub(crate) fn ring_bytes(&self, target: Target<'_>, input: Input<'_>) -> usize {
        // The longest head: a call by name (a handle's is shorter).
        let head = PREFIX_LEN + 1 + 8 + 8 + target.kind.len() + target.name.len() + 1 + 4;
        let payload = match input {
            Input::Args(args) => args.iter().map(|a| 4 + a.len()).sum(),
            Input::Bytes(bytes) => bytes.len(),
        };
        shm::FRAME_HEADER + head + payload
    }

    /// The capacity of the worker's ring, when calls go over the call channel (then several
    /// calls may be in flight, see [`Worker::send_call`]).
    pub(crate) fn ring_capacity(&self) -> Option<usize> {
        self.shm.as_ref().map(shm::Channel::capacity)
    }

    /// Sends call `id` over the call channel without waiting for its reply (read it with
    /// [`Worker::recv_reply`], replies come in the order of the calls). The worker reads one
    /// call at a time and keeps it in its ring until it has answered it, so calls in flight
    /// whose [`Worker::ring_bytes`] add up to at most the ring's capacity never wait for room,
    /// and so never for a worker that is itself waiting for its reply to be read.
    ///
    /// # Panics
    /// Without a call channel (a version-1 worker).
    pub(crate) fn send_call(
        &mut self,
        id: u64,
        target: Target<'_>,
        input: Input<'_>,
        deadline: Instant,
    ) -> Result<(), Exchange> {
        self.frame.clear();
        // A transform's input is not copied into the frame: it follows the frame's head.
        let payload = self.encode_call(id, target, input);
        self.fits(payload)?;
        // Anything on the control socket now is a lie (garbage, or a message out of turn):
        // a version-2 worker only sends log records there, which the reader thread handles.
        match self.events.try_recv().map(|(event, len)| {
            self.bounds.taken(len);
            event
        }) {
            Ok(Event::Broken(e)) => {
                return Err(Exchange::Broken(format!("on its control socket: {e}")))
            }
            Ok(Event::Message(m)) => return Err(Exchange::Other(m.name())),
            Ok(Event::Closed) | Err(_) => {}
        }
        let channel = self
            .shm
            .as_mut()
            .expect("calls in flight need the call channel");
        match channel.send_parts(&[&self.frame, payload], Some(deadline)) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(shm::SendError::PeerGone) => Err(Exchange::Closed),
            Err(shm::SendError::Timeout) => Err(Exchange::Timeout),
            Err(shm::SendError::TooLarge { .. }) => Err(Exchange::TooLarge(format!(
                "the call message is larger than the channel's limit of {MAX_FRAME_LEN} bytes"
            ))),
            Err(e) => Err(Exchange::Broken(e.to_string())),
        }
    }

    /// Waits until `deadline` for the reply to call `id`, the next one on the call channel
    /// (see [`Worker::send_call`]). A successful call's output is appended to `output`,
    /// copied straight out of the channel after its head was checked.
    ///
    /// # Panics
    /// Without a call channel (a version-1 worker).
    pub(crate) fn recv_reply(
        &mut self,
        id: u64,
        deadline: Instant,
        output: &mut dyn ByteSink,
    ) -> Exchange {
        let channel = self
            .shm
            .as_mut()
            .expect("replies in flight need the call channel");
        self.in_flight = self.in_flight.saturating_sub(1);
        // The reply's head here, checked; only then its payload, straight into `output`.
        let received = channel.recv_head(&mut self.rx, REPLY_HEAD_LEN, Some(deadline));
        let rest = match received {
            Ok(rest) => rest,
            Err(e) => return lost(e),
        };
        if self.rx.len() < REPLY_HEAD_LEN {
            // Shorter than any reply with a payload (and so all there is): decoded whole, an
            // error or a message out of turn.
            return reply(id, decode_reply(&self.rx), self.rx.len(), |_| ());
        }
        let head = match decode_reply_head(&self.rx) {
            Ok(Some(head)) => head,
            Ok(None) => {
                // Another message: read whole (bounded by the channel) to name it.
                let mut other = Vec::new();
                if let Err(e) = channel.recv_rest(&mut self.rx, &mut other, Some(deadline)) {
                    return lost(e);
                }
                self.rx.extend_from_slice(&other);
                return reply(id, decode_reply(&self.rx), self.rx.len(), |_| ());
            }
            Err(e) => return Exchange::Broken(e.to_string()),
        };
        if head.id != id {
            return Exchange::Other("reply (to another call)");
        }
        if head.len != rest {
            return Exchange::Broken(
                "a reply whose length disagrees with the message that carried it".into(),
            );
        }
        let Some(panicked) = head.failed else {
            let before = output.contents().len();
            return match channel.recv_rest(&mut self.rx, output, Some(deadline)) {
                Ok(_) => Exchange::Reply(Ok(())),
                Err(e) => {
                    // A part of a streamed reply may be there: the call has no output.
                    output.truncate(before);
                    lost(e)
                }
            };
        };
        // The plugin's error message.
        let mut message = Vec::new();
        if let Err(e) = channel.recv_rest(&mut self.rx, &mut message, Some(deadline)) {
            return lost(e);
        }
        match String::from_utf8(message) {
            Ok(message) => Exchange::Reply(Err(plugin_protocol::CallFailure { panicked, message })),
            Err(_) => Exchange::Broken("an error message that is not UTF-8".into()),
        }
    }

    /// The round trip of a version-1 worker: the frame in `self.frame` over the control
    /// socket, the reply from the reader thread.
    pub(super) fn exchange_over_socket(
        &mut self,
        id: u64,
        deadline: Instant,
        output: &mut dyn ByteSink,
    ) -> Exchange {
        if let Err(e) = self.sender.send(&self.frame, Some(deadline)) {
            // A worker that stopped reading is past the call's deadline as one that stopped
            // answering is; one that is gone shows as the end of its stream.
            return if e.kind() == std::io::ErrorKind::TimedOut {
                Exchange::Timeout
            } else {
                Exchange::Closed
            };
        }
        match next(self, deadline) {
            Some(Event::Message(Message::Reply { id: got, result })) if got == id => {
                Exchange::Reply(result.map(|out| output.put(&out)))
            }
            Some(Event::Message(other)) => Exchange::Other(other.name()),
            Some(Event::Broken(e)) => Exchange::Broken(e),
            Some(Event::Closed) => Exchange::Closed,
            None => Exchange::Timeout,
        }
    }

    /// Kills the worker and its process group (whatever the plugin started, see
    /// [`super::tree`]), and reaps it.
    pub(crate) fn kill(&mut self) {
        self.reap(true);
    }

    /// Waits until `until` for the worker to end by itself: whether it did (it is not
    /// reaped: [`Worker::kill`] or [`Worker::death`] still kill its group and reap it).
    pub(crate) fn ended_by(&self, until: Instant) -> bool {
        loop {
            if crate::tree::has_ended(self.pid) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the worker's process group (and the worker, if `kill`) before reaping the
    /// worker, whose group's id cannot be reused until then: its status, if it has one.
    pub(super) fn reap(&mut self, kill: bool) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.reaped {
            return status; // the group is no longer ours to kill
        }
        crate::tree::kill_group(self.pid);
        if kill {
            let _ = self.child.kill();
        }
        let status = self.child.wait().ok();
        self.reaped = Some(status);
        // Its reader thread ends now, even if a process it left behind holds the socket.
        self.sender.close();
        status
    }

    /// The worker died (or is dying): waits for it (killing it if it lingers) and says how
    /// it ended, with the tail of its stderr.
    pub(crate) fn death(&mut self) -> String {
        let ended = self.ended_by(Instant::now() + Duration::from_secs(1));
        let status = self.reap(!ended);
        let how = match (status, self.bounds.broken()) {
            (_, Some(bound)) => format!("it {bound}, and the host killed it"),
            (Some(status), None) => describe(status),
            (None, None) => "it ended in an unknown way".to_owned(),
        };
        let tail = self.tail.clause(Duration::from_millis(500));
        format!("{how} (pid {}); {tail}", self.pid)
    }
}

/// For each of `proxied`, its handle in a worker that registered `registered`: its position
/// there (the worker's list, not the first worker's: a reloaded build may register more, and
/// so shift them), or `None` when it is not there.
fn handles<'a>(
    proxied: &'a [Capability],
    registered: &'a [Capability],
) -> impl Iterator<Item = Option<u32>> + 'a {
    // Each capability's first place in the worker's list, found once: one lookup each.
    let mut first = std::collections::HashMap::with_capacity(registered.len());
    for (at, r) in registered.iter().enumerate() {
        first
            .entry((r.kind.as_str(), r.name.as_str()))
            .or_insert(at);
    }
    proxied.iter().map(move |c| {
        let at = *first.get(&(c.kind.as_str(), c.name.as_str()))?;
        u32::try_from(at).ok()
    })
}

/// How a round trip ended when the channel failed while receiving the reply.
fn lost(e: shm::RecvError) -> Exchange {
    match e {
        shm::RecvError::PeerGone => Exchange::Closed,
        shm::RecvError::Timeout => Exchange::Timeout,
        e => Exchange::Broken(e.to_string()),
    }
}

/// A reply decoded whole (`decoded`, from [`decode_reply`] over a message of `len` bytes)
/// as the answer to call `id`; a successful call's output goes to `put`.
fn reply(
    id: u64,
    decoded: Result<(Borrowed<plugin_protocol::ReplyRef<'_>>, usize), plugin_protocol::DecodeError>,
    len: usize,
    put: impl FnOnce(&[u8]),
) -> Exchange {
    match decoded {
        Ok((_, used)) if used != len => {
            Exchange::Broken("bytes after the reply in its message".into())
        }
        Ok((Borrowed::Expected(reply), _)) if reply.id == id => {
            Exchange::Reply(match reply.result {
                Ok(out) => {
                    put(out);
                    Ok(())
                }
                Err((panicked, message)) => Err(plugin_protocol::CallFailure {
                    panicked,
                    message: message.to_owned(),
                }),
            })
        }
        Ok((Borrowed::Expected(_), _)) => Exchange::Other("reply (to another call)"),
        Ok((Borrowed::Other(m), _)) => Exchange::Other(m.name()),
        Err(e) => Exchange::Broken(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(kind: &str, name: &str) -> Capability {
        Capability {
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn handles_are_positions_in_the_workers_own_list() {
        let proxied = [cap("command", "hello"), cap("transform", "hello")];
        // The same list: the same positions.
        let same: Vec<_> = handles(&proxied, &proxied).collect();
        assert_eq!(same, [Some(0), Some(1)]);
        // A reloaded build that registers more: each proxy finds its capability where the
        // new worker has it, not where the first one had it.
        let reloaded = [
            cap("command", "aaa"),
            cap("command", "hello"),
            cap("command", "zzz"),
            cap("transform", "hello"),
        ];
        let moved: Vec<_> = handles(&proxied, &reloaded).collect();
        assert_eq!(moved, [Some(1), Some(3)]);
        // One it lacks is called by name (and fails there as a call by name would).
        let lacking = [cap("transform", "hello")];
        let gone: Vec<_> = handles(&proxied, &lacking).collect();
        assert_eq!(gone, [None, Some(0)]);
        // Listed twice: its first place.
        let twice = [
            cap("transform", "hello"),
            cap("command", "hello"),
            cap("command", "hello"),
        ];
        let first: Vec<_> = handles(&proxied, &twice).collect();
        assert_eq!(first, [Some(1), Some(0)]);
    }
}
