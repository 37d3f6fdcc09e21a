//! Benchmarks of this workspace's relay and runner, each figure measured
//! side by side with the reference JavaScript Socket.IO stack in the same
//! run (see the README's "Performance" section and `bench --help`).
//!
//! * [`peers`]: the relay and runner processes under measurement, and the
//!   `/proc` readings of them.
//! * [`relay_host`]: `bench relay`, the mock relay behind the same stdio
//!   control lines as `bench/js/relay.js`.
//! * [`load`]: bare WebSocket load clients.
//! * [`figures`]: the figures B1–B8.
//! * [`report`]: the table and its JSON.

pub mod figures;
pub mod load;
pub mod peers;
pub mod relay_host;
pub mod report;
pub mod stats;
