//! Connections already open when the agent starts. The kernel programs see a TCP connection
//! from its connect() on: one opened before they were attached (before an upgrade, a crash,
//! a restart) would never be reported, not even its end.
//!
//! So at start the agent asks the kernel (sock_diag over netlink) for the TCP sockets of every
//! network namespace a process is in, keeps those created in the watched cgroup or below it
//! (the socket's cgroup is what the hooks judge by), that are not the accepted side of a local
//! listener and that the programs have not seen connect, attributes each to the process that
//! holds it (/proc/PID/fd), and reports it as an `existing` flow, judged like a connect.
//!
//! Their ends come from the kernel's socket-destroy announcements (sock_diag's
//! `SKNLGRP_INET[6]_TCP_DESTROY` groups, heard in each namespace that has such a connection):
//! each carries the final `tcp_info`, so the `close` has the connection's byte counts since it
//! began, including what was exchanged before the agent started. A namespace's listener is
//! closed once its last existing connection has ended.
mod diag;
mod procfs;

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    net::IpAddr,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use netlink_sys::Socket;
use sovereign_agent_common::{
    FlowRecord, AF_INET, AF_INET6, CLOSE_FLAG_WAS_ESTABLISHED, IPPROTO_TCP,
};
use tokio::sync::mpsc;

use crate::event::EventKind;

use diag::{TcpSocket, TCP_LISTEN};

/// A flow step found outside the ring buffer, for the pipeline.
pub type Found = (EventKind, FlowRecord);

/// TCP states (include/net/tcp_states.h) in which the peer's FIN has been received.
const PEER_FIN_STATES: [u8; 3] = [
    8,  /* CLOSE_WAIT */
    9,  /* LAST_ACK */
    11, /* CLOSING */
];
const TCP_SYN_SENT: u8 = 2;

/// What the scan at start found, and what became of it.
#[derive(Debug, Default)]
pub struct Report {
    /// `existing` flows reported.
    pub connections: AtomicU64,
    /// Namespaces that could not be entered or listed (each logged).
    pub namespaces_failed: AtomicU64,
    /// Sockets of the watched cgroup no process holds any more (left to close unseen).
    pub unattributed: AtomicU64,
    /// Ends of existing connections that were not heard (the announcement queue overflowed).
    pub closes_lost: AtomicU64,
    /// Destroy announcements that did not come from the kernel (forged; ignored).
    pub forged_destroys: AtomicU64,
}

/// Where to look: the watched cgroup directory and /proc.
#[derive(Clone, Debug)]
pub struct Scope {
    pub watched: PathBuf,
    pub proc_root: PathBuf,
}

/// Scans in a thread of its own (it reads /proc and waits on netlink) and sends what it finds
/// to `found`, then follows each connection to its end. `seen_by_kernel` tells a socket whose
/// connect the programs reported (connected between attach and scan).
pub fn spawn(
    scope: Scope,
    seen_by_kernel: Box<dyn Fn(u64) -> bool + Send>,
    found: mpsc::Sender<Found>,
    report: Arc<Report>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("existing-scan".into())
        .spawn(move || {
            let followed = scan(&scope, &*seen_by_kernel, &found, &report);
            let followers: Vec<_> = followed
                .into_iter()
                .filter_map(|f| {
                    let (found, report) = (found.clone(), report.clone());
                    std::thread::Builder::new()
                        .name("existing-close".into())
                        .spawn(move || f.follow(&found, &report))
                        .ok()
                })
                .collect();
            for f in followers {
                let _ = f.join();
            }
        })
}

/// The existing connections of one namespace, waiting for their ends.
struct Followed {
    listener: Socket,
    requests: Socket,
    /// cookie → the `existing` record, and whether the peer's FIN was already in its counts.
    open: HashMap<u64, (FlowRecord, bool)>,
}

