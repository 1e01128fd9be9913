//! The hot path's maps hash with the core's hash (`core::hash`), seeded per
//! structure at random: their keys (client addresses, recipient domains,
//! cache keys) are chosen by the network's other side, so bucket placement
//! must not be predictable.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

pub use crate::core::hash::{Mix, Seeded};

/// A seed no one outside this process can know.
pub fn random_seed() -> Seeded {
    Seeded::with_seed(RandomState::new().hash_one(0x5eed_u64))
}
