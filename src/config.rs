//! Settings: every one has a flag and an environment variable, and may also
//! come from an optional TOML file. Precedence: flag > environment > file >
//! built-in default. Parsed once into [`Config`]; everything below takes `&Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    #[default]
    Human,
    /// One JSON object per line on stderr (for log shippers).
    Json,
}

/// Global settings as given on the command line or in the environment.
/// `None` means "not given": the file or the default decides.
/// `Debug` prints no master key and no password (see the impl below).
#[derive(Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// Optional TOML file with any of these settings (keys as the long flag names, with `_`).
    #[arg(long, env = "WEWORK_ARCHIVE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MySQL/MariaDB URL [default: mysql://root@127.0.0.1:3306/wework_archive].
    #[arg(long, env = "DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Redis URL [default: redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Path of libWeWorkFinanceSdk_C.so [default: lib/libWeWorkFinanceSdk_C.so].
    #[arg(long, env = "WEWORK_SDK_LIB", global = true, value_name = "PATH")]
    pub sdk_lib: Option<PathBuf>,
    /// Media root [default: msgfile].
    #[arg(long, env = "MSGFILE_DIR", global = true, value_name = "DIR")]
    pub msgfile_dir: Option<PathBuf>,
    /// Full-text search index (one folder per corp; rebuildable by `search rebuild`) [default: search-index].
    #[arg(long, env = "SEARCH_INDEX_DIR", global = true, value_name = "DIR")]
    pub search_index_dir: Option<PathBuf>,
    /// HTTP listen address for health and metrics [default: 127.0.0.1:29090].
    #[arg(long, env = "HTTP_LISTEN", global = true, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Log format [default: human].
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Records per GetChatData call, 1..=1000 [default: 1000].
    #[arg(long, env = "WEWORK_PULL_LIMIT", global = true)]
    pub pull_limit: Option<u32>,
    /// Per-corp GetChatData calls per minute [default: 500; Tencent's documented ceiling is 600].
    #[arg(long, env = "WEWORK_CALLS_PER_MINUTE", global = true)]
    pub calls_per_minute: Option<u32>,
    /// Hours without progress before a corp raises an alarm [default: 24; records older than 5 days are lost].
    #[arg(long, env = "WEWORK_STALL_ALARM_HOURS", global = true)]
    pub stall_alarm_hours: Option<f64>,
    /// Threads for RSA and DecryptData [default: number of cores].
    #[arg(long, env = "WEWORK_DECRYPT_THREADS", global = true)]
    pub decrypt_threads: Option<usize>,
    /// Concurrent media downloads per corp [default: 2].
    #[arg(long, env = "WEWORK_MEDIA_CONCURRENCY", global = true)]
    pub media_concurrency: Option<usize>,
    /// Largest media file accepted for an item that states no size, in MiB
    /// (meeting voice calls, some emotions): a looping download stops there [default: 4096].
    #[arg(long, env = "WEWORK_MEDIA_MAX_UNSIZED_MIB", global = true, value_name = "MIB")]
    pub media_max_unsized_mib: Option<u64>,
    /// Most GetMediaData calls in flight per corp, parallel ranges included [default: 8].
    #[arg(long, env = "WEWORK_MEDIA_STREAMS_PER_CORP", global = true)]
    pub media_streams_per_corp: Option<usize>,
    /// Most GetMediaData calls in flight in this process, all corps together [default: 32].
    #[arg(long, env = "WEWORK_MEDIA_STREAMS_MAX", global = true)]
    pub media_streams_max: Option<usize>,
    /// Files at least this large (stated size) are fetched as parallel ranges [default: 64;
    /// smaller files are many, and the media workers already fetch those side by side].
    #[arg(long, env = "WEWORK_MEDIA_PARALLEL_MIN_MIB", global = true, value_name = "MIB")]
    pub media_parallel_min_mib: Option<u64>,
    /// Size of one range of a parallel download, in MiB [default: 4].
    #[arg(long, env = "WEWORK_MEDIA_RANGE_MIB", global = true, value_name = "MIB")]
    pub media_range_mib: Option<u64>,
    /// ffmpeg binary used to transcode voice AMR to MP3 [default: ffmpeg].
    #[arg(long, env = "FFMPEG", global = true, value_name = "PATH")]
    pub ffmpeg: Option<PathBuf>,
    /// Redis list of corp change events [default: wework:corp:changes].
    #[arg(long, env = "WEWORK_CHANGE_QUEUE", global = true)]
    pub change_queue: Option<String>,
    /// Prefix of the Redis keys for leases, fencing tokens and instances [default: wework].
    #[arg(long, env = "WEWORK_REDIS_PREFIX", global = true)]
    pub redis_prefix: Option<String>,
    /// Seconds between polls of corplist.update [default: 10].
    #[arg(long, env = "WEWORK_POLL_SECS", global = true)]
    pub poll_secs: Option<f64>,
    /// Seconds a corp lease lasts without renewal [default: 30].
    #[arg(long, env = "WEWORK_LEASE_SECS", global = true)]
    pub lease_secs: Option<f64>,
    /// Name of this instance in leases and metrics [default: hostname-pid].
    #[arg(long, env = "WEWORK_INSTANCE", global = true)]
    pub instance: Option<String>,
    /// Master key (64 hex chars or base64 of 32 bytes) sealing secrets and keys at rest.
    /// Prefer the environment or --master-key-file: a flag is visible in /proc/*/cmdline.
    #[arg(long, env = "WEWORK_MASTER_KEY", global = true, hide_env_values = true)]
    pub master_key: Option<String>,
    /// File holding the master key (`-` reads it from standard input).
    #[arg(long, env = "WEWORK_MASTER_KEY_FILE", global = true, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Listen address for what Feishu and browsers must reach (webhook, OAuth) [default: 127.0.0.1:29091].
    #[arg(long, env = "PUBLIC_LISTEN", global = true, value_name = "ADDR")]
    pub public_listen: Option<String>,
    /// URL under which PUBLIC_LISTEN is reached from outside [default: http://<PUBLIC_LISTEN>].
    #[arg(long, env = "PUBLIC_URL", global = true, value_name = "URL")]
    pub public_url: Option<String>,
    /// Feishu API base URL for apps added without --base-url [default: https://open.feishu.cn].
    #[arg(long, env = "FEISHU_BASE_URL", global = true, value_name = "URL")]
    pub feishu_base_url: Option<String>,
    /// POST the token hand-out JSON here after each app token refresh (push mode).
    #[arg(long = "token-push-url", env = "FEISHU_TOKEN_PUSH_URL", global = true, value_name = "URL")]
    pub feishu_token_push_url: Option<String>,
    /// Time zone of hand-out times, `+HH:MM`/`-HH:MM` or `UTC` [default: +08:00].
    #[arg(long, env = "FEISHU_TIMEZONE", global = true)]
    pub feishu_timezone: Option<String>,
    /// `source` of the token hand-out JSON [default: wework-archive].
    #[arg(long, env = "FEISHU_HANDOUT_SOURCE", global = true)]
    pub feishu_handout_source: Option<String>,
    /// `usage` of the token hand-out JSON [default: feishu-open-api].
    #[arg(long, env = "FEISHU_HANDOUT_USAGE", global = true)]
    pub feishu_handout_usage: Option<String>,
    /// `platform` of the token hand-out JSON [default: feishu].
    #[arg(long, env = "FEISHU_HANDOUT_PLATFORM", global = true)]
    pub feishu_handout_platform: Option<String>,
    /// Seconds a card authorization session stays open [default: 86400].
    #[arg(long, env = "FEISHU_AUTH_SESSION_SECS", global = true)]
    pub feishu_auth_session_secs: Option<f64>,
    /// Seconds an OAuth state (CSRF token) is valid [default: 600].
    #[arg(long, env = "FEISHU_OAUTH_STATE_SECS", global = true)]
    pub feishu_oauth_state_secs: Option<f64>,
    /// Scopes requested at user authorization (space-separated) [default: offline_access].
    #[arg(long, env = "FEISHU_OAUTH_SCOPE", global = true)]
    pub feishu_oauth_scope: Option<String>,
    /// Oldest event push accepted, by its signed timestamp, in seconds [default: 300].
    #[arg(long, env = "FEISHU_EVENT_MAX_AGE_SECS", global = true)]
    pub feishu_event_max_age_secs: Option<f64>,
    /// Also receive Feishu events over the long connection (a WebSocket `run` opens per app),
    /// for deployments Feishu cannot reach with a webhook [default: false].
    #[arg(long, env = "FEISHU_LONG_CONNECTION", global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub feishu_long_connection: Option<bool>,
    /// Multiply every documented Feishu rate limit by this: below 1 leaves room for other
    /// clients of the same app, above 1 only for tenants with raised limits [default: 1].
    #[arg(long, env = "FEISHU_RATE_SCALE", global = true)]
    pub feishu_rate_scale: Option<f64>,
    /// Meeting recordings (issue 13).
    #[command(flatten)]
    pub recordings: crate::feishu::recordings::settings::RecordingArgs,
    /// Scheduled docs backups (issue 14).
    #[command(flatten)]
    pub backup_schedule: crate::feishu::backup::settings::ScheduleArgs,
}