fn scan(
    scope: &Scope,
    seen_by_kernel: &dyn Fn(u64) -> bool,
    found: &mpsc::Sender<Found>,
    report: &Report,
) -> Vec<Followed> {
    let watched = cgroup_ids(&scope.watched);
    let own = procfs::netns_of(&scope.proc_root, std::process::id());
    let mut followed = Vec::new();
    let mut first_failure = None;
    let mut fail = |ns: u64, e: io::Error| {
        report.namespaces_failed.fetch_add(1, Ordering::Relaxed);
        first_failure.get_or_insert((ns, e));
    };
    for (ns, pids) in procfs::namespaces(&scope.proc_root) {
        let sockets = if Some(ns) == own {
            open_sockets()
        } else {
            in_namespace(&procfs::netns_path(&scope.proc_root, pids[0]), open_sockets)
        };
        // The listener is opened before the list is taken: a connection that ends in between
        // is announced, not missed.
        let (listener, requests) = match sockets {
            Ok(s) => s,
            Err(e) => {
                fail(ns, e);
                continue;
            }
        };
        let mut all = Vec::new();
        for family in [AF_INET as u8, AF_INET6 as u8] {
            match diag::dump(&requests, family) {
                Ok(mut s) => all.append(&mut s),
                Err(e) => fail(ns, e),
            }
        }
        let outbound = outbound_of(&all, &watched, seen_by_kernel);
        if outbound.is_empty() {
            continue;
        }
        let inodes: HashSet<u32> = outbound.iter().map(|s| s.inode).collect();
        let owners = procfs::socket_owners(&scope.proc_root, &pids, &inodes);
        let now = crate::clock::WallClock::monotonic_now_ns();
        let mut open = HashMap::new();
        for s in outbound {
            let Some(&pid) = owners.get(&s.inode) else {
                report.unattributed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let rec = record_of(s, pid, procfs::comm(&scope.proc_root, pid), now);
            if found.blocking_send((EventKind::Existing, rec)).is_err() {
                return Vec::new(); // the agent is stopping
            }
            report.connections.fetch_add(1, Ordering::Relaxed);
            open.insert(s.cookie, (rec, PEER_FIN_STATES.contains(&s.state)));
        }
        if !open.is_empty() {
            followed.push(Followed {
                listener,
                requests,
                open,
            });
        }
    }
    if let Some((ns, e)) = first_failure {
        tracing::warn!(
            namespaces = report.namespaces_failed.load(Ordering::Relaxed),
            first = ns,
            "connections open at start not listed in some network namespaces \
             (entering another needs CAP_SYS_ADMIN): {e}"
        );
    }
    tracing::info!(
        connections = report.connections.load(Ordering::Relaxed),
        unattributed = report.unattributed.load(Ordering::Relaxed),
        "connections open at start reported"
    );
    followed
}

/// The watched cgroup's sockets that are outbound connections the programs did not see.
fn outbound_of<'a>(
    all: &'a [TcpSocket],
    watched: &HashSet<u64>,
    seen_by_kernel: &dyn Fn(u64) -> bool,
) -> Vec<&'a TcpSocket> {
    // An accepted connection has its listener's local port (and is inbound).
    let listening: HashSet<(IpAddr, u16)> = all
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .map(|s| (s.src, s.sport))
        .collect();
    let accepted = |s: &TcpSocket| {
        listening.contains(&(s.src, s.sport))
            || listening
                .iter()
                .any(|(addr, port)| *port == s.sport && addr.is_unspecified())
    };
    all.iter()
        .filter(|s| s.state != TCP_LISTEN && s.dport != 0 && s.inode != 0)
        .filter(|s| s.cgroup_id.is_some_and(|id| watched.contains(&id)))
        .filter(|s| !accepted(s) && !seen_by_kernel(s.cookie))
        .collect()
}

fn record_of(s: &TcpSocket, pid: u32, comm: [u8; 16], now: u64) -> FlowRecord {
    FlowRecord {
        family: s.family,
        protocol: IPPROTO_TCP,
        ts_ns: now,
        pid,
        tgid: pid,
        uid: s.uid,
        cgroup_id: s.cgroup_id.unwrap_or(0),
        cookie: s.cookie,
        dst_addr: addr_bytes(s.dst),
        dst_port: s.dport,
        src_port: s.sport,
        flags: if s.state == TCP_SYN_SENT {
            0
        } else {
            CLOSE_FLAG_WAS_ESTABLISHED
        },
        comm,
        ..FlowRecord::default()
    }
}

fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

impl Followed {
    /// Waits for each connection's destroy announcement and reports its `close`.
    fn follow(mut self, found: &mpsc::Sender<Found>, report: &Report) {
        set_receive_timeout(&self.listener, Duration::from_millis(500));
        let mut buf = vec![0u8; 64 * 1024];
        while !self.open.is_empty() && !found.is_closed() {
            let n = match self.listener.recv_from(&mut &mut buf[..], 0) {
                // Only the kernel (port id 0) announces a destroyed socket. Anyone in this
                // network namespace can unicast to the listener's port id: a forged
                // announcement would end a live connection's record with the bytes it names.
                Ok((n, from)) if from.port_number() == 0 => n,
                Ok(_) => {
                    report.forged_destroys.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ENOBUFS: announcements were dropped. Whatever is gone now ended unheard.
                    tracing::warn!("socket-destroy announcements lost: {e}");
                    self.forget_ended(report);
                    continue;
                }
            };
            let mut destroyed = Vec::new();
            if diag::parse(&buf[..n], &mut destroyed).is_err() {
                continue;
            }
            for s in destroyed {
                let Some((rec, fin_counted)) = self.open.remove(&s.cookie) else {
                    continue;
                };
                let close = close_of(rec, &s, fin_counted);
                if found.blocking_send((EventKind::Close, close)).is_err() {
                    return;
                }
            }
        }
    }

