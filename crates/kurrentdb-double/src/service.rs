//! The gRPC services of the double, and the thread that serves them.

// `tonic::Status` is the protocol's error; boxing it would only move the cost.
#![allow(clippy::result_large_err)]

use crate::log::{AppendResult, Expected, Proposed, Record};
use crate::proto::event_store::client as pb;
use crate::proto::event_store::client::gossip::{self, gossip_server};
use crate::proto::event_store::client::server_features::{self, server_features_server};
use crate::proto::event_store::client::streams::{
    self, append_req, append_resp, read_req, read_resp, streams_server, AppendReq, AppendResp, ReadReq, ReadResp,
};
use crate::{bump, lock, Fault, Node};
use read_req::options::{
    all_options::AllOption, filter_options, stream_options::RevisionOption, CountOption, FilterOption, ReadDirection,
    StreamOption,
};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send + 'static>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<streams::BatchAppendResp, Status>> + Send + 'static>>;

/// How many messages a subscription buffers towards a slow client before
/// it waits.
const SUBSCRIPTION_BUFFER: usize = 256;

/// Bind a listener on `addr`, reusing the address so that a restarted node
/// gets its port back.
pub(crate) fn bind(addr: SocketAddr) -> std::net::TcpListener {
    let socket = socket_for(addr);
    socket.set_reuseaddr(true).unwrap_or_else(|e| panic!("setting SO_REUSEADDR for the double: {e}"));
    socket.bind(addr).unwrap_or_else(|e| panic!("the double cannot bind {addr}: {e}"));
    let listener = socket.listen(128).unwrap_or_else(|e| panic!("the double cannot listen on {addr}: {e}"));
    listener.into_std().unwrap_or_else(|e| panic!("the double's listener: {e}"))
}

fn socket_for(addr: SocketAddr) -> tokio::net::TcpSocket {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
    socket.unwrap_or_else(|e| panic!("the double cannot open a socket: {e}"))
}

/// A node being served on its own thread.
#[derive(Debug)]
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stop serving and wait until the port is closed.
    pub(crate) fn stop(self) {
        // The thread may have ended already (its runtime failed to start);
        // then there is nothing to stop.
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            eprintln!("kurrentdb-double: the serving thread panicked");
        }
    }
}

/// Serve `node` on `listener` from a thread with a runtime of its own.
pub(crate) fn serve(node: Arc<Node>, listener: std::net::TcpListener) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("kurrentdb-double-{}", node.addr))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("the double's runtime: {e}"));
            runtime.block_on(async move {
                tokio::select! {
                    _ = run(node, listener) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task and the
            // listener: the port refuses connections from here on.
            drop(runtime);
        })
        .unwrap_or_else(|e| panic!("starting the double's thread: {e}"));
    Running { stop, thread }
}

async fn run(node: Arc<Node>, listener: std::net::TcpListener) {
    listener.set_nonblocking(true).unwrap_or_else(|e| panic!("the double's listener: {e}"));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("the double's listener: {e}"));
    let (connections, incoming) = tokio::sync::mpsc::channel::<Result<QuickAck, std::io::Error>>(16);
    let accepting = node.clone();
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await.and_then(|(stream, peer)| {
                // Keep a second handle on the socket so that a fault can cut it.
                let std_stream = stream.into_std()?;
                let handle = std_stream.try_clone()?;
                lock(&accepting.connections).insert(peer, handle);
                let stream = tokio::net::TcpStream::from_std(std_stream)?;
                stream.set_nodelay(true)?;
                Ok(QuickAck(stream))
            });
            if connections.send(accepted).await.is_err() {
                return;
            }
        }
    });
    let served = tonic::transport::Server::builder()
        .add_service(
            streams_server::StreamsServer::new(StreamsService { node: node.clone() })
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024),
        )
        .add_service(server_features_server::ServerFeaturesServer::new(FeaturesService { node: node.clone() }))
        .add_service(gossip_server::GossipServer::new(GossipService { node }))
        .serve_with_incoming(ReceiverStream::new(incoming))
        .await;
    if let Err(e) = served {
        eprintln!("kurrentdb-double: serving failed: {e}");
    }
}

