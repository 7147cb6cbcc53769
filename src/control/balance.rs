//! Which corps this instance should hold: the lease balance as a pure
//! decision, apart from the Redis and database calls that carry it out
//! (`coordinator::taking`).
//!
//! The rule (see the [`super`] module doc): with `n` enabled corps and `m`
//! live instances each aims for `ceil(n / m)`; an instance above its share
//! gives back the corps it wants least; the most loaded instance (the first
//! of them in heartbeat order) gives one corp back when it holds two more than
//! the least loaded one, at most once a lease time; an instance below its
//! share takes free corps, its rendezvous "home" corps first. Corps it gave
//! back are not taken again by it for a lease time, so a corp handed over for
//! balance lands elsewhere.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::lease;
use crate::store::CorpId;

/// Who is alive, from the last heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Members<'a> {
    /// This instance.
    pub me: &'a str,
    /// Live instances of this deployment with the corps each holds, in
    /// heartbeat order (ours included, its load possibly stale).
    pub live: &'a [(String, u64)],
}

/// What this instance holds and could take.
#[derive(Debug, Clone, Copy)]
pub struct Holdings<'a> {
    /// Enabled corps with valid ids.
    pub enabled: &'a BTreeSet<CorpId>,
    /// Held corps this instance keeps (not already being given back).
    pub keeping: &'a [CorpId],
    /// Corps never to reach for: held in any state, or still draining an old worker.
    pub busy: &'a BTreeSet<CorpId>,
    /// Held corps already being given back (their release not finished yet).
    pub releasing: usize,
}

/// Corps given back for balance, and the last time loads were evened out:
/// both hold for one `period` (the lease time).
#[derive(Debug, Clone)]
pub struct Cooldowns {
    period: Duration,
    given_back: HashMap<CorpId, Instant>,
    last_spread: Option<Instant>,
}

impl Cooldowns {
    /// Nothing cooling yet; each cooldown lasts `period`.
    pub fn new(period: Duration) -> Cooldowns {
        Cooldowns { period, given_back: HashMap::new(), last_spread: None }
    }

    /// `corp` was given back for balance at `now`.
    pub fn gave_back(&mut self, corp: CorpId, now: Instant) {
        self.given_back.insert(corp, now);
    }

    /// Loads were evened out at `now`.
    pub fn spread(&mut self, now: Instant) {
        self.last_spread = Some(now);
    }

    /// Forgets cooldowns that ended by `now`.
    pub fn expire(&mut self, now: Instant) {
        let period = self.period;
        self.given_back.retain(|_, at| now.saturating_duration_since(*at) < period);
    }

    /// Whether `corp` is still cooling at `now`.
    pub fn cooling(&self, corp: &CorpId, now: Instant) -> bool {
        self.given_back.get(corp).is_some_and(|at| now.saturating_duration_since(*at) < self.period)
    }

    /// Whether evening out loads is allowed again at `now`.
    pub fn spread_due(&self, now: Instant) -> bool {
        self.last_spread.is_none_or(|t| now.saturating_duration_since(t) >= self.period)
    }
}

/// What to do this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// At the share: nothing.
    Hold,
    /// Above the share: give these back.
    GiveBack(Vec<CorpId>),
    /// The most loaded instance: give this one back to even out loads.
    Spread(CorpId),
    /// Below the share: take up to `want` of `candidates` that nobody holds,
    /// in this order (which of them are free only Redis knows).
    Take {
        /// How many more corps this instance wants.
        want: usize,
        /// Enabled corps this instance neither holds nor lets cool, best first.
        candidates: Vec<CorpId>,
    },
}

/// The decision and the share it was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `ceil(enabled corps / live instances)`.
    pub target: usize,
    /// What to do.
    pub step: Step,
}

