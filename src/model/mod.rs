//! Plain data shared across layers: types that import nothing of this crate, so
//! the store can name them without depending on the WeCom code that produces them.

pub mod media;