/// A server connection that acknowledges what it reads at once.
///
/// The `kurrentdb` client does not set `TCP_NODELAY`, and h2 writes a
/// request's HEADERS and DATA frames separately, so Nagle's algorithm holds
/// the DATA back until the HEADERS are acknowledged; with the kernel's
/// delayed ACKs that costs up to 40 ms a call on Linux. The double asks for
/// quick ACKs after every read, so that tests are not slowed down by it. (A
/// real node does not: see docs/kurrentdb.md.)
struct QuickAck(tokio::net::TcpStream);

impl QuickAck {
    fn ack_now(&self) {
        #[cfg(target_os = "linux")]
        {
            // Best effort: a socket that refuses is merely slower.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if polled.is_ready() {
            self.ack_now();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for QuickAck {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

// ---------------------------------------------------------------------------
// ServerFeatures and Gossip.

struct FeaturesService {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl server_features_server::ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<server_features::SupportedMethods>, Status> {
        bump(&self.node.counters.server_features);
        // A server older than the feature probe has no such method: the
        // client then assumes no optional features and appends the legacy way.
        Err(Status::unimplemented("the protocol double answers as a server without the feature probe"))
    }
}

struct GossipService {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl gossip_server::Gossip for GossipService {
    async fn read(&self, _request: Request<pb::Empty>) -> Result<Response<gossip::ClusterInfo>, Status> {
        bump(&self.node.counters.gossip);
        let members = lock(&self.node.cluster.members).clone();
        let members = members
            .into_iter()
            .map(|m| gossip::MemberInfo {
                instance_id: Some(uuid_string(Uuid::from_u128(u128::from(m.addr.port())))),
                time_stamp: 0,
                state: if m.leader {
                    gossip::member_info::VNodeState::Leader as i32
                } else {
                    gossip::member_info::VNodeState::Follower as i32
                },
                is_alive: true,
                http_end_point: Some(gossip::EndPoint {
                    address: m.addr.ip().to_string(),
                    port: u32::from(m.addr.port()),
                }),
            })
            .collect();
        Ok(Response::new(gossip::ClusterInfo { members }))
    }
}

// ---------------------------------------------------------------------------
// Streams.

struct StreamsService {
    node: Arc<Node>,
}

impl StreamsService {
    /// The server's answer to a write (or a read that requires the leader)
    /// sent to a follower: where the leader is.
    fn not_leader(&self) -> Option<Status> {
        let leader = self.node.leader?;
        bump(&self.node.counters.not_leader);
        let mut metadata = MetadataMap::new();
        metadata.insert("exception", "not-leader".parse().ok()?);
        metadata.insert("leader-endpoint-host", leader.ip().to_string().parse().ok()?);
        metadata.insert("leader-endpoint-port", leader.port().to_string().parse().ok()?);
        Some(Status::with_metadata(tonic::Code::NotFound, "Leader info available", metadata))
    }
}

fn requires_leader(metadata: &MetadataMap) -> bool {
    metadata.get("requires-leader").and_then(|v| v.to_str().ok()) == Some("true")
}

#[tonic::async_trait]
impl streams_server::Streams for StreamsService {
    type ReadStream = ReadStream;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadStream>, Status> {
        if requires_leader(request.metadata()) {
            if let Some(status) = self.not_leader() {
                return Err(status);
            }
        }
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("read without options"))?;
        let structured_ids = matches!(
            options.uuid_option.and_then(|u| u.content),
            Some(read_req::options::uuid_option::Content::Structured(_))
        );
        let filter = Filter::from_proto(options.filter_option.clone())?;
        let backwards = options.read_direction == ReadDirection::Backwards as i32;
        match (options.stream_option, options.count_option) {
            (Some(StreamOption::Stream(stream)), Some(CountOption::Count(count))) => {
                bump(&self.node.counters.reads);
                let name = stream.stream_identifier.map(|s| s.stream_name).unwrap_or_default();
                let messages = read_stream(&self.node, &name, stream.revision_option, backwards, count, structured_ids);
                Ok(Response::new(Box::pin(tokio_stream::iter(messages.into_iter().map(Ok)))))
            }
            (Some(StreamOption::All(all)), Some(CountOption::Count(count))) => {
                bump(&self.node.counters.reads);
                let messages = read_all(&self.node, all.all_option, backwards, count, &filter, structured_ids);
                Ok(Response::new(Box::pin(tokio_stream::iter(messages.into_iter().map(Ok)))))
            }
            (Some(StreamOption::All(all)), Some(CountOption::Subscription(_))) => {
                bump(&self.node.counters.subscriptions);
                if backwards {
                    return Err(Status::invalid_argument("a subscription goes forwards"));
                }
                Ok(Response::new(subscribe_all(self.node.clone(), all.all_option, filter, structured_ids)))
            }
            (Some(StreamOption::Stream(_)), Some(CountOption::Subscription(_))) => {
                bump(&self.node.counters.unimplemented);
                Err(Status::unimplemented("the protocol double does not implement stream subscriptions"))
            }
            _ => Err(Status::invalid_argument("read without a stream option or a count option")),
        }
    }

    async fn append(&self, request: Request<Streaming<AppendReq>>) -> Result<Response<AppendResp>, Status> {
        bump(&self.node.counters.appends);
        if let Some(status) = self.not_leader() {
            return Err(status);
        }
        let peer = request.remote_addr();
        let mut messages = request.into_inner();
        let options = match messages.message().await?.and_then(|m| m.content) {
            Some(append_req::Content::Options(options)) => options,
            _ => return Err(Status::invalid_argument("an append must start with its options")),
        };
        let stream = options.stream_identifier.map(|s| s.stream_name).unwrap_or_default();
        if stream.is_empty() {
            return Err(Status::invalid_argument("an append needs a stream name"));
        }
        let expected = match options.expected_stream_revision {
            Some(append_req::options::ExpectedStreamRevision::Revision(r)) => Expected::Revision(r),
            Some(append_req::options::ExpectedStreamRevision::NoStream(_)) => Expected::NoStream,
            Some(append_req::options::ExpectedStreamRevision::Any(_)) => Expected::Any,
            Some(append_req::options::ExpectedStreamRevision::StreamExists(_)) => Expected::StreamExists,
            None => return Err(Status::invalid_argument("an append needs an expected stream revision")),
        };
        let mut events = Vec::new();
        let mut size = 0usize;
        while let Some(message) = messages.message().await? {
            let Some(append_req::Content::ProposedMessage(proposed)) = message.content else {
                return Err(Status::invalid_argument("options sent twice in one append"));
            };
            size += proposed.data.len() + proposed.custom_metadata.len();
            if size > self.node.config.max_append_size {
                return Err(max_append_size_exceeded(self.node.config.max_append_size));
            }
            events.push(proposed_event(proposed)?);
        }
        let fault = {
            let mut armed = lock(&self.node.fault);
            match armed.as_ref() {
                Some((target, _)) if target.as_ref().is_none_or(|t| *t == stream) => armed.take().map(|(_, f)| f),
                _ => None,
            }
        };
        if fault == Some(Fault::DropConnectionBeforeWrite) {
            return self.drop_without_answer(peer).await;
        }
        let result = self.node.cluster.log().append(&stream, expected, events);
        if let AppendResult::Written { .. } = result {
            let len = self.node.cluster.log().len() as u64;
            self.node.cluster.appended.send_replace(len);
        }
        if fault == Some(Fault::DropConnectionAfterWrite) {
            return self.drop_without_answer(peer).await;
        }
        Ok(Response::new(append_response(result, expected)))
    }

    async fn delete(&self, _request: Request<streams::DeleteReq>) -> Result<Response<streams::DeleteResp>, Status> {
        bump(&self.node.counters.unimplemented);
        Err(Status::unimplemented("the protocol double does not implement Streams.Delete"))
    }

    async fn tombstone(
        &self,
        _request: Request<streams::TombstoneReq>,
    ) -> Result<Response<streams::TombstoneResp>, Status> {
        bump(&self.node.counters.unimplemented);
        Err(Status::unimplemented("the protocol double does not implement Streams.Tombstone"))
    }

    type BatchAppendStream = BatchStream;

    async fn batch_append(
        &self,
        _request: Request<Streaming<streams::BatchAppendReq>>,
    ) -> Result<Response<BatchStream>, Status> {
        bump(&self.node.counters.unimplemented);
        Err(Status::unimplemented("the protocol double answers as a server without BatchAppend"))
    }
}

impl StreamsService {
    /// Cut the caller's connection and never answer, as a crashing node does.
    async fn drop_without_answer<T>(&self, peer: Option<SocketAddr>) -> Result<T, Status> {
        self.node.drop_connection(peer);
        // The connection is gone, so this future is dropped with it; should
        // the transport keep it, a late error is all the client could see.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Err(Status::unavailable("the protocol double dropped this connection"))
    }
}

fn max_append_size_exceeded(max: usize) -> Status {
    let mut metadata = MetadataMap::new();
    if let Ok(v) = "maximum-append-size-exceeded".parse() {
        metadata.insert("exception", v);
    }
    if let Ok(v) = max.to_string().parse() {
        metadata.insert("maximum-append-size", v);
    }
    Status::with_metadata(tonic::Code::InvalidArgument, format!("Maximum Append Size of {max} Exceeded."), metadata)
}

fn proposed_event(proposed: append_req::ProposedMessage) -> Result<Proposed, Status> {
    let id = proposed.id.ok_or_else(|| Status::invalid_argument("a proposed event has no id"))?;
    let id = parse_uuid(id)?;
    let event_type = proposed
        .metadata
        .get("type")
        .cloned()
        .ok_or_else(|| Status::invalid_argument("a proposed event has no type"))?;
    let content_type = proposed
        .metadata
        .get("content-type")
        .cloned()
        .ok_or_else(|| Status::invalid_argument("a proposed event has no content-type"))?;
    Ok(Proposed { id, event_type, content_type, custom_metadata: proposed.custom_metadata, data: proposed.data })
}

fn parse_uuid(id: pb::Uuid) -> Result<Uuid, Status> {
    match id.value {
        Some(pb::uuid::Value::String(s)) => {
            s.parse().map_err(|e| Status::invalid_argument(format!("bad event id: {e}")))
        }
        Some(pb::uuid::Value::Structured(s)) => {
            let high = u128::from(s.most_significant_bits as u64);
            let low = u128::from(s.least_significant_bits as u64);
            Ok(Uuid::from_u128((high << 64) | low))
        }
        None => Err(Status::invalid_argument("an event id without a value")),
    }
}

fn uuid_string(id: Uuid) -> pb::Uuid {
    pb::Uuid { value: Some(pb::uuid::Value::String(id.to_string())) }
}

fn uuid_structured(id: Uuid) -> pb::Uuid {
    let value = id.as_u128();
    pb::Uuid {
        value: Some(pb::uuid::Value::Structured(pb::uuid::Structured {
            most_significant_bits: (value >> 64) as u64 as i64,
            least_significant_bits: value as u64 as i64,
        })),
    }
}

fn append_response(result: AppendResult, expected: Expected) -> AppendResp {
    use append_resp::success::{CurrentRevisionOption as Current, PositionOption};
    use append_resp::wrong_expected_version as wev;
    let result = match result {
        AppendResult::Written { revision, position } => append_resp::Result::Success(append_resp::Success {
            current_revision_option: Some(Current::CurrentRevision(revision)),
            position_option: Some(PositionOption::Position(append_resp::Position {
                commit_position: position,
                prepare_position: position,
            })),
        }),
        AppendResult::Idempotent { revision } => append_resp::Result::Success(append_resp::Success {
            current_revision_option: Some(Current::CurrentRevision(revision)),
            position_option: Some(PositionOption::NoPosition(pb::Empty {})),
        }),
        AppendResult::WrongExpectedVersion { current } => {
            let (current_2060, current_now) = match current {
                Some(r) => (
                    wev::CurrentRevisionOption2060::CurrentRevision2060(r),
                    wev::CurrentRevisionOption::CurrentRevision(r),
                ),
                None => (
                    wev::CurrentRevisionOption2060::NoStream2060(pb::Empty {}),
                    wev::CurrentRevisionOption::CurrentNoStream(pb::Empty {}),
                ),
            };
            let (expected_2060, expected_now) = match expected {
                Expected::Revision(r) => (
                    Some(wev::ExpectedRevisionOption2060::ExpectedRevision2060(r)),
                    wev::ExpectedRevisionOption::ExpectedRevision(r),
                ),
                Expected::Any => (
                    Some(wev::ExpectedRevisionOption2060::Any2060(pb::Empty {})),
                    wev::ExpectedRevisionOption::ExpectedAny(pb::Empty {}),
                ),
                Expected::StreamExists => (
                    Some(wev::ExpectedRevisionOption2060::StreamExists2060(pb::Empty {})),
                    wev::ExpectedRevisionOption::ExpectedStreamExists(pb::Empty {}),
                ),
                Expected::NoStream => (None, wev::ExpectedRevisionOption::ExpectedNoStream(pb::Empty {})),
            };
            append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: Some(current_2060),
                expected_revision_option_20_6_0: expected_2060,
                current_revision_option: Some(current_now),
                expected_revision_option: Some(expected_now),
            })
        }
    };
    AppendResp { result: Some(result) }
}

// ---------------------------------------------------------------------------
// Reads.

/// A server-side `$all` filter.
#[derive(Debug, Clone)]
enum Filter {
    None,
    StreamName(Expression),
    EventType(Expression),
}

#[derive(Debug, Clone)]
struct Expression {
    prefixes: Vec<String>,
    regex: Option<regex::Regex>,
}

impl Expression {
    fn from_proto(e: filter_options::Expression) -> Result<Self, Status> {
        let regex = if e.regex.is_empty() {
            None
        } else {
            Some(
                regex::Regex::new(&e.regex)
                    .map_err(|err| Status::invalid_argument(format!("bad filter regex: {err}")))?,
            )
        };
        Ok(Self { prefixes: e.prefix, regex })
    }

    /// Prefixes when there are any, else the regex, as the server does.
    fn matches(&self, text: &str) -> bool {
        if !self.prefixes.is_empty() {
            return self.prefixes.iter().any(|p| text.starts_with(p.as_str()));
        }
        self.regex.as_ref().is_none_or(|r| r.is_match(text))
    }
}

impl Filter {
    fn from_proto(option: Option<FilterOption>) -> Result<Self, Status> {
        Ok(match option {
            Some(FilterOption::Filter(f)) => match f.filter {
                Some(filter_options::Filter::StreamIdentifier(e)) => Filter::StreamName(Expression::from_proto(e)?),
                Some(filter_options::Filter::EventType(e)) => Filter::EventType(Expression::from_proto(e)?),
                None => Filter::None,
            },
            Some(FilterOption::NoFilter(_)) | None => Filter::None,
        })
    }

    fn matches(&self, record: &Record) -> bool {
        match self {
            Filter::None => true,
            Filter::StreamName(e) => e.matches(&String::from_utf8_lossy(&record.stream)),
            Filter::EventType(e) => e.matches(&record.event_type),
        }
    }
}

fn event_message(record: &Record, structured_ids: bool) -> ReadResp {
    let metadata = [
        ("type".to_owned(), record.event_type.clone()),
        ("content-type".to_owned(), record.content_type.clone()),
        ("created".to_owned(), record.created_ticks.to_string()),
    ]
    .into_iter()
    .collect();
    let id = if structured_ids { uuid_structured(record.id) } else { uuid_string(record.id) };
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(read_resp::read_event::RecordedEvent {
                id: Some(id),
                stream_identifier: Some(pb::StreamIdentifier { stream_name: record.stream.clone() }),
                stream_revision: record.revision,
                prepare_position: record.position,
                commit_position: record.position,
                metadata,
                custom_metadata: record.custom_metadata.clone(),
                data: record.data.clone(),
            }),
            link: None,
            position: Some(read_resp::read_event::Position::CommitPosition(record.position)),
        })),
    }
}

