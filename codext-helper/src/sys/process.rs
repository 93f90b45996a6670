//! The daemon's own process: its memory locked, glibc's malloc arenas
//! capped, a thread's priority lowered.

use std::io;

/// Locks the daemon's memory (present and future pages, as they are first
/// touched) so a password or token being checked is never written to swap.
pub fn lock_memory() -> io::Result<()> {
    // SAFETY: mlockall takes flags only.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How many glibc malloc arenas the daemon's threads share: one, the main
/// arena (see [`limit_malloc_arenas`]).
pub const MALLOC_ARENAS: i32 = 1;

/// Caps glibc's malloc arenas at `n` (`mallopt(M_ARENA_MAX)`). Call it
/// before the first thread starts: glibc fixes the cap once more than
/// eight arenas exist (malloc/arena.c, `arena_get2`).
///
/// Why the daemon needs it: by default glibc gives each thread that
/// allocates while the others hold their arenas an arena of its own, up
/// to 8 per core, each reserved as a 64 MiB block (mallopt(3)). Under
/// [`lock_memory`] every page a thread touched in its arena stays
/// resident — glibc gives freed arena memory back with
/// `madvise(MADV_DONTNEED)`, which the kernel refuses on locked pages
/// (madvise(2): EINVAL "advice is MADV_DONTNEED … and the pages are
/// locked") — and every reservation counts as locked memory in full
/// (`MCL_ONFAULT` defers the faulting, not the accounting). A burst of 50
/// logins on 2 cores left 15 arenas, 4.9 MB resident and 1 GB locked
/// (`codext-bench memory`). With one arena, freed memory returns to the
/// main heap, which shrinks with `brk` even when locked; each thread's
/// tcache keeps the shared arena's lock off the common path.
pub fn limit_malloc_arenas(n: i32) -> io::Result<()> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt takes two integers and only sets a parameter of
        // the allocator (under its own lock); it returns 1 on success.
        let r = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
        if r == 1 {
            Ok(())
        } else {
            Err(io::Error::other("mallopt(M_ARENA_MAX) refused"))
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = n;
        Ok(())
    }
}

/// Raises the calling thread's nice value by `by` (lowers its priority;
/// always allowed). On Linux the nice value is per thread, and a child
/// inherits its creator thread's: the helper's own lanes keep the unit's
/// `Nice=`, a thread serving a connection gives it up.
pub fn lower_thread_priority(by: i32) -> io::Result<()> {
    lower_thread_priority_to(by, i32::MIN)
}

/// As [`lower_thread_priority`], to a nice value of at least `floor`
/// whatever the helper's own (a unit may set `Nice=` lower than the
/// caller planned for).
pub fn lower_thread_priority_to(by: i32, floor: i32) -> io::Result<()> {
    // SAFETY: setpriority/getpriority take plain integers; who = 0 is the
    // calling thread (Linux/NPTL).
    let now = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let err = io::Error::last_os_error();
    if now == -1 && err.raw_os_error() != Some(0) {
        return Err(err);
    }
    // SAFETY: as above.
    let r = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            0,
            now.saturating_add(by).max(floor).min(19),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: getpriority takes plain integers; who = 0 is the calling
        // thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn given_a_floor_above_where_a_thread_would_land_then_it_takes_the_floor_and_never_passes_19() {
        std::thread::spawn(|| {
            let start = nice();
            lower_thread_priority_to(1, start + 4).unwrap();
            assert_eq!(nice(), (start + 4).min(19), "the floor, not start + 1");
            lower_thread_priority_to(2, i32::MIN).unwrap();
            assert_eq!(nice(), (start + 6).min(19), "no floor: by 2");
            lower_thread_priority_to(1, 40).unwrap();
            assert_eq!(nice(), 19);
        })
        .join()
        .unwrap();
    }
}
