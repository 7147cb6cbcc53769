//! Everything WeCom: the SDK, keys, messages, ingest, media.

pub mod sdk;