impl std::fmt::Debug for SettingsArgs {
    // The master key never reaches a log or a panic message; URLs lose their passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsArgs")
            .field("config", &self.config)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("sdk_lib", &self.sdk_lib)
            .field("msgfile_dir", &self.msgfile_dir)
            .field("http_listen", &self.http_listen)
            .field("instance", &self.instance)
            .field("master_key", &self.master_key.as_ref().map(|_| "***"))
            .field("master_key_file", &self.master_key_file)
            .finish_non_exhaustive()
    }
}

/// The same settings as a TOML file may give them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    redis_url: Option<String>,
    sdk_lib: Option<PathBuf>,
    msgfile_dir: Option<PathBuf>,
    search_index_dir: Option<PathBuf>,
    http_listen: Option<String>,
    log_format: Option<LogFormat>,
    pull_limit: Option<u32>,
    calls_per_minute: Option<u32>,
    stall_alarm_hours: Option<f64>,
    decrypt_threads: Option<usize>,
    media_concurrency: Option<usize>,
    media_max_unsized_mib: Option<u64>,
    media_streams_per_corp: Option<usize>,
    media_streams_max: Option<usize>,
    media_parallel_min_mib: Option<u64>,
    media_range_mib: Option<u64>,
    ffmpeg: Option<PathBuf>,
    change_queue: Option<String>,
    redis_prefix: Option<String>,
    poll_secs: Option<f64>,
    lease_secs: Option<f64>,
    instance: Option<String>,
    master_key: Option<String>,
    master_key_file: Option<PathBuf>,
    public_listen: Option<String>,
    public_url: Option<String>,
    feishu_base_url: Option<String>,
    feishu_token_push_url: Option<String>,
    feishu_timezone: Option<String>,
    feishu_handout_source: Option<String>,
    feishu_handout_usage: Option<String>,
    feishu_handout_platform: Option<String>,
    feishu_auth_session_secs: Option<f64>,
    feishu_oauth_state_secs: Option<f64>,
    feishu_oauth_scope: Option<String>,
    feishu_event_max_age_secs: Option<f64>,
    feishu_long_connection: Option<bool>,
    feishu_recording_max_wait_secs: Option<f64>,
    feishu_recording_poll_secs: Option<f64>,
    feishu_recording_max_poll_secs: Option<f64>,
    feishu_recording_workers: Option<usize>,
    feishu_recording_claim_secs: Option<f64>,
    feishu_recording_max_attempts: Option<u32>,
    feishu_rate_scale: Option<f64>,
}

