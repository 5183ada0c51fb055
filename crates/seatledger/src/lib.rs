//! The `seatledger` command line, as a library so that tests drive exactly
//! what the binary runs. Only this crate knows about the CLI, configuration
//! and terminals.

#![forbid(unsafe_code)]

pub mod directory_cli;
pub mod invoice_cli;
pub mod licence_cli;
pub mod render;
pub mod report_cli;
pub mod scenario;
pub mod store_url;

pub use store_url::{open_store, StoreUrl};
