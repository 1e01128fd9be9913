//! Options that must be equal on every node, and their digest.
//!
//! A cluster whose nodes disagree on, say, `duravip_balance_set_size` never
//! converges, and the reference only warns about it in prose. Every heartbeat
//! carries one small hash per option listed here, so a node can name the
//! option and the node that differ instead of failing silently.

use crate::config::Config;
use crate::config::reader::OptionValue;

/// The options compared, in digest order. Appending keeps older digests'
/// positions; a node with a shorter digest simply compares fewer options.
pub const AGREED_OPTIONS: [&str; 8] = [
    "cluster_group",
    "heartbeats_per_sec",
    "suspect_heartbeats",
    "down_heartbeats",
    "duravip_balance_set_size",
    "view_mature_time",
    "view_balance_interval",
    "quorum",
];

/// One FNV-1a hash per option of [`AGREED_OPTIONS`], over its rendered value.
pub fn config_digest(config: &Config) -> Vec<u32> {
    let c = &config.cluster;
    let values = [
        c.cluster_group.render(),
        c.heartbeats_per_sec.render(),
        c.suspect_heartbeats.render(),
        c.down_heartbeats.render(),
        c.duravip_balance_set_size.render(),
        c.view_mature_time.render(),
        c.view_balance_interval.render(),
        c.quorum.render(),
    ];
    values.iter().map(|v| fnv1a32(v.as_bytes())).collect()
}

/// The names of the options on which two digests differ.
pub fn differing(mine: &[u32], theirs: &[u32]) -> Vec<&'static str> {
    AGREED_OPTIONS
        .iter()
        .zip(mine.iter().zip(theirs))
        .filter(|(_, (a, b))| a != b)
        .map(|(name, _)| *name)
        .collect()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, LoadedConfig};

    fn digest(text: &str) -> Vec<u32> {
        config_digest(&LoadedConfig::parse(text, Format::Ecelerity).unwrap().config)
    }

    #[test]
    fn a_differing_option_is_named() {
        let a = digest("cluster { duravip_balance_set_size = 2 }");
        let b = digest("cluster { duravip_balance_set_size = 3 nodename = \"x\" }");
        assert_eq!(a.len(), AGREED_OPTIONS.len());
        assert_eq!(differing(&a, &b), ["duravip_balance_set_size"]);
        assert!(differing(&a, &a).is_empty());
    }
}
