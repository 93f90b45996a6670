//! Checking a container profile: its image, limits, devices, workspace
//! and mounts as configured, and what only the live host can tell when
//! the container starts.

use super::args::TMP_MB;
use crate::error::{HelperError, Result};
use crate::profiles::{Container, Mount, ProfileConfig};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// Host folders never bind-mounted into a grant's container.
pub const FORBIDDEN_SOURCES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/etc",
    "/boot",
    "/root",
    "/home",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/codext",
    "/var/log/codext",
    "/usr/lib/codext",
];

/// Device files never passed in.
const FORBIDDEN_DEVICES: &[&str] = &[
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
    "/dev/kmsg",
    "/dev/cpu",
    "/dev/mapper",
    "/dev/disk",
];

fn plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p.to_str().is_some_and(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./@+-".contains(&b))
        })
}

/// Checks an image reference: a local `name[:tag]` or `name@sha256:<64
/// hex>`, in characters docker reads as nothing but a reference.
pub fn check_image(image: &str) -> std::result::Result<(), String> {
    let ok_chars = !image.is_empty()
        && image.len() <= 255
        && !image.starts_with('-')
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    let digest_ok = match image.split_once('@') {
        None => true,
        Some((name, digest)) => {
            !name.is_empty()
                && digest
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        }
    };
    if ok_chars && digest_ok {
        Ok(())
    } else {
        Err(format!(
            "image {image:?} must be `name@sha256:<64 hex>` or a local `name[:tag]`"
        ))
    }
}

/// Checks a container profile as configured.
pub fn check(cfg: &ProfileConfig, docker_socket: &Path) -> std::result::Result<Container, String> {
    let image = cfg
        .image
        .clone()
        .ok_or_else(|| "a container profile needs `image`".to_owned())?;
    check_image(&image)?;
    let command = if cfg.command.is_empty() {
        vec!["sleep".to_owned(), "infinity".to_owned()]
    } else {
        cfg.command.clone()
    };
    if command.iter().any(|w| w.is_empty() || w.contains('\0')) {
        return Err("`command` has an empty word".into());
    }
    let cpus = cfg.cpus.unwrap_or(1.0);
    if !(cpus > 0.0 && cpus <= 1024.0) {
        return Err("cpus must be above 0 and at most 1024".into());
    }
    let memory_mb = cfg.memory_mb.unwrap_or(1024);
    let pids = cfg.pids.unwrap_or(256);
    let disk_mb = cfg.disk_mb.unwrap_or(512);
    if !(16..=1 << 24).contains(&memory_mb) {
        return Err("memory_mb must be between 16 and 16777216".into());
    }
    if !(8..=1 << 22).contains(&pids) {
        return Err("pids must be between 8 and 4194304".into());
    }
    if disk_mb == 0 || disk_mb + TMP_MB >= memory_mb {
        return Err(format!(
            "disk_mb must be at least 1 and, with /tmp's {TMP_MB}, below memory_mb: the workspace \
             is memory (a tmpfs counted against the container's memory), so a workspace as large \
             as memory_mb would end in the OOM killer instead of a full disk"
        ));
    }
    for d in &cfg.devices {
        let s = d.to_string_lossy();
        if !plain_absolute(d) || !d.starts_with("/dev") || d == Path::new("/dev") {
            return Err(format!("device {s} must be a path under /dev"));
        }
        if FORBIDDEN_DEVICES.iter().any(|f| d.starts_with(f))
            || d.starts_with("/dev/sd")
            || ["sd", "vd", "nvme", "loop", "dm-", "md", "xvd", "hd"]
                .iter()
                .any(|p| {
                    d.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(p))
                })
        {
            return Err(format!(
                "device {s} reaches the host's memory or disks: never passed to a grant"
            ));
        }
    }
    let workspace = cfg
        .workspace
        .clone()
        .unwrap_or_else(|| PathBuf::from("/workspace"));
    if !plain_absolute(&workspace)
        || workspace == Path::new("/")
        || ["/proc", "/sys", "/dev", "/tmp", "/etc"]
            .iter()
            .any(|f| workspace.starts_with(f))
    {
        return Err(format!(
            "workspace {} must be an absolute folder of its own (not /, /proc, /sys, /dev, /tmp, /etc)",
            workspace.display()
        ));
    }
    for m in &cfg.mounts {
        check_mount(m, docker_socket, &workspace)?;
    }
    let shell = cfg
        .shell
        .clone()
        .unwrap_or_else(|| PathBuf::from("/bin/sh"));
    if !plain_absolute(&shell) {
        return Err(format!(
            "shell {} must be an absolute path",
            shell.display()
        ));
    }
    Ok(Container {
        image,
        command,
        cpus,
        memory_mb,
        pids,
        disk_mb,
        devices: cfg.devices.clone(),
        mounts: cfg.mounts.clone(),
        network: cfg.network,
        workspace,
        shell,
    })
}

fn check_mount(
    m: &Mount,
    docker_socket: &Path,
    workspace: &Path,
) -> std::result::Result<(), String> {
    let s = m.source.display();
    if !plain_absolute(&m.source) || m.source == Path::new("/") {
        return Err(format!(
            "mount source {s} must be an absolute folder other than /"
        ));
    }
    if docker_socket.starts_with(&m.source)
        || ["/run/docker.sock", "/var/run/docker.sock"]
            .iter()
            .any(|d| Path::new(d).starts_with(&m.source))
    {
        return Err(format!(
            "mount source {s} is or holds the docker socket: never mounted into a grant"
        ));
    }
    if let Some(f) = FORBIDDEN_SOURCES
        .iter()
        .find(|f| m.source.starts_with(f) || Path::new(f).starts_with(&m.source))
    {
        return Err(format!(
            "mount source {s} is {f} or holds it: never mounted into a grant"
        ));
    }
    if !plain_absolute(&m.target)
        || m.target == Path::new("/")
        || m.target.starts_with(workspace)
        || ["/proc", "/sys", "/dev", "/tmp"]
            .iter()
            .any(|f| m.target.starts_with(f))
    {
        return Err(format!(
            "mount target {} must be an absolute folder of its own (not /, the workspace, /proc, /sys, /dev, /tmp)",
            m.target.display()
        ));
    }
    Ok(())
}

/// Checks, when a container starts, what only the live host can tell:
/// each device is a character device; each mount source exists and is a
/// folder or regular file (not a socket).
pub fn check_host(c: &Container) -> Result<()> {
    for d in &c.devices {
        match std::fs::metadata(d) {
            Ok(m) if m.file_type().is_char_device() || m.is_dir() => {}
            Ok(_) => {
                return Err(HelperError::Config(format!(
                    "device {} is not a character device (or a folder of them)",
                    d.display()
                )))
            }
            Err(e) => return Err(HelperError::Config(format!("device {}: {e}", d.display()))),
        }
    }
    for m in &c.mounts {
        match std::fs::metadata(&m.source) {
            Ok(meta) if meta.is_dir() || meta.is_file() => {}
            Ok(_) => {
                return Err(HelperError::Config(format!(
                    "mount source {} is neither a folder nor a file",
                    m.source.display()
                )))
            }
            Err(e) => {
                return Err(HelperError::Config(format!(
                    "mount source {}: {e}",
                    m.source.display()
                )))
            }
        }
    }
    Ok(())
}
