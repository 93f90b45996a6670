//! The helper's only `unsafe` code: the killer child, bounded waits on
//! children, pidfds, memory locking and the allocator's arena cap.
//!
//! One file per concern, every `unsafe` block with its `// SAFETY:` line
//! naming the contract: [`killer`] (every process of a uid ended, and why
//! it cannot be resisted), [`keyrings`] (a uid's kernel keyrings),
//! [`children`] (bounded waits, pidfds, a program run on given
//! descriptors), [`process`] (the daemon's own memory and priority), [`fd`]
//! (descriptors owned, made non-blocking, received over a socket).

mod children;
mod fd;
mod keyrings;
mod killer;
mod process;

pub use children::{
    pidfd_kill, pidfd_open, pidfd_send_signal, spawn_on, wait_pid, wait_readable, Waited,
};
pub use fd::{own_fd, recv_with_fds, set_nonblocking};
pub use keyrings::{clear_keyrings_as, keyrings_available};
pub use killer::{kill_all_as, IpcIds, KillerIds};
pub use process::{
    limit_malloc_arenas, lock_memory, lower_thread_priority, lower_thread_priority_to,
    MALLOC_ARENAS,
};

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    const CHILD: &str = "CODEXT_ARENA_TEST_CHILD";
    const THREADS: usize = 16;

    /// The daemon's cap holds: many threads allocating at once share the
    /// capped arenas instead of each taking one (without the cap glibc
    /// makes up to 8 per core). Counted by glibc itself: `malloc_stats`
    /// prints one `Arena N:` block per arena. Runs in a fresh copy of the
    /// test binary, because this process's other test threads have arenas
    /// already.
    #[test]
    fn given_the_arena_cap_then_threads_allocating_at_once_share_the_main_arena() {
        let name =
            "sys::tests::given_the_arena_cap_then_threads_allocating_at_once_share_the_main_arena";
        if std::env::var_os(CHILD).is_some() {
            limit_malloc_arenas(MALLOC_ARENAS).unwrap();
            let all = Arc::new(Barrier::new(THREADS + 1));
            let threads: Vec<_> = (0..THREADS)
                .map(|i| {
                    let all = Arc::clone(&all);
                    std::thread::spawn(move || {
                        let held = vec![i as u8; 4096 + i];
                        all.wait(); // everyone holds an allocation
                        all.wait(); // until the arenas are counted
                        held.len()
                    })
                })
                .collect();
            all.wait();
            // SAFETY: malloc_stats only reads the allocator's state (under
            // its locks) and writes to stderr.
            unsafe { libc::malloc_stats() };
            all.wait();
            for t in threads {
                t.join().unwrap();
            }
            return;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let arenas = stderr.lines().filter(|l| l.starts_with("Arena ")).count();
        // The main arena, plus the one libtest's thread for this test may
        // have taken before the cap was set.
        assert!(
            (1..=MALLOC_ARENAS as usize + 1).contains(&arenas),
            "{arenas} arenas for {THREADS} threads:\n{stderr}"
        );
    }
}
