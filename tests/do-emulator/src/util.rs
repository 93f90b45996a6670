//! Small helpers: RFC 3339 time stamps, a seeded pseudo-random generator, request ids and
//! the MD5 fingerprint DigitalOcean shows for SSH keys.

use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The emulator's clock for rate limits and latency: real time, or time
/// running `scale` times faster (simulations of a fleet spending an hour's
/// budget in minutes). A client pacing itself must run on the same clock
/// (`codext_do::ScaledClock` from [`SimClock::origin`]).
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start: std::time::Instant,
    unix_at_start: std::time::Duration,
    scale: f64,
}

impl SimClock {
    /// Starts now, `scale` (at least 1) times faster than real time.
    pub fn new(scale: f64) -> SimClock {
        SimClock {
            start: std::time::Instant::now(),
            unix_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            scale: if scale.is_finite() {
                scale.max(1.0)
            } else {
                1.0
            },
        }
    }

    /// Monotonic scaled time since the start.
    pub fn now(&self) -> std::time::Duration {
        self.start.elapsed().mul_f64(self.scale)
    }

    /// Scaled Unix time, whole seconds.
    pub fn unix(&self) -> u64 {
        (self.unix_at_start + self.now()).as_secs()
    }

    /// Real time for `d` of scaled time.
    pub fn real(&self, d: std::time::Duration) -> std::time::Duration {
        d.div_f64(self.scale)
    }

    /// The real instant the clock started, the Unix time then, the scale.
    pub fn origin(&self) -> (std::time::Instant, std::time::Duration, f64) {
        (self.start, self.unix_at_start, self.scale)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// xorshift64* generator: deterministic for a seed, good enough for shuffling and ids.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A seed from the clock.
    pub fn clock_seed() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()) << 32
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    /// A random version-4 UUID string, as DigitalOcean uses for request ids.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-{}{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            ["8", "9", "a", "b"][(b >> 62) as usize],
            &hex[17..20],
            &hex[20..32]
        )
    }
}

/// The MD5 fingerprint of an OpenSSH public key line (`type base64 [comment]`), colon-separated
/// lower-case hex, as DigitalOcean reports it. `None` if the line is not a public key.
pub fn ssh_md5_fingerprint(public_key: &str) -> Option<String> {
    let mut parts = public_key.split_whitespace();
    let kind = parts.next()?;
    let blob = parts.next()?;
    let bytes = data_encoding::BASE64.decode(blob.as_bytes()).ok()?;
    // The blob starts with the key type as an SSH string.
    if bytes.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if bytes.len() < 4 + len || &bytes[4..4 + len] != kind.as_bytes() {
        return None;
    }
    let digest = Md5::digest(&bytes);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The uid that owns the TCP socket connected from `peer` to `local`
/// (`/proc/net/tcp` and `tcp6`: the `uid` column of the entry whose local
/// address is the peer's and remote address is ours). Only meaningful for
/// a client on this machine (loopback).
pub fn tcp_peer_uid(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    fn addr_hex(a: std::net::SocketAddr) -> String {
        match a.ip() {
            std::net::IpAddr::V4(ip) => {
                let o = ip.octets();
                format!(
                    "{:02X}{:02X}{:02X}{:02X}:{:04X}",
                    o[3],
                    o[2],
                    o[1],
                    o[0],
                    a.port()
                )
            }
            std::net::IpAddr::V6(ip) => {
                let mut s = String::new();
                for word in ip.octets().chunks(4) {
                    for b in word.iter().rev() {
                        s.push_str(&format!("{b:02X}"));
                    }
                }
                format!("{s}:{:04X}", a.port())
            }
        }
    }
    let (want_local, want_remote) = (addr_hex(peer), addr_hex(local));
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            uid_in_table(&text, &want_local, &want_remote)
        })
}

/// TCP's `TIME_WAIT` state in `/proc/net/tcp`'s `st` column.
const TIME_WAIT: &str = "06";

/// The `uid` of the socket whose local and remote addresses are these, in
/// one `/proc/net/tcp` table. A `TIME_WAIT` row is skipped: it is what
/// is left of an earlier, closed connection, its uid column is always 0,
/// and on loopback the kernel reuses its address pair for a new
/// connection (`net.ipv4.tcp_tw_reuse`), whose row may come after it.
fn uid_in_table(text: &str, local: &str, remote: &str) -> Option<u32> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 7 && f[1] == local && f[2] == remote && f[3] != TIME_WAIT)
            .then(|| f[7].parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_time_wait_row_before_the_live_connection_on_the_same_addresses_then_the_live_ones_uid_is_found(
    ) {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:D2A4 0100007F:1F90 06 00000000:00000000 03:00000F5A 00000000     0        0 0 3 0000000000000000
   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 4711 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D2A4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000   995        0 4712 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(
            uid_in_table(table, "0100007F:D2A4", "0100007F:1F90"),
            Some(995)
        );
        assert_eq!(
            uid_in_table(table, "0100007F:1F90", "0100007F:D2A4"),
            Some(0)
        );
        assert_eq!(uid_in_table(table, "0100007F:D2A5", "0100007F:1F90"), None);
    }

    #[test]
    fn given_known_unix_times_then_rfc3339_is_correct() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_595_356_664), "2020-07-21T18:37:44Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn given_ssh_key_then_md5_fingerprint_matches_ssh_keygen() {
        // `ssh-keygen -l -E md5` prints MD5:80:6c:0a:86:e2:84:77:f7:ff:fb:5a:1e:4c:d4:0a:12
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd test";
        assert_eq!(
            ssh_md5_fingerprint(key).as_deref(),
            Some("80:6c:0a:86:e2:84:77:f7:ff:fb:5a:1e:4c:d4:0a:12")
        );
        assert!(ssh_md5_fingerprint("ssh-rsa notbase64!").is_none());
        assert!(ssh_md5_fingerprint(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIPlp/71cd1AH2BQ7xZqaxlPCKYIP719oeFO4zLn5OMmd"
        )
        .is_none());
    }
}
