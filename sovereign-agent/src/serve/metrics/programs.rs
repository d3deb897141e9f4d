//! The kernel's own run-time statistics of the agent's programs (`run_time_ns`, `run_cnt` of
//! `bpf_prog_info`): what each program costs every workload, per run. The kernel counts only
//! while statistics are enabled (`sysctl kernel.bpf_stats_enabled=1`); otherwise both stay 0.
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// `BPF_OBJ_GET_INFO_BY_FD` (include/uapi/linux/bpf.h).
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Offsets in `struct bpf_prog_info` (fields are only ever appended).
const RUN_TIME_NS: usize = 192;
const RUN_CNT: usize = 200;
/// Enough of `struct bpf_prog_info` for both counters.
const INFO_LEN: usize = 256;

/// One program: its name and a file descriptor of its own (duplicated at attach).
pub struct Programs(pub Vec<(String, OwnedFd)>);

/// Run time and runs of one program since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub run_time_ns: u64,
    pub runs: u64,
}

impl Programs {
    /// Each program's statistics; a program the kernel cannot describe is left out.
    pub fn read(&self) -> Vec<(&str, RunStats)> {
        self.0
            .iter()
            .filter_map(|(name, fd)| Some((name.as_str(), run_stats(fd.as_fd())?)))
            .collect()
    }
}

fn run_stats(fd: std::os::fd::BorrowedFd<'_>) -> Option<RunStats> {
    let mut info = [0u8; INFO_LEN];
    // union bpf_attr's `info` member: bpf_fd, info_len, info (a pointer as u64).
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: INFO_LEN as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: the attribute names a buffer of `info_len` bytes that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            size_of::<InfoAttr>(),
        )
    };
    if rc != 0 || (attr.info_len as usize) < RUN_CNT + 8 {
        return None;
    }
    let u64_at = |at: usize| u64::from_ne_bytes(info[at..at + 8].try_into().unwrap_or_default());
    Some(RunStats {
        run_time_ns: u64_at(RUN_TIME_NS),
        runs: u64_at(RUN_CNT),
    })
}
