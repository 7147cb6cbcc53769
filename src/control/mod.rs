//! The control plane: how admins' changes to corps reach running workers, and
//! how several `wework-archive run` instances share the corps.
//!
//! # Changes: reload one corp, never the process
//!
//! The seed tool restarted its whole process (through a Redis list and
//! supervisord) whenever a corp changed. Here only that corp's worker restarts,
//! with fresh settings and keys. Three paths lead there, from fastest to most
//! robust:
//!
//! 1. **The change queue** ([`events`], [`queue`]): `corp add/update/disable/
//!    enable/set-key` (and any admin tool) `LPUSH` an event onto a Redis list.
//!    Instances move the list's entries into a Redis stream with an atomic Lua
//!    script and every instance reads the whole stream, so the event reaches
//!    whichever instance holds the corp (and a new corp is taken at once by an
//!    instance below its share). No event is lost when an instance dies: an
//!    entry is either still in the list or already in the stream, and readers
//!    never remove anything. Latency: under a second.
//! 2. **The `update` flag**: an admin who edits `corplist` by hand sets the
//!    seed's `update` column to 1; the poll (`poll_interval`) reloads the corp
//!    and resets the flag. The CLI sets it too when Redis is down.
//! 3. **The poll itself** compares a digest of each held corp's row and keys
//!    with what its worker was started with, and reloads on a difference: a
//!    change is picked up even if its event was lost and nobody set the flag.
//!
//! A key added for a version that has undecryptable records starts
//! `redecrypt` for that corp (on `key_added`, when the keys' digest changed,
//! and whenever a worker starts and finds `no_key` records a stored key covers).
//!
//! # Many instances: leases and fencing
//!
//! Each corp is pulled by one instance at a time under a Redis lease
//! ([`lease`]) whose fencing token comes from `INCR P:fence:<corpid>` in the
//! same Lua script that takes the lease, so tokens grow across instances. The
//! token is written to `corp_state.fence` before the worker starts, and every
//! batch commit checks it under `SELECT … FOR UPDATE`: a stalled old owner can
//! never insert or move a cursor after a newer owner claimed. Leases last
//! `lease_ttl` (30 s) and are renewed every third of it; a dead instance's
//! corps are free when its leases expire and are taken at the next scan
//! (every `lease_ttl / 10`). Instances heartbeat into a sorted set; each aims
//! for `ceil(corps / instances)` corps, prefers the corps whose rendezvous
//! hash makes it their "home", gives back extras, and the most loaded one gives
//! one back when it holds two more than the least loaded one ([`balance`]
//! decides, the coordinator carries it out).
//!
//! # Redis down
//!
//! Workers keep pulling with the tokens they have (the database fence keeps
//! that safe even if another instance could reach Redis and took over), the
//! poll keeps reloading and stopping corps from the database, and the link
//! reconnects with capped backoff, logging the outage once and showing it as
//! `wework_redis_connected 0`. When Redis is back, leases that expired
//! meanwhile are reclaimed with the same token if no newer one was issued,
//! and every corp is reconciled with the database. New corps are only taken
//! while Redis is reachable, and not during the first lease time after an
//! outage: a Redis that restarted empty has forgotten every lease, and the
//! other instances need that long to reconnect and reclaim theirs.
//!
//! # Database unreachable
//!
//! An instance that cannot write to its database ([`dbhealth`]) gives every
//! lease back and leaves the membership within a third of the lease time, so
//! the healthy instances take its corps; it rejoins once the database answers.
//!
//! # Redis unreachable
//!
//! An instance that cannot reach Redis (started while it is down, or down for
//! a while) still takes corps nobody else is seen pulling, under the database
//! fence alone (`Coordinator::balance_without_redis`): a lone instance keeps
//! archiving, and instances that run through the outage are not fenced out.
//! When Redis is back those leases are reclaimed with the same token.

pub mod balance;
pub mod coordinator;
pub mod dbhealth;
pub mod events;
pub mod lease;
pub mod link;
pub mod queue;
pub mod seal;
pub mod stats;

pub use coordinator::Coordinator;
pub use stats::ControlStats;
