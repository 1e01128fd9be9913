//! A synchronous rtnetlink socket: one request, its complete answer.
//!
//! Shared by the address plumber and the neighbour lookups; both are
//! request/answer exchanges with the kernel, made on the calling thread
//! (the engine thread, or a console thread), so nothing here is async.

use std::collections::HashMap;
use std::fmt;
use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A failed netlink request: the kernel's errno and what we were doing.
///
/// It travels inside an [`io::Error`] whose kind follows the errno; get it
/// back with `err.get_ref().and_then(|e| e.downcast_ref::<NetlinkError>())`
/// when the number itself matters.
#[derive(Debug)]
pub struct NetlinkError {
    /// The positive errno the kernel answered.
    pub errno: i32,
    /// What was asked, e.g. `adding 10.1.1.1/32 on eth1`.
    pub context: String,
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "netlink: {}: {}",
            self.context,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for NetlinkError {}

impl NetlinkError {
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(self.errno).kind(), self)
    }
}

/// The errno inside an error from this module, if it came from the kernel.
pub fn errno_of(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<NetlinkError>())
            .map(|e| e.errno)
    })
}

/// Read buffer size. Kernel dump messages are at most about 32 KiB; a
/// datagram that does not fit is reported rather than silently truncated.
const RECV_BUF: usize = 64 * 1024;

/// A `NETLINK_ROUTE` socket connected to the kernel.
#[derive(Debug)]
pub(crate) struct RtNetlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl RtNetlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // Connected to the kernel (port 0): nothing else can write to us.
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(RtNetlink {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends one request and collects the answer: the messages of a dump,
    /// or nothing for an acknowledged change. A negative acknowledgement
    /// becomes a [`NetlinkError`] naming `context`.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        context: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let fail = |errno: i32| NetlinkError {
            errno,
            context: context(),
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|e| fail(e.raw_os_error().unwrap_or(libc::EIO)))?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            let len = self
                .socket
                .recv(&mut &mut self.buf[..], libc::MSG_TRUNC)
                .map_err(|e| fail(e.raw_os_error().unwrap_or(libc::EIO)))?;
            if len > self.buf.len() {
                return Err(fail(libc::EMSGSIZE));
            }
            let mut offset = 0;
            while offset < len {
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..len])
                        .map_err(|_| fail(libc::EBADMSG))?;
                let msg_len = msg.header.length as usize;
                if msg_len == 0 {
                    return Err(fail(libc::EBADMSG));
                }
                offset += (msg_len + 3) & !3;
                if msg.header.sequence_number != seq {
                    // A late answer to an earlier request (one we gave up
                    // on after an error): not ours to read.
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(fail(code.get().abs())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => {
                        answers.push(m);
                        if !dump {
                            // Not expected for our requests, but a single
                            // answer with no ACK to follow is complete.
                            return Ok(answers);
                        }
                    }
                    NetlinkPayload::Overrun(_) => return Err(fail(libc::ENOBUFS)),
                    _ => {}
                }
            }
        }
    }

    /// The index of the interface called `name`.
    pub(crate) fn ifindex(&mut self, name: &str) -> Result<u32, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answers = self.request(RouteNetlinkMessage::GetLink(msg), 0, &|| {
            format!("looking up interface {name}")
        })?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| NetlinkError {
                errno: libc::ENODEV,
                context: format!("looking up interface {name}"),
            })
    }

    /// Interface index → name, for every interface.
    pub(crate) fn interface_names(&mut self) -> Result<HashMap<u32, String>, NetlinkError> {
        let answers = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &|| "listing interfaces".to_string(),
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?;
                    Some((l.header.index, name))
                }
                _ => None,
            })
            .collect())
    }
}
