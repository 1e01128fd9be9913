//! Typed configuration, its defaults, the TOML and ecelerity.conf readers, and validation.

pub mod ecelerity;
pub mod error;
pub mod tree;
