//! The hooks: the kernel program behind each, where it attaches, and what is lost without it.
use std::fmt;

/// The hooks, in attach order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    TcpState,
    SockRelease,
    DnsIngress,
    NamesEgress,
    ProcessFork,
    ExecveArgs,
    ExecveatArgs,
    ProcessExec,
    ProcessExit,
}

impl Hook {
    pub const ALL: [Hook; 13] = [
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
        Hook::TcpState,
        Hook::SockRelease,
        Hook::DnsIngress,
        Hook::NamesEgress,
        Hook::ProcessFork,
        Hook::ExecveArgs,
        Hook::ExecveatArgs,
        Hook::ProcessExec,
        Hook::ProcessExit,
    ];

    /// Program name in the object (the function name in sovereign-agent-ebpf).
    pub fn program(self) -> &'static str {
        match self {
            Hook::Connect4 => "connect4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Sendmsg6 => "sendmsg6",
            Hook::TcpState => "tcp_state",
            Hook::SockRelease => "sock_release",
            Hook::DnsIngress => "dns_ingress",
            Hook::NamesEgress => "names_egress",
            Hook::ProcessFork => "process_fork",
            Hook::ExecveArgs => "execve_args",
            Hook::ExecveatArgs => "execveat_args",
            Hook::ProcessExec => "process_exec",
            Hook::ProcessExit => "process_exit",
        }
    }

    /// The kernel attach point, as `bpftool cgroup show` names it.
    pub fn attach_point(self) -> &'static str {
        match self {
            Hook::Connect4 => "cgroup/connect4",
            Hook::Connect6 => "cgroup/connect6",
            Hook::Sendmsg4 => "cgroup/sendmsg4",
            Hook::Sendmsg6 => "cgroup/sendmsg6",
            Hook::TcpState => "sockops",
            Hook::SockRelease => "cgroup/sock_release",
            Hook::DnsIngress => "cgroup_skb/ingress",
            Hook::NamesEgress => "cgroup_skb/egress",
            Hook::ProcessFork => "tracepoint/task/task_newtask",
            Hook::ExecveArgs => "tracepoint/syscalls/sys_enter_execve",
            Hook::ExecveatArgs => "tracepoint/syscalls/sys_enter_execveat",
            Hook::ProcessExec => "tracepoint/sched/sched_process_exec",
            Hook::ProcessExit => "tracepoint/sched/sched_process_exit",
        }
    }

    /// What is not reported when this hook is missing.
    /// Whether enforcement decides in this hook (connect and sendmsg): without it, an
    /// enforcing policy cannot be delivered.
    pub fn decides(self) -> bool {
        matches!(
            self,
            Hook::Connect4 | Hook::Connect6 | Hook::Sendmsg4 | Hook::Sendmsg6
        )
    }

    pub fn loses(self) -> &'static str {
        match self {
            Hook::Connect4 => "IPv4 connect() calls",
            Hook::Connect6 => "IPv6 connect() calls",
            Hook::Sendmsg4 => "unconnected IPv4 UDP sends",
            Hook::Sendmsg6 => "unconnected IPv6 UDP sends",
            Hook::TcpState => "TCP established/close events and byte counts",
            Hook::SockRelease => "UDP send totals at socket close",
            Hook::DnsIngress => "destination names from DNS answers",
            Hook::NamesEgress => "destination names from TLS SNI, and DNS answers (without their queries no answer is trusted)",
            Hook::ProcessFork => "parents of processes started while the agent runs (lineage)",
            Hook::ExecveArgs | Hook::ExecveatArgs => {
                "command lines of processes that exit before /proc can be read"
            }
            Hook::ProcessExec => "executables of processes that exit before their flows are read",
            Hook::ProcessExit => "the end of processes (their table entries age out by size instead)",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attach_point())
    }
}
