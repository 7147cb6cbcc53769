//! Corp leases, fencing tokens and instance membership in Redis.
//!
//! Keys (`P` is `redis_prefix`, default `wework`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:lease:<corpid>` | string with PX expiry | `"<token>:<instance>"` of the current owner |
//! | `P:fence:<corpid>` | counter | the last fencing token issued for the corp |
//! | `P:instances` | sorted set | live instances, scored by heartbeat expiry (Redis time, ms) |
//! | `P:load` | hash | instance → corps it holds (for even spreading) |
//!
//! Every step is one Lua script, so it is atomic in Redis: taking a lease
//! (`SET NX` + `INCR` of the fence counter, never below the database's fence),
//! renewing it (only if the value is still ours), giving it back (only if
//! ours), and heartbeating (with Redis's own clock, so instances on machines
//! with skewed clocks agree on who is alive).
//!
//! The token is then written to `corp_state.fence` (`Store::claim_fence`, the
//! one fencing rule: token and owner) before the worker starts, and every batch commit checks it under `SELECT … FOR
//! UPDATE` (`Store::commit_batch`). A stalled old owner whose lease expired can
//! therefore neither insert nor move the cursor once the new owner claimed.

use std::sync::LazyLock;

use redis::Script;
use redis::aio::MultiplexedConnection;

use crate::store::CorpId;

/// Redis key names under one prefix.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
    /// The producers' list (`change_queue`).
    pub queue: String,
    /// The change log every instance reads (`<change_queue>:log`).
    pub log: String,
}

impl RedisKeys {
    /// Keys for `prefix` and the change queue `queue`.
    pub fn new(prefix: &str, queue: &str) -> RedisKeys {
        RedisKeys { prefix: prefix.to_owned(), queue: queue.to_owned(), log: format!("{queue}:log") }
    }

    /// The lease of a corp.
    pub fn lease(&self, corpid: &str) -> String {
        format!("{}:lease:{corpid}", self.prefix)
    }

    /// The fencing-token counter of a corp.
    pub fn fence(&self, corpid: &str) -> String {
        format!("{}:fence:{corpid}", self.prefix)
    }

    /// Live instances.
    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// Corps held per instance.
    pub fn load(&self) -> String {
        format!("{}:load", self.prefix)
    }
}

/// A lease this instance holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token.
    pub token: u64,
    /// The stored value, `"<token>:<instance>"`.
    pub value: String,
}

impl Lease {
    /// The lease value for `token` held by `instance`.
    pub fn new(token: u64, instance: &str) -> Lease {
        Lease { token, value: format!("{token}:{instance}") }
    }

    /// Parses a stored value into (token, instance).
    pub fn parse(value: &str) -> Option<(u64, &str)> {
        let (t, who) = value.split_once(':')?;
        Some((t.parse().ok()?, who))
    }
}

/// What taking a lease gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Ours, with a fresh token.
    Acquired(Lease),
    /// Someone holds it (the stored value).
    Held(String),
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours, expiry pushed back.
    Renewed,
    /// It had expired (Redis unreachable or restarted) and no newer token was
    /// issued since: it is ours again, with the same token.
    Reclaimed,
    /// Someone else holds it, or a newer token was issued: ours no more.
    Lost,
}

/// `SET NX` the lease with a new token from `INCR`, raised above the
/// database's fence (`ARGV[3]`) when Redis lost its counter.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if held then return {0, held} end
local t = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if t <= floor then
  t = floor + 1
  redis.call('SET', KEYS[2], string.format('%d', t))
end
local v = string.format('%d', t) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return {1, v}
",
    )
});

/// Renews many leases at once. KEYS: n lease keys then n fence keys;
/// ARGV: ttl ms, then n values, then n tokens. Per lease: 1 renewed,
/// 2 reclaimed (expired, no newer token issued), 0 lost.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local v = ARGV[1 + i]
  local cur = redis.call('GET', KEYS[i])
  if cur == v then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  elseif cur then
    out[i] = 0
  else
    local issued = tonumber(redis.call('GET', KEYS[n + i]) or '0')
    local mine = tonumber(ARGV[1 + n + i])
    if issued <= mine then
      if issued < mine then redis.call('SET', KEYS[n + i], ARGV[1 + n + i]) end
      redis.call('SET', KEYS[i], v, 'PX', ARGV[1])
      out[i] = 2
    else
      out[i] = 0
    end
  end
end
return out
",
    )
});

/// Deletes the lease only if it is still ours.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// Raises the fence counter to at least ARGV[1].
static RAISE_FENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
",
    )
});

/// Heartbeat: registers `ARGV[1]` until now + ttl (Redis time), records its
/// load, drops instances whose heartbeat expired, and returns the live ones
/// as [name, load, name, load, …].
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local alive = {}
local out = {}
for _, name in ipairs(live) do
  alive[name] = true
  out[#out + 1] = name
  out[#out + 1] = redis.call('HGET', KEYS[2], name) or '0'
end
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not alive[name] then redis.call('HDEL', KEYS[2], name) end
end
return out
",
    )
});

/// Takes the lease of `corpid` for `ttl_ms` if nobody holds it.
pub async fn acquire(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    corpid: &str,
    instance: &str,
    ttl_ms: u64,
    db_fence: u64,
) -> redis::RedisResult<Acquire> {
    let (ok, value): (i64, String) = ACQUIRE
        .key(keys.lease(corpid))
        .key(keys.fence(corpid))
        .arg(instance)
        .arg(ttl_ms)
        .arg(db_fence)
        .invoke_async(&mut conn)
        .await?;
    if ok == 1 {
        let (token, _) = Lease::parse(&value).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::TypeError, "unexpected lease value", value.clone()))
        })?;
        Ok(Acquire::Acquired(Lease { token, value }))
    } else {
        Ok(Acquire::Held(value))
    }
}

