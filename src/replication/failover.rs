//! Promotion, fencing and planned failover: the decisions (sans-IO).
//!
//! Every node carries an **epoch**: the number of promotions its history
//! has seen. Promoting a replica raises the epoch above every epoch it has
//! seen; a replica adopts its upstream's epoch when it connects. A node
//! acting as primary with an epoch lower than a peer's has been replaced:
//! it is *fenced* — it stops taking writes, reports the writes it took after
//! the new primary's history diverged from its own, and follows the group
//! again. A replica never follows an upstream whose epoch is lower than its
//! own. Epochs travel in handshakes and probe replies; they are saved in
//! the data directory so a restarted node still knows its place.

use super::ids::{Epoch, ReplId};
use std::path::Path;

/// What a peer answered to a fencing probe.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    /// The address the probe reached.
    pub addr: String,
    pub epoch: Epoch,
    pub is_primary: bool,
    /// The peer's upstream replication address when it is a replica.
    pub upstream: Option<String>,
    pub replid: ReplId,
    pub replid2: ReplId,
    pub second_offset: Option<u64>,
}

/// This node as the decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfView {
    pub epoch: Epoch,
    pub is_primary: bool,
    pub replid: ReplId,
    pub offset: u64,
}

/// Writes a fenced primary took that the group never saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Stream range `[from, to)` of this node's history past the point the
    /// new primary took over.
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FenceDecision {
    /// Nothing newer out there.
    Stay,
    /// A newer epoch exists: stop being a primary, follow `follow`.
    Demote {
        follow: String,
        epoch: Epoch,
        divergence: Option<Divergence>,
    },
}

/// Decides, from the replies of this round of probes, whether this node
/// (if it is a primary) has been replaced.
pub fn decide(me: &SelfView, replies: &[PeerView]) -> FenceDecision {
    if !me.is_primary {
        return FenceDecision::Stay;
    }
    let Some(newest) = replies
        .iter()
        .filter(|p| p.epoch > me.epoch)
        .max_by_key(|p| (p.epoch, p.is_primary))
    else {
        return FenceDecision::Stay;
    };
    // Follow the primary of the newest epoch if a peer is it; otherwise the
    // newest peer itself (every node serves the same stream).
    let primary = replies
        .iter()
        .find(|p| p.epoch == newest.epoch && p.is_primary)
        .unwrap_or(newest);
    let divergence = replies
        .iter()
        .filter(|p| p.epoch == newest.epoch && p.replid2 == me.replid)
        .filter_map(|p| p.second_offset)
        .min()
        .filter(|d| me.offset > *d)
        .map(|from| Divergence {
            from,
            to: me.offset,
        });
    FenceDecision::Demote {
        follow: primary.addr.clone(),
        epoch: newest.epoch,
        divergence,
    }
}

/// Whether a replica at `my_epoch` may follow an upstream at `upstream`.
pub fn may_follow(my_epoch: Epoch, upstream_epoch: Epoch) -> bool {
    upstream_epoch >= my_epoch
}

/// The epoch a promoted node takes: above everything it has seen.
pub fn promoted_epoch(current: Epoch) -> Epoch {
    current.next()
}

