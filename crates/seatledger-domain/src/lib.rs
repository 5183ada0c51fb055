//! The pure licensing domain of seatledger.
//!
//! Commands are decided by [`decide`] and state is folded by
//! [`Workspace::evolve`] and [`Catalog::evolve`]. Nothing in this crate does
//! IO, awaits, reads a clock or draws a random number: the business time and
//! every id arrive inside the [`Command`]. Domain types carry no serde
//! derives; their stored form (type names, schema versions, upcasting) lives
//! in `seatledger-codec`, so the domain can change without rewriting history.
//!
//! Streams, the consistency boundaries:
//! - `catalog`: products, prices and bundles of the hosting instance.
//! - `workspace-<id>`: everything one workspace decides — accounts, the
//!   organization tree, users, groups, module assignments, subscriptions,
//!   pools and their settings, activity. Every seat decision reads and writes
//!   this one stream with an exact expected version, so two concurrent seat
//!   assignments can never overbook a pool: the second one conflicts, is
//!   decided again on fresh state, and is refused if no seat is left.
//! - `invoices-<id>`: the invoices and correction notes issued for one
//!   workspace's accounts; issuing the same account and month twice conflicts
//!   here, whatever the workspace stream is doing.
//! - `outbox-<id>`: what delivery did with the workspace's notifications.

#![forbid(unsafe_code)]

pub mod calendar;
pub mod commands;
pub mod decide;
pub mod error;
pub mod events;
pub mod ids;
pub mod invoice;
pub mod model;
pub mod money;
pub mod outbox;
pub mod state;

pub use calendar::{DayRange, Month};
pub use commands::*;
pub use decide::{decide, decide_catalog, decide_workspace, View};
pub use error::{DomainError, InvalidValue};
pub use events::{EntityRef, Event, UserProfile};
pub use ids::*;
pub use invoice::{
    decide_invoices, InvoiceBook, InvoiceCommand, InvoiceDocument, InvoiceLine, LineInput, NoteDocument, NoteKind,
    TaxLine,
};
pub use model::*;
pub use money::{Currency, Money, Percent};
pub use state::{Catalog, Workspace};

/// The stream a command is decided in and its events are stored in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    Catalog,
    Workspace(WorkspaceId),
    Invoices(WorkspaceId),
    Outbox(WorkspaceId),
}

impl StreamId {
    pub const CATALOG: &'static str = "catalog";
    pub const WORKSPACE_PREFIX: &'static str = "workspace-";
    pub const INVOICES_PREFIX: &'static str = "invoices-";
    pub const OUTBOX_PREFIX: &'static str = "outbox-";

    /// The stream's name in the store: `catalog` or `workspace-<id>`.
    pub fn name(&self) -> String {
        let (prefix, id) = self.name_parts();
        // One allocation, no formatter.
        let mut name = String::with_capacity(prefix.len() + id.len());
        name.push_str(prefix);
        name.push_str(id);
        name
    }

    /// The two halves of [`StreamId::name`]: a fixed prefix and the id (the
    /// catalog's is all prefix), for a caller that builds the name its own way.
    pub fn name_parts(&self) -> (&'static str, &str) {
        match self {
            StreamId::Catalog => (Self::CATALOG, ""),
            StreamId::Workspace(id) => (Self::WORKSPACE_PREFIX, id.as_str()),
            StreamId::Invoices(id) => (Self::INVOICES_PREFIX, id.as_str()),
            StreamId::Outbox(id) => (Self::OUTBOX_PREFIX, id.as_str()),
        }
    }

    /// Parse a stream name; `None` for streams that are not the domain's.
    pub fn parse(name: &str) -> Option<StreamId> {
        if name == Self::CATALOG {
            return Some(StreamId::Catalog);
        }
        if let Some(id) = name.strip_prefix(Self::WORKSPACE_PREFIX) {
            return WorkspaceId::new(id).ok().map(StreamId::Workspace);
        }
        if let Some(id) = name.strip_prefix(Self::OUTBOX_PREFIX) {
            return WorkspaceId::new(id).ok().map(StreamId::Outbox);
        }
        name.strip_prefix(Self::INVOICES_PREFIX).and_then(|id| WorkspaceId::new(id).ok()).map(StreamId::Invoices)
    }

    pub fn workspace(&self) -> Option<&WorkspaceId> {
        match self {
            StreamId::Workspace(id) | StreamId::Invoices(id) | StreamId::Outbox(id) => Some(id),
            StreamId::Catalog => None,
        }
    }
}

impl Command {
    pub fn stream(&self) -> StreamId {
        match &self.body {
            CommandBody::Catalog(_) => StreamId::Catalog,
            CommandBody::Workspace { workspace, .. } => StreamId::Workspace(workspace.clone()),
            CommandBody::Invoices { workspace, .. } => StreamId::Invoices(workspace.clone()),
            CommandBody::Outbox { workspace, .. } => StreamId::Outbox(workspace.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_the_prefix_and_the_id_and_parse_back() {
        let id = WorkspaceId::new("acme-eu").expect("a valid id");
        let named = [
            (StreamId::Catalog, "catalog"),
            (StreamId::Workspace(id.clone()), "workspace-acme-eu"),
            (StreamId::Invoices(id.clone()), "invoices-acme-eu"),
            (StreamId::Outbox(id), "outbox-acme-eu"),
        ];
        for (stream, name) in named {
            assert_eq!(stream.name(), name);
            assert_eq!(StreamId::parse(name), Some(stream));
        }
    }
}
