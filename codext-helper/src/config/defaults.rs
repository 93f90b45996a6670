//! The safe defaults: what a missing `helper.toml`, or a missing key,
//! means (`docs/helper.toml` spells every one out; a unit test holds them
//! equal). The channels' defaults are with their tables
//! ([`super::channels`]).

use super::channels::{ChannelTables, DigitalOcean};
use super::{Accounts, AuditConfig, Config, Containers, Limits, Recording, Ttl};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

impl Default for Config {
    fn default() -> Config {
        Config {
            version: 1,
            server_key: PathBuf::from("/etc/codext/server_key"),
            state_dir: PathBuf::from("/var/lib/codext"),
            socket: PathBuf::from("/run/codext/helper.sock"),
            userdb_dir: PathBuf::from("/run/userdb"),
            audit_log: PathBuf::from("/var/log/codext/audit.jsonl"),
            server_id: String::new(),
            host_key_dir: PathBuf::from("/etc/ssh"),
            host_keys: Vec::new(),
            pam_services: vec!["sshd".into()],
            log_level: crate::log::Level::Info,
            accounts: Accounts::default(),
            limits: Limits::default(),
            ttl: Ttl::default(),
            digitalocean: DigitalOcean::default(),
            digitalocean_table: None,
            channels: ChannelTables::default(),
            audit: AuditConfig::default(),
            recording: Recording::default(),
            containers: Containers::default(),
            profile_table: BTreeMap::new(),
            profiles: crate::profiles::Profiles::default(),
        }
    }
}

impl Default for Accounts {
    fn default() -> Accounts {
        Accounts {
            uid_min: 59000,
            uid_max: 59999,
            group: "codext".into(),
            home_base: PathBuf::from("/home"),
            shell: PathBuf::from("/bin/bash"),
            killer_user: "codext-killer".into(),
            allowed_groups: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_attempts: 3,
            failures_per_source_per_minute: 20,
            reaper_interval: Duration::from_secs(5),
            tool_timeout: Duration::from_secs(10),
            sweep_time: Duration::from_secs(10),
        }
    }
}

impl Default for Ttl {
    fn default() -> Ttl {
        Ttl {
            puzzle: Duration::from_secs(600),
            armed: Duration::from_secs(300),
            grant: Duration::from_secs(8 * 3600),
            linger_max: Duration::from_secs(15 * 60),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            rotate_bytes: 16 << 20,
            rotate_age: Duration::from_secs(30 * 24 * 3600),
            retain_files: 24,
            retain_age: Duration::from_secs(400 * 24 * 3600),
            summary_window: Duration::from_secs(60),
            summary_sources: 16,
            system_log: true,
        }
    }
}

impl Default for Recording {
    fn default() -> Recording {
        Recording {
            enabled: true,
            recorder: PathBuf::from("/usr/lib/codext/codext-record"),
            group: "codext-record".into(),
            input: false,
            output_bytes: 8 << 20,
            input_bytes: 1 << 20,
            store_bytes: 2 << 30,
            max_age: Duration::from_secs(90 * 24 * 3600),
            fail_open: false,
        }
    }
}

impl Default for Containers {
    fn default() -> Containers {
        Containers {
            docker: PathBuf::from("/usr/bin/docker"),
            docker_host: "unix:///run/docker.sock".into(),
            timeout: Duration::from_secs(60),
        }
    }
}
