//! Longest-prefix matching for every prefix at once: all prefixes (of any length, nested or
//! overlapping) are flattened into disjoint address ranges, each pointing at the interned set
//! of values whose prefixes cover it. A lookup is one binary search and returns every match,
//! so nested entries (an AWS `AMAZON` /16 and its `EC2` /20) are all reported as evidence.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;

/// Builds a [`PrefixSets`]. Values are small ids (indices into the caller's entry table).
#[derive(Default)]
pub struct PrefixSetsBuilder {
    v4: Vec<(u128, u128, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl PrefixSetsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, net: IpNet, value: u32) {
        let net = net.trunc();
        match net {
            IpNet::V4(n) => self.v4.push((
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
                value,
            )),
            IpNet::V6(n) => {
                self.v6
                    .push((u128::from(n.network()), u128::from(n.broadcast()), value));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn build(self) -> PrefixSets {
        let mut sets = SetInterner::default();
        sets.intern(Vec::new()); // set 0: nothing matches
        let v4 = flatten(self.v4, u128::from(u32::MAX), &mut sets);
        let v6 = flatten(self.v6, u128::MAX, &mut sets);
        let v4_starts: Vec<u32> = v4.0.iter().map(|s| *s as u32).collect();
        // v4_index[h]: how many ranges start below h << 16, so a lookup searches one bucket.
        let v4_index = (0..=65_536u64)
            .map(|h| v4_starts.partition_point(|s| u64::from(*s) < h << 16) as u32)
            .collect();
        PrefixSets {
            v4_index,
            v4_starts,
            v4_sets: v4.1,
            v6_starts: v6.0,
            v6_sets: v6.1,
            sets: sets.sets,
        }
    }
}

#[derive(Default)]
struct SetInterner {
    ids: HashMap<Vec<u32>, u32>,
    sets: Vec<Box<[u32]>>,
}

impl SetInterner {
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(id) = self.ids.get(&set) {
            return *id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone().into_boxed_slice());
        self.ids.insert(set, id);
        id
    }
}

/// Sweeps the range boundaries: between two consecutive boundaries the covering set is
/// constant. Returns the start of each range and its set id; adjacent ranges with the same
/// set are merged.
fn flatten(
    ranges: Vec<(u128, u128, u32)>,
    max: u128,
    sets: &mut SetInterner,
) -> (Vec<u128>, Vec<u32>) {
    // (point, +1 adds the value / -1 removes it); removals sort before additions at a point.
    let mut events: Vec<(u128, i8, u32)> = Vec::with_capacity(ranges.len() * 2);
    for (start, end, value) in ranges {
        events.push((start, 1, value));
        if end < max {
            events.push((end + 1, -1, value));
        }
    }
    events.sort_unstable();
    let mut active: BTreeMap<u32, u32> = BTreeMap::new();
    let (mut starts, mut ids) = (vec![0u128], vec![0u32]);
    let mut i = 0;
    while i < events.len() {
        let point = events[i].0;
        while i < events.len() && events[i].0 == point {
            let (_, delta, value) = events[i];
            if delta > 0 {
                *active.entry(value).or_insert(0) += 1;
            } else if let Some(c) = active.get_mut(&value) {
                *c -= 1;
                if *c == 0 {
                    active.remove(&value);
                }
            }
            i += 1;
        }
        let id = sets.intern(active.keys().copied().collect());
        if *ids.last().unwrap() == id {
            continue;
        }
        if *starts.last().unwrap() == point {
            *ids.last_mut().unwrap() = id;
        } else {
            starts.push(point);
            ids.push(id);
        }
    }
    (starts, ids)
}

/// Every prefix's value, by address.
pub struct PrefixSets {
    v4_index: Vec<u32>,
    v4_starts: Vec<u32>,
    v4_sets: Vec<u32>,
    v6_starts: Vec<u128>,
    v6_sets: Vec<u32>,
    sets: Vec<Box<[u32]>>,
}

impl PrefixSets {
    /// The id of the set of values covering `ip` (0: none). IPv4-mapped IPv6 addresses are
    /// looked up as IPv4.
    #[inline]
    pub fn set_id(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(v4) => self.lookup_v4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(u32::from(v4)),
                None => lookup(&self.v6_starts, &self.v6_sets, u128::from(v6)),
            },
        }
    }

    #[inline]
    fn lookup_v4(&self, key: u32) -> u32 {
        let h = (key >> 16) as usize;
        let (lo, hi) = (self.v4_index[h] as usize, self.v4_index[h + 1] as usize);
        // Ranges before `lo` start below this bucket and so at or below `key`; starts[0] is 0.
        let idx = lo + self.v4_starts[lo..hi].partition_point(|s| *s <= key);
        self.v4_sets[idx - 1]
    }

    /// The values of set `id`, ascending.
    #[inline]
    pub fn set(&self, id: u32) -> &[u32] {
        &self.sets[id as usize]
    }

    /// Every value whose prefix covers `ip`, ascending.
    pub fn lookup(&self, ip: IpAddr) -> &[u32] {
        self.set(self.set_id(ip))
    }

