//! The integration tests: one binary (ripgrep style), one module per area.
//! They use the real SDK (fetched by scripts/fetch-sdk.sh), the simulator, and
//! real MariaDB and Redis (scripts/services.sh); nothing is mocked.

mod chain;
mod common;
mod control;
mod docs_backup;
mod feishu;
mod feishu_fake;
mod galera;
mod hostile;
mod ingest;
mod media;
mod media_distance;
mod ops;
mod recordings;
mod sdk;
mod search;
mod sim;
mod ui;
mod upgrade;
