//! The replication link's IO edge: tasks that own QUIC connections and
//! drive the sans-IO cores of `replication` with bytes and timers.
//!
//! - [`primary`]: accepts replicas, answers their handshake (partial or
//!   full resync), then streams batches and reads acks.
//! - [`replica`]: dials the upstream, loads a snapshot when it must,
//!   applies the stream through the node's applier, acks its offset.
//! - [`discover`]: finds the replication endpoint behind an upstream's
//!   client port (how Sentinel names it).
//! - [`rewind`]: a demoted primary rebuilds its data at the fork from
//!   its snapshot and log, and continues partially.
//! - [`fence`]: probes peers for a newer epoch; drives planned failover.
//!
//! Calls go down: the link uses node state (`node`), the cores
//! (`replication`) and the transport; nothing below imports it. Commands
//! reach it only through node actions that the connection task carries out.

pub mod discover;
pub mod fence;
pub mod primary;
pub mod replica;
pub mod rewind;
