//! Which container or service a process belongs to, from its cgroup path.
//!
//! A cgroup's name is chosen by whoever creates it, and a workload with a delegated subtree
//! (a `Delegate=yes` service, a rootless user, a container with its own cgroup namespace) can
//! create children named like anything: `docker-<64 hex>.scope`, `kubepods.slice/...`,
//! `crm-sync.service`. So a name counts only **where the runtime or systemd puts it**, never
//! below a workload's own cgroup:
//!
//! - Docker:      `/docker/<id>` (cgroupfs driver) or `/system.slice/docker-<id>.scope`
//!   (systemd driver), directly under the root or `system.slice`
//! - Podman:      `/machine.slice/libpod-<id>.scope` (rootful)
//! - Kubernetes:  under `/kubepods[.slice]`, optionally a QoS level (`besteffort`,
//!   `burstable`, `kubepods-<qos>.slice`), the pod (`pod<uid>` or
//!   `kubepods[-<qos>]-pod<uid_with_underscores>.slice`), and directly under the pod the
//!   container: `<id>` (cgroupfs; runtime `kubernetes`), `cri-containerd-<id>.scope`,
//!   `crio-<id>.scope` or `docker-<id>.scope` (`crio-conmon-<id>.scope` is CRI-O's monitor,
//!   not a container)
//! - systemd:     the unit is the first `*.service` component reached through `*.slice`
//!   components only (`/system.slice/crm-sync.service`, `/user.slice/user-1000.slice/user@1000.service`):
//!   a `.service` below another unit's cgroup is a name that unit chose, not a unit
//!
//! Whatever lies below these positions (a container's own sub-cgroups) still belongs to them.
//! Rootless containers (under `user@<uid>.service`) are in a subtree their user controls: they
//! get no container id (their unit is `user@<uid>.service`, their path is still reported).
use std::sync::Arc;

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// cgroup v2 path of the process (relative to the hierarchy root).
    pub cgroup: Option<Arc<str>>,
    pub container_id: Option<Arc<str>>,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<Arc<str>>,
    pub systemd_unit: Option<Arc<str>>,
}

/// Picks the cgroup path out of /proc/PID/cgroup: the unified (`0::`) line, else the
/// name=systemd line (cgroup v1 hosts), else any line.
pub fn cgroup_path(proc_cgroup: &str) -> Option<&str> {
    let lines: Vec<(&str, &str)> = proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some((controllers, path))
        })
        .collect();
    lines
        .iter()
        .find(|(c, _)| c.is_empty())
        .or_else(|| lines.iter().find(|(c, _)| *c == "name=systemd"))
        .or_else(|| lines.first())
        .map(|(_, p)| *p)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container scopes of the systemd cgroup driver, by runtime.
const SCOPE_PREFIXES: [(&str, &str); 4] = [
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

pub fn workload_from_cgroup_path(path: &str) -> Workload {
    let c: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut w = Workload {
        cgroup: Some(path.into()),
        systemd_unit: unit_of(&c).map(Arc::from),
        ..Workload::default()
    };
    match c.as_slice() {
        ["docker", id, ..] if is_container_id(id) => w.set_container(id, "docker"),
        ["system.slice", scope, ..] => {
            if let Some(("docker", id)) = scoped_container(scope) {
                w.set_container(id, "docker");
            }
        }
        ["machine.slice", scope, ..] => {
            if let Some(("podman", id)) = scoped_container(scope) {
                w.set_container(id, "podman");
            }
        }
        [root, rest @ ..] if *root == "kubepods" || *root == "kubepods.slice" => {
            // An optional QoS level, then the pod, then the container.
            let rest = match rest {
                [qos, tail @ ..] if pod_uid(qos).is_none() => tail,
                _ => rest,
            };
            if let [pod, more @ ..] = rest {
                w.pod_uid = pod_uid(pod).map(Arc::from);
                if w.pod_uid.is_some() {
                    match more.first() {
                        Some(id) if is_container_id(id) => w.set_container(id, "kubernetes"),
                        Some(scope) => {
                            if let Some((runtime, id)) =
                                scoped_container(scope).filter(|(r, _)| *r != "podman")
                            {
                                w.set_container(id, runtime);
                            }
                        }
                        None => {}
                    }
                }
            }
        }
        _ => {}
    }
    w
}

/// The key of a workload's share of a bound (the flow ceiling, the DNS query table): its pod,
/// else its systemd unit, else its container, else its cgroup, so that the containers of one
/// pod, or the cgroups of one unit, share one. A keyed hash: one hash, no allocation; the
/// key is random per agent (`RandomState`), so a workload cannot choose a name that collides
/// with another's share.
pub fn share_key(
    keys: &std::hash::RandomState,
    pod: Option<&str>,
    unit: Option<&str>,
    container: Option<&str>,
    cgroup_id: u64,
) -> u64 {
    use std::hash::BuildHasher;
    match (pod, unit, container) {
        (Some(pod), _, _) => keys.hash_one((1u8, pod)),
        (None, Some(unit), _) => keys.hash_one((2u8, unit)),
        (None, None, Some(container)) => keys.hash_one((3u8, container)),
        (None, None, None) => keys.hash_one((4u8, cgroup_id)),
    }
}

impl Workload {
    fn set_container(&mut self, id: &str, runtime: &'static str) {
        self.container_id = Some(id.into());
        self.container_runtime = Some(runtime);
    }
}

/// `<runtime prefix><64 hex>.scope` → (runtime, id).
fn scoped_container(comp: &str) -> Option<(&'static str, &str)> {
    let base = comp.strip_suffix(".scope")?;
    if base.starts_with("crio-conmon-") {
        return None;
    }
    SCOPE_PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = base.strip_prefix(prefix)?;
        is_container_id(id).then_some((*runtime, id))
    })
}

