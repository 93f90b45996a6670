//! `codext-helper serve`: the root daemon the PAM module talks to.
//!
//! * A Unix socket, mode 0600 in a root folder; on every connection the
//!   peer's credentials (`SO_PEERCRED`) are checked and only uid 0 is
//!   served — file modes are not trusted alone.
//! * One request and one reply per connection, framed and size-capped
//!   ([`codext_wire`]), with short read and write timeouts and a cap on
//!   connections in flight, so idle or slow peers cannot pile up.
//! * Two lanes for account changes, so a login never waits behind a
//!   removal: creations go through the creation lane (only `useradd`
//!   itself is serialised, by the account lock shared with the CLI);
//!   removals through the removal queue ([`removals`]): each user once,
//!   a few side by side, a failing one never ahead of a first attempt
//!   (killing and sweeping take seconds).
//! * Connections beyond the cap wait briefly for a slot (the kernel's
//!   listen backlog holds the rest) instead of being dropped.
//! * Memory is bounded although it is locked: at most [`MAX_CONNECTIONS`]
//!   connection threads with small stacks, kept for the next connection
//!   (at most 8 idle, each for 30 s: [`pool`]),
//!   and one malloc arena for every thread (`sys::limit_malloc_arenas`);
//!   `codext-bench memory` measures it.
//! * A reaper thread expires puzzles, armed users and grants and notices
//!   sessions whose sshd process died.
//! * Failed verifications are rate-limited per source address, never
//!   globally: strangers cannot lock every agent out.

pub mod entry;
mod listen;
mod peer;
mod pool;
pub mod recording;
mod removals;
mod requests;

pub(crate) use listen::listen_fresh;

