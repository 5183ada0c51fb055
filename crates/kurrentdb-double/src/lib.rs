//! NOT A REAL SERVER. Test code only: an in-memory gRPC protocol double of a
//! KurrentDB node, for seatledger's tests.
//!
//! The double serves the KurrentDB client protocol over real gRPC (HTTP/2 on a
//! loopback TCP port), generated at build time from the very `.proto` files
//! the `kurrentdb` 1.2 client crate ships (see `protos/README.md`). The client
//! talks to it exactly as it would to a node: it probes the server's features,
//! appends with the legacy client-streaming `Streams.Append`, reads streams
//! and `$all`, and subscribes to `$all`.
//!
//! What it implements, and only that:
//! - `Streams.Read`: one stream or `$all`, forwards and backwards, from the
//!   start, the end, a revision or a position, with a count; `$all` reads and
//!   subscriptions filtered by stream-name or event-type prefixes or a regex;
//!   `stream_not_found` for a missing stream; the subscription form for
//!   `$all` (confirmation, catch-up, `caught_up`, then live events).
//! - `Streams.Append`: the expected stream state (any, no stream, stream
//!   exists, a revision) checked atomically, `WrongExpectedVersion` with the
//!   current revision, and the server's idempotency rule: the same event ids
//!   sent again where they were written are a success that writes nothing.
//!   Appends larger than the maximum append size are refused the way the
//!   server refuses them.
//! - `ServerFeatures.GetSupportedMethods`: answered `UNIMPLEMENTED`, as a
//!   server older than the feature probe answers, so the client falls back
//!   to the legacy append.
//! - `Gossip.Read`: the members of the double's "cluster" (one leader and
//!   any followers started with [`Double::start_follower_of`]), so that
//!   cluster connection strings and node selection run for real.
//! - Everything else (batch append, delete, tombstone, persistent
//!   subscriptions, projections, users, operations): `UNIMPLEMENTED`.
//!
//! What it does not do: persistence, replication, elections, scavenging,
//! access control, stream metadata semantics (`$maxCount`, …), TLS, link
//! resolution, checkpoint messages in filtered subscriptions. A follower
//! shares the leader's in-memory log and answers writes (and reads that
//! require the leader) with the server's not-leader exception.
//!
//! Faults can be injected: [`Double::fail_next_append`] makes the next append
//! drop its TCP connection before or after the events are stored, without
//! answering, as a node that crashes or a network that breaks mid-call does.

#![forbid(unsafe_code)]

/// The code generated from the protocol's `.proto` files (server side only).
#[allow(missing_docs, missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    pub mod event_store {
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));
            pub mod streams {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
            }
            pub mod server_features {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.server_features.rs"));
            }
            pub mod gossip {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.gossip.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

mod log;
mod service;

pub use log::RecordSummary;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The largest append a KurrentDB node accepts by default (`MaxAppendSize`,
/// 1 MiB); the double's default is the largest a node can be configured to
/// (16 MiB), see [`DoubleConfig::max_append_size`].
pub const SERVER_DEFAULT_MAX_APPEND_SIZE: usize = 1024 * 1024;

/// How the double is set up.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The most bytes of event data and custom metadata one append may carry.
    /// 16 MiB by default: what seatledger's documentation asks a real node to
    /// be configured with, so that a batch of 10,000 events fits.
    pub max_append_size: usize,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        Self { max_append_size: 16 * 1024 * 1024 }
    }
}

/// A fault the next append suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Receive the whole append, store nothing, drop the TCP connection
    /// without answering.
    DropConnectionBeforeWrite,
    /// Receive and store the whole append, then drop the TCP connection
    /// without answering: the client cannot know the write happened.
    DropConnectionAfterWrite,
}

/// How many calls the double received, per method. Proof that a client
/// really talked gRPC to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// `ServerFeatures.GetSupportedMethods` (answered `UNIMPLEMENTED`).
    pub server_features: u64,
    /// `Gossip.Read`.
    pub gossip: u64,
    /// `Streams.Read` in its read form (a count).
    pub reads: u64,
    /// `Streams.Read` in its subscription form.
    pub subscriptions: u64,
    /// `Streams.Append`.
    pub appends: u64,
    /// Calls answered `UNIMPLEMENTED` other than the feature probe
    /// (`BatchAppend`, `Delete`, `Tombstone`).
    pub unimplemented: u64,
    /// Calls refused with the not-leader exception (on a follower).
    pub not_leader: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) server_features: AtomicU64,
    pub(crate) gossip: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) unimplemented: AtomicU64,
    pub(crate) not_leader: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Calls {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Calls {
            server_features: get(&self.server_features),
            gossip: get(&self.gossip),
            reads: get(&self.reads),
            subscriptions: get(&self.subscriptions),
            appends: get(&self.appends),
            unimplemented: get(&self.unimplemented),
            not_leader: get(&self.not_leader),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

/// A member of the double's "cluster", as gossip reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) addr: SocketAddr,
    pub(crate) leader: bool,
}

/// What the doubles of one "cluster" share: the log and the member list.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) log: Mutex<log::Log>,
    /// Moves whenever the log grows, for live subscriptions.
    pub(crate) appended: tokio::sync::watch::Sender<u64>,
    pub(crate) members: Mutex<Vec<Member>>,
}