    /// After lost announcements: the connections no longer listed ended unheard.
    fn forget_ended(&mut self, report: &Report) {
        let mut alive = HashSet::new();
        for family in [AF_INET as u8, AF_INET6 as u8] {
            match diag::dump(&self.requests, family) {
                Ok(s) => alive.extend(s.into_iter().map(|s| s.cookie)),
                Err(_) => return,
            }
        }
        let before = self.open.len();
        self.open.retain(|cookie, _| alive.contains(cookie));
        report
            .closes_lost
            .fetch_add((before - self.open.len()) as u64, Ordering::Relaxed);
    }
}

/// The `close` of an existing connection, from the counters in its destroy announcement.
fn close_of(existing: FlowRecord, destroyed: &TcpSocket, fin_counted_at_start: bool) -> FlowRecord {
    let counters = destroyed.counters;
    FlowRecord {
        ts_ns: crate::clock::WallClock::monotonic_now_ns(),
        bytes_sent: counters.and_then(|c| c.payload_sent).unwrap_or(0),
        // A FIN the peer had sent before the scan is known; one sent later is not (see
        // docs/events.md).
        bytes_received: counters.map_or(0, |c| {
            c.received.saturating_sub(u64::from(fin_counted_at_start))
        }),
        ..existing
    }
}

/// Every cgroup id at or below `dir` (a cgroup's id is its directory's inode number).
fn cgroup_ids(dir: &Path) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(meta) = fs::metadata(&d) else { continue };
        ids.insert(meta.ino());
        if let Ok(entries) = fs::read_dir(&d) {
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    ids
}

fn open_sockets() -> io::Result<(Socket, Socket)> {
    Ok((diag::destroy_listener()?, diag::request_socket()?))
}

/// Runs `f` in a thread that has entered the network namespace at `path`: sockets it opens
/// stay in that namespace. (setns changes only the calling thread, which then ends.)
fn in_namespace<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = fs::File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on an open namespace file, for this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: a valid socket and a timeval of the size given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diag::TcpCounters;

    fn socket(state: u8, src: &str, sport: u16, dport: u16, cgroup: u64) -> TcpSocket {
        TcpSocket {
            family: AF_INET,
            state,
            src: src.parse().unwrap(),
            sport,
            dst: "198.51.100.20".parse().unwrap(),
            dport,
            cookie: u64::from(sport),
            uid: 0,
            inode: u32::from(sport),
            cgroup_id: Some(cgroup),
            counters: None,
        }
    }

    #[test]
    fn only_the_watched_cgroups_outbound_connections_are_kept() {
        let all = vec![
            socket(TCP_LISTEN, "0.0.0.0", 8080, 0, 7),
            socket(1, "10.0.0.1", 8080, 40000, 7), // accepted by the listener
            socket(1, "10.0.0.1", 41000, 443, 7),  // outbound: kept
            socket(1, "10.0.0.1", 41001, 443, 9),  // another cgroup
            socket(1, "10.0.0.1", 41002, 443, 7),  // its connect was seen
            socket(TCP_SYN_SENT, "10.0.0.1", 41003, 443, 8), // a child cgroup: kept
        ];
        let watched = HashSet::from([7, 8]);
        let kept: Vec<u16> = outbound_of(&all, &watched, &|cookie| cookie == 41002)
            .iter()
            .map(|s| s.sport)
            .collect();
        assert_eq!(kept, [41000, 41003]);
    }

    #[test]
    fn a_close_carries_the_final_counts_and_the_existing_identity() {
        let s = socket(1, "10.0.0.1", 41000, 443, 7);
        let existing = record_of(&s, 4242, *b"curl\0\0\0\0\0\0\0\0\0\0\0\0", 5);
        let mut destroyed = s.clone();
        destroyed.counters = Some(TcpCounters {
            payload_sent: Some(1500),
            received: 301,
        });
        let close = close_of(existing, &destroyed, true);
        assert_eq!(
            (
                close.tgid,
                close.dst_port,
                close.cookie,
                close.bytes_sent,
                close.bytes_received
            ),
            (4242, 443, 41000, 1500, 300)
        );
        assert_eq!(close.flags, CLOSE_FLAG_WAS_ESTABLISHED);
        assert_eq!(&close.dst_addr[..4], &[198, 51, 100, 20]);
    }
}