    /// Every IPv4 range with its set: `(first, last, set id)`, ascending, together covering
    /// the whole family (set 0 where nothing matches).
    pub fn v4_ranges(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.v4_starts.len()).map(move |i| {
            let last = self.v4_starts.get(i + 1).map_or(u32::MAX, |s| s - 1);
            (self.v4_starts[i], last, self.v4_sets[i])
        })
    }

    /// Every IPv6 range with its set, as [`Self::v4_ranges`].
    pub fn v6_ranges(&self) -> impl Iterator<Item = (u128, u128, u32)> + '_ {
        (0..self.v6_starts.len()).map(move |i| {
            let last = self.v6_starts.get(i + 1).map_or(u128::MAX, |s| s - 1);
            (self.v6_starts[i], last, self.v6_sets[i])
        })
    }

    pub fn set_count(&self) -> usize {
        self.sets.len()
    }

    pub fn range_count(&self) -> usize {
        self.v4_starts.len() + self.v6_starts.len()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.v4_index.len() * 4
            + self.v4_starts.len() * 4
            + self.v4_sets.len() * 4
            + self.v6_starts.len() * 16
            + self.v6_sets.len() * 4
            + self.sets.iter().map(|s| s.len() * 4 + 16).sum::<usize>()
    }
}

#[inline]
fn lookup<T: Ord + Copy>(starts: &[T], sets: &[u32], key: T) -> u32 {
    // starts[0] is the family's lowest address, so the partition point is at least 1.
    let idx = starts.partition_point(|s| *s <= key);
    sets[idx - 1]
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn table(prefixes: &[(&str, u32)]) -> PrefixSets {
        let mut b = PrefixSetsBuilder::new();
        for (p, v) in prefixes {
            b.insert(p.parse().unwrap(), *v);
        }
        b.build()
    }

    #[test]
    fn nested_and_overlapping_prefixes_all_match() {
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.0/24", 3),
            ("10.1.0.0/16", 4),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(t.lookup(ip("10.1.2.3")), &[1, 2, 3, 4]);
        assert_eq!(t.lookup(ip("10.1.3.3")), &[1, 2, 4]);
        assert_eq!(t.lookup(ip("10.2.0.0")), &[1]);
        assert_eq!(t.lookup(ip("11.0.0.0")), &[] as &[u32]);
        assert_eq!(t.lookup(ip("9.255.255.255")), &[] as &[u32]);
        assert_eq!(
            t.lookup(ip("::ffff:10.1.2.3")),
            &[1, 2, 3, 4],
            "mapped v6 is v4"
        );
    }

    #[test]
    fn edges_of_the_address_space() {
        let t = table(&[
            ("0.0.0.0/0", 1),
            ("255.255.255.255/32", 2),
            ("::/0", 3),
            ("ffff::/16", 4),
        ]);
        assert_eq!(t.lookup(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0))), &[1]);
        assert_eq!(t.lookup(IpAddr::V4(Ipv4Addr::BROADCAST)), &[1, 2]);
        assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), &[3]);
        assert_eq!(t.lookup("ffff:ffff::1".parse().unwrap()), &[3, 4]);
        assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::from(u128::MAX))), &[3, 4]);
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t = PrefixSetsBuilder::new().build();
        assert!(t.lookup("1.2.3.4".parse().unwrap()).is_empty());
        assert!(t.lookup("2001:db8::1".parse().unwrap()).is_empty());
    }

    fn naive(prefixes: &[(IpNet, u32)], ip: IpAddr) -> Vec<u32> {
        let mut v: Vec<u32> = prefixes
            .iter()
            .filter(|(n, _)| n.contains(&ip))
            .map(|(_, v)| *v)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    // Short prefixes over a small part of the space, so random addresses hit them often.
    fn v4_prefix() -> impl Strategy<Value = IpNet> {
        (0u32..=0xFFFF, 8u8..=32).prop_map(|(hi, len)| {
            IpNet::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (hi << 8))), len)
                .unwrap()
                .trunc()
        })
    }

    fn v6_prefix() -> impl Strategy<Value = IpNet> {
        (any::<u16>(), any::<u16>(), 16u8..=128).prop_map(|(a, b, len)| {
            let addr = (0x2001_0db8u128 << 96) | (u128::from(a) << 80) | (u128::from(b) << 64);
            IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len)
                .unwrap()
                .trunc()
        })
    }

    proptest! {
        #[test]
        fn v4_agrees_with_a_naive_scan(
            prefixes in proptest::collection::vec((v4_prefix(), 0u32..50), 0..60),
            probes in proptest::collection::vec(0u32..=0x00FF_FFFF, 1..80),
        ) {
            let mut b = PrefixSetsBuilder::new();
            for (n, v) in &prefixes { b.insert(*n, *v); }
            let t = b.build();
            for p in probes {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | p));
                let mut got = t.lookup(ip).to_vec();
                got.dedup();
                prop_assert_eq!(got, naive(&prefixes, ip));
            }
            // The prefixes' own first and last addresses, the likeliest off-by-one spots.
            for (n, _) in &prefixes {
                for ip in [n.network(), n.broadcast()] {
                    prop_assert_eq!(t.lookup(ip).to_vec(), naive(&prefixes, ip));
                }
            }
        }

        #[test]
        fn v6_agrees_with_a_naive_scan(
            prefixes in proptest::collection::vec((v6_prefix(), 0u32..50), 0..60),
            probes in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u64>()), 1..80),
        ) {
            let mut b = PrefixSetsBuilder::new();
            for (n, v) in &prefixes { b.insert(*n, *v); }
            let t = b.build();
            for (a, c, low) in probes {
                let addr = (0x2001_0db8u128 << 96) | (u128::from(a) << 80) | (u128::from(c) << 64) | u128::from(low);
                let ip = IpAddr::V6(Ipv6Addr::from(addr));
                prop_assert_eq!(t.lookup(ip).to_vec(), naive(&prefixes, ip));
            }
            for (n, _) in &prefixes {
                for ip in [n.network(), n.broadcast()] {
                    prop_assert_eq!(t.lookup(ip).to_vec(), naive(&prefixes, ip));
                }
            }
        }
    }
}