/// Loads the saved epoch (0 when none).
pub fn load_epoch(dir: &Path) -> Epoch {
    Epoch(
        std::fs::read_to_string(dir.join("epoch"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
    )
}

pub fn save_epoch(dir: &Path, epoch: Epoch) {
    if let Err(e) =
        crate::persist::write_atomically(&dir.join("epoch"), format!("{epoch}\n").as_bytes())
    {
        tracing::error!(error = %e, "cannot save the replication epoch");
    }
}

/// Planned failover (FAILOVER), as Redis 6.2 names its states.
#[derive(Debug, Clone, PartialEq)]
pub enum FailoverState {
    None,
    /// Writes paused; waiting for the target to acknowledge `offset`.
    WaitingForSync {
        target: String,
        offset: u64,
        deadline_ms: i64,
        force: bool,
    },
    /// Target told to take over; this node is switching to follow it.
    InProgress {
        target: String,
    },
}

impl FailoverState {
    pub fn name(&self) -> &'static str {
        match self {
            FailoverState::None => "no-failover",
            FailoverState::WaitingForSync { .. } => "waiting-for-sync",
            FailoverState::InProgress { .. } => "failover-in-progress",
        }
    }

    pub fn pauses_writes(&self) -> bool {
        !matches!(self, FailoverState::None)
    }
}

/// What the failover driver does next, given the target's acknowledged
/// offset and the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverStep {
    Wait,
    Handover,
    Abort(&'static str),
}

pub fn failover_step(
    state: &FailoverState,
    target_acked: Option<u64>,
    now_ms: i64,
) -> FailoverStep {
    match state {
        FailoverState::WaitingForSync {
            offset,
            deadline_ms,
            force,
            ..
        } => match target_acked {
            None => FailoverStep::Abort("the target replica disconnected"),
            Some(acked) if acked >= *offset => FailoverStep::Handover,
            Some(_) if *deadline_ms > 0 && now_ms >= *deadline_ms => {
                if *force {
                    FailoverStep::Handover
                } else {
                    FailoverStep::Abort("the target replica did not catch up in time")
                }
            }
            Some(_) => FailoverStep::Wait,
        },
        _ => FailoverStep::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(epoch: u64, offset: u64) -> SelfView {
        let epoch = Epoch(epoch);
        SelfView {
            epoch,
            is_primary: true,
            replid: "old".into(),
            offset,
        }
    }

    fn peer(addr: &str, epoch: u64, is_primary: bool, second: Option<u64>) -> PeerView {
        let epoch = Epoch(epoch);
        PeerView {
            addr: addr.into(),
            epoch,
            is_primary,
            upstream: None,
            replid: "new".into(),
            replid2: "old".into(),
            second_offset: second,
        }
    }

    #[test]
    fn stale_primary_demotes_to_the_newest_primary() {
        let replies = [peer("b", 2, true, Some(100)), peer("c", 2, false, Some(90))];
        match decide(&me(1, 150), &replies) {
            FenceDecision::Demote {
                follow,
                epoch,
                divergence,
            } => {
                assert_eq!((follow.as_str(), epoch), ("b", Epoch(2)));
                assert_eq!(divergence, Some(Divergence { from: 90, to: 150 }));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn no_divergence_when_behind_the_takeover_point() {
        let replies = [peer("b", 2, true, Some(100))];
        assert!(matches!(
            decide(&me(1, 80), &replies),
            FenceDecision::Demote {
                divergence: None,
                ..
            }
        ));
    }

    #[test]
    fn current_primary_and_replicas_stay() {
        assert_eq!(
            decide(
                &me(2, 10),
                &[peer("b", 2, false, None), peer("c", 1, false, None)]
            ),
            FenceDecision::Stay
        );
        let replica = SelfView {
            is_primary: false,
            ..me(1, 0)
        };
        assert_eq!(
            decide(&replica, &[peer("b", 5, true, None)]),
            FenceDecision::Stay
        );
        assert!(
            may_follow(Epoch(2), Epoch(2))
                && may_follow(Epoch(2), Epoch(3))
                && !may_follow(Epoch(3), Epoch(2))
        );
    }

    #[test]
    fn failover_waits_hands_over_or_aborts() {
        let waiting = |force| FailoverState::WaitingForSync {
            target: "b".into(),
            offset: 100,
            deadline_ms: 1000,
            force,
        };
        assert_eq!(
            failover_step(&waiting(false), Some(50), 500),
            FailoverStep::Wait
        );
        assert_eq!(
            failover_step(&waiting(false), Some(100), 500),
            FailoverStep::Handover
        );
        assert!(matches!(
            failover_step(&waiting(false), Some(50), 1000),
            FailoverStep::Abort(_)
        ));
        assert_eq!(
            failover_step(&waiting(true), Some(50), 1000),
            FailoverStep::Handover
        );
        assert!(matches!(
            failover_step(&waiting(false), None, 0),
            FailoverStep::Abort(_)
        ));
    }
}
