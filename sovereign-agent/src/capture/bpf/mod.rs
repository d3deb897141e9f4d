//! Loading the kernel programs, attaching them to a cgroup, and handing out their maps.
//!
//! Each hook is attached on its own: a kernel that lacks one (e.g. sock_release before 5.9)
//! loses only what that hook reports, with a warning naming it; the rest keeps working.
//! Dropping [`Capture`] detaches every program (the links are owned, never pinned).
mod errors;
mod hooks;
mod options;
mod tracepoints;

use std::{fs::File, path::Path};

use aya::{
    maps::{lpm_trie::LpmTrie, Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, ProgramError,
        SockOps, TracePoint,
    },
    Ebpf, EbpfError, EbpfLoader,
};
use sovereign_agent_common::{
    BudgetKey, DestinationKey, FloodTally, RepeatTally, SendKey, SendTally,
    BUDGET_CGROUP_BURST_NS_GLOBAL, BUDGET_CGROUP_INTERVAL_NS_GLOBAL,
    BUDGET_NEW_DESTINATION_BURST_NS_GLOBAL, BUDGET_NEW_DESTINATION_INTERVAL_NS_GLOBAL,
    BUDGET_PROCESS_BURST_NS_GLOBAL, BUDGET_PROCESS_INTERVAL_NS_GLOBAL,
    BUDGET_PROCESS_RECORDS_BURST_NS_GLOBAL, BUDGET_PROCESS_RECORDS_INTERVAL_NS_GLOBAL,
    DESTINATION_REPEATS_MAP, DNS_NETNS_MAP, EVENTS_MAP, EXECVEAT_ARGV_OFFSET_GLOBAL,
    EXECVE_ARGV_OFFSET_GLOBAL, EXEC_FILENAME_OFFSET_GLOBAL, EXEC_OLD_PID_OFFSET_GLOBAL, FLOODS_MAP,
    LOSSES_MAP, NEWTASK_FLAGS_OFFSET_GLOBAL, NEWTASK_PID_OFFSET_GLOBAL, PRIORITY_MAP,
    PROCESS_SCOPE_MAP, READER_POLLING_MAP, SUPPRESSED_MAP, TCP_SOCKETS_MAP, TCP_SOCKET_VALUE_SIZE,
    UDP_SENDS_MAP, WAKEUP_BYTES_GLOBAL, WAKEUP_INTERVAL_NS_GLOBAL,
};

pub use errors::{error_chain, BpfError};
pub use hooks::Hook;
pub use options::{CaptureOptions, Rate};

use errors::is_permission;
use tracepoints::TracepointOffsets;

/// The kernel object built by build.rs from sovereign-agent-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sovereign-agent"));

/// kernel without trying them: how the tests prove, on any kernel, that the agent degrades
/// as it says when one hook is missing (tests/tests/degraded.rs, docs/kernel.md).
pub const REFUSE_HOOKS_ENV: &str = "SOVEREIGN_TEST_REFUSE_HOOKS";

