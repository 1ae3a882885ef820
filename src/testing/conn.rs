//! Connections the fake can cut: a listener whose streams read EOF and fail
//! writes once their token is cancelled, so hyper closes them without sending
//! another byte. This is how a dropped connection and a server that goes away
//! are simulated.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The listening side of the fake: it can stop and start again on the same port.
pub(crate) struct Server {
    pub addr: SocketAddr,
    app: Router,
    ctl: Mutex<Ctl>,
}

struct Ctl {
    /// The accept loop, while listening.
    task: Option<JoinHandle<()>>,
    /// The parent of every open connection's kill switch.
    conns: CancellationToken,
    /// Set when the fake is dropped: never listen again.
    closed: bool,
}

impl Server {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start(app: Router) -> io::Result<Arc<Self>> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let conns = CancellationToken::new();
        let task = tokio::spawn(serve(listener, conns.clone(), app.clone()));
        let ctl = Mutex::new(Ctl {
            task: Some(task),
            conns,
            closed: false,
        });
        Ok(Arc::new(Self { addr, app, ctl }))
    }

    /// Listens again on the same port, unless listening already or closed.
    pub fn listen(&self) -> io::Result<()> {
        let mut ctl = self.ctl.lock().unwrap_or_else(PoisonError::into_inner);
        if ctl.task.is_none() && !ctl.closed {
            let listener = bind(self.addr)?;
            ctl.task = Some(tokio::spawn(serve(
                listener,
                ctl.conns.clone(),
                self.app.clone(),
            )));
        }
        Ok(())
    }

    /// Closes the listening socket and cuts every open connection.
    pub async fn refuse(&self) {
        let task = self.cut_all();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops for good (on drop, where nothing can be awaited).
    pub fn close(&self) {
        self.ctl
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        if let Some(task) = self.cut_all() {
            task.abort();
        }
    }

    fn cut_all(&self) -> Option<JoinHandle<()>> {
        let mut ctl = self.ctl.lock().unwrap_or_else(PoisonError::into_inner);
        ctl.conns.cancel();
        ctl.conns = CancellationToken::new();
        ctl.task.take()
    }
}

/// Serves `app` on `listener` until the task is aborted.
async fn serve(listener: TcpListener, conns: CancellationToken, app: Router) {
    let listener = FakeListener {
        inner: listener,
        conns,
    };
    let service = app.into_make_service_with_connect_info::<ConnAddr>();
    // `serve` only returns on an accept error it cannot retry; nothing to do then.
    let _ = axum::serve(listener, service).await;
}

/// Binds `addr` with `SO_REUSEADDR`, so a closed port can be bound again at once.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

struct FakeListener {
    inner: TcpListener,
    conns: CancellationToken,
}

/// A connection's peer address and the switch that cuts it.
#[derive(Clone, Debug)]
pub(crate) struct ConnAddr {
    pub kill: CancellationToken,
}

impl Connected<IncomingStream<'_, FakeListener>> for ConnAddr {
    fn connect_info(stream: IncomingStream<'_, FakeListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Listener for FakeListener {
    type Io = FakeConn;
    type Addr = ConnAddr;

    async fn accept(&mut self) -> (FakeConn, ConnAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = self.conns.child_token();
                    let conn = FakeConn {
                        io: stream,
                        killed: Box::pin(kill.clone().cancelled_owned()),
                        dead: false,
                    };
                    return (conn, ConnAddr { kill });
                }
                // Out of file descriptors and the like: wait, as axum's own listener does.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnAddr> {
        self.inner.local_addr().map(|_| ConnAddr {
            kill: CancellationToken::new(),
        })
    }
}

/// A TCP stream that reads EOF and fails writes once its token is cancelled,
/// so hyper closes it without sending another byte.
struct FakeConn {
    io: TcpStream,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    dead: bool,
}

impl FakeConn {
    fn dead(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the fake",
    )
}

impl AsyncRead for FakeConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dead(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.dead(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.dead(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.dead(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
