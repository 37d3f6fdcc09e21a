//! The library's error type.

use std::time::Duration;

/// What can go wrong when starting, driving or stopping a relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The configuration is unusable (e.g. a non-loopback control API
    /// without a control token, or no API key at all).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error text.
        message: String,
    },
    /// No runner with this id has ever registered.
    #[error("unknown runner {0}")]
    UnknownRunner(String),
    /// The runner registered once but its socket is not connected now.
    #[error("runner {0} is not connected")]
    NotConnected(String),
    /// The runner disconnected while a request was waiting for its reply.
    #[error("runner {0} disconnected before replying")]
    RunnerDisconnected(String),
    /// Nothing arrived in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited (an event, a runner, a record).
        what: String,
        /// How long was waited.
        after: Duration,
    },
    /// [`RelayHandle::request`](crate::RelayHandle::request) was given an
    /// event that has no reply in the protocol.
    #[error("{0} has no reply to wait for; use send()")]
    NoReply(&'static str),
    /// The event could not be handed to the socket (serialization failed or
    /// the socket closed while sending).
    #[error("sending {event} failed: {message}")]
    Send {
        /// The event being sent.
        event: String,
        /// Why it failed.
        message: String,
    },
    /// The relay has been shut down.
    #[error("the relay is shut down")]
    ShutDown,
    /// The server task panicked; the payload's text, when it had one.
    #[error("the relay's server task panicked: {0}")]
    ServerPanicked(String),
    /// [`RelayHandle::join`](crate::RelayHandle::join) was called on another
    /// clone of the handle already.
    #[error("the relay's server task was already joined")]
    AlreadyJoined,
}