/// Resolved, validated settings. `Debug` redacts the URLs' passwords (the
/// master key lives in [`crate::secrets::SecretBox`], whose `Debug` shows none).
#[derive(Clone)]
pub struct Config {
    /// MySQL URL (the password, if any, is never logged: see [`Config::database_url_redacted`]).
    pub database_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// SDK path.
    pub sdk_lib: PathBuf,
    /// Media root.
    pub msgfile_dir: PathBuf,
    /// Full-text search index root.
    pub search_index_dir: PathBuf,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Log format.
    pub log_format: LogFormat,
    /// Records per GetChatData call.
    pub pull_limit: u32,
    /// Per-corp GetChatData calls per minute.
    pub calls_per_minute: u32,
    /// Stall alarm threshold.
    pub stall_alarm: Duration,
    /// Decrypt threads.
    pub decrypt_threads: usize,
    /// Media downloads per corp.
    pub media_concurrency: usize,
    /// Largest file accepted for a media item without a stated size, in bytes.
    pub media_max_unsized_bytes: u64,
    /// GetMediaData calls in flight per corp (issue #16).
    pub media_streams_per_corp: usize,
    /// GetMediaData calls in flight in the process.
    pub media_streams_max: usize,
    /// Stated size from which a file is fetched as parallel ranges, in bytes.
    pub media_parallel_min_bytes: u64,
    /// Bytes per range of a parallel download (a multiple of the 512 KiB page).
    pub media_range_bytes: u64,
    /// ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// Redis change-queue key.
    pub change_queue: String,
    /// Prefix of the Redis lease, fence and membership keys.
    pub redis_prefix: String,
    /// corplist.update poll interval.
    pub poll_interval: Duration,
    /// Lease time.
    pub lease_ttl: Duration,
    /// This instance's name.
    pub instance: String,
    /// Seals secrets at rest (plaintext pass-through without a master key).
    pub secrets: crate::secrets::SecretBox,
    /// Listen address of the public endpoint (webhook, OAuth).
    pub public_listen: SocketAddr,
    /// URL the public endpoint is reached under (no trailing slash).
    pub public_url: String,
    /// Feishu settings.
    pub feishu: FeishuSettings,
    /// Meeting recording settings.
    pub recordings: crate::feishu::recordings::settings::RecordingSettings,
    /// Scheduled docs backups.
    pub backup_schedule: crate::feishu::backup::settings::ScheduleSettings,
}

