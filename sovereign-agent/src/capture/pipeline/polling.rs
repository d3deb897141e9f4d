//! Interrupt mitigation for the ring buffers, as NAPI does for network cards: while records
//! keep coming, the reader polls on its own short timer and tells the kernel programs so
//! (`READER_POLLING`), and they submit without waking it. A wake-up runs inside the
//! submitting program, on the watched thread's time: under a connect loop it was about
//! 800 ns of `connect4`'s 1.7 µs (docs/performance.md). When a poll finds nothing, the
//! reader clears the flag, drains once more (a record submitted just before the clear woke
//! nobody) and goes back to waiting for wake-ups, so a sparse event is still read at once.
use std::time::Duration;

use aya::maps::{Array, MapData};

/// How often a busy reader polls. One tokio timer tick: records wait at most this long
/// (plus the drain) while the host is busy.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// The `READER_POLLING` flag and whether it is set.
pub struct ReaderPolling {
    map: Option<Array<MapData, u32>>,
    polling: bool,
}

impl ReaderPolling {
    /// `None`: never poll (`max_event_delay_ms = 0`: the reader is woken for every record).
    pub fn new(map: Option<Array<MapData, u32>>) -> Self {
        Self {
            map,
            polling: false,
        }
    }

    pub fn is_polling(&self) -> bool {
        self.polling
    }

    /// Records came: poll from now on, and let the programs stop waking the reader.
    pub fn start(&mut self) {
        if !self.polling && self.set(1) {
            self.polling = true;
        }
    }

    /// A poll found nothing: wake-ups are needed again. The caller drains once more.
    pub fn stop(&mut self) {
        if self.polling {
            // If the flag cannot be cleared the programs keep not waking the reader; the
            // drain timer (`max_event_delay`) still reads every record, later.
            let _ = self.set(0);
            self.polling = false;
        }
    }

    fn set(&mut self, value: u32) -> bool {
        let Some(map) = self.map.as_mut() else {
            return false;
        };
        match map.set(0, value, 0) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, value, "cannot update READER_POLLING");
                false
            }
        }
    }
}