fn refused_for_tests() -> Vec<String> {
    std::env::var(REFUSE_HOOKS_ENV)
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The result of attaching one hook.
#[derive(Clone, Debug)]
pub struct HookStatus {
    pub hook: Hook,
    pub error: Option<String>,
}

/// The loaded kernel programs and their maps.
pub struct Capture {
    ebpf: Ebpf,
    hooks: Vec<HookStatus>,
}

/// The maps user space reads, taken out of the [`Capture`].
pub struct CaptureMaps {
    pub events: RingBuf<MapData>,
    /// TCP connections and flood notices (never written by a UDP, DNS or TLS flood).
    pub priority: RingBuf<MapData>,
    /// What each budget suppressed, per CPU.
    pub floods: PerCpuHashMap<MapData, BudgetKey, FloodTally>,
    /// The repeated TCP connects budgets folded, per destination and CPU.
    pub repeats: PerCpuHashMap<MapData, DestinationKey, RepeatTally>,
    /// The network namespace of each socket that sent to port 53.
    pub dns_netns: HashMap<MapData, u64, u64>,
    /// Every suppressed record by what it would have reported, per CPU.
    pub suppressed: PerCpuArray<MapData, u64>,
    pub losses: PerCpuArray<MapData, u64>,
    pub udp_sends: HashMap<MapData, SendKey, SendTally>,
    /// Outbound TCP sockets whose connect was seen (see [`crate::capture::existing`]); taken by the
    /// start-up scan.
    pub tcp_sockets: Option<HashMap<MapData, u64, [u8; TCP_SOCKET_VALUE_SIZE]>>,
    /// Whether the reader is polling (see `capture::pipeline::polling`).
    pub reader_polling: Array<MapData, u32>,
}

impl Capture {
    pub fn load(options: CaptureOptions) -> Result<Self, BpfError> {
        raise_memlock_limit();
        let offsets = TracepointOffsets::read();
        let (process_interval, process_burst) = options.process_budget.kernel();
        let (cgroup_interval, cgroup_burst) = options.cgroup_budget.kernel();
        let (new_destination_interval, new_destination_burst) =
            options.new_destination_budget.kernel();
        let (process_records_interval, process_records_burst) =
            options.process_records_budget.kernel();
        let ebpf = EbpfLoader::new()
            .map_max_entries(EVENTS_MAP, options.ring_buffer_bytes)
            .map_max_entries(PRIORITY_MAP, options.priority_ring_bytes)
            .map_max_entries(TCP_SOCKETS_MAP, options.tcp_socket_entries.max(1))
            .override_global(BUDGET_PROCESS_INTERVAL_NS_GLOBAL, &process_interval, true)
            .override_global(BUDGET_PROCESS_BURST_NS_GLOBAL, &process_burst, true)
            .override_global(BUDGET_CGROUP_INTERVAL_NS_GLOBAL, &cgroup_interval, true)
            .override_global(BUDGET_CGROUP_BURST_NS_GLOBAL, &cgroup_burst, true)
            .override_global(
                BUDGET_NEW_DESTINATION_INTERVAL_NS_GLOBAL,
                &new_destination_interval,
                true,
            )
            .override_global(
                BUDGET_NEW_DESTINATION_BURST_NS_GLOBAL,
                &new_destination_burst,
                true,
            )
            .override_global(
                BUDGET_PROCESS_RECORDS_INTERVAL_NS_GLOBAL,
                &process_records_interval,
                true,
            )
            .override_global(
                BUDGET_PROCESS_RECORDS_BURST_NS_GLOBAL,
                &process_records_burst,
                true,
            )
            .override_global(WAKEUP_BYTES_GLOBAL, &options.wakeup_bytes, true)
            .override_global(WAKEUP_INTERVAL_NS_GLOBAL, &options.wakeup_interval_ns, true)
            .override_global(EXEC_FILENAME_OFFSET_GLOBAL, &offsets.exec_filename, true)
            .override_global(NEWTASK_PID_OFFSET_GLOBAL, &offsets.newtask_pid, true)
            .override_global(NEWTASK_FLAGS_OFFSET_GLOBAL, &offsets.newtask_flags, true)
            .override_global(EXEC_OLD_PID_OFFSET_GLOBAL, &offsets.exec_old_pid, true)
            .override_global(EXECVE_ARGV_OFFSET_GLOBAL, &offsets.execve_argv, true)
            .override_global(EXECVEAT_ARGV_OFFSET_GLOBAL, &offsets.execveat_argv, true)
            .load(OBJECT)
            .map_err(|e| match e {
                ref e if is_permission(e) => BpfError::PermissionDenied,
                EbpfError::MapError(m) => BpfError::Unsupported(m.to_string()),
                other => BpfError::Unsupported(other.to_string()),
            })?;
        Ok(Self {
            ebpf,
            hooks: Vec::new(),
        })
    }

    /// Loads and attaches every hook to `cgroup`. Hooks that fail are reported in
    /// [`Capture::hooks`]; it is an error only when none attaches.
    pub fn attach(&mut self, cgroup: &Path) -> Result<&[HookStatus], BpfError> {
        let cgroup_file = File::open(cgroup).map_err(|source| BpfError::Cgroup {
            path: cgroup.display().to_string(),
            source,
        })?;
        self.scope_processes(cgroup)?;
        let mut permission_denied = false;
        let refused = refused_for_tests();
        for hook in Hook::ALL {
            let result = if refused.iter().any(|r| r == hook.attach_point()) {
                Err(format!("refused by {REFUSE_HOOKS_ENV} (a test switch)"))
            } else {
                self.attach_one(hook, &cgroup_file).map_err(|e| {
                    permission_denied |= is_permission(&e);
                    error_chain(&e)
                })
            };
            if let Err(e) = &result {
                tracing::warn!(hook = %hook, error = %e,
                    "hook unavailable on this kernel; not reported: {}", hook.loses());
            }
            self.hooks.push(HookStatus {
                hook,
                error: result.err(),
            });
        }
        if self.hooks.iter().all(|h| h.error.is_some()) {
            if permission_denied {
                return Err(BpfError::PermissionDenied);
            }
            let details = self
                .hooks
                .iter()
                .map(|h| format!("{}: {}", h.hook, h.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BpfError::NothingAttached {
                cgroup: cgroup.display().to_string(),
                details,
            });
        }
        Ok(&self.hooks)
    }

    /// A file descriptor of each attached program, for its run-time statistics.
    pub fn program_fds(&self) -> Vec<(String, std::os::fd::OwnedFd)> {
        self.hooks
            .iter()
            .filter(|h| h.error.is_none())
            .filter_map(|h| {
                let fd = self.ebpf.program(h.hook.program())?.fd().ok()?;
                let fd = std::os::fd::AsFd::as_fd(fd).try_clone_to_owned().ok()?;
                Some((h.hook.program().to_string(), fd))
            })
            .fold(
                Vec::new(),
                |mut all: Vec<(String, std::os::fd::OwnedFd)>, p| {
                    // Several hooks may run one program.
                    if !all.iter().any(|(name, _)| *name == p.0) {
                        all.push(p);
                    }
                    all
                },
            )
    }

    fn attach_one(&mut self, hook: Hook, cgroup: &File) -> Result<(), ProgramError> {
        let program = self
            .ebpf
            .program_mut(hook.program())
            .ok_or_else(|| ProgramError::UnexpectedProgramType)?;
        // Link-based attachment (kernel 5.7+) always coexists with other programs on the
        // cgroup; `Single` is the flag value link_create accepts (aya 0.14's `AllowMultiple`
        // fails with EINVAL there; docs/development.md, "The eBPF toolchain").
        let mode = CgroupAttachMode::Single;
        match hook {
            Hook::Connect4 | Hook::Connect6 | Hook::Sendmsg4 | Hook::Sendmsg6 => {
                let p: &mut CgroupSockAddr = program.try_into()?;
                p.load()?;
                p.attach(cgroup, mode)?;
            }
            Hook::TcpState => {
                let p: &mut SockOps = program.try_into()?;
                p.load()?;
                p.attach(cgroup, mode)?;
            }
            Hook::SockRelease => {
                let p: &mut CgroupSock = program.try_into()?;
                p.load()?;
                p.attach(cgroup, mode)?;
            }
            Hook::ProcessFork
            | Hook::ExecveArgs
            | Hook::ExecveatArgs
            | Hook::ProcessExec
            | Hook::ProcessExit => {
                let p: &mut TracePoint = program.try_into()?;
                p.load()?;
                let (category, name) = hook
                    .attach_point()
                    .trim_start_matches("tracepoint/")
                    .split_once('/')
                    .expect("category/name");
                p.attach(category, name)?;
            }
            Hook::DnsIngress | Hook::NamesEgress => {
                let p: &mut CgroupSkb = program.try_into()?;
                p.load()?;
                let direction = if hook == Hook::DnsIngress {
                    CgroupSkbAttachType::Ingress
                } else {
                    CgroupSkbAttachType::Egress
                };
                p.attach(cgroup, direction, mode)?;
            }
        }
        Ok(())
    }

    /// Tells the process tracepoints which cgroup subtree to report: the watched cgroup's id
    /// (its directory's inode) and level (path components below the hierarchy's root).
    fn scope_processes(&mut self, cgroup: &Path) -> Result<(), BpfError> {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::metadata(cgroup)
            .map_err(|source| BpfError::Cgroup {
                path: cgroup.display().to_string(),
                source,
            })?
            .ino();
        // Wherever the hierarchy is mounted (a pod sees the host's at /host/sys/fs/cgroup):
        // each parent directory that is a cgroup is one level up.
        let level = cgroup
            .ancestors()
            .skip(1)
            .take_while(|dir| dir.join("cgroup.procs").exists())
            .count() as u64;
        let map = self
            .ebpf
            .map_mut(PROCESS_SCOPE_MAP)
            .ok_or(BpfError::MissingInObject(PROCESS_SCOPE_MAP))?;
        let mut scope: Array<_, u64> = Array::try_from(map).map_err(|source| BpfError::Map {
            name: PROCESS_SCOPE_MAP,
            source,
        })?;
        for (i, v) in [id, level].into_iter().enumerate() {
            scope.set(i as u32, v, 0).map_err(|source| BpfError::Map {
                name: PROCESS_SCOPE_MAP,
                source,
            })?;
        }
        Ok(())
    }

    pub fn hooks(&self) -> &[HookStatus] {
        &self.hooks
    }

    /// Takes the enforce maps (once), for [`crate::enforce::Enforcer`]: written before the
    /// programs are attached, so that the first connect is already decided.
    pub fn take_enforce_maps(&mut self) -> Result<crate::enforce::KernelMaps, BpfError> {
        use sovereign_agent_common::{
            ENFORCE_CGROUPS_MAP, ENFORCE_FAILSAFE_V4_MAP, ENFORCE_FAILSAFE_V6_MAP, ENFORCE_ON_MAP,
            ENFORCE_V4_MAP, ENFORCE_V6_MAP,
        };
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or(BpfError::MissingInObject(name))
        };
        let map_err = |name| move |source| BpfError::Map { name, source };
        Ok(crate::enforce::KernelMaps {
            on: Array::try_from(take(ENFORCE_ON_MAP)?).map_err(map_err(ENFORCE_ON_MAP))?,
            cgroups: HashMap::try_from(take(ENFORCE_CGROUPS_MAP)?)
                .map_err(map_err(ENFORCE_CGROUPS_MAP))?,
            v4: LpmTrie::try_from(take(ENFORCE_V4_MAP)?).map_err(map_err(ENFORCE_V4_MAP))?,
            v6: LpmTrie::try_from(take(ENFORCE_V6_MAP)?).map_err(map_err(ENFORCE_V6_MAP))?,
            failsafe_v4: LpmTrie::try_from(take(ENFORCE_FAILSAFE_V4_MAP)?)
                .map_err(map_err(ENFORCE_FAILSAFE_V4_MAP))?,
            failsafe_v6: LpmTrie::try_from(take(ENFORCE_FAILSAFE_V6_MAP)?)
                .map_err(map_err(ENFORCE_FAILSAFE_V6_MAP))?,
        })
    }

    /// Takes the maps user space reads (once).
    pub fn take_maps(&mut self) -> Result<CaptureMaps, BpfError> {
        let mut take = |name: &'static str| {
            self.ebpf
                .take_map(name)
                .ok_or(BpfError::MissingInObject(name))
        };
        let (
            events,
            priority,
            floods,
            repeats,
            dns_netns,
            suppressed,
            losses,
            udp_sends,
            tcp_sockets,
            polling,
        ) = (
            take(EVENTS_MAP)?,
            take(PRIORITY_MAP)?,
            take(FLOODS_MAP)?,
            take(DESTINATION_REPEATS_MAP)?,
            take(DNS_NETNS_MAP)?,
            take(SUPPRESSED_MAP)?,
            take(LOSSES_MAP)?,
            take(UDP_SENDS_MAP)?,
            take(TCP_SOCKETS_MAP)?,
            take(READER_POLLING_MAP)?,
        );
        let map_err = |name| move |source| BpfError::Map { name, source };
        Ok(CaptureMaps {
            events: RingBuf::try_from(events).map_err(map_err(EVENTS_MAP))?,
            priority: RingBuf::try_from(priority).map_err(map_err(PRIORITY_MAP))?,
            floods: PerCpuHashMap::try_from(floods).map_err(map_err(FLOODS_MAP))?,
            repeats: PerCpuHashMap::try_from(repeats).map_err(map_err(DESTINATION_REPEATS_MAP))?,
            dns_netns: HashMap::try_from(dns_netns).map_err(map_err(DNS_NETNS_MAP))?,
            suppressed: PerCpuArray::try_from(suppressed).map_err(map_err(SUPPRESSED_MAP))?,
            losses: PerCpuArray::try_from(losses).map_err(map_err(LOSSES_MAP))?,
            udp_sends: HashMap::try_from(udp_sends).map_err(map_err(UDP_SENDS_MAP))?,
            tcp_sockets: Some(HashMap::try_from(tcp_sockets).map_err(map_err(TCP_SOCKETS_MAP))?),
            reader_polling: Array::try_from(polling).map_err(map_err(READER_POLLING_MAP))?,
        })
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones ignore it.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK (fine on Linux 5.11+)");
    }
}