/// Feishu settings (see the flags of the same names).
#[derive(Debug, Clone)]
pub struct FeishuSettings {
    /// Base URL for apps added without one.
    pub base_url: String,
    /// Push-mode target of the token hand-out.
    pub token_push_url: Option<String>,
    /// Zone of hand-out times.
    pub timezone: chrono::FixedOffset,
    /// Hand-out `source`.
    pub handout_source: String,
    /// Hand-out `usage`.
    pub handout_usage: String,
    /// Hand-out `platform`.
    pub handout_platform: String,
    /// Card session lifetime.
    pub auth_session_ttl: Duration,
    /// OAuth state lifetime.
    pub oauth_state_ttl: Duration,
    /// Scopes requested at authorization.
    pub oauth_scope: String,
    /// Oldest accepted push.
    pub event_max_age: Duration,
    /// Events also over the long connection.
    pub long_connection: bool,
    /// Multiplies every documented rate limit.
    pub rate_scale: f64,
}

/// Default public listen address.
pub const DEFAULT_PUBLIC_LISTEN: &str = "127.0.0.1:29091";
/// Default Feishu API base.
pub const DEFAULT_FEISHU_BASE_URL: &str = "https://open.feishu.cn";

/// Parses `+08:00`, `-05:30`, `UTC` or `Z`.
pub fn parse_utc_offset(text: &str) -> anyhow::Result<chrono::FixedOffset> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(chrono::FixedOffset::east_opt(0).expect("zero offset"));
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => bail!("time zone {text:?} must be +HH:MM, -HH:MM or UTC"),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
        (Ok(h), Ok(m)) if h <= 14 && m < 60 => (h, m),
        _ => bail!("time zone {text:?} must be +HH:MM, -HH:MM or UTC"),
    };
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).context("time zone out of range")
}

