//! Quire: a Redis-protocol server whose primary region streams its writes to
//! replica regions over QUIC.
//!
//! # The path of a write
//!
//! A client's bytes arrive on a connection task (`server`), which decodes
//! them into argument vectors (`resp`, sans-IO) and, holding the dataset
//! lock once per pipelined batch, runs each through the command table
//! (`commands`). A handler reads and changes the in-memory dataset
//! (`keyspace`) and returns its reply, which the task encodes for the
//! client's protocol version and writes back. Snapshots (`persist`) copy the
//! dataset at one instant — values are shared copy-on-write, so BGSAVE does
//! not stop clients — into a checksummed, versioned record stream.
//!
//! A write that changed the data also appends its *effect* (a command
//! that gives the same result when replayed later, elsewhere) to the
//! replication stream (`replication::stream`), under the same lock, so the
//! stream's order is the order of execution. The stream's bytes are the
//! node's log (`replication::backlog`): under the lock they only reach its
//! memory tail; the client task hands them to the OS before replying (or
//! waits for the log thread's fsync under `appendfsync always`), so the log
//! is both the backlog replicas resume from and the write-ahead log a
//! crashed node replays on top of its newest snapshot
//! (`server::persistence`). Per replica, a sender task
//! cuts the stream into batches, compressed once for all the replicas at
//! the live tail (`replication::tail`; a link catching up uses its own zstd
//! context), and sends them over QUIC with mutual TLS (`transport`); the
//! replica verifies, decompresses, applies each command or transaction
//! atomically, forwards the same bytes to its own replicas, and acks its
//! offset.
//!
//! Settings come in layers (`config`): defaults, a region profile, a file,
//! `QUIRE_*` environment variables, command-line flags.

pub mod acl;
pub mod bench;
pub(crate) mod commands;
pub mod config;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod keyspace;
pub(crate) mod link;
pub mod memory;
pub(crate) mod metrics;
pub(crate) mod node;
pub(crate) mod persist;
pub mod replication;
pub mod resp;
pub mod server;
pub(crate) mod timer;
pub mod transport;
pub mod wan;

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

/// The Redis version Quire reports to clients (INFO `redis_version`, HELLO)
/// so that client libraries enable the features it implements.
pub const REDIS_COMPAT_VERSION: &str = "7.2.4";
