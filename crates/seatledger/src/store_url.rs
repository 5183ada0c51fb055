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
        match scheme {
            "postgres" | "postgresql" | "kurrentdb" | "esdb" | "esdb+discover" | "kurrentdb+discover" => {
                anyhow::bail!("store `{scheme}:` is not available in this build; use sqlite:PATH or memory:")
            }
            _ => anyhow::bail!("unknown store `{text}`: use sqlite:PATH (default {DEFAULT_STORE}) or memory:"),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Memory => f.write_str("memory:"),
        }
    }
}

/// Open (creating if needed) the store the URL names.
pub fn open_store(url: &StoreUrl, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(MemoryStore::new(clock)),
        StoreUrl::Sqlite(path) => Arc::new(
            seatledger_store_sqlite::SqliteStore::open(path, clock)
                .with_context(|| format!("opening the sqlite store at {}", path.display()))?,
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
    }
}
