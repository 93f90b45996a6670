//! `doctor` on where a temporary user's files can go: the homes and the
//! swept folders on `nosuid` mounts (a warning names each that is not, as
//! on a stock Debian whose `/tmp` and `/var/tmp` sit on the root file
//! system), and no world-writable folder on the root file system outside
//! the swept set (the detection itself is unit-tested in
//! `codext-helper/src/doctor/mounts.rs`, and `scripts/docker-test.sh` makes
//! one on a container's root file system: a test here must not write to the
//! host's).

use codext_tests::sandbox_test;
use codext_tests::world::{sh, World};
use std::collections::BTreeMap;

/// `doctor --json`: check → (status, detail, advice).
fn doctor() -> BTreeMap<String, (String, String, String)> {
    let out = World::helper_cli(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("check"), (s("status"), s("detail"), s("advice")))
        })
        .collect()
}

sandbox_test! {
    fn given_swept_folders_on_mounts_without_nosuid_then_doctor_warns_naming_each_and_is_ok_once_they_are_nosuid() {
        let _w = World::new();
        // The sandbox mounts /tmp, /var/tmp and /home without nosuid, as
        // Debian's root file system holds them; the other swept folders are
        // nosuid tmpfs mounts here.
        let d = doctor();
        let (status, detail, advice) = &d["mounts.nosuid"];
        assert_eq!(status, "warn", "{detail}");
        for f in ["/home (on /home)", "/tmp (on /tmp)", "/var/tmp (on /var/tmp)"] {
            assert!(detail.contains(f), "{f} not named: {detail}");
        }
        assert!(!detail.contains("/run/lock") && !detail.contains("/var/mail"), "{detail}");
        assert!(advice.contains("nosuid") && advice.contains("setuid"), "{advice}");
        // What the root file system holds is the host's (a test must not
        // write there): whatever is listed lies outside the swept folders
        // and the homes.
        let (status, detail, _) = &d["mounts.world_writable"];
        assert!(status == "ok" || status == "warn", "{status}: {detail}");
        if let Some(list) = detail.strip_prefix("world-writable folders on the root file system that codext does not sweep: ") {
            for f in list.split(", ").filter(|f| f.starts_with('/')) {
                assert!(!["/tmp", "/var/tmp", "/run/lock", "/var/spool/cron", "/var/mail", "/home"].iter().any(|s| f.starts_with(s)), "{f} is swept: {detail}");
            }
        }
        sh("mount -o remount,nosuid /tmp && mount -o remount,nosuid /var/tmp && mount -o remount,nosuid /home");
        let d = doctor();
        assert_eq!(d["mounts.nosuid"].0, "ok", "{:?}", d["mounts.nosuid"]);
        assert!(d.values().all(|(s, _, _)| s != "fail"), "{d:#?}");
    }
}
