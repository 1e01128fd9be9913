//! The shell around the pure core: threads, sockets, the host's name and
//! environment, signals, the sealing of packets. It turns the world into inputs and carries out
//! outputs; it decides nothing.

pub mod control;
pub mod host;
pub mod runtime;
pub mod seal;
pub mod signals;
