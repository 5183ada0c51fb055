//! `--store`: which backend, picked once at start-up.

use anyhow::Context;
use seatledger_store::{Clock, EventStore, MemoryStore};
use std::path::PathBuf;
use std::sync::Arc;

/// The default store: an SQLite file in the current folder.
pub const DEFAULT_STORE: &str = "sqlite:./seatledger.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:PATH`: one embedded file, no server.
    Sqlite(PathBuf),
    /// `memory:`: nothing is kept after the process ends.
    Memory,
    /// `postgres://user@host:port/db` (or `postgresql://`): a PostgreSQL server,
    /// shared by several processes.
    Postgres(String),
    /// `kurrentdb://…`, `esdb://…`, or their `+discover` forms for a cluster:
    /// a KurrentDB / EventStoreDB node or cluster.
    KurrentDb(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                anyhow::bail!("store `{text}` names no file: use sqlite:PATH, for example {DEFAULT_STORE}");
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if text == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        let scheme = text.split_once(':').map_or(text, |(s, _)| s);
        let has_authority = text.split_once(':').is_some_and(|(_, rest)| rest.starts_with("//") && rest.len() > 2);
        match scheme {
            "postgres" | "postgresql" | "kurrentdb" | "esdb" | "esdb+discover" | "kurrentdb+discover"
                if !has_authority =>
            {
                anyhow::bail!("store `{text}` names no server: use {scheme}://HOST:PORT/…")
            }
            "postgres" | "postgresql" => Ok(StoreUrl::Postgres(text.to_owned())),
            "kurrentdb" | "esdb" | "esdb+discover" | "kurrentdb+discover" => Ok(StoreUrl::KurrentDb(text.to_owned())),
            _ => anyhow::bail!(
                "unknown store `{}`: use sqlite:PATH (default {DEFAULT_STORE}), memory:, postgres://… or kurrentdb://…",
                redact(text)
            ),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Memory => f.write_str("memory:"),
            StoreUrl::Postgres(url) | StoreUrl::KurrentDb(url) => f.write_str(&redact(url)),
        }
    }
}

pub use seatledger_store::redact_url as redact;

/// Open (creating if needed) the store the URL names.
pub async fn open_store(url: &StoreUrl, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(MemoryStore::new(clock)),
        StoreUrl::Sqlite(path) => Arc::new(
            seatledger_store_sqlite::SqliteStore::open(path, clock)
                .with_context(|| format!("opening the sqlite store at {}", path.display()))?,
        ),
        StoreUrl::Postgres(text) => Arc::new(
            seatledger_store_postgres::PostgresStore::connect(text, clock)
                .await
                .with_context(|| format!("opening the PostgreSQL store at {}", redact(text)))?,
        ),
        StoreUrl::KurrentDb(text) => Arc::new(
            seatledger_store_kurrentdb::KurrentDbStore::connect(text, clock)
                .await
                .with_context(|| format!("opening the KurrentDB store at {}", redact(text)))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_refuse_clearly() {
        assert_eq!("sqlite:./x.db".parse::<StoreUrl>().unwrap(), StoreUrl::Sqlite("./x.db".into()));
        assert_eq!("memory:".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        assert!("sqlite:".parse::<StoreUrl>().unwrap_err().to_string().contains("names no file"));
        assert!("mysql://x".parse::<StoreUrl>().unwrap_err().to_string().contains("unknown store"));
        assert_eq!(
            "postgres://me@db:5432/ledger".parse::<StoreUrl>().unwrap(),
            StoreUrl::Postgres("postgres://me@db:5432/ledger".into())
        );
        assert_eq!(
            "esdb+discover://a:2113,b:2113,c:2113?tls=false".parse::<StoreUrl>().unwrap(),
            StoreUrl::KurrentDb("esdb+discover://a:2113,b:2113,c:2113?tls=false".into())
        );
        assert!("kurrentdb://".parse::<StoreUrl>().unwrap_err().to_string().contains("names no server"));
        assert!("postgres:".parse::<StoreUrl>().unwrap_err().to_string().contains("names no server"));
    }

    #[test]
    fn passwords_never_show() {
        let url: StoreUrl = "postgres://me:s3cret@db:5432/ledger".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://me:***@db:5432/ledger");
        assert_eq!(
            redact("kurrentdb://admin:changeit@node1:2113?tls=true"),
            "kurrentdb://admin:***@node1:2113?tls=true"
        );
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        let refused = "mysql://root:hunter2@db/x".parse::<StoreUrl>().unwrap_err().to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
    }
}