use crate::config::Config;
use crate::error::{HelperError, Result};
use crate::ids::Pid;
use crate::lifecycle::session::Closed;
use crate::lifecycle::{Entry, Helper, Removal, UnixTime};
use crate::log::{debug, error, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::collections::{HashMap, VecDeque};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Condvar;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Read and write timeout on a connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections served at once; more wait up to [`SLOT_WAIT`] for a slot.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection beyond the cap waits for a slot before it is
/// closed: inside the PAM module's default timeout (15 s), so the module
/// never waits for a connection the helper gave up, and long enough that
/// a burst on a small machine queues instead of failing.
pub const SLOT_WAIT: Duration = Duration::from_secs(10);

/// A login waiting for its account, and where to send `useradd`'s result.
type Creation = (Entry, Sender<Result<()>>);

struct Daemon {
    helper: Helper,
    creations: Mutex<Sender<Creation>>,
    removals: Arc<removals::Queue>,
    in_flight: AtomicUsize,
    slots: (Mutex<()>, Condvar),
    served: AtomicUsize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Runs the daemon until killed.
pub fn serve(cfg: Config) -> Result<()> {
    // First, before any thread: one malloc arena, so memory stays bounded
    // under locking (see `sys::limit_malloc_arenas`).
    if let Err(e) = crate::sys::limit_malloc_arenas(crate::sys::MALLOC_ARENAS) {
        warn!("cannot cap malloc arenas ({e}); memory may grow with bursts");
    }
    // Never dumped, never swapped: passwords pass through this process.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warn!("cannot mark the process non-dumpable: {e}");
    }
    lock_memory();
    // Removal judges "nothing left" from /proc: it must show everything.
    crate::procfs::check_visibility()
        .map_err(|why| HelperError::Config(format!("refusing to serve: {why}")))?;
    crate::accounts::killer_ids(&cfg.accounts.killer_user)?;
    let helper = Helper::new(cfg)?;
    let listener = bind(&helper.cfg.socket)?;
    let queue = Arc::new(removals::Queue::default());
    let (ctx, crx) = mpsc::channel();
    let daemon = Arc::new(Daemon {
        helper,
        creations: Mutex::new(ctx),
        removals: Arc::clone(&queue),
        in_flight: AtomicUsize::new(0),
        slots: (Mutex::new(()), Condvar::new()),
        served: AtomicUsize::new(0),
        failures: Mutex::new(HashMap::new()),
    });
    for _ in 0..removals::WORKERS {
        spawn_worker(daemon.helper.clone(), Arc::clone(&queue));
    }
    spawn_creator(daemon.helper.clone(), crx);
    match daemon.helper.reconcile(UnixTime::now()) {
        Ok(removals) => removals.into_iter().for_each(|r| daemon.schedule(r)),
        Err(e) => error!("reconciling at start: {e}"),
    }
    // Before the first uid is handed out: what earlier holders left that
    // no state remembers (see Helper::rescan_range).
    match daemon.helper.rescan_range(UnixTime::now()) {
        Ok(held) if !held.is_empty() => warn!("quarantined uid(s) {held:?}: earlier holders left files or keys (codext-helper quarantine list)"),
        Ok(_) => {}
        Err(e) => error!("rescanning the uid range at start: {e}"),
    }
    spawn_reaper(Arc::clone(&daemon));
    spawn_watcher(Arc::clone(&daemon));
    // [channel] hook: the channel socket for the unprivileged
    // codext-channel process (which does the DigitalOcean API calls).
    if daemon.helper.cfg.digitalocean.enabled {
        crate::channel_requests::spawn(daemon.helper.clone());
    }
    // [recording] hook: the socket every channel's recorder streams to;
    // also the gate's, whenever a profile runs no shell.
    if daemon.helper.cfg.recording.enabled || daemon.helper.cfg.profiles.gated().next().is_some() {
        recording::spawn(daemon.helper.clone());
    }
    // [profiles] hook: container sessions enter through root.
    if daemon.helper.cfg.profiles.any_container() {
        entry::spawn(daemon.helper.clone());
    }
    info!("listening on {}", daemon.helper.cfg.socket.display());
    // Type=notify: READY only now that the socket listens, so the unit's
    // Before=ssh.service means sshd never starts with the helper unreachable.
    // (No-op without NOTIFY_SOCKET. The variable stays: removing it from a
    // process whose threads already run would race with them, and every
    // program the helper runs gets a cleared environment anyway.)
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify systemd: {e}");
    }
    let connections = pool::Pool::new(
        || thread("conn"),
        // The unit's Nice=-10 is for the lanes that create and remove
        // accounts (and the tools they run), not for whoever connects: a
        // flood of strangers' requests must not take a known user's
        // useradd's CPU (codext-audit-bench measures it).
        || {
            let _ = crate::sys::lower_thread_priority(CONNECTION_NICE);
        },
        IDLE_CONNECTION_THREADS,
        Duration::from_secs(30),
    );
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                error!("accept failed: {e}");
                continue;
            }
        };
        let n = daemon.served.fetch_add(1, Ordering::SeqCst) + 1;
        // Peer credentials first, before the connection costs a thread or
        // a slot: only root is served at all.
        let pid = match getsockopt(&stream, PeerCredentials) {
            Ok(c) if c.uid() == 0 => c.pid(),
            Ok(c) => {
                warn!(
                    "connection {n}: refused peer pid {} uid {} (only root may use this socket)",
                    c.pid(),
                    c.uid()
                );
                continue;
            }
            Err(e) => {
                warn!("connection {n}: no peer credentials ({e}); closed");
                continue;
            }
        };
        let d = Arc::clone(&daemon);
        if !d.take_slot() {
            warn!("connection {n}: no free slot within {SLOT_WAIT:?}; closed");
            continue;
        }
        let spawned = connections.run(move || {
            d.handle(stream, n, pid);
            d.release_slot();
        });
        if let Err(e) = spawned {
            daemon.release_slot();
            error!("cannot start a connection thread: {e}");
        }
    }
    Ok(())
}

/// `CAP_IPC_LOCK`'s bit in a capability mask (capabilities(7)).
const CAP_IPC_LOCK: u32 = 14;