/// Defaults named in DEVELOPERS.md's conventions.
pub const DEFAULT_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/wework_archive";
/// Default Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default SDK path.
pub const DEFAULT_SDK_LIB: &str = "lib/libWeWorkFinanceSdk_C.so";
/// Default HTTP listen address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:29090";

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{name} must be a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    /// Resolves flags/environment over the optional file over the defaults.
    pub fn resolve(args: &SettingsArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileSettings::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field)
            };
        }
        let pull_limit = pick!(pull_limit).unwrap_or(1000);
        if !(1..=1000).contains(&pull_limit) {
            bail!("pull_limit must be 1..=1000 (the API's limit), got {pull_limit}");
        }
        let calls_per_minute = pick!(calls_per_minute).unwrap_or(500);
        if calls_per_minute == 0 {
            bail!("calls_per_minute must be at least 1");
        }
        let http_listen_raw = pick!(http_listen).unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
        let http_listen = http_listen_raw.parse().with_context(|| {
            format!("http_listen {http_listen_raw:?} is not an address like 127.0.0.1:29090")
        })?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let decrypt_threads = pick!(decrypt_threads).unwrap_or(cores);
        let media_concurrency = pick!(media_concurrency).unwrap_or(2);
        if decrypt_threads == 0 || media_concurrency == 0 {
            bail!("decrypt_threads and media_concurrency must be at least 1");
        }
        let media_max_unsized_mib = pick!(media_max_unsized_mib).unwrap_or(4096);
        if media_max_unsized_mib == 0 {
            bail!("media_max_unsized_mib must be at least 1");
        }
        let media_streams_per_corp = pick!(media_streams_per_corp).unwrap_or(8);
        let media_streams_max = pick!(media_streams_max).unwrap_or(32);
        if media_streams_per_corp == 0 || media_streams_max == 0 {
            bail!("media_streams_per_corp and media_streams_max must be at least 1");
        }
        let media_parallel_min_mib = pick!(media_parallel_min_mib).unwrap_or(64);
        let media_range_mib = pick!(media_range_mib).unwrap_or(4);
        if media_range_mib == 0 || media_range_mib > 1024 {
            bail!("media_range_mib must be 1..=1024, got {media_range_mib}");
        }
        let database_url = pick!(database_url).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !database_url.starts_with("mysql://") {
            bail!("database_url must be a mysql:// URL");
        }
        let redis_url = pick!(redis_url).unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("unix://")) {
            bail!("redis_url must be a redis:// URL");
        }
        // The master key: the flag or environment, else a file named by flag,
        // environment or config file, else the config file's own value.
        let master_key = match (&args.master_key, pick!(master_key_file)) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(path)) => Some(read_secret_file(&path).context("master_key_file")?),
            (None, None) => file.master_key.clone(),
        };
        let public_listen_raw = pick!(public_listen).unwrap_or_else(|| DEFAULT_PUBLIC_LISTEN.to_owned());
        let public_listen: SocketAddr = public_listen_raw.parse().with_context(|| {
            format!("public_listen {public_listen_raw:?} is not an address like 127.0.0.1:29091")
        })?;
        let public_url = pick!(public_url)
            .unwrap_or_else(|| format!("http://{public_listen}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("public_url must be an http:// or https:// URL");
        }
        let feishu_base_url = pick!(feishu_base_url)
            .unwrap_or_else(|| DEFAULT_FEISHU_BASE_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let feishu = FeishuSettings {
            base_url: feishu_base_url,
            token_push_url: pick!(feishu_token_push_url).filter(|u| !u.trim().is_empty()),
            timezone: parse_utc_offset(&pick!(feishu_timezone).unwrap_or_else(|| "+08:00".to_owned()))?,
            handout_source: pick!(feishu_handout_source).unwrap_or_else(|| "wework-archive".to_owned()),
            handout_usage: pick!(feishu_handout_usage).unwrap_or_else(|| "feishu-open-api".to_owned()),
            handout_platform: pick!(feishu_handout_platform).unwrap_or_else(|| "feishu".to_owned()),
            auth_session_ttl: secs(
                "feishu_auth_session_secs",
                pick!(feishu_auth_session_secs).unwrap_or(86400.0),
            )?,
            oauth_state_ttl: secs(
                "feishu_oauth_state_secs",
                pick!(feishu_oauth_state_secs).unwrap_or(600.0),
            )?,
            oauth_scope: pick!(feishu_oauth_scope).unwrap_or_else(|| "offline_access".to_owned()),
            event_max_age: secs(
                "feishu_event_max_age_secs",
                pick!(feishu_event_max_age_secs).unwrap_or(300.0),
            )?,
            long_connection: pick!(feishu_long_connection).unwrap_or(false),
            rate_scale: match pick!(feishu_rate_scale).unwrap_or(1.0) {
                v if v.is_finite() && v > 0.0 => v,
                v => bail!("feishu_rate_scale must be a positive number, got {v}"),
            },
        };
        Ok(Config {
            recordings: crate::feishu::recordings::settings::RecordingSettings::resolve(
                &args.recordings.or(crate::feishu::recordings::settings::RecordingArgs {
                    feishu_recording_max_wait_secs: file.feishu_recording_max_wait_secs,
                    feishu_recording_poll_secs: file.feishu_recording_poll_secs,
                    feishu_recording_max_poll_secs: file.feishu_recording_max_poll_secs,
                    feishu_recording_workers: file.feishu_recording_workers,
                    feishu_recording_claim_secs: file.feishu_recording_claim_secs,
                    feishu_recording_max_attempts: file.feishu_recording_max_attempts,
                }),
            )?,
            backup_schedule: crate::feishu::backup::settings::ScheduleSettings::resolve(
                &args.backup_schedule,
            )?,
            public_listen,
            public_url,
            feishu,
            database_url,
            redis_url,
            sdk_lib: pick!(sdk_lib).unwrap_or_else(|| PathBuf::from(DEFAULT_SDK_LIB)),
            msgfile_dir: pick!(msgfile_dir).unwrap_or_else(|| PathBuf::from("msgfile")),
            search_index_dir: pick!(search_index_dir).unwrap_or_else(|| PathBuf::from("search-index")),
            http_listen,
            log_format: pick!(log_format).unwrap_or_default(),
            pull_limit,
            calls_per_minute,
            stall_alarm: secs("stall_alarm_hours", pick!(stall_alarm_hours).unwrap_or(24.0) * 3600.0)?,
            decrypt_threads,
            media_concurrency,
            media_max_unsized_bytes: media_max_unsized_mib.saturating_mul(1 << 20),
            media_streams_per_corp,
            media_streams_max,
            media_parallel_min_bytes: media_parallel_min_mib.saturating_mul(1 << 20),
            media_range_bytes: media_range_mib << 20,
            ffmpeg: pick!(ffmpeg).unwrap_or_else(|| PathBuf::from("ffmpeg")),
            change_queue: pick!(change_queue).unwrap_or_else(|| "wework:corp:changes".to_owned()),
            redis_prefix: pick!(redis_prefix).unwrap_or_else(|| "wework".to_owned()),
            poll_interval: secs("poll_secs", pick!(poll_secs).unwrap_or(10.0))?,
            lease_ttl: secs("lease_secs", pick!(lease_secs).unwrap_or(30.0))?,
            instance: pick!(instance).unwrap_or_else(default_instance),
            secrets: crate::secrets::SecretBox::from_setting(master_key.as_deref())?,
        })
    }

    /// The database URL with any password replaced, for logs.
    pub fn database_url_redacted(&self) -> String {
        redact_url(&self.database_url)
    }
}

