//! Read deadlines for one connection (onepush patch "limits").
//!
//! A `Clock` is shared by the connection's thread, its read half and its
//! requests. The connection sets one deadline at a time (idle, headers,
//! body); every read of the socket is bounded by what is left of it.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::util::RefinedTcpStream;

pub(crate) struct Clock {
    deadline: Mutex<Option<Instant>>,
    /// A deadline that starts at the next read (a streamed body's, which
    /// runs from when its handler starts reading it).
    armed: Mutex<Option<Duration>>,
    /// Requests handed out and not yet answered.
    in_flight: AtomicUsize,
    /// When the connection last had nothing to answer.
    idle_since: Mutex<Instant>,
    answered: Condvar,
    /// The connection's thread waits on `answered` (set under `idle_since`).
    waiting: std::sync::atomic::AtomicBool,
    /// An answer could not be sent: read no further request.
    broken: std::sync::atomic::AtomicBool,
}

impl Clock {
    pub(crate) fn new() -> Arc<Clock> {
        Arc::new(Clock {
            deadline: Mutex::new(None),
            armed: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            answered: Condvar::new(),
            waiting: std::sync::atomic::AtomicBool::new(false),
            broken: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        *self.armed.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = deadline;
    }

    /// No deadline until the next read; from then, `timeout`.
    pub(crate) fn arm_on_next_read(&self, timeout: Option<Duration>) {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.armed.lock().unwrap_or_else(PoisonError::into_inner) = timeout;
    }

    fn deadline(&self) -> Option<Instant> {
        let armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = armed {
            self.set_deadline(Some(Instant::now() + t));
        }
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once an answer on this connection could not be sent.
    pub(crate) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Blocks until every request handed out has been answered: a
    /// connection reads its next request only then (one at a time).
    pub(crate) fn wait_until_answered(&self) {
        let mut idle = self.idle_since.lock().unwrap_or_else(PoisonError::into_inner);
        while self.in_flight.load(Ordering::Acquire) > 0 {
            self.waiting.store(true, Ordering::Release);
            idle = self.answered.wait(idle).unwrap_or_else(PoisonError::into_inner);
        }
        self.waiting.store(false, Ordering::Release);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request as being answered until the guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// A request being answered; see `Clock::request_started`.
pub(crate) struct InFlight(Arc<Clock>);

impl InFlight {
    /// Its answer could not be sent: the connection reads no further request.
    pub(crate) fn connection_broken(&self) {
        self.0.broken.store(true, Ordering::Release);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut idle = self.0.idle_since.lock().unwrap_or_else(PoisonError::into_inner);
        *idle = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        let waiting = self.0.waiting.load(Ordering::Acquire);
        drop(idle);
        if waiting {
            self.0.answered.notify_all();
        }
    }
}

/// The read half of a connection, bounded by its clock's deadline. A read
/// past the deadline fails with `ErrorKind::TimedOut`.
pub(crate) struct TimedReader {
    inner: RefinedTcpStream,
    clock: Arc<Clock>,
    timeout_set: Option<Duration>,
}

impl TimedReader {
    pub(crate) fn new(inner: RefinedTcpStream, clock: Arc<Clock>) -> TimedReader {
        TimedReader { inner, clock, timeout_set: None }
    }
}

impl Read for TimedReader {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            let deadline = self.clock.deadline();
            let timeout = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(IoError::new(ErrorKind::TimedOut, "read deadline passed")),
                },
            };
            if timeout.is_some() || self.timeout_set.is_some() {
                self.inner.set_read_timeout(timeout)?;
                self.timeout_set = timeout;
            }
            match self.inner.read(buf) {
                // The socket's timeout ran out: check the deadline again (the
                // connection may have moved it).
                Err(e) if deadline.is_some() && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                other => return other,
            }
        }
    }
}
