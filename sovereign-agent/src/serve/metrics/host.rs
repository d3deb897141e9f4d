//! The standard `process_*` metrics of the agent's own process.
use super::exposition::Exposition;

/// The standard `process_*` metrics, from /proc/self.
pub(super) fn render(out: &mut Exposition) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as f64,
        )
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            out.counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &[(vec![], (utime + stime) / ticks)],
            );
        }
        if let Some(rss) = field(24) {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                &[(vec![], rss * page)],
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            &[(vec![], fds.count() as f64)],
        );
    }
}
