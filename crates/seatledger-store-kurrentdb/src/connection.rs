//! The gRPC client, kept alive across failures, and every call bounded in
//! time with its errors mapped to [`StoreError`].
//!
//! What the `kurrentdb` 1.2 client does by itself (read in its source,
//! `grpc.rs` and `commands.rs`):
//! - it picks a node once and keeps one HTTP/2 connection to it; for a
//!   cluster it asks the seeds' gossip for the members and picks one by the
//!   connection string's `nodePreference`;
//! - when a call fails with the server's not-leader exception, it reconnects
//!   to the leader that the exception names, in the background, and returns
//!   the error; when a call fails because the node went away (gRPC
//!   `UNAVAILABLE`, `INTERNAL`, `UNKNOWN`), it runs node selection again, in
//!   the background, and returns the error. It never retries a call itself;
//! - if reconnecting fails, its connection task ends for good and every later
//!   call answers "connection closed".
//!
//! On top of that, this module:
//! - retries a call that failed with not-leader (the client is already on
//!   its way to the leader; the follower did nothing), up to
//!   [`NOT_LEADER_ATTEMPTS`] times;
//! - builds a new client when the old one is closed, or could not reach any
//!   node, and retries once: the request never left the process;
//! - bounds every call, retries included, by the store's timeout;
//! - never retries anything else: a call cut off mid-flight comes back as
//!   [`StoreError::Unavailable`], whose contract says the write may or may
//!   not have happened and that a retry with the same command id (or the same
//!   event ids) is safe.

use kurrentdb::{Client, ClientSettings};
use seatledger_store::{redact_url, StoreError};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How many times a call goes out when nodes answer "not the leader".
pub(crate) const NOT_LEADER_ATTEMPTS: usize = 3;
/// The pause before retrying after not-leader, while the client reconnects.
const NOT_LEADER_PAUSE: Duration = Duration::from_millis(100);

pub(crate) struct Connection {
    settings: ClientSettings,
    /// The connection string with any password replaced, for messages.
    url: String,
    client: Mutex<Client>,
    timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("url", &self.url).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Connection {
    /// Parse the connection string and build a client. Nothing is sent yet.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let redacted = redact_url(url);
        let settings: ClientSettings = url.parse().map_err(|e: kurrentdb::ClientSettingsParseError| {
            // The parser's message may quote the whole string, password
            // included: show the redacted form instead.
            let message = e.to_string().replace(url, &redacted);
            StoreError::InvalidConfig(format!("invalid KurrentDB connection string `{redacted}`: {message}"))
        })?;
        let client = new_client(&settings, &redacted)?;
        Ok(Self { settings, url: redacted, client: Mutex::new(client), timeout })
    }

    /// The connection string, password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self) -> MutexGuard<'_, Client> {
        // Only ever holds a client handle: a panic while held leaves it valid.
        self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn client(&self) -> Client {
        self.lock().clone()
    }

    fn rebuild(&self) -> Result<(), StoreError> {
        let client = new_client(&self.settings, &self.url)?;
        *self.lock() = client;
        Ok(())
    }

    /// Replace a client whose connection task has ended.
    pub(crate) fn reconnect(&self) {
        if let Err(e) = self.rebuild() {
            tracing::warn!(error = %e, "rebuilding the KurrentDB client failed");
        }
    }

