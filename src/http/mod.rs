//! The HTTP edge: tiny_http workers, the router and the handlers.
//!
//! Handlers parse and validate, call a use case in `service`, and answer
//! through `Exchange`. Long-polls are parked in `waiters`. Nothing here
//! touches the store directly or invents error codes.

pub mod assets;
mod device;
pub mod request;
pub mod response;
pub mod routes;
pub mod views;
pub mod waiters;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::service::App;

pub struct Http {
    pub app: Arc<App>,
    pub waiters: waiters::Mailbox,
    pub shutting_down: AtomicBool,
    /// `serve --demo`: the demo bank at /demo and its RP endpoints.
    pub demo: bool,
}

/// The RP name the demo bank acts as.
pub const DEMO_RP: &str = "demo";

/// Binds `addr` with a listen backlog of 4096 (std's 128 overflows during
/// reconnect storms of parked phones).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: listen(2) on a socket we own; it only changes the backlog.
        let rc = unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Accepted sockets inherit TCP_NODELAY on Linux: tiny_http writes a
        // response's head and body separately, and Nagle would hold the body.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(listener)
}

/// The HTTP edge's limits (API.md, "HTTP edge limits"), enforced by the
/// vendored tiny_http before a request reaches a worker.
pub fn limits(edge: &crate::config::EdgeLimits, metrics: Arc<crate::metrics::Metrics>) -> tiny_http::Limits {
    use std::time::Duration;
    tiny_http::Limits {
        header_timeout: Some(Duration::from_millis(edge.header_timeout)),
        body_timeout: Some(Duration::from_millis(edge.body_timeout)),
        keepalive_timeout: Some(Duration::from_millis(edge.keepalive_timeout)),
        send_timeout: Some(Duration::from_millis(edge.send_timeout)),
        max_connections: edge.max_connections,
        // Every JSON body is read by the connection's thread; only a CSV
        // import over 64 KiB streams to a worker (after its session check).
        buffer_body: request::BODY_LIMIT,
        allow_upgrade: false,
        body_limit: Arc::new(|_, url| request::body_limit(url)),
        rejection: Arc::new(move |why| response::edge_rejection(why, &metrics)),
        ..tiny_http::Limits::default()
    }
}

/// Request workers run at a lower priority than the writer and the waiter
/// thread: when the cores are busy with Argon2, the threads that finish
/// decisions and wake parked waiters still get them first.
fn lower_priority_once() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    DONE.with(|d| {
        if !d.replace(true) {
            // SAFETY: raising our own thread's nice value needs no privilege.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 5);
            }
        }
    });
}

/// Every thread onepush starts has a name; tiny_http's accept thread and its
/// connection threads have none. A panic on one of those means tiny_http is
/// broken in a way it does not report: out of descriptors, its accept thread
/// panics in `try_clone().unwrap()` after `accept` succeeded, and
/// `incoming_requests()` then blocks forever instead of ending. Such a panic is
/// fatal, like the end of the accept loop.
fn watch_tiny_http_threads(fatal_tx: std::sync::mpsc::Sender<Option<String>>) {
    let fatal_tx = std::sync::Mutex::new(fatal_tx);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if std::thread::current().name().is_none() {
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            if let Ok(tx) = fatal_tx.lock() {
                let _ = tx.send(Some(format!("an HTTP server thread panicked{at}")));
            }
        }
    }));
}

/// Sent by a worker as it stops, however it stops: `None` for a shutdown,
/// the reason otherwise.
struct WorkerStopped {
    tx: std::sync::mpsc::Sender<Option<String>>,
    why: Option<String>,
}

impl Drop for WorkerStopped {
    fn drop(&mut self) {
        let why = if std::thread::panicking() { Some("an HTTP worker panicked outside a handler".to_string()) } else { self.why.take() };
        let _ = self.tx.send(why);
    }
}

/// Runs `workers` threads that take requests from tiny_http. Returns when
/// the server stops; `Err` means tiny_http's accept loop died (for example
/// out of file descriptors) and the process must exit non-zero.
///
/// Each worker reports `None` when it stops for a shutdown; `Ok` comes once
/// all have, and main then waits for the signal thread.
pub fn run_workers(http: Arc<Http>, server: Arc<tiny_http::Server>, workers: usize) -> Result<(), String> {
    let (fatal_tx, fatal_rx) = std::sync::mpsc::channel::<Option<String>>();
    for i in 0..workers {
        let (http, server) = (http.clone(), server.clone());
        let report = WorkerStopped { tx: fatal_tx.clone(), why: None };
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || {
                // Moved whole, so that it drops on this thread as it ends.
                let mut report = report;
                loop {
                    lower_priority_once();
                    match server.recv() {
                        Ok(req) => {
                            let http2 = http.clone();
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || routes::handle(&http2, req)));
                            if r.is_err() {
                                log::error!("a handler panicked; the request was answered 500");
                            }
                        }
                        Err(e) => {
                            report.why = (!http.shutting_down.load(Ordering::SeqCst)).then(|| format!("the HTTP accept loop stopped: {e}"));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("spawning an HTTP worker: {e}"))?;
    }
    watch_tiny_http_threads(fatal_tx);
    let mut stopped = 0;
    while stopped < workers {
        match fatal_rx.recv() {
            Ok(Some(why)) => return Err(why),
            Ok(None) => stopped += 1,
            Err(_) => break,
        }
    }
    Ok(())
}
