//! Finishes the answers that a client's socket did not take at once
//! (onepush patch "limits"), on one thread for the whole server.
//!
//! A response is first sent without blocking by the thread that answers.
//! What is left comes here: one thread waits with epoll (mio) until each
//! socket can take more, and sends without blocking. A client that does not
//! read costs its unsent bytes, never a thread, and is disconnected when its
//! answer is not out `send_timeout` after it was handed over, however
//! slowly it trickles.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufWriter, Result as IoResult};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::util::timed_reader::InFlight;
use crate::util::{RefinedTcpStream, SequentialWriter};

const WAKE: Token = Token(usize::MAX);

/// The rest of one answer.
pub(crate) struct Pending {
    pub writer: SequentialWriter<BufWriter<RefinedTcpStream>>,
    pub bytes: Vec<u8>,
    pub sent: usize,
    /// Keeps the connection busy (its next request unread) until the answer is out.
    pub in_flight: Option<InFlight>,
}

impl Pending {
    /// Sends what the socket takes now; true when the answer is complete.
    fn advance(&mut self) -> IoResult<bool> {
        self.sent += self.writer.try_send(&self.bytes[self.sent..])?;
        Ok(self.sent == self.bytes.len())
    }

    /// The answer could not be sent: end the connection.
    fn fail(self) {
        self.writer.shutdown_both();
        if let Some(in_flight) = &self.in_flight {
            in_flight.connection_broken();
        }
        // the writer before the guard: the connection then finds it closed
        drop(self.writer);
        drop(self.in_flight);
    }
}

struct Shared {
    incoming: Mutex<Vec<Pending>>,
    waker: Waker,
}

pub(crate) struct Flusher {
    shared: Arc<Shared>,
}

impl Flusher {
    pub(crate) fn start(send_timeout: Option<Duration>) -> IoResult<Flusher> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let shared = Arc::new(Shared { incoming: Mutex::new(Vec::new()), waker });
        let inside = shared.clone();
        std::thread::Builder::new().spawn(move || run(poll, &inside, send_timeout))?;
        Ok(Flusher { shared })
    }

    /// Hands over the rest of an answer.
    pub(crate) fn finish(&self, pending: Pending) {
        self.shared.incoming.lock().unwrap_or_else(PoisonError::into_inner).push(pending);
        if self.shared.waker.wake().is_err() {
            log::error!("the response flusher cannot be woken");
        }
    }
}

fn run(mut poll: Poll, shared: &Shared, send_timeout: Option<Duration>) {
    let mut events = Events::with_capacity(1024);
    let mut pending: HashMap<usize, (Pending, i32)> = HashMap::new();
    let mut deadlines: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut next_token = 0usize;
    loop {
        let timeout = deadlines.peek().map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("the response flusher cannot poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let mut ready: Vec<usize> = events.iter().map(|e| e.token()).filter(|t| *t != WAKE).map(|t| t.0).collect();
        let incoming = std::mem::take(&mut *shared.incoming.lock().unwrap_or_else(PoisonError::into_inner));
        for p in incoming {
            let Some(fd) = p.writer.raw_fd() else {
                p.fail();
                continue;
            };
            let token = next_token;
            next_token = if next_token >= usize::MAX - 1 { 0 } else { next_token + 1 };
            if poll.registry().register(&mut SourceFd(&fd), Token(token), Interest::WRITABLE).is_err() {
                p.fail();
                continue;
            }
            if let Some(t) = send_timeout {
                deadlines.push(Reverse((Instant::now() + t, token)));
            }
            pending.insert(token, (p, fd));
            ready.push(token);
        }
        for token in ready {
            let Some((p, _)) = pending.get_mut(&token) else { continue };
            let outcome = p.advance();
            if !matches!(outcome, Ok(false)) {
                if let Some((p, fd)) = pending.remove(&token) {
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    match outcome {
                        Ok(_) => drop(p),
                        Err(_) => p.fail(),
                    }
                }
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, token))) = deadlines.peek().copied() {
            if at > now {
                break;
            }
            deadlines.pop();
            // a client that has not taken its answer in time
            if let Some((p, fd)) = pending.remove(&token) {
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
                p.fail();
            }
        }
    }
}