fn read_stream(
    node: &Node,
    stream: &[u8],
    from: Option<RevisionOption>,
    backwards: bool,
    count: u64,
    structured_ids: bool,
) -> Vec<ReadResp> {
    let log = node.cluster.log();
    let Some(records) = log.stream(stream) else {
        return vec![ReadResp {
            content: Some(read_resp::Content::StreamNotFound(read_resp::StreamNotFound {
                stream_identifier: Some(pb::StreamIdentifier { stream_name: stream.to_vec() }),
            })),
        }];
    };
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let last = records.len() as u64 - 1;
    let selected: Vec<&Record> = if backwards {
        // From the end, or from a revision: the server's index reader takes
        // the revisions [from - count + 1, from] that exist, so a revision
        // past the end with a small count finds nothing.
        let end = match from {
            Some(RevisionOption::Revision(r)) => r,
            _ => last,
        };
        let start = end.saturating_sub((count as u64).saturating_sub(1));
        records.iter().rev().filter(|r| r.revision >= start && r.revision <= end).take(count).copied().collect()
    } else {
        let start = match from {
            Some(RevisionOption::Revision(r)) => r,
            Some(RevisionOption::End(_)) => last + 1,
            _ => 0,
        };
        records.iter().filter(|r| r.revision >= start).take(count).copied().collect()
    };
    selected.into_iter().map(|r| event_message(r, structured_ids)).collect()
}

