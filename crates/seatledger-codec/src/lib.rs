//! The boundary between the domain and bytes.
//!
//! - [`events`]: the stored form of every event — a stable type name and a
//!   schema version kept apart from the Rust enum, a JSON payload, and the
//!   upcasters that keep old versions readable forever.
//! - [`commands`]: the command-file format read by `seatledger apply`.
//! - [`wire`]: how each domain value is written, and checked again on the way in.
//!
//! The domain crate has no serde at all: it can be refactored freely, and
//! this crate pins what history looks like.

#![forbid(unsafe_code)]

pub mod commands;
pub mod events;
pub mod wire;

pub use commands::{encode_command, parse_command, CommandEnvelope, CommandParseError, COMMAND_NAMES};
pub use events::{current_version, decode, encode, DecodeError, Encoded, EVENT_TYPES};
