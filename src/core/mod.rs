//! The protocol brain: pure, deterministic state machines and renderers.
//!
//! Nothing here touches sockets, threads, clocks, the environment or
//! randomness: every function takes what it needs (including the time) as
//! arguments and returns what should happen. That is what lets tests drive a
//! whole cluster from a seed, and what lets the same logic run under the real
//! runtime (`io/`) and under the simulator.

pub mod announce;
pub mod console;
pub mod duravip;
pub mod hash;
pub mod identity;
pub mod logs;
pub mod membership;
pub mod mmove;
pub mod replicate;
pub mod wire;