fn read_all(
    node: &Node,
    from: Option<AllOption>,
    backwards: bool,
    count: u64,
    filter: &Filter,
    structured_ids: bool,
) -> Vec<ReadResp> {
    let log = node.cluster.log();
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut messages = Vec::new();
    if backwards {
        // Backwards from a position: the events before it.
        let end = match from {
            Some(AllOption::Position(p)) => log.index_at_or_after(p.commit_position),
            Some(AllOption::Start(_)) => 0,
            _ => log.len(),
        };
        for index in (0..end).rev() {
            if messages.len() == count {
                break;
            }
            let record = log.record(index);
            if filter.matches(record) {
                messages.push(event_message(record, structured_ids));
            }
        }
    } else {
        // Forwards from a position: the event at it and those after.
        let start = match from {
            Some(AllOption::Position(p)) => log.index_at_or_after(p.commit_position),
            Some(AllOption::End(_)) => log.len(),
            _ => 0,
        };
        for index in start..log.len() {
            if messages.len() == count {
                break;
            }
            let record = log.record(index);
            if filter.matches(record) {
                messages.push(event_message(record, structured_ids));
            }
        }
    }
    messages
}

/// A `$all` subscription: confirmation, the events after the start, a
/// caught-up message, then every matching event as it is written.
fn subscribe_all(node: Arc<Node>, from: Option<AllOption>, filter: Filter, structured_ids: bool) -> ReadStream {
    let (sender, receiver) = tokio::sync::mpsc::channel(SUBSCRIPTION_BUFFER);
    tokio::spawn(async move {
        let mut appended = node.cluster.appended.subscribe();
        let confirmation = ReadResp {
            content: Some(read_resp::Content::Confirmation(read_resp::SubscriptionConfirmation {
                subscription_id: Uuid::now_v7().to_string(),
            })),
        };
        if sender.send(Ok(confirmation)).await.is_err() {
            return;
        }
        // A subscription from a position delivers the events after it.
        let mut next = {
            let log = node.cluster.log();
            match from {
                Some(AllOption::Position(p)) => {
                    let at = log.index_at_or_after(p.commit_position);
                    if at < log.len() && log.record(at).position == p.commit_position {
                        at + 1
                    } else {
                        at
                    }
                }
                Some(AllOption::End(_)) => log.len(),
                _ => 0,
            }
        };
        let mut caught_up = false;
        loop {
            appended.borrow_and_update();
            let batch: Vec<ReadResp> = {
                let log = node.cluster.log();
                let batch = (next..log.len())
                    .map(|i| log.record(i))
                    .filter(|r| filter.matches(r))
                    .map(|r| event_message(r, structured_ids))
                    .collect();
                next = log.len();
                batch
            };
            for message in batch {
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if !caught_up {
                caught_up = true;
                let position = node
                    .cluster
                    .log()
                    .last_position()
                    .map(|p| read_resp::Position { commit_position: p, prepare_position: p });
                let message = ReadResp {
                    content: Some(read_resp::Content::CaughtUp(read_resp::CaughtUp {
                        timestamp: Some(std::time::SystemTime::now().into()),
                        stream_revision: None,
                        position,
                    })),
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                changed = appended.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = sender.closed() => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}
