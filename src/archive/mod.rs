//! The archive as its readers see it: accounts of the browser, tamper
//! evidence (a per-corp hash chain over the stored records and its verification).

pub mod accounts;
pub mod anchor;
pub mod chain;
pub mod export;
pub mod render;
pub mod search;
pub mod verify;
