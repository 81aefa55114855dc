//! The HTTP edge: tiny_http workers, the router and the handlers.
//!
//! Handlers parse and validate, call a use case in `service`, and answer
//! through `Exchange`. Long-polls are parked in `waiters`. Nothing here
//! touches the store directly or invents error codes.

pub mod assets;
pub mod request;
pub mod response;
pub mod routes;
pub mod waiters;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::service::App;

pub struct Http {
    pub app: Arc<App>,
    pub waiters: Sender<waiters::Msg>,
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

/// Runs `workers` threads that take requests from tiny_http. Returns when
/// the server stops; `Err` means tiny_http's accept loop died (for example
/// out of file descriptors) and the process must exit non-zero.
pub fn run_workers(http: Arc<Http>, server: Arc<tiny_http::Server>, workers: usize) -> Result<(), String> {
    let (fatal_tx, fatal_rx) = std::sync::mpsc::channel::<String>();
    let mut handles = Vec::new();
    for i in 0..workers {
        let (http, server, fatal_tx) = (http.clone(), server.clone(), fatal_tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || loop {
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
                            if !http.shutting_down.load(Ordering::SeqCst) {
                                let _ = fatal_tx.send(format!("the HTTP accept loop stopped: {e}"));
                            }
                            return;
                        }
                    }
                })
                .expect("spawning an HTTP worker"),
        );
    }
    drop(fatal_tx);
    match fatal_rx.recv() {
        Ok(why) => Err(why),
        Err(_) => Ok(()),
    }
}
