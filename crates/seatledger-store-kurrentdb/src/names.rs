//! Where seatledger's streams live on the server.
//!
//! Every name starts with the namespace, so that one server (or one test
//! server shared by many test runs) can hold several ledgers, and seatledger's
//! streams stay apart from anything else on the cluster:
//!
//! | seatledger                  | KurrentDB stream                    |
//! |-----------------------------|-------------------------------------|
//! | ledger stream `s`           | `<namespace>-s`                     |
//! | command id `c` (reserved)   | `<namespace>~command-<c>`           |
//! | checkpoint `n`              | `<namespace>~checkpoint-<n>`        |
//!
//! The ledger's streams share the prefix `<namespace>-`, which is what the
//! server-side filter of `$all` reads and subscriptions asks for; the
//! bookkeeping streams use `~` and never match it. A namespace is letters,
//! digits and `_` only, so that no namespace is a prefix of another's
//! `<namespace>-`, and KurrentDB's category projection (which splits at the
//! first `-`) files every ledger stream under the category `<namespace>`.

use seatledger_store::StoreError;
use uuid::Uuid;

/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 64;

/// A checked namespace and the names it derives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    namespace: String,
    ledger_prefix: String,
}

impl Names {
    pub(crate) fn new(namespace: &str) -> Result<Self, StoreError> {
        let valid = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE_BYTES
            && namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(StoreError::InvalidConfig(format!(
                "invalid KurrentDB namespace {namespace:?}: use 1 to {MAX_NAMESPACE_BYTES} ASCII letters, digits or `_`"
            )));
        }
        Ok(Self { namespace: namespace.to_owned(), ledger_prefix: format!("{namespace}-") })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The prefix every ledger stream has on the server.
    pub(crate) fn ledger_prefix(&self) -> &str {
        &self.ledger_prefix
    }

    /// The server's name of a ledger stream.
    pub(crate) fn ledger(&self, stream: &str) -> String {
        format!("{}{stream}", self.ledger_prefix)
    }

    /// The ledger stream a server stream name stands for, if it is one.
    pub(crate) fn ledger_stream_of<'a>(&self, server_stream: &'a str) -> Option<&'a str> {
        server_stream.strip_prefix(&self.ledger_prefix)
    }

    /// The stream that reserves a command id.
    pub(crate) fn command(&self, command_id: Uuid) -> String {
        format!("{}~command-{command_id}", self.namespace)
    }

    /// The stream that holds a checkpoint's saves.
    pub(crate) fn checkpoint(&self, name: &str) -> String {
        format!("{}~checkpoint-{name}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_names_round_trip_and_bookkeeping_stays_outside_the_prefix() {
        let names = Names::new("seatledger").unwrap();
        assert_eq!(names.ledger("pool-ws42-hybrid"), "seatledger-pool-ws42-hybrid");
        assert_eq!(names.ledger_stream_of("seatledger-pool-ws42-hybrid"), Some("pool-ws42-hybrid"));
        assert_eq!(names.ledger_stream_of("other-pool"), None);
        let command = names.command(Uuid::nil());
        assert!(!command.starts_with(names.ledger_prefix()), "{command}");
        assert!(!names.checkpoint("licences").starts_with(names.ledger_prefix()));
    }

    #[test]
    fn namespaces_cannot_overlap() {
        for bad in ["", "a-b", "a~b", "$system", "a b", "ä", &"x".repeat(MAX_NAMESPACE_BYTES + 1)] {
            assert!(matches!(Names::new(bad), Err(StoreError::InvalidConfig(_))), "{bad:?} was accepted");
        }
        assert!(Names::new("test_0193ab").is_ok());
    }
}
