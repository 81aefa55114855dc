//! Read deadlines for one connection (onepush patch "limits").
//!
//! A `Clock` is shared by the connection's thread, its read half and its
//! requests. The connection sets one deadline at a time (idle, headers,
//! body); every read of the socket is bounded by what is left of it.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::util::RefinedTcpStream;

pub(crate) struct Clock {
    deadline: Mutex<Option<Instant>>,
    /// Requests handed out and not yet answered.
    in_flight: AtomicUsize,
    /// When the connection last had nothing to answer.
    idle_since: Mutex<Instant>,
}

impl Clock {
    pub(crate) fn new() -> Arc<Clock> {
        Arc::new(Clock { deadline: Mutex::new(None), in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) })
    }

    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = deadline;
    }

    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
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

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