/// Replaces the password in `scheme://user:password@host` with `***`.
///
/// The password may itself hold `@` (unencoded, as admins paste them), so the
/// user information ends at the LAST `@` before the query string; the user
/// name ends at the first `:`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match before_query.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{query}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &redact_url(&self.redis_url))
            .field("sdk_lib", &self.sdk_lib)
            .field("msgfile_dir", &self.msgfile_dir)
            .field("search_index_dir", &self.search_index_dir)
            .field("http_listen", &self.http_listen)
            .field("log_format", &self.log_format)
            .field("pull_limit", &self.pull_limit)
            .field("calls_per_minute", &self.calls_per_minute)
            .field("stall_alarm", &self.stall_alarm)
            .field("decrypt_threads", &self.decrypt_threads)
            .field("media_concurrency", &self.media_concurrency)
            .field("media_max_unsized_bytes", &self.media_max_unsized_bytes)
            .field("media_streams_per_corp", &self.media_streams_per_corp)
            .field("media_streams_max", &self.media_streams_max)
            .field("media_parallel_min_bytes", &self.media_parallel_min_bytes)
            .field("media_range_bytes", &self.media_range_bytes)
            .field("ffmpeg", &self.ffmpeg)
            .field("change_queue", &self.change_queue)
            .field("redis_prefix", &self.redis_prefix)
            .field("poll_interval", &self.poll_interval)
            .field("lease_ttl", &self.lease_ttl)
            .field("instance", &self.instance)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// Reads a secret from a file, or from standard input for `-`; one trailing
