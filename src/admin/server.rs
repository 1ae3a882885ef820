//! The admin server's connections: HTTP/1 on hyper, with limits, so that the
//! server outlives its clients.
//!
//! - **Header-read timeout**: a client has [`HEADER_READ_TIMEOUT`] to send a
//!   request's head, counted from when the server starts waiting for it, so an
//!   idle keep-alive connection and a slowloris client are both closed then.
//! - **A cap on open connections**: at the cap, the *oldest* connection is
//!   closed to admit the new one. A liveness probe or a scrape always gets in;
//!   a flood of idle clients only pushes out itself. The cap is below the
//!   process's open-files limit, so accepting never fails for lack of files
//!   because of admin clients.
//! - **Accept errors** (such as running out of files because of something
//!   else) are logged once per burst, not per attempt, and accepting pauses
//!   briefly instead of spinning.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::web_config::{self, WebConfig};

/// How long a client may take to send a request's head (and how long an idle
/// keep-alive connection is kept).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most admin connections open at once, unless the open-files limit is
/// lower (then a quarter of it).
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// How long requests in flight may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The connection cap for this process: [`MAX_CONNECTIONS`], or a quarter of
/// the soft open-files limit if that is lower (at least 8).
pub(crate) fn connection_cap() -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => MAX_CONNECTIONS.min((soft / 4).max(8) as usize),
        Err(_) => MAX_CONNECTIONS,
    }
}

/// Raises the soft open-files limit to the hard limit, so that a bot with
/// many targets and admin clients does not run out of files at the usual
/// service default of 1,024. Logs what it did.
#[cfg(feature = "runtime")]
pub(crate) fn raise_open_files_limit() {
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    match rlimit::increase_nofile_limit(hard) {
        Ok(now) => info!(
            from = soft,
            to = now,
            "raised the soft open-files limit to the hard limit"
        ),
        Err(e) => warn!(soft, hard, error = %e, "could not raise the open-files limit"),
    }
}

/// The open connections, oldest first, so that the oldest can be closed.
#[derive(Default)]
struct Open {
    next_id: u64,
    conns: VecDeque<(u64, AbortHandle)>,
}

/// A burst of accept errors: logged when it starts and when it ends, not at
/// every failed attempt.
#[derive(Debug, Default)]
struct Burst {
    /// Failed attempts since the last success.
    failed: u64,
}

impl Burst {
    /// An attempt failed. True when it starts a burst (log it).
    fn failed(&mut self) -> bool {
        self.failed += 1;
        self.failed == 1
    }

    /// An attempt succeeded. The failed attempts of the burst it ends, if
    /// any (log the recovery).
    fn accepted(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.failed)).filter(|&n| n > 0)
    }
}

/// The answer to a plain HTTP request on a TLS port (Go's words).
const PLAIN_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
Client sent an HTTP request to an HTTPS server.\n";

/// Serves `router` on `listener` until `shutdown` completes, with TLS and
/// basic auth when `web` says so.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    cap: usize,
    web: Option<WebConfig>,
) {
    let router = match &web {
        Some(web) => router.layer(axum::middleware::from_fn_with_state(
            web.clone(),
            web_config::guard,
        )),
        None => router,
    };
    let open: Arc<Mutex<Open>> = Arc::default();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut burst = Burst::default();
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if let Some(failed) = burst.accepted() {
                    info!(failed, "the admin server accepts connections again");
                }
                stream
            }
            Err(e) => {
                if burst.failed() {
                    warn!(error = %e, "the admin server cannot accept connections; retrying (logged once until it recovers)");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = web.as_ref().and_then(|w| w.current().tls.clone());
        let watcher = graceful.watcher();
        let router = router.clone();
        let conn = async move {
            match tls {
                None => watcher.watch(connection(stream, router)).await,
                Some(tls) => {
                    // The handshake within the header-read timeout, as a
                    // request's head would be.
                    let accepted = tokio::time::timeout(HEADER_READ_TIMEOUT, async {
                        let mut first = [0u8; 1];
                        stream.peek(&mut first).await?;
                        if first[0] != 0x16 {
                            // Not a TLS handshake record: plain HTTP, most likely.
                            use tokio::io::AsyncWriteExt;
                            let mut stream = stream;
                            let _ = stream.write_all(PLAIN_ON_TLS).await;
                            let _ = stream.shutdown().await;
                            return Err(std::io::Error::other(
                                "a plain HTTP request on the TLS port",
                            ));
                        }
                        tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                    })
                    .await;
                    match accepted {
                        Ok(Ok(stream)) => watcher.watch(connection(stream, router)).await,
                        Ok(Err(e)) => {
                            debug!(error = %e, "admin TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            debug!("admin TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            }
        };
        let mut guard = open.lock().unwrap_or_else(|e| e.into_inner());
        while guard.conns.len() >= cap {
            if let Some((_, oldest)) = guard.conns.pop_front() {
                debug!("admin connection cap reached: closing the oldest connection");
                oldest.abort();
            }
        }
        let id = guard.next_id;
        guard.next_id += 1;
        let done = open.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "admin connection ended with an error");
            }
            let mut open = done.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = open.conns.iter().position(|(n, _)| *n == id) {
                open.conns.remove(i);
            }
        });
        guard.conns.push_back((id, task.abort_handle()));
    }
    drop(listener);
    drop(web);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("admin connections still open at shutdown were closed");
    }
    let open = open.lock().unwrap_or_else(|e| e.into_inner());
    for (_, conn) in &open.conns {
        conn.abort();
    }
}

/// One HTTP/1 connection on `io`, with the header-read timeout.
fn connection<I>(
    io: I,
    router: Router,
) -> hyper::server::conn::http1::Connection<TokioIo<I>, TowerToHyperService<Router>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
}

#[cfg(test)]
mod burst_tests {
    use super::Burst;

    #[test]
    fn an_accept_error_burst_is_logged_once_and_its_end_once() {
        let mut burst = Burst::default();
        assert_eq!(burst.accepted(), None, "nothing to recover from");
        assert!(burst.failed(), "the first error of a burst is logged");
        for _ in 0..999 {
            assert!(!burst.failed(), "the rest of the burst is not");
        }
        assert_eq!(burst.accepted(), Some(1000), "the recovery, with the count");
        assert_eq!(burst.accepted(), None, "said once");
        assert!(burst.failed(), "a new burst is logged again");
        assert_eq!(burst.accepted(), Some(1));
    }
}
