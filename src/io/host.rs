//! What the host says about itself: its name, the `EC_*` environment
//! variables, and what a name resolves to. [`crate::core::identity`] decides
//! what to make of it.

use std::net::{IpAddr, ToSocketAddrs};

/// The environment variable `ec_ctl` exports with the node name.
pub const ENV_NODE_NAME: &str = "EC_NODE_NAME";
/// The environment variable `ec_ctl` exports with the subcluster.
pub const ENV_SUB_CLUSTER: &str = "EC_SUB_CLUSTER";

/// The system host name, if it can be read and is UTF-8.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is a valid writable buffer of the length passed; gethostname
    // writes at most that many bytes and does not keep the pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end]).ok().map(str::to_string)
}

/// An environment variable, if set and UTF-8.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The addresses `name` resolves to (empty when it does not resolve).
pub fn resolve(name: &str) -> Vec<IpAddr> {
    (name, 0u16)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// The local wall-clock time as `HH:MM:SS`, as the reference console's prompt shows it.
pub fn local_hms() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = libc::time_t::try_from(now).unwrap_or(0);
    // SAFETY: localtime_r reads `t` and fills `tm`, both valid locals; a zeroed
    // tm is a valid value to be overwritten.
    #[allow(unsafe_code)]
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return format!(
                "{:02}:{:02}:{:02}",
                (now / 3600) % 24,
                (now / 60) % 60,
                now % 60
            );
        }
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// The first of `count` consecutive loopback ports that are free for both
/// TCP and UDP, searched from a start derived from the process id within
/// 10000..32000 (below Linux's ephemeral range, where outgoing connections
/// would take ports from under us). For demos and benchmarks that run whole
/// clusters on one host; the ports can still be taken between this check
/// and their use, which callers report as an ordinary bind error.
pub fn free_loopback_ports(count: u16) -> std::io::Result<u16> {
    use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    let count32 = u32::from(count.max(1));
    let start = (std::process::id().wrapping_mul(7919) % SPAN) / count32 * count32;
    let blocks = SPAN / count32;
    for block in 0..blocks {
        let first = LOW + (start + block * count32) % (blocks * count32);
        let free = (first..first + count32).all(|p| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(p).unwrap_or(0)));
            TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
        });
        if free {
            return Ok(u16::try_from(first).unwrap_or(0));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {count} consecutive free loopback ports"),
    ))
}
