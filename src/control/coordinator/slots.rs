//! The corps this instance holds, and what follows a worker's stop.

use tokio::task::JoinHandle;

use super::fingerprint::Fingerprint;
use crate::control::lease::Lease;

/// What follows a worker's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Give the lease back.
    Release { balance: bool },
    /// Start again with fresh settings (and redecrypt when a key came).
    Restart { redecrypt: bool, reason: &'static str },
}

impl Next {
    pub(super) fn merge(self, other: Next) -> Next {
        match (self, other) {
            (Next::Release { balance: a }, Next::Release { balance: b }) => Next::Release { balance: a && b },
            (r @ Next::Release { .. }, _) | (_, r @ Next::Release { .. }) => r,
            (Next::Restart { redecrypt: a, reason }, Next::Restart { redecrypt: b, .. }) => {
                Next::Restart { redecrypt: a || b, reason }
            }
        }
    }
}

pub(super) enum SlotState {
    Running,
    Stopping { handle: JoinHandle<()>, next: Next },
}

/// A corp this instance holds the lease of.
pub(super) struct Slot {
    pub(super) lease: Lease,
    /// What the worker was started with (None: not known yet, set at the next poll).
    pub(super) fp: Option<Fingerprint>,
    pub(super) state: SlotState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_wins_over_restart() {
        let r = Next::Restart { redecrypt: true, reason: "event" };
        let rel = Next::Release { balance: false };
        assert_eq!(r.merge(rel), rel);
        assert_eq!(rel.merge(r), rel);
        assert_eq!(
            Next::Restart { redecrypt: false, reason: "x" }.merge(r),
            Next::Restart { redecrypt: true, reason: "x" }
        );
    }
}
