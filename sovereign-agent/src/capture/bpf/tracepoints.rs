//! Where the process programs' fields are in their tracepoint records, read from tracefs.

/// Where the process programs' fields are in their tracepoint records, from the format files
/// (tracefs); the defaults are those of every kernel since 5.x.
pub(super) struct TracepointOffsets {
    pub(super) exec_filename: u32,
    pub(super) exec_old_pid: u32,
    pub(super) newtask_pid: u32,
    pub(super) newtask_flags: u32,
    pub(super) execve_argv: u32,
    pub(super) execveat_argv: u32,
}

impl TracepointOffsets {
    pub(super) fn read() -> Self {
        let field = |event: &str, name: &str, default: u32| -> u32 {
            ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
                .iter()
                .find_map(|root| {
                    std::fs::read_to_string(format!("{root}/events/{event}/format")).ok()
                })
                .and_then(|format| field_offset(&format, name))
                .unwrap_or(default)
        };
        Self {
            exec_filename: field("sched/sched_process_exec", "filename", 8),
            exec_old_pid: field("sched/sched_process_exec", "old_pid", 16),
            newtask_pid: field("task/task_newtask", "pid", 8),
            newtask_flags: field("task/task_newtask", "clone_flags", 32),
            execve_argv: field("syscalls/sys_enter_execve", "argv", 24),
            execveat_argv: field("syscalls/sys_enter_execveat", "argv", 32),
        }
    }
}

/// The offset of field `name` in a tracepoint format file
/// (`field:pid_t pid;\toffset:8;\tsize:4;...`).
fn field_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let field = decl.rsplit([' ', '*']).next()?.split('[').next()?;
        if field != name {
            return None;
        }
        rest.split(';')
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|o| o.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_field_offsets_come_from_the_format_file() {
        let exec = "name: sched_process_exec\nID: 313\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
            \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(exec, "filename"), Some(8));
        assert_eq!(field_offset(exec, "pid"), Some(12));
        assert_eq!(field_offset(exec, "common_pid"), Some(4));
        assert_eq!(field_offset(exec, "old_pid"), None);
        let newtask = "\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;\n\
            \tfield:u64 clone_flags;\toffset:32;\tsize:8;\tsigned:0;\n";
        assert_eq!(field_offset(newtask, "comm"), Some(12));
        assert_eq!(field_offset(newtask, "clone_flags"), Some(32));
        // This machine's own tracefs, when mounted, agrees with the defaults.
        let o = TracepointOffsets::read();
        assert_eq!(
            (o.exec_filename, o.newtask_pid, o.newtask_flags),
            (8, 8, 32)
        );
    }
}
