//! Everything WeCom: the SDK, keys, messages, ingest, media.
//!
//! Data flows one way: [`sdk`] pulls encrypted batches → [`keys`] unwraps each
//! record's random key → `sdk` decrypts → [`message`] reads fields and renders
//! text, [`media_refs`] finds media → [`ingest`] commits the batch and the
//! cursor to the store in one transaction, the media jobs included → [`media`]
//! downloads, verifies and places every file.

pub mod decrypt;
pub mod envelope;
pub mod ingest;
pub mod keys;
pub mod media;
pub mod media_refs;
pub mod message;
pub mod sdk;
