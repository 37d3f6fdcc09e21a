//! TCP connections the relay can close one by one.
//!
//! socketioxide's `socket.disconnect()` only sends the namespace DISCONNECT
//! packet and leaves the namespace: the Engine.IO transport stays open, and
//! socketioxide has no call that closes one socket's transport. To close it
//! (after a DISCONNECT, as socket.io's `disconnect(true)` does, or alone, as
//! a network failure would), every accepted TCP stream is wrapped in a
//! [`KillableIo`] and tagged with a cancellation token ([`ConnTag`],
//! reachable from the upgrade request's extensions through axum's
//! `ConnectInfo`). Cancelling the token fails the next read; the WebSocket
//! reader stops, Engine.IO closes the session, its writer flushes what was
//! queued (an `error` event and a DISCONNECT packet sent just before still
//! arrive, in order) and closes the stream, and the client sees the
//! transport close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Identifies one accepted TCP connection and closes it on demand.
#[derive(Debug, Clone)]
pub(crate) struct ConnTag {
    /// The peer's address.
    #[allow(dead_code)]
    pub remote: SocketAddr,
    /// Cancelled to close the connection.
    pub kill: CancellationToken,
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnTag {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose connections all die with `generation`.
#[derive(Debug)]
pub(crate) struct KillableListener {
    inner: TcpListener,
    generation: CancellationToken,
}

impl KillableListener {
    pub(crate) fn new(inner: TcpListener, generation: CancellationToken) -> Self {
        KillableListener { inner, generation }
    }
}

impl Listener for KillableListener {
    type Io = KillableIo;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = self.generation.child_token();
                    let io = KillableIo {
                        inner: stream,
                        killed: Some(Box::pin(kill.clone().cancelled_owned())),
                    };
                    return (io, ConnTag { remote, kill });
                }
                Err(err) => {
                    // Same policy as axum's own TcpListener: per-connection
                    // errors are skipped, resource exhaustion backs off.
                    tracing::warn!(%err, "accept failed");
                    if !matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnTag {
            remote: self.inner.local_addr()?,
            kill: self.generation.clone(),
        })
    }
}

/// A TCP stream whose reads fail once its token is cancelled; writes keep
/// working so that queued packets are still flushed before the close.
pub(crate) struct KillableIo {
    inner: TcpStream,
    killed: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl std::fmt::Debug for KillableIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillableIo")
            .field("inner", &self.inner)
            .field("killed", &self.killed.is_none())
            .finish()
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let fired = match self.killed.as_mut() {
            Some(fut) => fut.as_mut().poll(cx).is_ready(),
            None => true,
        };
        if fired {
            self.killed = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the relay",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
