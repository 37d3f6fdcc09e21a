//! The PizzaPi runner daemon (being written).
#![warn(missing_docs)]
#![allow(missing_docs)]

pub mod config;
pub mod connection;
pub mod dispatch;
pub mod files;
pub mod git;
pub mod heartbeat;
pub mod outbox;
pub mod sessions;
pub mod skills;
pub mod state;
pub mod terminals;
pub mod usage;