impl Cluster {
    pub(crate) fn log(&self) -> MutexGuard<'_, log::Log> {
        lock(&self.log)
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked: every
/// change under these locks is a single push or assignment.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One node of the double: what its gRPC services see.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) addr: SocketAddr,
    /// `None` for the leader; the leader's address for a follower.
    pub(crate) leader: Option<SocketAddr>,
    pub(crate) config: DoubleConfig,
    pub(crate) counters: Counters,
    /// The next fault, and the stream whose append it hits (any when `None`).
    pub(crate) fault: Mutex<Option<(Option<Vec<u8>>, Fault)>>,
    /// A second handle on every open TCP connection, by the client's
    /// address, so that a fault can cut one.
    pub(crate) connections: Mutex<HashMap<SocketAddr, std::net::TcpStream>>,
}

impl Node {
    /// Cut the TCP connection a request came in on (or all of them when the
    /// peer address is unknown).
    pub(crate) fn drop_connection(&self, peer: Option<SocketAddr>) {
        let mut connections = lock(&self.connections);
        let cut: Vec<std::net::TcpStream> = match peer {
            Some(peer) => connections.remove(&peer).into_iter().collect(),
            None => connections.drain().map(|(_, c)| c).collect(),
        };
        for connection in cut {
            // The connection may be gone already; either way it is cut.
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A running protocol double. Dropping it stops it and cuts every open
/// connection; the port then refuses connections.
#[derive(Debug)]
pub struct Double {
    node: Arc<Node>,
    server: Option<service::Running>,
}

impl Double {
    /// Start a double (a leader with an empty log) on a free loopback port.
    /// It serves on a thread and runtime of its own, so it outlives the
    /// caller's runtime and keeps answering while the caller is blocked.
    pub async fn start() -> Double {
        Self::start_with(DoubleConfig::default()).await
    }

    /// Start a double with the given configuration.
    pub async fn start_with(config: DoubleConfig) -> Double {
        let (appended, _) = tokio::sync::watch::channel(0);
        let cluster =
            Arc::new(Cluster { log: Mutex::new(log::Log::default()), appended, members: Mutex::new(Vec::new()) });
        Self::start_node(cluster, None, config, None)
    }

    /// Start a follower of `leader`: it shares the leader's log (reads see
    /// every write at once), and answers appends, and reads that require the
    /// leader, with the not-leader exception naming the leader, as a real
    /// follower does. Gossip on either node lists both.
    pub async fn start_follower_of(leader: &Double) -> Double {
        Self::start_node(leader.node.cluster.clone(), Some(leader.addr()), leader.node.config.clone(), None)
    }

    fn start_node(
        cluster: Arc<Cluster>,
        leader: Option<SocketAddr>,
        config: DoubleConfig,
        addr: Option<SocketAddr>,
    ) -> Double {
        let listener = service::bind(addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("the double's listener has no address: {e}"));
        let node = Arc::new(Node {
            cluster,
            addr,
            leader,
            config,
            counters: Counters::default(),
            fault: Mutex::new(None),
            connections: Mutex::new(HashMap::new()),
        });
        lock(&node.cluster.members).push(Member { addr, leader: leader.is_none() });
        let server = service::serve(node.clone(), listener);
        Double { node, server: Some(server) }
    }

    /// The address the double listens on.
    pub fn addr(&self) -> SocketAddr {
        self.node.addr
    }

    /// A connection string for this one node, without TLS. It lowers the
    /// client's `discoveryInterval` to 20 ms: the `kurrentdb` client waits
    /// that long before its first connection attempt (500 ms by default),
    /// which would otherwise cost every test half a second.
    pub fn connection_string(&self) -> String {
        format!("kurrentdb://{}?tls=false&discoveryInterval=20", self.addr())
    }

    /// The calls received so far, per method.
    pub fn calls(&self) -> Calls {
        self.node.counters.snapshot()
    }

    /// Make the next append on this node suffer `fault`.
    pub fn fail_next_append(&self, fault: Fault) {
        *lock(&self.node.fault) = Some((None, fault));
    }

    /// Make the next append to `stream` (the server's stream name) suffer
    /// `fault`; appends to other streams go through.
    pub fn fail_next_append_to(&self, stream: &str, fault: Fault) {
        *lock(&self.node.fault) = Some((Some(stream.as_bytes().to_vec()), fault));
    }

    /// Every event in the log, in log order: what is stored, independent of
    /// any client.
    pub fn records(&self) -> Vec<RecordSummary> {
        self.node.cluster.log().summaries()
    }

    /// Cut every open client connection, as a network failure would.
    pub fn drop_connections(&self) {
        self.node.drop_connection(None);
    }

    /// Stop serving, as a node that goes down: open connections are cut and
    /// the port refuses new ones. The log is kept for [`Double::restart`].
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.node.drop_connection(None);
            server.stop();
        }
    }

    /// Serve again on the same address with the same log, as a node that
    /// comes back up.
    pub fn restart(&mut self) {
        self.stop();
        let listener = service::bind(self.node.addr);
        self.server = Some(service::serve(self.node.clone(), listener));
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.stop();
        lock(&self.node.cluster.members).retain(|m| m.addr != self.node.addr);
    }
}
