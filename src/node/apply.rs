//! The one entry point through which replicated units change the dataset.
//!
//! A replica's link (`link::replica`) and start-up replay
//! (`server::persistence`) hold units of the stream and the dataset lock;
//! the command table that knows how to run them (`commands`) sits above
//! this module and below neither of them. So the node is built with a
//! [`NewApplier`] — the command table's — and the edges call through it
//! without importing the handlers.

use super::{Data, Shared};
use crate::replication::apply::Units;
use std::net::SocketAddr;

/// Applies replicated units, keeping the stream's selected database from
/// one call to the next (a stream's `SELECT` lasts until the next one).
pub trait StreamApplier: Send {
    /// Runs every command of `units`, in order, under the dataset lock
    /// the caller holds (one clock reading for the run: nothing else sees
    /// the data between them).
    fn apply(&mut self, node: &Shared, data: &mut Data, units: &Units);
    /// The database the stream is in after the last applied command.
    fn db(&self) -> usize;
    /// Continues a stream that is in database `db` at this point.
    fn set_db(&mut self, db: usize);
}

/// Makes the applier for one link (its upstream's address) or one replay.
pub type NewApplier = fn(peer: SocketAddr) -> Box<dyn StreamApplier>;
