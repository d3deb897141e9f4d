//! What the guest boots into: busybox, the modules, an init script that mounts this machine's
//! file system as the guest's root, and the test script, as a newc cpio archive.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{kernel::Kernel, shell_quote, MARK};

/// The guest's first program: mount the host's file system and run the script in it.
fn init_script(modules: &[String], keep: &[PathBuf]) -> String {
    // Directories the tests run from (the workspace, the target directory) stay visible when
    // they lie under a directory that gets a fresh tmpfs (a clone in /tmp, say): held by a
    // bind mount meanwhile, then moved back into place.
    let (mut hold, mut restore) = (String::new(), String::new());
    for (i, dir) in keep.iter().enumerate() {
        let dir = shell_quote(&dir.display().to_string());
        hold += &format!("mkdir -p /hold/{i}; mount --bind $R{dir} /hold/{i}\n");
        restore += &format!(
            "if [ -d $R{dir}/. ] && [ \"$(ls -A $R{dir})\" ]; then umount /hold/{i}; \
             else mkdir -p $R{dir}; mount --move /hold/{i} $R{dir}; fi\n"
        );
    }
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /modules/$m || echo "{MARK} insmod $m failed"; done
R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot $R \
  || echo "{MARK} cannot mount the host's file system"
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
{hold}for d in tmp run var/tmp; do mount -t tmpfs tmpfs $R/$d; done
{restore}mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mount -t bpf bpf $R/sys/fs/bpf
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t debugfs debugfs $R/sys/kernel/debug
cp /run-tests $R/run/vmtest-run-tests
# The host's file system becomes the root of the mount namespace (as switch_root does), not a
# chroot: user namespaces, which the name-attack tests create, are refused inside a chroot.
cd $R
mount --move . /
exec chroot . /bin/sh -c 'ip link set lo up
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
sh /run/vmtest-run-tests 2>&1
echo o > /proc/sysrq-trigger'
"#,
        modules = modules.join(" "),
    )
}

/// busybox, the modules and the scripts, as a newc cpio archive.
pub fn write(kernel: &Kernel, script: &str, keep: &[PathBuf], out: &Path) -> Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no busybox (Debian package busybox-static)")?;
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "modules", "newroot"] {
        cpio.dir(dir);
    }
    cpio.file("bin/busybox", &std::fs::read(&busybox)?, 0o755);
    let mut names = Vec::new();
    for path in super::kernel::module_load_order(kernel)? {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        cpio.file(&format!("modules/{name}"), &std::fs::read(&path)?, 0o644);
        names.push(name);
    }
    cpio.file("init", init_script(&names, keep).as_bytes(), 0o755);
    cpio.file("run-tests", script.as_bytes(), 0o644);
    std::fs::write(out, cpio.finish()).with_context(|| format!("writing {}", out.display()))
}

/// The "newc" cpio format the kernel unpacks an initramfs from.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.inode += 1;
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len(),
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() + 1,
            0, // check
        );
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}