/// Renews `leases` (corp, lease) in one round trip.
pub async fn renew(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    leases: &[(CorpId, Lease)],
    ttl_ms: u64,
) -> redis::RedisResult<Vec<Renewal>> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let mut inv = RENEW.prepare_invoke();
    for (c, _) in leases {
        inv.key(keys.lease(c.as_str()));
    }
    for (c, _) in leases {
        inv.key(keys.fence(c.as_str()));
    }
    inv.arg(ttl_ms);
    for (_, l) in leases {
        inv.arg(&l.value);
    }
    for (_, l) in leases {
        inv.arg(l.token);
    }
    let codes: Vec<i64> = inv.invoke_async(&mut conn).await?;
    Ok(codes
        .into_iter()
        .map(|c| match c {
            1 => Renewal::Renewed,
            2 => Renewal::Reclaimed,
            _ => Renewal::Lost,
        })
        .collect())
}

/// Gives a lease back if it is still ours; true when it was.
pub async fn release(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    corpid: &str,
    lease: &Lease,
) -> redis::RedisResult<bool> {
    let n: i64 = RELEASE.key(keys.lease(corpid)).arg(&lease.value).invoke_async(&mut conn).await?;
    Ok(n == 1)
}

/// Raises a corp's token counter to at least `at_least`.
pub async fn raise_fence(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    corpid: &str,
    at_least: u64,
) -> redis::RedisResult<()> {
    let _: i64 = RAISE_FENCE.key(keys.fence(corpid)).arg(at_least).invoke_async(&mut conn).await?;
    Ok(())
}

/// A live instance as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Instance name.
    pub name: String,
    /// Corps it holds.
    pub load: u64,
    /// The database it archives into (`Store::database_identity`).
    pub database: String,
}

/// Heartbeats `instance`, which holds `load` corps of `database`; returns the
/// live instances.
pub async fn heartbeat(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    instance: &str,
    ttl_ms: u64,
    load: usize,
    database: &str,
) -> redis::RedisResult<Vec<Member>> {
    let flat: Vec<String> = HEARTBEAT
        .key(keys.instances())
        .key(keys.load())
        .arg(instance)
        .arg(ttl_ms)
        .arg(format!("{load} {database}"))
        .invoke_async(&mut conn)
        .await?;
    Ok(flat
        .chunks_exact(2)
        .map(|p| {
            let (load, database) = p[1].split_once(' ').unwrap_or((&p[1], ""));
            Member { name: p[0].clone(), load: load.parse().unwrap_or(0), database: database.to_owned() }
        })
        .collect())
}

/// Leaves the membership (clean shutdown), so the others rebalance at once.
pub async fn leave(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    instance: &str,
) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("ZREM")
        .arg(keys.instances())
        .arg(instance)
        .ignore()
        .cmd("HDEL")
        .arg(keys.load())
        .arg(instance)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
}

/// Lease values of `corpids` (None = free), in one round trip.
pub async fn owners(
    mut conn: MultiplexedConnection,
    keys: &RedisKeys,
    corpids: &[CorpId],
) -> redis::RedisResult<Vec<Option<String>>> {
    if corpids.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("MGET");
    for c in corpids {
        cmd.arg(keys.lease(c.as_str()));
    }
    cmd.query_async(&mut conn).await
}

/// Rendezvous (highest random weight) score of `instance` for `corpid`: each
/// corp's "home" is the live instance with the highest score, which keeps
/// instances from all reaching for the same free corps and keeps corps where
/// they are when membership changes.
pub fn score(instance: &str, corpid: &str) -> u64 {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(instance.as_bytes());
    h.update([0]);
    h.update(corpid.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("16-byte digest"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_values_round_trip() {
        let l = Lease::new(42, "host-a:7");
        assert_eq!(l.value, "42:host-a:7");
        assert_eq!(Lease::parse(&l.value), Some((42, "host-a:7")));
        assert_eq!(Lease::parse("x:y"), None);
        assert_eq!(Lease::parse("17"), None);
    }

    #[test]
    fn keys_share_the_prefix() {
        let k = RedisKeys::new("wwt", "wwt:q");
        assert_eq!(k.lease("ww1"), "wwt:lease:ww1");
        assert_eq!(k.fence("ww1"), "wwt:fence:ww1");
        assert_eq!(k.log, "wwt:q:log");
    }

    #[test]
    fn rendezvous_scores_differ_per_instance() {
        let corps: Vec<String> = (0..60).map(|i| format!("ww{i:016x}")).collect();
        let homes = |members: &[&str]| -> Vec<usize> {
            let mut n = vec![0; members.len()];
            for c in &corps {
                let best = (0..members.len()).max_by_key(|&i| score(members[i], c)).unwrap();
                n[best] += 1;
            }
            n
        };
        let n = homes(&["a", "b", "c"]);
        // Each instance is home to a fair share (60 corps / 3 ± noise).
        assert!(n.iter().all(|&x| (8..=32).contains(&x)), "{n:?}");
        assert_eq!(score("a", "ww1"), score("a", "ww1"));
        assert_ne!(score("a", "ww1"), score("b", "ww1"));
    }
}
