//! Each agent's coverage of the period: its sessions clipped to it, and the gaps between.
use super::time::{seconds, ts};
use crate::report::{model::*, scan::AgentTrack};

/// One agent's sessions clipped to `[p0, p1]`, and the gaps between them.
pub(super) fn coverage(track: &AgentTrack, p0: i64, p1: i64, journal_end: i64) -> Coverage {
    let mut c = Coverage {
        period_seconds: seconds(p1 - p0),
        ..Default::default()
    };
    let mut cursor = p0;
    let mut watched = 0i64;
    for (start, end, how) in &track.sessions {
        let (end, how) = match end {
            Some(e) => (*e, how.clone()),
            None => (
                journal_end.max(*start),
                "running at the end of the journal".to_string(),
            ),
        };
        let (from, until) = ((*start).max(p0), end.min(p1));
        if until < from || *start > p1 || end < p0 {
            continue;
        }
        if (p0..=p1).contains(start) {
            c.starts += 1;
        }
        if from > cursor {
            c.gaps.push(Gap {
                from: ts(cursor),
                until: ts(from),
                seconds: seconds(from - cursor),
            });
        }
        watched += until - from;
        cursor = cursor.max(until);
        c.sessions.push(Session {
            from: ts(from),
            until: ts(until),
            end: if end > p1 {
                "running at the end of the period".to_string()
            } else {
                how
            },
        });
    }
    if !c.sessions.is_empty() && cursor < p1 {
        c.gaps.push(Gap {
            from: ts(cursor),
            until: ts(p1),
            seconds: seconds(p1 - cursor),
        });
    }
    c.unclean_stops = track
        .unclean
        .iter()
        .filter(|t| (p0..=p1).contains(*t))
        .count() as u64;
    c.watched_seconds = seconds(watched);
    c.watched_percent = if p1 > p0 {
        (watched as f64 / (p1 - p0) as f64 * 1000.0).round() / 10.0
    } else {
        100.0
    };
    c
}
