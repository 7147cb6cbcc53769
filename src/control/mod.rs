//! The control plane: how admins' changes to corps reach running workers.

pub mod events;