/// Decides this turn's step; None while this instance is not among the live
/// ones (no heartbeat yet, or it left for an unwritable database).
pub fn plan(
    members: Members<'_>,
    holdings: Holdings<'_>,
    cooldowns: &Cooldowns,
    now: Instant,
) -> Option<Plan> {
    if !members.live.iter().any(|(name, _)| name == members.me) {
        return None;
    }
    let m = members.live.len().max(1);
    let target = holdings.enabled.len().div_ceil(m);
    let names: Vec<String> = members.live.iter().map(|(name, _)| name.clone()).collect();
    let keep_rank = |corp: &CorpId| rank(members.me, &names, corp);
    let held = holdings.keeping.len();
    let done = |step| Some(Plan { target, step });
    if held > target {
        let mut extras = holdings.keeping.to_vec();
        extras.sort_by_key(|c| keep_rank(c));
        extras.truncate(held - target);
        return done(Step::GiveBack(extras));
    }
    // Even out loads beyond ceil(): our own load is what we hold now, not
    // what our last heartbeat said.
    let load = |(name, load): &(String, u64)| if name == members.me { held as u64 } else { *load };
    let min_load = members.live.iter().map(load).min().unwrap_or(0);
    let max_load = members.live.iter().map(load).max().unwrap_or(0);
    let first_max =
        members.live.iter().find(|m| load(m) == max_load).is_some_and(|(name, _)| name == members.me);
    // Never while a release of ours is in flight: the least loaded peer's
    // heartbeat does not count that corp yet, and evening out against it
    // would move one corp too many (seen on Galera after a node rejoined).
    if held as u64 >= min_load + 2
        && holdings.releasing == 0
        && first_max
        && cooldowns.spread_due(now)
        && let Some(corp) = holdings.keeping.iter().min_by_key(|c| keep_rank(c))
    {
        return done(Step::Spread(corp.clone()));
    }
    if held >= target {
        return done(Step::Hold);
    }
    let mut candidates: Vec<CorpId> = holdings
        .enabled
        .iter()
        .filter(|c| !holdings.busy.contains(*c) && !cooldowns.cooling(c, now))
        .cloned()
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(keep_rank(c)));
    done(Step::Take { want: target - held, candidates })
}

/// The live members with the loads the lease records show now (`values`:
/// the lease of each enabled corp, `token:owner` or None when free). The
/// heartbeat loads are up to a renewal period old: an instance that has just
/// taken corps still reports fewer, and evening out against that would give a
/// corp back for nothing, which then sits free while it cools.
pub fn loads_from_leases(live: &[(String, u64)], values: &[Option<String>]) -> Vec<(String, u64)> {
    let mut held: HashMap<&str, u64> = HashMap::new();
    for v in values.iter().flatten() {
        if let Some((_, owner)) = v.split_once(':') {
            *held.entry(owner).or_default() += 1;
        }
    }
    live.iter().map(|(name, _)| (name.clone(), held.get(name.as_str()).copied().unwrap_or(0))).collect()
}

