//! Reaching the server: options, connection URLs, and what a failure means.
//!
//! Every error that says the server could not be reached or did not answer
//! (refused, timed out, bad credentials, a missing database, a connection
//! dropped or terminated) becomes [`StoreError::Unavailable`], naming the
//! server as `user@host:port/database` and never the password. Everything
//! else the server reports (a failing statement) is [`StoreError::Backend`].

use seatledger_store::StoreError;
use std::str::FromStr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// The schema the store's tables live in unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "seatledger";
/// How long connecting may take, TCP and authentication together.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read, or one group commit, may take before it is reported
/// as [`StoreError::Unavailable`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How many pooled connections serve reads at most.
pub const DEFAULT_READ_POOL_SIZE: usize = 4;
/// The `application_name` prefix the store's connections show in
/// `pg_stat_activity`: `seatledger/writer`, `seatledger/reader`, `seatledger/listener`.
pub const DEFAULT_APPLICATION_NAME: &str = "seatledger";

/// How a [`PostgresStore`](crate::PostgresStore) connects, with a builder
/// for each setting. `PostgresOptions::default()` is what
/// [`PostgresStore::connect`](crate::PostgresStore::connect) uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) read_pool_size: usize,
    pub(crate) schema: String,
    pub(crate) application_name: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            read_pool_size: DEFAULT_READ_POOL_SIZE,
            schema: DEFAULT_SCHEMA.to_owned(),
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
        }
    }
}

impl PostgresOptions {
    /// The longest one connection attempt may take, TCP handshake and
    /// authentication together (default 5 s). A server that cannot be
    /// reached in that time is reported as [`StoreError::Unavailable`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest one read or one group commit may take (default 30 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How many pooled connections serve reads at most (default 4; at least 1).
    pub fn read_pool_size(mut self, size: usize) -> Self {
        self.read_pool_size = size.max(1);
        self
    }

    /// The schema holding the store's tables (default `seatledger`). Several
    /// ledgers may share one database under different schemas. A lowercase
    /// SQL identifier: letters, digits and `_`, at most 48 bytes.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The prefix of the `application_name` of each connection (default
    /// `seatledger`), followed by `/writer`, `/reader` or `/listener`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let schema = &self.schema;
        let valid = !schema.is_empty()
            && schema.len() <= 48
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with("pg_");
        if !valid {
            return Err(StoreError::InvalidConfig(format!(
                "schema name {schema:?} is not a plain lowercase SQL identifier (a-z, 0-9, _; at most 48 bytes; \
                 not starting with pg_)"
            )));
        }
        if self.connect_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err(StoreError::InvalidConfig(
                "connect and operation timeouts must be longer than zero".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Everything needed to open one more connection to the server.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    config: Config,
    /// `user@host:port/database`, for messages.
    pub(crate) target: String,
    pub(crate) connect_timeout: Duration,
    application_name: String,
}

impl Connector {
    /// Parse a `postgres://` or `postgresql://` URL (or a libpq key=value
    /// string) into a connector.
    pub(crate) fn new(url: &str, options: &PostgresOptions) -> Result<Self, StoreError> {
        let mut config = Config::from_str(url).map_err(|e| {
            StoreError::InvalidConfig(format!("`{}` is not a valid PostgreSQL URL: {}", redact_url(url), describe(&e)))
        })?;
        if config.get_hosts().is_empty() {
            return Err(StoreError::Backend(format!(
                "`{}` names no server: use postgres://user@host:port/database",
                redact_url(url)
            )));
        }
        // tokio-postgres applies this to each TCP connect; the whole attempt,
        // authentication included, is bounded again in `connect`.
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let target = describe_target(&config);
        Ok(Self {
            config,
            target,
            connect_timeout: options.connect_timeout,
            application_name: options.application_name.clone(),
        })
    }

    /// The configuration for one role of connection (`writer`, `reader`, `listener`).
    pub(crate) fn config(&self, role: &str) -> Config {
        let mut config = self.config.clone();
        config.application_name(format!("{}/{role}", self.application_name));
        config
    }

    /// Open one connection for `role`, within the connect timeout, and drive
    /// it on its own task (which ends when the client is dropped or the
    /// connection breaks).
    pub(crate) async fn connect(&self, role: &str) -> Result<(Client, JoinHandle<()>), StoreError> {
        let config = self.config(role);
        let attempt = tokio::time::timeout(self.connect_timeout, config.connect(NoTls)).await;
        let (client, connection) = match attempt {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.connect_error(&e)),
            Err(_) => return Err(self.connect_timed_out()),
        };
        let target = self.target.clone();
        let role = role.to_owned();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, %role, error = %describe(&e), "postgres connection ended");
            }
        });
        Ok((client, driver))
    }

    pub(crate) fn connect_error(&self, e: &tokio_postgres::Error) -> StoreError {
        let message = format!("cannot connect to PostgreSQL at {}: {}", self.target, describe(e));
        if is_unavailable(e) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Backend(message)
        }
    }

    pub(crate) fn connect_timed_out(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {}: no answer within {:?} (connect timeout)",
            self.target, self.connect_timeout
        ))
    }
}

pub(crate) use seatledger_store::redact_url;

/// `user@host:port/database` for a configuration, never with the password.
fn describe_target(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let port = ports.get(n).or_else(|| ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("(the OS user)");
    let dbname = config.get_dbname().or(config.get_user()).unwrap_or("(the user's database)");
    format!("{user}@{}/{dbname}", hosts.join(","))
}

/// Whether a driver error means the server is out of reach (as opposed to
/// a statement that failed on a server that answered).
pub(crate) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exceptions; 28: bad credentials; 3D000: no such
        // database; 53300: too many connections; 57P0x: the server is
        // shutting down, crashed, or terminated this backend; 57P03: not
        // accepting connections yet.
        return code.starts_with("08")
            || code.starts_with("28")
            || code == "3D000"
            || code == "53300"
            || code.starts_with("57P");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    // The driver's own kinds are private; these are the transport ones.
    let text = e.to_string();
    [
        "error communicating with the server",
        "error connecting to server",
        "timeout waiting for server",
        "authentication error",
        "error performing TLS handshake",
    ]
    .iter()
    .any(|kind| text.starts_with(kind))
}

/// A driver error in words: the server's message (with its detail and
/// hint) when it sent one, else the driver's error and its causes.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A driver error as a store error, saying what the store was doing.
pub(crate) fn pg_error(doing: impl std::fmt::Display, e: &tokio_postgres::Error) -> StoreError {
    let message = format!("{doing}: {}", describe(e));
    if is_unavailable(e) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_user_host_port_and_database_but_never_the_password() {
        let options = PostgresOptions::default();
        let c = Connector::new("postgres://me:s3cret@db.example:6543/ledger", &options).unwrap();
        assert_eq!(c.target, "me@db.example:6543/ledger");
        let c = Connector::new("postgresql://me@localhost/ledger", &options).unwrap();
        assert_eq!(c.target, "me@localhost:5432/ledger");
        let c = Connector::new("postgres://me@localhost", &options).unwrap();
        assert_eq!(c.target, "me@localhost:5432/me");
        let err = Connector::new("postgres://me:s3cret@db:notaport/x", &options).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("not a valid PostgreSQL URL"), "{err}");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["seatledger", "ledger_2", "_x"] {
            assert!(PostgresOptions::default().schema(good).validate().is_ok(), "{good}");
        }
        for bad in ["", "Ledger", "a-b", "a;drop", "pg_x", "1a", &"x".repeat(49)] {
            assert!(PostgresOptions::default().schema(bad).validate().is_err(), "{bad}");
        }
    }
}
