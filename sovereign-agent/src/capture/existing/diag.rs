//! sock_diag over netlink: list the TCP sockets of the caller's network namespace, and hear
//! the kernel announce each TCP socket it destroys (with its final `tcp_info`).
use std::{io, net::IpAddr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla as _, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{nlas::Nla, ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

/// sock_diag multicast groups (include/uapi/linux/sock_diag.h), numbered from 1.
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
/// `INET_DIAG_CGROUP_ID` (Linux 5.7+): the cgroup v2 id the socket was created in, the one the
/// cgroup hooks judge it by.
const INET_DIAG_CGROUP_ID: u16 = 21;
/// Offsets in `struct tcp_info` (include/uapi/linux/tcp.h; fields are only ever appended).
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_BYTES_SENT: usize = 200;
const TCPI_BYTES_RETRANS: usize = 208;
/// Destroy announcements can come in bursts (every TCP socket of the namespace is announced).
const DESTROY_RCVBUF: usize = 4 << 20;

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub family: u16,
    /// `TCP_ESTABLISHED` = 1 ... `TCP_LISTEN` = 10 (include/net/tcp_states.h).
    pub state: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub cookie: u64,
    pub uid: u32,
    /// The socket's inode (0 once it has no file, as in destroy announcements).
    pub inode: u32,
    pub cgroup_id: Option<u64>,
    pub counters: Option<TcpCounters>,
}

/// Byte counts since the connection began, from `tcp_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpCounters {
    /// Payload octets sent once (`tcpi_bytes_sent` − `tcpi_bytes_retrans`; SYN and FIN take no
    /// payload). `None` before Linux 4.19.
    pub payload_sent: Option<u64>,
    /// Sequence space received (`tcpi_bytes_received`): the payload, plus one for the peer's
    /// FIN when it arrived before the socket was destroyed.
    pub received: u64,
}

pub const TCP_LISTEN: u8 = 10;

/// Every TCP socket of `family` (AF_INET or AF_INET6) in the namespace `socket` was opened in,
/// with its `tcp_info`.
pub fn dump(socket: &Socket, family: u8) -> io::Result<Vec<TcpSocket>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            // Everything but the time-wait and request minisockets, which have no process.
            states: StateFlags::all() - StateFlags::TIME_WAIT - StateFlags::SYN_RECV,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut found = Vec::new();
    let mut recv = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut recv[..], 0)?;
        if parse(&recv[..n], &mut found)? {
            return Ok(found);
        }
    }
}

/// A socket that hears every TCP socket of its namespace being destroyed.
pub fn destroy_listener() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    socket.add_membership(SKNLGRP_INET_TCP_DESTROY)?;
    socket.add_membership(SKNLGRP_INET6_TCP_DESTROY)?;
    // Needs CAP_NET_ADMIN for a buffer above rmem_max; the default is kept otherwise.
    let _ = socket.set_rx_buf_sz(DESTROY_RCVBUF);
    Ok(socket)
}

/// A socket for [`dump`] requests.
pub fn request_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Appends the sockets of one datagram of netlink messages to `found`; true at the end of a
/// dump. A kernel error message becomes the error.
pub fn parse(mut bytes: &[u8], found: &mut Vec<TcpSocket>) -> io::Result<bool> {
    while !bytes.is_empty() {
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let len = (message.header.length as usize).min(bytes.len());
        match message.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                found.push(socket_of(&r));
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => {
                return Err(e.code.map_or_else(
                    || io::Error::other("sock_diag error"),
                    |c| io::Error::from_raw_os_error(-c.get()),
                ))
            }
            _ => {}
        }
        if len == 0 {
            break;
        }
        // Messages are 4-byte aligned.
        bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
    }
    Ok(false)
}

fn socket_of(r: &InetResponse) -> TcpSocket {
    let id = &r.header.socket_id;
    let mut cgroup_id = None;
    let mut counters = None;
    for nla in &r.nlas {
        match nla {
            Nla::TcpInfo(info) => counters = tcp_counters(info),
            Nla::Other(other) if other.kind() == INET_DIAG_CGROUP_ID => {
                let mut value = vec![0u8; other.value_len()];
                other.emit_value(&mut value);
                cgroup_id = read_u64(&value, 0);
            }
            _ => {}
        }
    }
    TcpSocket {
        family: if r.header.family == AF_INET6 { 10 } else { 2 },
        state: r.header.state,
        src: id.source_address,
        sport: id.source_port,
        dst: id.destination_address,
        dport: id.destination_port,
        cookie: u64::from_ne_bytes(id.cookie),
        uid: r.header.uid,
        inode: r.header.inode,
        cgroup_id,
        counters,
    }
}

fn tcp_counters(info: &[u8]) -> Option<TcpCounters> {
    let received = read_u64(info, TCPI_BYTES_RECEIVED)?;
    let payload_sent = read_u64(info, TCPI_BYTES_SENT)
        .zip(read_u64(info, TCPI_BYTES_RETRANS))
        .map(|(sent, retrans)| sent.saturating_sub(retrans));
    Some(TcpCounters {
        payload_sent,
        received,
    })
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 8)?;
    Some(u64::from_ne_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_their_tcp_info_offsets() {
        let mut info = vec![0u8; 232];
        info[TCPI_BYTES_RECEIVED..][..8].copy_from_slice(&8u64.to_ne_bytes());
        info[TCPI_BYTES_SENT..][..8].copy_from_slice(&120u64.to_ne_bytes());
        info[TCPI_BYTES_RETRANS..][..8].copy_from_slice(&20u64.to_ne_bytes());
        assert_eq!(
            tcp_counters(&info),
            Some(TcpCounters {
                payload_sent: Some(100),
                received: 8
            })
        );
        // A kernel before 4.19: no bytes_sent.
        assert_eq!(
            tcp_counters(&info[..160]),
            Some(TcpCounters {
                payload_sent: None,
                received: 8
            })
        );
        assert_eq!(tcp_counters(&info[..100]), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut found = Vec::new();
        assert!(parse(&[0xff; 7], &mut found).is_err());
        assert!(!parse(&[], &mut found).unwrap());
        assert!(found.is_empty());
    }
}