/// Locks the daemon's present and future memory when that cannot starve
/// it, and otherwise says on stderr why it runs unlocked (`doctor` warns).
fn lock_memory() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    // Raising the soft limit up to the hard one needs no privilege.
    let limit = match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).is_ok() {
                Some(hard)
            } else {
                Some(soft)
            }
        }
        Err(_) => None,
    }
    .filter(|&l| l != RLIM_INFINITY);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = crate::procfs::effective_capabilities(&status);
    if let Some(why) = memory_lock_obstacle(caps, limit) {
        warn!(
            "not locking memory: {why}; a password being checked could reach swap \
             -- give the daemon CAP_IPC_LOCK (the shipped unit does; docker: --cap-add IPC_LOCK)"
        );
        return;
    }
    if let Err(e) = crate::sys::lock_memory() {
        warn!("cannot lock memory ({e}); secrets could reach swap");
    }
}

/// Why `mlockall(MCL_CURRENT | MCL_FUTURE)` would starve a process with
/// effective capabilities `cap_eff` under an `RLIMIT_MEMLOCK` of `limit`
/// bytes (`None`: unlimited), or `None` when it is safe. With `MCL_FUTURE`
/// every later mapping — a thread's stack, a malloc arena's 64 MiB
/// reservation — is locked as it is made, and without `CAP_IPC_LOCK` it is
/// counted whole against the limit and refused past it (mmap(2): EAGAIN;
/// mlock(2)). Under a finite limit the daemon would soon fail to start a
/// connection thread, so every login is refused, or abort when its heap
/// cannot grow. Docker's defaults are exactly that: an 8 MiB limit and no
/// `CAP_IPC_LOCK`.
fn memory_lock_obstacle(cap_eff: u64, limit: Option<u64>) -> Option<String> {
    match limit {
        Some(bytes) if cap_eff & (1 << CAP_IPC_LOCK) == 0 => Some(format!(
            "it lacks CAP_IPC_LOCK and RLIMIT_MEMLOCK is {} KiB: every later thread stack and \
             heap reservation would count against that and soon be refused",
            bytes / 1024
        )),
        _ => None,
    }
}

fn bind(path: &std::path::Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| HelperError::system(format!("cannot create {}", dir.display()), e))?;
    }
    let listener = listen_fresh(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| HelperError::system(format!("cannot chmod {}", path.display()), e))?;
    Ok(listener)
}

/// The creation lane: takes every login waiting and creates their
/// accounts as one batch.
fn spawn_creator(helper: Helper, rx: Receiver<Creation>) {
    let _ = thread("creations").spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter().take(255));
            let entries: Vec<Entry> = batch.iter().map(|(e, _)| e.clone()).collect();
            for ((_, reply), made) in batch.into_iter().zip(helper.create_accounts(&entries)) {
                let _ = reply.send(made);
            }
        }
    });
}

/// A removal worker: takes users from the queue (see [`removals`]).
fn spawn_worker(helper: Helper, queue: Arc<removals::Queue>) {
    let _ = thread("removals").spawn(move || {
        while let Some(user) = queue.take() {
            crate::log::debug!("removal worker: {user}");
            let result = helper.remove_account(&user, UnixTime::now());
            if let Err(e) = &result {
                error!("removing {user}: {e} (the reaper retries)");
            }
            queue.done(&user, result.is_err());
        }
    });
}

fn spawn_reaper(d: Arc<Daemon>) {
    let _ = thread("reaper").spawn(move || loop {
        std::thread::sleep(d.helper.cfg.limits.reaper_interval);
        // Lines kept while the trail could not be written go in as soon
        // as it can be, even when nothing else happens.
        if let Err(e) = d.helper.audit.flush() {
            debug!("audit backlog: {e}");
        }
        if let Err(e) = d.helper.recheck_quarantine() {
            error!("quarantine: {e}");
        }
        match d.helper.reap(UnixTime::now()) {
            Ok(removals) => {
                for r in removals {
                    d.schedule(r);
                }
            }
            Err(e) => error!("reaper: {e}"),
        }
    });
}

