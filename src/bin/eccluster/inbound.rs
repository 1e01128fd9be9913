//! `eccluster node --count-inbound ADDR`: a stand-in for an MTA's SMTP
//! listener, so that a node run on its own (the demo, the multi-process
//! tests) has real inbound connections to count. Every accepted TCP
//! connection adds one for its peer's address to the node's `inbound_cidr`
//! tree, as an MTA does on its hot path, and takes it away when the peer
//! closes. Nothing is read or answered.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use eccluster::node::Node;
use eccluster::shared::cidr::CidrCounts;
use socket2::{Domain, Socket, Type};

/// Listens on `addr` and counts its connections in `inbound_cidr`, on a
/// thread of its own for as long as the process runs.
pub fn count_inbound(node: &Node, addr: &str) -> Result<(), String> {
    let tree = node
        .shared_cidr("inbound_cidr")
        .ok_or("--count-inbound needs Replicate \"inbound_cidr\" in the cluster configuration")?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("--count-inbound {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("ecc-inbound".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Ok(peer) = stream.peer_addr() {
                    hold(Arc::clone(&tree), stream, peer.ip());
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Counts one connection until its peer closes it.
fn hold(tree: Arc<CidrCounts>, mut stream: TcpStream, peer: IpAddr) {
    tree.increment(peer);
    let spawned = std::thread::Builder::new().spawn({
        let tree = Arc::clone(&tree);
        move || {
            let mut buf = [0u8; 512];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            tree.decrement(peer);
        }
    });
    if spawned.is_err() {
        tree.decrement(peer);
    }
}

/// A connection to `to` from the local address `from` (any port): how the
/// demo and the tests open connections from many addresses on one host
/// (every 127/8 address is the loopback's).
pub fn connect_from(from: IpAddr, to: SocketAddr) -> Result<TcpStream, String> {
    let socket =
        Socket::new(Domain::for_address(to), Type::STREAM, None).map_err(|e| e.to_string())?;
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    socket
        .connect(&to.into())
        .map_err(|e| format!("connect {to} from {from}: {e}"))?;
    Ok(socket.into())
}
