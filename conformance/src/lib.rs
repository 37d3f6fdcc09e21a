//! Conformance scenarios for `/runner` runners.
//!
//! A scenario ([`scenario::Scenario`]) sets up a sandbox and scripts what a
//! relay sends and expects; the driver (to come) runs it against any runner
//! *process* through the mock relay and returns the relay's transcript;
//! [`normalize`] turns a transcript into stable text for snapshots. The
//! crate never links runner code into its verdicts, so it judges other
//! runner implementations as well as ours.
//!
//! Modules:
//!
//! * [`scenario`] — the scenario model and its TOML form, with errors that
//!   point at the file, line and field;
//! * [`template`] — placeholders (`{root}`, captured ids), JSON subset
//!   matching and captures;
//! * [`normalize`] — transcript → text: numbered id placeholders, secrets,
//!   clocks and sandbox paths replaced, canonical order for bursts.

#![warn(missing_docs)]

pub mod normalize;
pub mod scenario;
pub mod template;