/// The first `.service` reached through `.slice` components only.
fn unit_of(components: &[&str]) -> Option<String> {
    for comp in components {
        if comp.ends_with(".service") {
            return Some(comp.to_string());
        }
        if !comp.ends_with(".slice") {
            return None;
        }
    }
    None
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(comp: &str) -> Option<String> {
    let base = comp.strip_suffix(".slice").unwrap_or(comp);
    let at = base.rfind("pod")?;
    if !(at == 0 || base[..at].ends_with('-')) {
        return None;
    }
    let uid = &base[at + 3..];
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8d2c1b0a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn picks_the_unified_line_on_hybrid_hosts() {
        let text = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/system.slice/ssh.service\n";
        assert_eq!(cgroup_path(text), Some("/system.slice/ssh.service"));
        let v1 = "12:pids:/x\n1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(cgroup_path(v1), Some("/system.slice/cron.service"));
    }

    #[test]
    fn docker_cgroupfs_and_systemd_drivers() {
        let w = workload_from_cgroup_path(&format!("/docker/{ID}"));
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("docker"));
        let w = workload_from_cgroup_path(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("docker"));
        assert_eq!(w.systemd_unit, None);
    }

    #[test]
    fn kubernetes_containerd_systemd_driver() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8e2a7b1c_4d5e_4f60_a1b2_c3d4e5f60718.slice/cri-containerd-{ID}.scope"
        );
        let w = workload_from_cgroup_path(&p);
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("containerd"));
        assert_eq!(
            w.pod_uid.as_deref(),
            Some("8e2a7b1c-4d5e-4f60-a1b2-c3d4e5f60718")
        );
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        let p = format!("/kubepods/besteffort/pod8e2a7b1c-4d5e-4f60-a1b2-c3d4e5f60718/{ID}");
        let w = workload_from_cgroup_path(&p);
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("kubernetes"));
        assert_eq!(
            w.pod_uid.as_deref(),
            Some("8e2a7b1c-4d5e-4f60-a1b2-c3d4e5f60718")
        );
    }

    #[test]
    fn crio_container_but_not_conmon() {
        let p = format!("/kubepods.slice/kubepods-pod8e2a7b1c_4d5e_4f60_a1b2_c3d4e5f60718.slice/crio-{ID}.scope");
        let w = workload_from_cgroup_path(&p);
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("cri-o"));
        let conmon = format!("/kubepods.slice/crio-conmon-{ID}.scope");
        assert_eq!(workload_from_cgroup_path(&conmon).container_id, None);
    }

    #[test]
    fn podman_container_rootful_only() {
        let w = workload_from_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("podman"));
        // Rootless: a subtree its user controls, so the name proves nothing.
        let p = format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
        );
        let w = workload_from_cgroup_path(&p);
        assert_eq!(w.container_id, None);
        assert_eq!(w.systemd_unit.as_deref(), Some("user@1000.service"));
    }

    #[test]
    fn names_a_delegated_subtree_chose_are_not_believed() {
        for forged in [
            format!("/system.slice/llm.service/docker-{ID}.scope"),
            format!("/system.slice/llm.service/docker/{ID}"),
            format!("/sa-test/docker-{ID}.scope"),
            format!(
                "/system.slice/llm.service/kubepods.slice/kubepods-pod8e2a7b1c_4d5e_4f60_a1b2_c3d4e5f60718.slice/cri-containerd-{ID}.scope"
            ),
            format!("/docker-{ID}.scope"),
            format!("/system.slice/llm.service/libpod-{ID}.scope"),
        ] {
            let w = workload_from_cgroup_path(&forged);
            assert_eq!((w.container_id, w.pod_uid), (None, None), "{forged}");
        }
        // A unit's children named like another unit are that unit's.
        let w = workload_from_cgroup_path("/system.slice/llm.service/crm-sync.service");
        assert_eq!(w.systemd_unit.as_deref(), Some("llm.service"));
        let w = workload_from_cgroup_path("/sa-test/crm-sync.service");
        assert_eq!(w.systemd_unit, None);
        // Inside a real container, its own sub-cgroups do not change its id.
        let other = "0".repeat(64);
        let w = workload_from_cgroup_path(&format!("/docker/{ID}/docker/{other}"));
        assert_eq!(w.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn systemd_service_is_not_a_container() {
        let w = workload_from_cgroup_path("/system.slice/crm-sync.service");
        assert_eq!(w.container_id, None);
        assert_eq!(w.systemd_unit.as_deref(), Some("crm-sync.service"));
        assert_eq!(w.cgroup.as_deref(), Some("/system.slice/crm-sync.service"));
    }

    #[test]
    fn short_hex_is_not_an_id() {
        let w = workload_from_cgroup_path("/docker/abc123");
        assert_eq!(w.container_id, None);
    }
}
