//! Which container or service a process belongs to, from the cgroup path in /proc/PID/cgroup.
//!
//! Formats recognised (cgroupfs and systemd cgroup drivers alike):
//! - Docker:      `/docker/<id>`, `/system.slice/docker-<id>.scope`
//! - containerd:  `.../cri-containerd-<id>.scope`, `/kubepods/<qos>/pod<uid>/<id>`
//! - CRI-O:       `.../crio-<id>.scope` (`crio-conmon-<id>.scope` is the monitor, not the container)
//! - Podman:      `.../libpod-<id>.scope`
//! - Kubernetes:  the pod UID from `pod<uid>` or `kubepods-<qos>-pod<uid_with_underscores>.slice`
//! - systemd:     the unit from the last `*.service` component
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// cgroup v2 path of the process (relative to the hierarchy root).
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
    pub systemd_unit: Option<String>,
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

const SCOPE_PREFIXES: [(&str, &str); 4] = [
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

pub fn workload_from_cgroup_path(path: &str) -> Workload {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut w = Workload {
        cgroup: Some(path.to_string()),
        ..Workload::default()
    };
    for (i, comp) in components.iter().enumerate().rev() {
        if w.container_id.is_none() {
            let base = comp.strip_suffix(".scope").unwrap_or(comp);
            if !base.starts_with("crio-conmon-") {
                for (prefix, runtime) in SCOPE_PREFIXES {
                    if let Some(id) = base.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                        w.container_id = Some(id.to_string());
                        w.container_runtime = Some(runtime);
                    }
                }
            }
            if w.container_id.is_none() && is_container_id(comp) {
                w.container_id = Some(comp.to_string());
                w.container_runtime = Some(match i.checked_sub(1).map(|p| components[p]) {
                    Some("docker") => "docker",
                    _ if path.contains("kubepods") => "kubernetes",
                    _ => "unknown",
                });
            }
        }
        if w.pod_uid.is_none() {
            w.pod_uid = pod_uid(comp);
        }
        if w.systemd_unit.is_none() && comp.ends_with(".service") {
            w.systemd_unit = Some(comp.to_string());
        }
    }
    w
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid(comp: &str) -> Option<String> {
    let base = comp.strip_suffix(".slice").unwrap_or(comp);
    let at = base.rfind("pod")?;
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
    fn podman_container() {
        let p = format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
        );
        let w = workload_from_cgroup_path(&p);
        assert_eq!(w.container_id.as_deref(), Some(ID));
        assert_eq!(w.container_runtime, Some("podman"));
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
