//! The enforce decision of cgroup/connect4|6 and sendmsg4|6: whether the policy's enforce
//! rules refuse this destination for the calling task (the common crate's `enforce` module
//! says how the maps are laid out). Only kernel facts are used: the task's cgroup ancestry and
//! the destination address the socket call carries; nothing the workload says about itself.
use aya_ebpf::{helpers::generated::bpf_get_current_ancestor_cgroup_id, maps::lpm_trie::Key};
use sovereign_agent_common::{
    EnforceAction, EnforceClass, EnforceKeyV4, EnforceKeyV6, AF_INET, ENFORCE_MAX_DEPTH,
    ENFORCE_REFUSE,
};

use crate::maps::{
    ENFORCE_CGROUPS, ENFORCE_FAILSAFE_V4, ENFORCE_FAILSAFE_V6, ENFORCE_ON, ENFORCE_SCRATCH,
    ENFORCE_V4, ENFORCE_V6,
};

/// `Some(rule)`: refuse, under the policy's rule `rule`. Every lookup key lives in a per-CPU
/// map, not on the stack: connect6 is near the 512-byte limit (Linux 6.1's verifier refused
/// it with the keys in its frame).
#[inline(always)]
pub fn refused(family: u16, addr: &[u8; 16]) -> Option<u32> {
    if ENFORCE_ON.get(0).copied().unwrap_or(0) == 0 {
        return None;
    }
    let scratch = ENFORCE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by this program alone while it runs.
    let scratch = unsafe { &mut *scratch };
    // The deepest classified cgroup of the task decides (its own, or an ancestor's).
    let mut class: Option<&EnforceClass> = None;
    let mut level = 0;
    while level <= ENFORCE_MAX_DEPTH {
        // SAFETY: helper with an integer argument; 0 past the task's own level.
        scratch.cgroup = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if scratch.cgroup == 0 {
            break;
        }
        #[allow(
            clippy::needless_borrows_for_generic_args,
            reason = "the key stays in the per-CPU map: a copy would go on the stack"
        )]
        // SAFETY: a map value, read while this program runs.
        if let Some(c) = unsafe { ENFORCE_CGROUPS.get(&scratch.cgroup) } {
            class = Some(c);
        }
        level += 1;
    }
    let class = class?;
    if class.class == 0 {
        return None;
    }
    let found = if family == AF_INET || is_v4_mapped(addr) {
        let v4 = if family == AF_INET {
            [addr[0], addr[1], addr[2], addr[3]]
        } else {
            [addr[12], addr[13], addr[14], addr[15]]
        };
        if v4[0] == 127 {
            return None;
        }
        scratch.failsafe_v4 = Key::new(32, v4);
        if ENFORCE_FAILSAFE_V4.get(&scratch.failsafe_v4).is_some() {
            return None;
        }
        scratch.v4 = Key::new(
            64,
            EnforceKeyV4 {
                class: class.class.to_be_bytes(),
                addr: v4,
            },
        );
        ENFORCE_V4.get(&scratch.v4)
    } else {
        if is_v6_loopback(addr) {
            return None;
        }
        scratch.failsafe_v6 = Key::new(128, *addr);
        if ENFORCE_FAILSAFE_V6.get(&scratch.failsafe_v6).is_some() {
            return None;
        }
        scratch.v6 = Key::new(
            160,
            EnforceKeyV6 {
                class: class.class.to_be_bytes(),
                addr: *addr,
            },
        );
        ENFORCE_V6.get(&scratch.v6)
    };
    let decided: &EnforceAction = found.unwrap_or(&class.otherwise);
    (decided.action == ENFORCE_REFUSE).then_some(decided.rule)
}

#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|b| *b == 0) && a[10] == 0xff && a[11] == 0xff
}

#[inline(always)]
fn is_v6_loopback(a: &[u8; 16]) -> bool {
    a[..15].iter().all(|b| *b == 0) && a[15] == 1
}
