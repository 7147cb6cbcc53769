//! `/metrics` in the Prometheus text exposition format (version 0.0.4),
//! written by hand: families with `# HELP` and `# TYPE`, escaped label values.
//!
//! Three sources:
//! - this process's ingest counters ([`IngestStats`]): records fetched and
//!   stored, records by decrypt status, GetChatData latency and errors by code;
//! - this process's control-plane state ([`ControlStats`]): Redis connected,
//!   leases held, change events handled, reloads, redecrypt passes;
//! - this process's media workers ([`MediaStats`]): files, bytes, chunks,
//!   verification failures, retries, transcodes, errors by code;
//! - the database, queried at scrape time with a short deadline and cached for
//!   a few seconds ([`DbSnapshot`]): cursor and cursor age per corp, alarms,
//!   undecryptable records by reason, media jobs by state with their bytes.
//!   These are the same on every instance (they describe the shared archive).
//!
//! [`IngestStats`]: crate::wecom::ingest::IngestStats
//! [`ControlStats`]: crate::control::ControlStats
//! [`MediaStats`]: crate::wecom::media::MediaStats

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{AppState, DB_TIMEOUT};
use crate::store::metrics_facts::MetricsFacts;
use crate::store::{Store, StoreError};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long database-derived numbers are reused.
const DB_CACHE: Duration = Duration::from_secs(2);

/// Metric kinds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_sum` and `_count` of observations.
    Summary,
    /// `_bucket{le}`, `_sum` and `_count`.
    Histogram,
}

/// A text-format writer that keeps families well-formed.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    families: HashSet<String>,
}

