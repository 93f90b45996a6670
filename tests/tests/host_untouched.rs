//! The sandbox keeps the real machine unchanged: a full login flow (user
//! created, logged in, removed) runs, and the host's `/etc`, `/home`,
//! `/run` and state folders are byte-for-byte what they were.

use codext_tests::world::World;
use codext_tests::{run_in_sandbox, sandbox_test};
use snapshot::digest;

mod snapshot {
    //! Folder listings and file bytes, compared exactly.
    pub fn digest(paths: &[&str]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for p in paths {
            let path = std::path::Path::new(p);
            if path.is_dir() {
                let mut names: Vec<String> = std::fs::read_dir(path)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                out.push((format!("{p}/"), names.join("\n").into_bytes()));
            } else {
                out.push((
                    p.to_string(),
                    std::fs::read(path).unwrap_or_else(|_| b"<absent>".to_vec()),
                ));
            }
        }
        out
    }
}

const WATCHED: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/pam.d/sshd",
    "/etc/pam.d/codext",
    "/etc/pam.d/codext-session",
    "/etc/pam.d",
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d",
    "/etc/codext",
    "/etc",
    "/home",
    "/root",
    "/run",
    "/run/userdb",
    "/run/codext",
    "/var/lib/codext",
    "/var/log/codext",
];

sandbox_test! {
    fn full_flow_inside_the_sandbox() {
        let w = World::new();
        let a = w.arm();
        let out = w.login(&a.puzzle, &["id -un"]);
        assert!(out.status.success());
        w.wait_removed(&a.user, a.uid);
    }
}

#[test]
fn given_full_flow_in_the_sandbox_then_the_host_is_unchanged() {
    if !codext_tests::sandbox_available() {
        return;
    }
    let before = digest(WATCHED);
    run_in_sandbox("full_flow_inside_the_sandbox", || {
        unreachable!("runs in the sandbox")
    });
    let after = digest(WATCHED);
    for ((name, a), (_, b)) in before.iter().zip(after.iter()) {
        assert!(a == b, "{name} changed on the host");
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.lines().any(|l| l.starts_with("user-")),
        "a codext user leaked onto the host"
    );
    // Shared temporary folders change with whatever else runs; what must
    // not be there is anything of a codext uid.
    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
        let left =
            codext_tests::world::files_of_uids(std::path::Path::new(dir), codext_tests::TEST_UIDS);
        assert!(left.is_empty(), "files of codext uids in {dir}: {left:?}");
    }
}
