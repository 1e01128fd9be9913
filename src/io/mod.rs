//! The shell around the pure core: threads, sockets, the host's name and
//! environment, signals, the sealing of packets, the plumbing and
//! announcing of DuraVIP addresses. It turns the world into inputs and
//! carries out outputs; it decides nothing.

pub mod arp;
pub mod clock;
pub mod control;
pub mod events;
pub mod host;
pub mod logfiles;
pub mod loggroup;
pub mod logwriter;
pub mod mmove;
pub mod neigh;
mod netlink;
pub mod plumb;
pub mod replication;
pub mod runtime;
pub mod seal;
pub mod signals;
pub mod vip;
