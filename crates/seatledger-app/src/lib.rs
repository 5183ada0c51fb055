//! The application layer: everything between a request and the store.
//!
//! - [`handler`]: load a stream, fold it, decide, append with the expected
//!   version, and retry a bounded number of times on conflict; command files
//!   planned and appended all-or-nothing.
//! - [`runner`]: the projection runner — stored checkpoints, catch-up, live
//!   following, and rebuild from zero.
//! - [`readahead`]: replay as a pipeline — the next page is read and
//!   decoded on other threads while the caller folds this one.
//! - [`transfer`]: export and import of stored events as JSON Lines.
//! - [`ids`]: where event ids come from (UUIDv7; deterministic in tests).

#![forbid(unsafe_code)]

pub mod decode;
pub mod handler;
pub mod ids;
pub mod invoicing;
pub mod notify;
pub mod readahead;
pub mod runner;
pub mod topup;
pub mod transfer;

pub use decode::{decode_stored, DecodedEvent};
pub use handler::{AppError, CommandHandler, CommandMeta, HandleOutcome, LineRejection, PlanReport};
pub use ids::{IdSource, SequentialIds, V7Ids};
pub use runner::{ProjectionRunner, RunnerError};
