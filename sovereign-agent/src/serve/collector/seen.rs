//! Which sequence numbers of one agent journal the collector holds: the highest, and the gaps
//! below it. An event is a re-send only if it is held; an older event that fills a gap is
//! stored. Gaps are normal (a sink's filter skips the kinds it does not send) and so are late
//! events: a JetStream stream whose leader died can store a later message of an agent before
//! an earlier one that the agent re-sent after it (docs/sinks.md, "Order in a JetStream
//! stream").
//!
//! Memory is bounded per journal: gaps further than [`WINDOW`] below the highest, and beyond
//! [`MAX_GAPS`] the oldest, are forgotten (taken as held). A late event reaches back at most
//! as far as the agent's sink had in flight (`in_flight_batches` × `batch`, 2,000 by default).
use std::collections::BTreeMap;

/// How far below the highest sequence number gaps are kept.
pub const WINDOW: u64 = 65_536;
/// Gaps kept per journal at most.
pub const MAX_GAPS: usize = 4_096;

#[derive(Clone, Debug, Default)]
pub struct Seen {
    highest: Option<u64>,
    /// Missing ranges below `highest`: start → end, inclusive, disjoint.
    gaps: BTreeMap<u64, u64>,
}

impl Seen {
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether `seq` is stored already (or too old to tell: then taken as stored).
    pub fn holds(&self, seq: u64) -> bool {
        match self.highest {
            None => false,
            Some(h) if seq > h => false,
            Some(_) => !self.missing(seq),
        }
    }

    fn missing(&self, seq: u64) -> bool {
        self.gaps
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &end)| end >= seq)
    }

    /// Records `seq` as stored.
    pub fn insert(&mut self, seq: u64) {
        match self.highest {
            None => {
                if seq > 0 {
                    self.gaps.insert(0, seq - 1);
                }
                self.highest = Some(seq);
            }
            Some(h) if seq > h => {
                if seq > h + 1 {
                    self.gaps.insert(h + 1, seq - 1);
                }
                self.highest = Some(seq);
            }
            Some(_) => {
                let Some((&start, &end)) = self.gaps.range(..=seq).next_back() else {
                    return;
                };
                if end < seq {
                    return;
                }
                self.gaps.remove(&start);
                if start < seq {
                    self.gaps.insert(start, seq - 1);
                }
                if seq < end {
                    self.gaps.insert(seq + 1, end);
                }
            }
        }
        self.forget_old();
    }

    fn forget_old(&mut self) {
        let floor = self.highest.unwrap_or(0).saturating_sub(WINDOW);
        while let Some((&start, &end)) = self.gaps.first_key_value() {
            if start >= floor && self.gaps.len() <= MAX_GAPS {
                break;
            }
            self.gaps.remove(&start);
            // A gap across the floor keeps its part above it (unless over the count).
            if end >= floor && start < floor && self.gaps.len() < MAX_GAPS {
                self.gaps.insert(floor, end);
                break;
            }
        }
    }

    #[cfg(test)]
    fn gap_count(&self) -> usize {
        self.gaps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_older_event_is_held_once_stored_and_a_resend_is_not_stored_twice() {
        let mut seen = Seen::default();
        // The stream gave 1..=4, then 8..=10 (5..=7 lost with a dead leader, re-sent later).
        for seq in (1..=4).chain(8..=10) {
            assert!(!seen.holds(seq));
            seen.insert(seq);
        }
        assert!(seen.holds(3) && seen.holds(9), "re-sends");
        for seq in 5..=7 {
            assert!(!seen.holds(seq), "{seq}: late, not a re-send");
            seen.insert(seq);
        }
        assert!((1..=10).all(|s| seen.holds(s)));
        assert!(!seen.holds(11));
        assert_eq!(seen.highest(), Some(10));
        // Seq 0 was never seen (the first event was 1).
        assert!(!seen.holds(0));
    }

    #[test]
    fn a_filtered_stream_leaves_gaps_that_are_not_duplicates() {
        let mut seen = Seen::default();
        for seq in [5, 9, 12] {
            seen.insert(seq);
        }
        assert!(!seen.holds(7) && !seen.holds(11) && seen.holds(9));
        seen.insert(10);
        assert!(seen.holds(10) && !seen.holds(11));
    }

    #[test]
    fn memory_is_bounded_by_the_window_and_the_gap_count() {
        let mut seen = Seen::default();
        // Every other sequence number: one gap each.
        for seq in (0..4 * MAX_GAPS as u64).map(|i| 2 * i) {
            seen.insert(seq);
        }
        assert!(seen.gap_count() <= MAX_GAPS);
        // Far ahead: everything below the window is taken as held.
        seen.insert(10 * WINDOW);
        assert!(seen.holds(1), "forgotten: taken as held");
        assert!(!seen.holds(10 * WINDOW - 1), "within the window: missing");
        assert!(seen.gap_count() <= MAX_GAPS);
    }
}