/// How much `instance` wants to keep `corp`: first the corps whose
/// rendezvous home (among `members`) it is, then by its own score.
pub fn rank(instance: &str, members: &[String], corp: &CorpId) -> (bool, u64) {
    let home = members.iter().max_by_key(|m| lease::score(m, corp.as_str()));
    (home.is_some_and(|m| m == instance), lease::score(instance, corp.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corps(n: usize) -> Vec<CorpId> {
        (0..n).map(|i| CorpId::new(&format!("ww{i:04}")).unwrap()).collect()
    }

    fn live(loads: &[(&str, u64)]) -> Vec<(String, u64)> {
        loads.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    /// One case: corps enabled, live instances and loads, how many of the
    /// first corps "a" holds, whether a spread is due, and the expected step
    /// in short: ("hold" | "give N" | "spread" | "take N of M" | "none").
    struct Case {
        enabled: usize,
        live: &'static [(&'static str, u64)],
        held: usize,
        spread_due: bool,
        target: usize,
        step: &'static str,
    }

    fn short(step: &Step) -> String {
        match step {
            Step::Hold => "hold".into(),
            Step::GiveBack(c) => format!("give {}", c.len()),
            Step::Spread(_) => "spread".into(),
            Step::Take { want, candidates } => format!("take {want} of {}", candidates.len()),
        }
    }

    /// 6 corps on 3, 2/2/2 in the lease records, but c's heartbeat predates
    /// its two takes: the heartbeat loads say "spread", the lease records
    /// say "hold" (the spurious hand-over seen under load in
    /// control::three_instances_share_six_corps_and_survive_a_kill).
    #[test]
    fn a_stale_heartbeat_is_not_a_reason_to_spread() {
        let enabled: BTreeSet<CorpId> = corps(6).into_iter().collect();
        let all: Vec<CorpId> = enabled.iter().cloned().collect();
        let keeping = &all[..2];
        let busy: BTreeSet<CorpId> = keeping.iter().cloned().collect();
        let holdings = Holdings { enabled: &enabled, keeping, busy: &busy, releasing: 0 };
        let cool = Cooldowns::new(Duration::from_secs(3));
        let now = Instant::now();
        let stale = live(&[("a", 2), ("b", 2), ("c", 0)]);
        let step =
            |l: &[(String, u64)]| plan(Members { me: "a", live: l }, holdings, &cool, now).unwrap().step;
        assert!(matches!(step(&stale), Step::Spread(_)));
        let owner = |o: &str| Some(format!("7:{o}"));
        let values = [owner("a"), owner("a"), owner("b"), owner("b"), owner("c"), owner("c")];
        let fresh = loads_from_leases(&stale, &values);
        assert_eq!(fresh, live(&[("a", 2), ("b", 2), ("c", 2)]));
        assert_eq!(step(&fresh), Step::Hold);
        // A real imbalance survives the check (c holds nothing, one corp is free).
        let values = [owner("a"), owner("a"), owner("b"), owner("b"), None, Some("junk".into())];
        assert_eq!(loads_from_leases(&stale, &values), live(&[("a", 2), ("b", 2), ("c", 0)]));
    }

    #[test]
    fn the_share_decides_the_step() {
        let cases = [
            // Not a member (yet): no decision at all.
            Case { enabled: 3, live: &[("b", 0)], held: 0, spread_due: true, target: 0, step: "none" },
            // Alone: take everything.
            Case { enabled: 3, live: &[("a", 0)], held: 0, spread_due: true, target: 3, step: "take 3 of 3" },
            // Two instances, 4 corps: share 2, holding 1 → one more of the 3 not held.
            Case {
                enabled: 4,
                live: &[("a", 1), ("b", 2)],
                held: 1,
                spread_due: true,
                target: 2,
                step: "take 1 of 3",
            },
            // Above the share: give back the extras.
            Case {
                enabled: 4,
                live: &[("a", 4), ("b", 0)],
                held: 4,
                spread_due: true,
                target: 2,
                step: "give 2",
            },
            // At the share: hold.
            Case {
                enabled: 4,
                live: &[("a", 2), ("b", 2)],
                held: 2,
                spread_due: true,
                target: 2,
                step: "hold",
            },
            // 7 corps on 3: share 3; 3/3/1 → the first most loaded gives one back.
            Case {
                enabled: 7,
                live: &[("a", 3), ("b", 3), ("c", 1)],
                held: 3,
                spread_due: true,
                target: 3,
                step: "spread",
            },
            // … but not when another instance is first among the most loaded.
            Case {
                enabled: 7,
                live: &[("b", 3), ("a", 3), ("c", 1)],
                held: 3,
                spread_due: true,
                target: 3,
                step: "hold",
            },
            // … and not twice within a lease time.
            Case {
                enabled: 7,
                live: &[("a", 3), ("b", 3), ("c", 1)],
                held: 3,
                spread_due: false,
                target: 3,
                step: "hold",
            },
            // Our own load counts as what we hold, not our stale heartbeat.
            // (the heartbeat said 3, one was given back since: b is the first most loaded).
            Case {
                enabled: 7,
                live: &[("a", 3), ("b", 3), ("c", 1)],
                held: 2,
                spread_due: true,
                target: 3,
                step: "take 1 of 5",
            },
            // No corps: nothing to take.
            Case {
                enabled: 0,
                live: &[("a", 0), ("b", 0)],
                held: 0,
                spread_due: true,
                target: 0,
                step: "hold",
            },
        ];
        let t0 = Instant::now();
        for (i, c) in cases.iter().enumerate() {
            let all = corps(c.enabled);
            let enabled: BTreeSet<CorpId> = all.iter().cloned().collect();
            let keeping: Vec<CorpId> = all[..c.held].to_vec();
            let busy: BTreeSet<CorpId> = keeping.iter().cloned().collect();
            let mut cool = Cooldowns::new(Duration::from_secs(30));
            if !c.spread_due {
                cool.spread(t0);
            }
            let live = live(c.live);
            let got = plan(
                Members { me: "a", live: &live },
                Holdings { enabled: &enabled, keeping: &keeping, busy: &busy, releasing: 0 },
                &cool,
                t0 + Duration::from_secs(1),
            );
            match got {
                None => assert_eq!(c.step, "none", "case {i}"),
                Some(p) => {
                    assert_eq!((p.target, short(&p.step).as_str()), (c.target, c.step), "case {i}");
                }
            }
        }
    }

    #[test]
    fn no_evening_out_while_a_release_is_in_flight() {
        // a held 4 of 4, gave 2 back (still releasing), b's heartbeat still says 0.
        let all = corps(4);
        let enabled: BTreeSet<CorpId> = all.iter().cloned().collect();
        let keeping = all[..2].to_vec();
        let busy: BTreeSet<CorpId> = enabled.clone();
        let live = live(&[("a", 4), ("b", 0)]);
        let cool = Cooldowns::new(Duration::from_secs(30));
        let step = |releasing| {
            plan(
                Members { me: "a", live: &live },
                Holdings { enabled: &enabled, keeping: &keeping, busy: &busy, releasing },
                &cool,
                Instant::now(),
            )
            .map(|p| short(&p.step))
        };
        assert_eq!(step(2).as_deref(), Some("hold"), "b has not taken the two yet");
        assert_eq!(step(0).as_deref(), Some("spread"), "the same loads with nothing in flight");
    }

    #[test]
    fn extras_and_candidates_follow_the_rendezvous_rank() {
        let all = corps(12);
        let enabled: BTreeSet<CorpId> = all.iter().cloned().collect();
        let live = live(&[("a", 0), ("b", 0), ("c", 0)]);
        let names: Vec<String> = live.iter().map(|(n, _)| n.clone()).collect();
        let cool = Cooldowns::new(Duration::from_secs(30));
        let now = Instant::now();
        let busy = BTreeSet::new();
        let p = plan(
            Members { me: "a", live: &live },
            Holdings { enabled: &enabled, keeping: &[], busy: &busy, releasing: 0 },
            &cool,
            now,
        )
        .unwrap();
        let Step::Take { want, candidates } = p.step else { panic!("{:?}", p.step) };
        assert_eq!(want, 4);
        let ranks: Vec<(bool, u64)> = candidates.iter().map(|c| rank("a", &names, c)).collect();
        assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "best first: {ranks:?}");
        assert!(ranks[0].0, "a home corp comes first");
        // Holding everything, the corps given back are the least wanted ones.
        let p = plan(
            Members { me: "a", live: &live },
            Holdings { enabled: &enabled, keeping: &all, busy: &enabled, releasing: 0 },
            &cool,
            now,
        )
        .unwrap();
        let Step::GiveBack(extras) = p.step else { panic!("{:?}", p.step) };
        assert_eq!(extras.len(), 8);
        let worst_kept =
            all.iter().filter(|c| !extras.contains(c)).map(|c| rank("a", &names, c)).min().unwrap();
        assert!(extras.iter().all(|c| rank("a", &names, c) <= worst_kept));
    }

    #[test]
    fn busy_and_cooling_corps_are_not_candidates() {
        let all = corps(4);
        let enabled: BTreeSet<CorpId> = all.iter().cloned().collect();
        let busy: BTreeSet<CorpId> = [all[0].clone()].into();
        let now = Instant::now();
        let mut cool = Cooldowns::new(Duration::from_secs(30));
        cool.gave_back(all[1].clone(), now);
        let live = live(&[("a", 0)]);
        let p = plan(
            Members { me: "a", live: &live },
            Holdings { enabled: &enabled, keeping: &[], busy: &busy, releasing: 0 },
            &cool,
            now,
        )
        .unwrap();
        let Step::Take { want, mut candidates } = p.step else { panic!("{:?}", p.step) };
        candidates.sort();
        assert_eq!((want, candidates), (4, vec![all[2].clone(), all[3].clone()]));
    }

    /// The cooldowns run on tokio's clock: paused here, moved by hand.
    #[tokio::test(start_paused = true)]
    async fn cooldowns_last_one_lease_time() {
        let period = Duration::from_secs(30);
        let corp = CorpId::new("ww1").unwrap();
        let mut cool = Cooldowns::new(period);
        cool.gave_back(corp.clone(), Instant::now());
        cool.spread(Instant::now());
        tokio::time::advance(period - Duration::from_millis(1)).await;
        cool.expire(Instant::now());
        assert!(cool.cooling(&corp, Instant::now()));
        assert!(!cool.spread_due(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!cool.cooling(&corp, Instant::now()));
        assert!(cool.spread_due(Instant::now()));
        cool.expire(Instant::now());
        assert!(cool.given_back.is_empty());
    }
}
