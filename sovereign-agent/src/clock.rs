//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.
//!
//! The offset between CLOCK_REALTIME and CLOCK_MONOTONIC is sampled at start and refreshed
//! periodically, so NTP steps are followed within one refresh interval.
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// realtime - monotonic, in nanoseconds.
    offset_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl WallClock {
    /// Samples the two clocks now (monotonic read twice to bracket the realtime read).
    pub fn sample() -> Self {
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m2 = clock_ns(libc::CLOCK_MONOTONIC);
        Self::from_offset(r - (m1 + (m2 - m1) / 2))
    }

    pub const fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Unix time in nanoseconds of a kernel monotonic timestamp.
    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        self.offset_ns + i128::from(monotonic_ns)
    }

    /// RFC 3339 (UTC, nanoseconds) of a kernel monotonic timestamp.
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        rfc3339_from_unix_ns(self.unix_ns(monotonic_ns))
    }

    /// The current monotonic time, as the kernel stamps records.
    pub fn monotonic_now_ns() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

/// The current Unix time in nanoseconds.
pub fn unix_now_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) as i64
}

pub fn rfc3339_from_unix_ns(unix_ns: i128) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(unix_ns)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix_ns}ns"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_monotonic_to_rfc3339() {
        // 2026-11-28T00:00:00Z is 1795824000 s after the epoch; the host booted 1000 s earlier.
        let boot = 1_795_824_000i128 * 1_000_000_000 - 1_000 * 1_000_000_000;
        let clock = WallClock::from_offset(boot);
        assert_eq!(clock.rfc3339(1_000 * 1_000_000_000), "2026-11-28T00:00:00Z");
        assert_eq!(
            clock.rfc3339(1_000 * 1_000_000_000 + 123_456_789),
            "2026-11-28T00:00:00.123456789Z"
        );
    }

    #[test]
    fn sampled_clock_matches_system_time() {
        let clock = WallClock::sample();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let converted = clock.unix_ns(WallClock::monotonic_now_ns());
        // Same instant, give or take scheduling: well under a second apart.
        assert!(
            (converted - now).abs() < 1_000_000_000,
            "{converted} vs {now}"
        );
    }
}