/// newline is dropped (files written by `echo` and editors end with one).
/// Secrets that come this way never appear in `/proc/*/cmdline`.
pub fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// The settings each subcommand reads, by subcommand name (`corp`, `sim`…).
/// `--help` of a subcommand lists only these (the rest stay accepted, so a
/// shared config file or environment keeps working everywhere).
fn settings_used(subcommand: &str) -> Option<Vec<&'static str>> {
    const COMMON: [&str; 2] = ["config", "log_format"];
    const SEAL: [&str; 2] = ["master_key", "master_key_file"];
    const INGEST: [&str; 6] =
        ["sdk_lib", "pull_limit", "calls_per_minute", "stall_alarm_hours", "decrypt_threads", "instance"];
    const MEDIA: [&str; 9] = [
        "msgfile_dir",
        "media_concurrency",
        "media_max_unsized_mib",
        "media_streams_per_corp",
        "media_streams_max",
        "media_parallel_min_mib",
        "media_range_mib",
        "ffmpeg",
        "instance",
    ];
    let set = |parts: &[&[&'static str]]| Some(parts.concat());
    match subcommand {
        "migrate" => set(&[&COMMON, &["database_url"]]),
        "corp" => set(&[&COMMON, &["database_url", "redis_url", "change_queue"], &SEAL]),
        "pull" => set(&[&COMMON, &["database_url"], &SEAL, &INGEST]),
        "redecrypt" => set(&[&COMMON, &["database_url", "sdk_lib", "decrypt_threads"], &SEAL]),
        "status" => set(&[&COMMON, &["database_url"], &SEAL]),
        "media" => set(&[&COMMON, &["database_url", "sdk_lib"], &SEAL, &MEDIA]),
        "sdk-check" => set(&[&COMMON, &["sdk_lib"]]),
        "bench" => set(&[&COMMON, &["database_url"], &SEAL, &INGEST, &MEDIA]),
        "sim" => set(&[&COMMON]),
        "search" => set(&[&COMMON, &["database_url", "search_index_dir"], &SEAL]),
        "export" => set(&[&COMMON, &["database_url", "msgfile_dir"], &SEAL]),
        // run, demo: everything.
        _ => None,
    }
}

/// Hides, in each subcommand's `--help` (and its subcommands'), the global
/// settings that subcommand never reads. Each such setting gets a hidden copy
/// in the subcommand, which clap's propagation of global arguments then
/// leaves alone; values given there still reach the settings.
pub fn hide_unused_settings(mut cmd: clap::Command) -> clap::Command {
    let global: Vec<clap::Arg> = cmd.get_arguments().filter(|a| a.is_global_set()).cloned().collect();
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in names {
        let Some(used) = settings_used(&name) else { continue };
        let hidden: Vec<clap::Arg> = global
            .iter()
            .filter(|a| !used.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd = cmd.mut_subcommand(&name, |sub| sub.args(hidden));
    }
    cmd
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "host".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

fn load_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_conventions() {
        let c = Config::resolve(&SettingsArgs::default()).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.redis_url, DEFAULT_REDIS_URL);
        assert_eq!(c.sdk_lib, PathBuf::from(DEFAULT_SDK_LIB));
        assert_eq!(c.msgfile_dir, PathBuf::from("msgfile"));
        assert_eq!(c.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(c.pull_limit, 1000);
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "redis_url = \"redis://file:1\"\npull_limit = 200\nmsgfile_dir = \"/srv/m\"\n")
            .unwrap();
        let args = SettingsArgs {
            config: Some(path.clone()),
            redis_url: Some("redis://flag:2".into()),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.redis_url, "redis://flag:2");
        assert_eq!(c.pull_limit, 200);
        assert_eq!(c.msgfile_dir, PathBuf::from("/srv/m"));

        std::fs::write(&path, "nonsense_key = 1\n").unwrap();
        let err = Config::resolve(&args).unwrap_err();
        assert!(format!("{err:#}").contains("nonsense_key"), "{err:#}");
    }

    #[test]
    fn recording_settings_come_from_the_file_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "feishu_recording_max_wait_secs = 3600\nfeishu_recording_workers = 5\n\
             feishu_recording_poll_secs = 2.5\nfeishu_recording_max_attempts = 3\n",
        )
        .unwrap();
        let mut args = SettingsArgs { config: Some(path.clone()), ..Default::default() };
        args.recordings.feishu_recording_workers = Some(7);
        let r = Config::resolve(&args).unwrap().recordings;
        assert_eq!(r.max_wait, Duration::from_secs(3600));
        assert_eq!(r.poll, Duration::from_millis(2500));
        assert_eq!(r.max_attempts, 3);
        assert_eq!(r.workers, 7, "the flag wins over the file");
        assert_eq!(r.claim_ttl, Duration::from_secs(60), "the default where neither says");
        std::fs::write(&path, "feishu_recording_workers = 0\n").unwrap();
        args.recordings.feishu_recording_workers = None;
        assert!(Config::resolve(&args).is_err(), "a bad value from the file is refused too");
    }

    #[test]
    fn bad_values_are_refused() {
        let args = SettingsArgs { pull_limit: Some(1001), ..Default::default() };
        assert!(Config::resolve(&args).is_err());
        let args = SettingsArgs { http_listen: Some("nope".into()), ..Default::default() };
        assert!(Config::resolve(&args).is_err());
    }

    #[test]
    fn public_and_feishu_defaults() {
        let c = Config::resolve(&SettingsArgs::default()).unwrap();
        assert_eq!(c.public_listen.to_string(), DEFAULT_PUBLIC_LISTEN);
        assert_eq!(c.public_url, "http://127.0.0.1:29091");
        assert_eq!(c.feishu.base_url, DEFAULT_FEISHU_BASE_URL);
        assert_eq!(c.feishu.timezone.local_minus_utc(), 8 * 3600);
        let args = SettingsArgs { public_url: Some("https://arch.example/".into()), ..Default::default() };
        assert_eq!(Config::resolve(&args).unwrap().public_url, "https://arch.example");
        assert_eq!(parse_utc_offset("-05:30").unwrap().local_minus_utc(), -(5 * 3600 + 30 * 60));
        assert!(parse_utc_offset("Europe/Paris").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("mysql://root:s3cret@db:3306/x"), "mysql://root:***@db:3306/x");
        assert_eq!(redact_url("mysql://root@db/x"), "mysql://root@db/x");
    }
}