/// Watches the sshd process behind every open session through a pidfd:
/// when one dies without closing its session (SIGKILL), the session is
/// dropped at once — and the account removed if it was the last.
fn spawn_watcher(d: Arc<Daemon>) {
    let _ = thread("watcher").spawn(move || {
        let mut watched: HashMap<(String, u32), std::os::fd::OwnedFd> = HashMap::new();
        loop {
            let sessions = d.helper.sessions().unwrap_or_default();
            let mut lost = Vec::new();
            watched.retain(|k, _| {
                sessions
                    .iter()
                    .any(|(u, s)| u.as_str() == k.0 && s.pid == k.1)
            });
            for (user, s) in &sessions {
                let key = (user.to_string(), s.pid);
                if watched.contains_key(&key) {
                    continue;
                }
                match crate::sys::pidfd_open(Pid::from_raw(s.pid)) {
                    // Opened, and still the same process (not a reused pid).
                    Ok(fd)
                        if s.start_time == 0
                            || crate::lifecycle::process_start_time(s.pid)
                                == Some(s.start_time) =>
                    {
                        watched.insert(key, fd);
                    }
                    _ => lost.push((user.clone(), s.pid)),
                }
            }
            let keys: Vec<(String, u32)> = watched.keys().cloned().collect();
            let mut fds: Vec<PollFd> = keys
                .iter()
                .filter_map(|k| watched.get(k))
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            // The timeout only bounds how soon a new session is watched.
            if poll(&mut fds, PollTimeout::from(1000u16)).unwrap_or(0) > 0 {
                for (k, fd) in keys.iter().zip(fds.iter()) {
                    if fd.revents().is_some_and(|r| !r.is_empty()) {
                        if let Ok(u) = codext_wire::UserName::parse(&k.0) {
                            lost.push((u, k.1));
                        }
                    }
                }
            }
            for (user, pid) in lost {
                watched.remove(&(user.to_string(), pid));
                match d.helper.close_session(&user, pid, Closed::Lost) {
                    Ok(Some(r)) => d.schedule(r),
                    Ok(None) => {}
                    Err(e) => error!("watcher: {e}"),
                }
            }
        }
    });
}

/// A named thread with a small stack (memory is locked: stacks must stay
/// small).
/// How far a connection thread lowers its priority below the helper's.
const CONNECTION_NICE: i32 = 10;
/// Connection threads kept waiting for the next connection.
const IDLE_CONNECTION_THREADS: usize = 8;

fn thread(name: &str) -> std::thread::Builder {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
}

impl Daemon {
    fn schedule(&self, r: Removal) {
        let Removal::Remove(user) = r;
        self.removals.push(&user);
    }

    /// Takes a connection slot, waiting up to [`SLOT_WAIT`] for one.
    fn take_slot(&self) -> bool {
        let (lock, freed) = &self.slots;
        let Ok(mut guard) = lock.lock() else {
            return false;
        };
        let end = Instant::now() + SLOT_WAIT;
        loop {
            if self.in_flight.load(Ordering::SeqCst) < MAX_CONNECTIONS {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match freed.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
        }
    }

    fn release_slot(&self) {
        let (lock, freed) = &self.slots;
        let _guard = lock.lock();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_finite_memlock_limit_and_no_cap_ipc_lock_then_memory_is_not_locked() {
        // Docker's defaults: 8 MiB, CapEff without bit 14.
        let why = memory_lock_obstacle(0xa80425fb, Some(8 << 20));
        assert!(
            why.as_deref().is_some_and(|w| w.contains("8192 KiB")),
            "{why:?}"
        );
        // The unit's set holds CAP_IPC_LOCK: the limit does not apply.
        assert_eq!(
            memory_lock_obstacle(0xa80425fb | (1 << 14), Some(8 << 20)),
            None
        );
        // No limit at all.
        assert_eq!(memory_lock_obstacle(0, None), None);
    }
}