impl Exposition {
    /// Starts a family; each family is declared once, before its samples.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "{name}");
        if !self.families.insert(name.to_owned()) {
            return;
        }
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample (`name` may carry a `_sum`/`_count` suffix of its family).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Formats a sample value (integers without a fraction; `+Inf`, `-Inf`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// What a scrape reads from the database.
#[derive(Debug, Clone)]
pub struct DbSnapshot {
    /// When it was read.
    pub at: Instant,
    /// Whether the queries answered in time.
    pub ok: bool,
    /// corplist, corp_state and media_jobs as the store reads them.
    pub facts: MetricsFacts,
    /// Hash chain heads per corp.
    pub chain: Vec<crate::store::chain::ChainHead>,
}

impl DbSnapshot {
    /// What a scrape shows when the database did not answer: nothing but `ok = false`.
    fn failed() -> DbSnapshot {
        DbSnapshot { at: Instant::now(), ok: false, facts: MetricsFacts::default(), chain: Vec::new() }
    }
}

async fn read_db(store: &Store) -> Result<DbSnapshot, StoreError> {
    let facts = store.metrics_facts().await?;
    let chain = store.chain_heads().await?;
    Ok(DbSnapshot { at: Instant::now(), ok: true, facts, chain })
}

async fn db_snapshot(state: &AppState) -> DbSnapshot {
    let mut cache = state.db_cache.lock().await;
    if let Some(s) = cache.as_ref()
        && s.at.elapsed() < DB_CACHE
    {
        return s.clone();
    }
    let snap = match tokio::time::timeout(DB_TIMEOUT, read_db(&state.store)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!("/metrics: reading the database failed: {e}");
            DbSnapshot::failed()
        }
        Err(_) => {
            tracing::warn!("/metrics: the database did not answer within {DB_TIMEOUT:?}");
            DbSnapshot::failed()
        }
    };
    *cache = Some(snap.clone());
    snap
}

/// Renders every metric.
pub async fn render(state: &AppState) -> String {
    let db = db_snapshot(state).await;
    let mut e = Exposition::default();
    process_metrics(&mut e, state);
    ingest_metrics(&mut e, state);
    control_metrics(&mut e, state);
    if let Some(media) = &state.media {
        media_metrics(&mut e, media);
    }
    db_metrics(&mut e, &db);
    if let Some(feishu) = &state.feishu {
        feishu_metrics(&mut e, feishu).await;
    }
    e.finish()
}

/// The Feishu modules: authorization, tokens, events, hand-outs. Session and
/// user-token counts come from the database (the same on every instance).
async fn feishu_metrics(e: &mut Exposition, f: &crate::feishu::Feishu) {
    use crate::feishu::FeishuStats;
    let now = crate::feishu::now_s();
    let counts = tokio::time::timeout(DB_TIMEOUT, async {
        let sessions = f.store.auth_session_counts(now).await?;
        let users = f.store.count_active_user_tokens(now).await?;
        Ok::<_, StoreError>((sessions, users))
    })
    .await;
    if let Ok(Ok((sessions, users))) = counts {
        e.family(
            "wework_feishu_auth_sessions",
            Kind::Gauge,
            "Card authorization sessions: total, active (pending), expired.",
        );
        e.sample("wework_feishu_auth_sessions", &[("state", "total")], sessions.total as f64);
        e.sample("wework_feishu_auth_sessions", &[("state", "active")], sessions.active as f64);
        e.sample("wework_feishu_auth_sessions", &[("state", "expired")], sessions.expired as f64);
        e.single(
            "wework_feishu_user_tokens_active",
            Kind::Gauge,
            "Authorized users with an unexpired access token.",
            users as f64,
        );
    }
    if let Ok(Ok(c)) = tokio::time::timeout(DB_TIMEOUT, f.store.recording_counts()).await {
        e.family("wework_feishu_recordings", Kind::Gauge, "Meeting recording jobs by state (issue 13).");
        for st in crate::store::feishu_recordings::RecordingState::ALL {
            let n = c.by_state.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
            e.sample("wework_feishu_recordings", &[("state", st.as_str())], n as f64);
        }
        e.single(
            "wework_feishu_recording_bytes",
            Kind::Gauge,
            "Bytes of archived meeting recordings.",
            c.bytes_done as f64,
        );
    }
    e.single(
        "wework_feishu_recording_downloaded_bytes_total",
        Kind::Counter,
        "Recording bytes this process downloaded.",
        f.recordings.downloaded_bytes.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    let labelled = |e: &mut Exposition, name: &str, help: &str, label: &str, map: &std::sync::Mutex<_>| {
        e.family(name, Kind::Counter, help);
        for (k, v) in FeishuStats::snapshot(map) {
            e.sample(name, &[(label, &k)], v as f64);
        }
    };
    let s = &f.stats;
    labelled(
        e,
        "wework_feishu_auth_success_total",
        "User authorizations completed, by app.",
        "app",
        &s.auth_success,
    );
    labelled(
        e,
        "wework_feishu_auth_failures_total",
        "User authorizations that failed, by reason.",
        "reason",
        &s.auth_failure,
    );
    let h = s.auth_duration.lock().unwrap().clone();
    e.family(
        "wework_feishu_auth_duration_seconds",
        Kind::Histogram,
        "Seconds from /auth/start to a completed callback.",
    );
    for (i, bound) in crate::feishu::stats::AUTH_DURATION_BUCKETS.iter().enumerate() {
        let n = h.buckets.get(i).copied().unwrap_or(0);
        e.sample("wework_feishu_auth_duration_seconds_bucket", &[("le", &format_value(*bound))], n as f64);
    }
    e.sample("wework_feishu_auth_duration_seconds_bucket", &[("le", "+Inf")], h.count as f64);
    e.sample("wework_feishu_auth_duration_seconds_sum", &[], h.sum);
    e.sample("wework_feishu_auth_duration_seconds_count", &[], h.count as f64);
    labelled(
        e,
        "wework_feishu_token_refreshes_total",
        "Tokens fetched or refreshed from Feishu, by kind.",
        "kind",
        &s.token_refreshes,
    );
    labelled(
        e,
        "wework_feishu_token_refresh_failures_total",
        "Token fetches or refreshes that failed, by kind.",
        "kind",
        &s.token_refresh_failures,
    );
    labelled(
        e,
        "wework_feishu_events_accepted_total",
        "Webhook events stored, by type.",
        "event_type",
        &s.events_accepted,
    );
    labelled(
        e,
        "wework_feishu_events_refused_total",
        "Event pushes refused (webhook and long connection), by reason.",
        "reason",
        &s.events_refused,
    );
    labelled(
        e,
        "wework_feishu_token_handouts_total",
        "Token hand-outs, by key name ((refused) for bad keys).",
        "key",
        &s.handouts,
    );
    labelled(
        e,
        "wework_feishu_throttled_total",
        "Feishu calls answered 429, by route.",
        "route",
        &s.throttled,
    );
    labelled(
        e,
        "wework_feishu_long_connections_opened_total",
        "Feishu long connections (WebSocket event channels) opened, by app.",
        "app",
        &s.long_connections_opened,
    );
}

fn process_metrics(e: &mut Exposition, state: &AppState) {
    e.family("wework_instance_info", Kind::Gauge, "This instance: its name and version.");
    e.sample(
        "wework_instance_info",
        &[("name", &state.config.instance), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
}

fn ingest_metrics(e: &mut Exposition, state: &AppState) {
    let s = &state.ingest;
    e.single(
        "wework_messages_fetched_total",
        Kind::Counter,
        "Records received from GetChatData by this instance.",
        s.fetched.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "wework_messages_stored_total",
        Kind::Counter,
        "Records newly stored by this instance (duplicates not counted).",
        s.stored.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "wework_batches_committed_total",
        Kind::Counter,
        "Batches committed (rows and cursor in one transaction).",
        s.batches.load(Ordering::Relaxed) as f64,
    );
    e.family(
        "wework_records_committed_total",
        Kind::Counter,
        "Records committed by this instance, by decrypt status (ok, no_key, wrong_key, …).",
    );
    for ((corp, status), n) in s.by_status.lock().unwrap().iter() {
        e.sample("wework_records_committed_total", &[("corp", corp), ("decrypt_status", status)], *n as f64);
    }
    e.family("wework_pull_duration_seconds", Kind::Summary, "GetChatData call latency.");
    for (corp, (count, sum)) in s.pull_latency.lock().unwrap().iter() {
        e.sample("wework_pull_duration_seconds_sum", &[("corp", corp)], *sum);
        e.sample("wework_pull_duration_seconds_count", &[("corp", corp)], *count as f64);
    }
    e.family(
        "wework_pull_errors_total",
        Kind::Counter,
        "Failed GetChatData calls by code (SDK code, server errcode, or 0).",
    );
    for ((corp, code), n) in s.pull_errors.lock().unwrap().iter() {
        e.sample("wework_pull_errors_total", &[("corp", corp), ("code", &code.to_string())], *n as f64);
    }
    e.family(
        "wework_corp_setup_failing",
        Kind::Gauge,
        "1 while this instance's worker of the corp fails before pulling (see the corp's alarm).",
    );
    for corp in s.setup_failures.lock().unwrap().keys() {
        e.sample("wework_corp_setup_failing", &[("corp", corp)], 1.0);
    }
}

fn control_metrics(e: &mut Exposition, state: &AppState) {
    let c = &state.control;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    e.single(
        "wework_redis_connected",
        Kind::Gauge,
        "1 when the last Redis operation succeeded, 0 while Redis is unreachable.",
        if c.redis_connected.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
    );
    e.single(
        "wework_redis_connects_total",
        Kind::Counter,
        "Connections made to Redis.",
        get(&c.redis_connects),
    );
    e.single(
        "wework_redis_errors_total",
        Kind::Counter,
        "Redis operations that failed for lack of a connection or an answer.",
        get(&c.redis_errors),
    );
    e.family("wework_queue_events_total", Kind::Counter, "Change events handled, by change.");
    for (change, n) in c.queue_events.lock().unwrap().iter() {
        e.sample("wework_queue_events_total", &[("change", change)], *n as f64);
    }
    e.single(
        "wework_queue_invalid_total",
        Kind::Counter,
        "Change-queue entries ignored (neither a corp id nor a JSON event).",
        get(&c.queue_invalid),
    );
    e.single(
        "wework_queue_pumped_total",
        Kind::Counter,
        "Change-queue entries this instance moved from the list into the change log.",
        get(&c.queue_pumped),
    );
    let leases = c.leases.lock().unwrap().clone();
    e.single("wework_leases_held", Kind::Gauge, "Corp leases this instance holds.", leases.len() as f64);
    e.family("wework_lease_owned", Kind::Gauge, "1 for each corp whose lease this instance holds.");
    for corp in leases.keys() {
        e.sample("wework_lease_owned", &[("corp", corp)], 1.0);
    }
    e.family("wework_lease_token", Kind::Gauge, "Fencing token of each lease this instance holds.");
    for (corp, token) in &leases {
        e.sample("wework_lease_token", &[("corp", corp)], *token as f64);
    }
    e.single("wework_lease_acquired_total", Kind::Counter, "Leases taken.", get(&c.leases_acquired));
    e.single("wework_lease_lost_total", Kind::Counter, "Leases found taken over.", get(&c.leases_lost));
    e.single("wework_lease_released_total", Kind::Counter, "Leases given back.", get(&c.leases_released));
    e.single(
        "wework_lease_reclaimed_total",
        Kind::Counter,
        "Leases re-created with the same token after expiring while Redis was away.",
        get(&c.leases_reclaimed),
    );
    e.single(
        "wework_db_writable",
        Kind::Gauge,
        "1 while this instance can write to its database; 0 while it gives its corps away.",
        if c.db_writable.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
    );
    e.single(
        "wework_lease_given_away_total",
        Kind::Counter,
        "Leases given back because the database could not be written to.",
        get(&c.leases_given_away),
    );
    e.single(
        "wework_instances_live",
        Kind::Gauge,
        "Live instances seen in the last heartbeat.",
        get(&c.live_instances),
    );
    e.single("wework_lease_target", Kind::Gauge, "Corps this instance aims to hold.", get(&c.target));
    e.single(
        "wework_workers_running",
        Kind::Gauge,
        "Corp workers running in this instance.",
        get(&c.workers_running),
    );
    e.single(
        "wework_workers_missing",
        Kind::Gauge,
        "Held corps without a running worker (should be 0).",
        get(&c.workers_missing),
    );
    e.family(
        "wework_corp_reloads_total",
        Kind::Counter,
        "Corp worker restarts with fresh settings, by reason.",
    );
    for (reason, n) in c.reloads.lock().unwrap().iter() {
        e.sample("wework_corp_reloads_total", &[("reason", reason)], *n as f64);
    }
    e.single(
        "wework_update_flags_cleared_total",
        Kind::Counter,
        "corplist.update flags reset after a reload.",
        get(&c.update_flags_cleared),
    );
    e.single("wework_redecrypt_runs_total", Kind::Counter, "Redecrypt passes run.", get(&c.redecrypt_runs));
    e.single(
        "wework_redecrypt_completed_total",
        Kind::Counter,
        "Records decrypted by redecrypt passes.",
        get(&c.redecrypt_completed),
    );
    e.single(
        "wework_corplist_poll_errors_total",
        Kind::Counter,
        "corplist polls that failed.",
        get(&c.poll_errors),
    );
}

fn media_metrics(e: &mut Exposition, m: &crate::wecom::media::MediaStats) {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    e.single("wework_media_files_total", Kind::Counter, "Media files verified and placed.", get(&m.files));
    e.single(
        "wework_media_bytes_total",
        Kind::Counter,
        "Media bytes written to disk (all attempts).",
        get(&m.bytes),
    );
    e.single("wework_media_chunks_total", Kind::Counter, "GetMediaData chunks received.", get(&m.chunks));
    e.single(
        "wework_media_verify_failures_total",
        Kind::Counter,
        "Downloads discarded for a size or md5 mismatch.",
        get(&m.verify_failures),
    );
    e.single(
        "wework_media_retries_total",
        Kind::Counter,
        "GetMediaData calls retried after a transient error.",
        get(&m.retries),
    );
    e.single(
        "wework_media_ranged_files_total",
        Kind::Counter,
        "Download attempts of large files as parallel ranges.",
        get(&m.ranged_files),
    );
    e.single(
        "wework_media_ranges_done_total",
        Kind::Counter,
        "Ranges finished (durable).",
        get(&m.ranges_done),
    );
    e.single(
        "wework_media_ranges_reused_total",
        Kind::Counter,
        "Finished ranges a resumed download did not fetch again.",
        get(&m.ranges_reused),
    );
    e.single(
        "wework_media_range_streams_peak",
        Kind::Gauge,
        "The most range streams one file used at once.",
        get(&m.streams_peak),
    );
    e.single(
        "wework_media_transcoded_total",
        Kind::Counter,
        "Voice files transcoded to MP3.",
        get(&m.transcoded),
    );
    e.single(
        "wework_media_transcode_failures_total",
        Kind::Counter,
        "Voice transcodes that failed.",
        get(&m.transcode_failures),
    );
    e.family(
        "wework_media_errors_total",
        Kind::Counter,
        "Failed GetMediaData calls by SDK code (0: refused before the call).",
    );
    for ((corp, code), n) in m.errors.lock().unwrap().iter() {
        e.sample("wework_media_errors_total", &[("corp", corp), ("code", &code.to_string())], *n as f64);
    }
}

fn db_metrics(e: &mut Exposition, db: &DbSnapshot) {
    e.single(
        "wework_db_up",
        Kind::Gauge,
        "1 when the database answered this scrape's queries in time.",
        if db.ok { 1.0 } else { 0.0 },
    );
    if !db.ok {
        return;
    }
    e.single("wework_corps_enabled", Kind::Gauge, "Enabled corps in corplist.", db.facts.corps.0 as f64);
    e.single("wework_corps", Kind::Gauge, "Corps in corplist.", db.facts.corps.1 as f64);
    e.family("wework_corp_cursor", Kind::Gauge, "Committed cursor (largest stored seq) per corp.");
    for s in &db.facts.states {
        e.sample("wework_corp_cursor", &[("corp", &s.corpid)], s.seq as f64);
    }
    e.family("wework_corp_fence", Kind::Gauge, "Current fencing token per corp.");
    for s in &db.facts.states {
        e.sample("wework_corp_fence", &[("corp", &s.corpid)], s.fence as f64);
    }
    e.family("wework_corp_cursor_age_seconds", Kind::Gauge, "Seconds since the corp's cursor last moved.");
    for s in &db.facts.states {
        if let Some(a) = s.cursor_age {
            e.sample("wework_corp_cursor_age_seconds", &[("corp", &s.corpid)], a);
        }
    }
    e.family(
        "wework_corp_last_success_age_seconds",
        Kind::Gauge,
        "Seconds since the corp's last successful GetChatData (even if empty).",
    );
    for s in &db.facts.states {
        if let Some(a) = s.success_age {
            e.sample("wework_corp_last_success_age_seconds", &[("corp", &s.corpid)], a);
        }
    }
    e.family("wework_corp_alarm", Kind::Gauge, "1 while the corp's alarm is raised (stall, setup or media).");
    for s in &db.facts.states {
        e.sample("wework_corp_alarm", &[("corp", &s.corpid)], if s.alarm { 1.0 } else { 0.0 });
    }
    e.family(
        "wework_undecryptable_records",
        Kind::Gauge,
        "Stored records not decrypted (or not parsed), by reason.",
    );
    for s in &db.facts.states {
        for (reason, n) in &s.undecryptable {
            e.sample("wework_undecryptable_records", &[("corp", &s.corpid), ("reason", reason)], *n as f64);
        }
    }
    e.family("wework_media_jobs", Kind::Gauge, "Media jobs by state.");
    for (corp, state, n, _) in &db.facts.media {
        e.sample("wework_media_jobs", &[("corp", corp), ("state", state)], *n as f64);
    }
    e.family("wework_media_job_bytes", Kind::Gauge, "Sum of the stated sizes of media jobs, by state.");
    for (corp, state, _, bytes) in &db.facts.media {
        e.sample("wework_media_job_bytes", &[("corp", corp), ("state", state)], *bytes as f64);
    }
    e.family("wework_chain_length", Kind::Gauge, "Links in the corp's tamper-evidence hash chain.");
    for h in &db.chain {
        e.sample("wework_chain_length", &[("corp", &h.corpid)], h.pos as f64);
    }
    e.family(
        "wework_chain_head_info",
        Kind::Gauge,
        "The corp's hash chain head (label `head`, sha256 hex) and its length; anchor it elsewhere.",
    );
    for h in &db.chain {
        e.sample("wework_chain_head_info", &[("corp", &h.corpid), ("head", &h.head)], 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escapes_labels() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "Help with \\ and\nnewline.");
        e.sample("x_total", &[("a", "q\"uo\\te\nd")], 3.0);
        e.family("x_total", Kind::Counter, "declared twice: ignored");
        e.sample("x_total", &[("a", "b"), ("c", "d")], 0.25);
        e.single("y", Kind::Gauge, "Y.", f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nd\"} 3\nx_total{a=\"b\",c=\"d\"} 0.25\n\
             # HELP y Y.\n# TYPE y gauge\ny +Inf\n"
        );
    }

    #[test]
    fn media_range_counters_are_exposed() {
        let m = crate::wecom::media::MediaStats::default();
        crate::wecom::media::MediaStats::add(&m.ranges_done, 7);
        crate::wecom::media::MediaStats::add(&m.ranges_reused, 3);
        m.streams_peak.fetch_max(5, Ordering::Relaxed);
        let mut e = Exposition::default();
        media_metrics(&mut e, &m);
        let text = e.finish();
        for line in [
            "wework_media_ranges_done_total 7\n",
            "wework_media_ranges_reused_total 3\n",
            "# TYPE wework_media_range_streams_peak gauge\nwework_media_range_streams_peak 5\n",
            "wework_media_ranged_files_total 0\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn values_and_names() {
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-1.0), "-1");
        assert!(valid_name("wework_a:b_1") && !valid_name("1abc") && !valid_name("a-b"));
    }
}
