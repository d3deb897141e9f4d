//! What the kernel says about the sockets of DNS packets, beyond the packets themselves: the
//! network namespace a query was asked in (a loopback resolver is the host's only in the
//! host's namespace), and whether an answer a watched socket sent comes from a resolver the
//! operator named (`names.resolver_cgroups`). The names stage judges with these facts; it
//! cannot find them itself.
use std::{net::IpAddr, os::fd::AsRawFd, time::Instant};

use aya::maps::{HashMap, MapData};

use crate::{enrich::cgroups::CgroupIndex, names::Provenance};

/// `SO_NETNS_COOKIE` (Linux 5.14+; not in every libc release).
const SO_NETNS_COOKIE: libc::c_int = 71;

pub struct DnsProvenance {
    /// Socket cookie → netns cookie of every socket that sent to port 53 (the kernel's
    /// `DNS_NETNS`).
    netns: HashMap<MapData, u64, u64>,
    /// The namespace whose loopback resolvers are trusted: the agent's own (the host's).
    trusted_netns: Option<u64>,
    /// cgroup paths of the resolvers the operator named.
    resolver_cgroups: globset::GlobSet,
}

impl DnsProvenance {
    pub fn new(netns: HashMap<MapData, u64, u64>, resolver_cgroups: globset::GlobSet) -> Self {
        let trusted_netns = own_netns_cookie();
        if trusted_netns.is_none() {
            tracing::warn!(
                "cannot read this agent's network namespace cookie (SO_NETNS_COOKIE needs \
                 Linux 5.14): answers from loopback resolvers verify no names"
            );
        }
        Self {
            netns,
            trusted_netns,
            resolver_cgroups,
        }
    }

    /// The provenance of a query (asked of `server` by socket `cookie`) or of a served answer
    /// (sent by a socket of cgroup `cgroup_id`).
    pub fn query(&self, server: IpAddr, cookie: u64) -> Provenance {
        let trusted_netns = !server.is_loopback()
            || self
                .trusted_netns
                .is_some_and(|trusted| self.netns.get(&cookie, 0).is_ok_and(|n| n == trusted));
        Provenance {
            trusted_netns,
            named_resolver: false,
            share: 0,
        }
    }

    pub fn served(
        &self,
        cgroup_id: u64,
        cgroups: Option<&mut CgroupIndex>,
        now: Instant,
    ) -> Provenance {
        let named_resolver = !self.resolver_cgroups.is_empty()
            && cgroups
                .and_then(|index| index.workload(cgroup_id, now))
                .and_then(|w| w.cgroup.clone())
                .is_some_and(|path| self.resolver_cgroups.is_match(&*path));
        Provenance {
            trusted_netns: true,
            named_resolver,
            share: 0,
        }
    }
}

/// The network namespace cookie of this process's namespace.
fn own_netns_cookie() -> Option<u64> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket, and a pointer to a u64 of the length given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    (rc == 0 && len as usize == size_of::<u64>()).then_some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_network_namespace_cookie() {
        // Linux 5.14+ (every kernel CI runs); stable within the process.
        let a = own_netns_cookie().expect("SO_NETNS_COOKIE");
        assert_eq!(Some(a), own_netns_cookie());
    }
}