    /// Run `op` against the server, bounded by the timeout, retrying only
    /// where the request cannot have been executed (see the module docs).
    /// `what` names the operation in error messages.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, kurrentdb::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, kurrentdb::Error>>,
    {
        let attempts = async {
            let mut not_leader = 0;
            let mut rebuilt = false;
            loop {
                match op(self.client()).await {
                    Err(kurrentdb::Error::NotLeaderException(leader)) if not_leader + 1 < NOT_LEADER_ATTEMPTS => {
                        not_leader += 1;
                        tracing::info!(%what, leader = %format!("{}:{}", leader.host, leader.port), "not the leader; retrying on the leader");
                        tokio::time::sleep(NOT_LEADER_PAUSE).await;
                    }
                    Err(kurrentdb::Error::ConnectionClosed | kurrentdb::Error::GrpcConnectionError(_)) if !rebuilt => {
                        rebuilt = true;
                        tracing::info!(%what, url = %self.url, "the KurrentDB client lost its connection; reconnecting");
                        if let Err(e) = self.rebuild() {
                            tracing::warn!(error = %e, "rebuilding the KurrentDB client failed");
                            return Err(kurrentdb::Error::ConnectionClosed);
                        }
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(kurrentdb::Error::DeadlineExceeded),
        }
    }

    /// The store error for a failed write: as [`Connection::error`], and
    /// when the write may have happened, the message says so.
    pub(crate) fn write_error(&self, what: &str, error: kurrentdb::Error) -> StoreError {
        let in_doubt = matches!(error, kurrentdb::Error::ServerError(_) | kurrentdb::Error::DeadlineExceeded);
        match self.error(what, error) {
            StoreError::Unavailable(message) if in_doubt => StoreError::Unavailable(format!(
                "{message}; the write may or may not have happened, and retrying it with the same command id \
                 (or the same event ids) is safe"
            )),
            other => other,
        }
    }

    /// The store error for a client error that the caller does not handle
    /// itself. `what` names the operation.
    pub(crate) fn error(&self, what: &str, error: kurrentdb::Error) -> StoreError {
        use kurrentdb::Error as E;
        let url = &self.url;
        match error {
            E::ConnectionClosed | E::GrpcConnectionError(_) => {
                StoreError::Unavailable(format!("{what}: cannot reach KurrentDB at {url}: {error}"))
            }
            E::ServerError(message) => {
                StoreError::Unavailable(format!("{what}: KurrentDB at {url} failed or the connection dropped ({message})"))
            }
            E::DeadlineExceeded => StoreError::Unavailable(format!(
                "{what}: KurrentDB at {url} did not answer within {:?}",
                self.timeout
            )),
            E::NotLeaderException(leader) => StoreError::Unavailable(format!(
                "{what}: no leader reached at {url} after {NOT_LEADER_ATTEMPTS} attempts (last told the leader is {}:{})",
                leader.host, leader.port
            )),
            E::AccessDenied => StoreError::Unavailable(format!(
                "{what}: KurrentDB at {url} denied access; the connection string's user must be allowed to read \
                 and write the namespace's streams and to read `$all`"
            )),
            E::UnsupportedFeature => {
                StoreError::Unsupported(format!("{what}: KurrentDB at {url} does not support the call"))
            }
            E::Grpc { ref message, .. } if message.contains("Maximum Append Size") => {
                StoreError::InvalidAppend(format!(
                    "{what}: the append is larger than the server accepts ({message}); \
                     raise the node's MaxAppendSize (see docs/kurrentdb.md) or append less at once"
                ))
            }
            E::ResourceDeleted => StoreError::Backend(format!("{what}: the stream was deleted on the server ({url})")),
            other => StoreError::Backend(format!("{what}: KurrentDB at {url}: {other}")),
        }
    }
}

fn new_client(settings: &ClientSettings, url: &str) -> Result<Client, StoreError> {
    Client::new(settings.clone())
        .map_err(|e| StoreError::Unavailable(format!("cannot set up a KurrentDB client for {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use seatledger_store::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("kurrentdb://admin:changeit@node1:2113?tls=true"),
            "kurrentdb://admin:***@node1:2113?tls=true"
        );
        assert_eq!(
            redact_url("esdb+discover://ops:s3cret@a:2113,b:2113,c:2113?nodePreference=leader"),
            "esdb+discover://ops:***@a:2113,b:2113,c:2113?nodePreference=leader"
        );
        assert_eq!(redact_url("kurrentdb://node1:2113?tls=false"), "kurrentdb://node1:2113?tls=false");
    }
}
