//! The connection threads, kept for the next connection instead of ending
//! with each one: a flood of strangers' connections (thousands a second)
//! otherwise pays a thread's start and end for every refusal, on the same
//! cores a real login needs. Threads are started when none is idle (the
//! daemon's slot cap bounds how many run), and at most [`Pool::keep`] wait
//! for work, each for at most [`Pool::idle_for`] before it ends, so an idle
//! helper holds few stacks (its memory is locked).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A cached pool of named threads.
pub(super) struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
    start: fn() -> std::thread::Builder,
    /// What each new thread runs once before its first job.
    prepare: fn(),
    /// How many idle threads are kept at most.
    keep: usize,
    /// How long an idle thread waits for work before it ends.
    idle_for: Duration,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

impl Pool {
    pub(super) fn new(
        start: fn() -> std::thread::Builder,
        prepare: fn(),
        keep: usize,
        idle_for: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            queue: Mutex::default(),
            ready: Condvar::new(),
            start,
            prepare,
            keep,
            idle_for,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on an idle thread, or on a new one when none is free.
    pub(super) fn run(
        self: &Arc<Self>,
        job: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let mut q = self.lock();
        // Every idle thread takes exactly one queued job when it wakes.
        if q.idle > q.jobs.len() {
            q.jobs.push_back(Box::new(job));
            self.ready.notify_one();
            return Ok(());
        }
        drop(q);
        let pool = Arc::clone(self);
        (self.start)()
            .spawn(move || {
                (pool.prepare)();
                job();
                pool.serve();
            })
            .map(drop)
    }

    /// Takes queued jobs until none comes within `idle_for`, or enough
    /// other threads are idle already.
    fn serve(&self) {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                job();
                q = self.lock();
                continue;
            }
            if q.idle >= self.keep {
                return;
            }
            q.idle += 1;
            let (guard, waited) = self
                .ready
                .wait_timeout_while(q, self.idle_for, |q| q.jobs.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            q = guard;
            q.idle -= 1;
            if waited.timed_out() && q.jobs.is_empty() {
                return;
            }
        }
    }

    /// Threads waiting for work now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::mpsc;

    fn named() -> std::thread::Builder {
        std::thread::Builder::new().name("pool-test".into())
    }

    fn tid() -> String {
        format!("{:?}", std::thread::current().id())
    }

    #[test]
    fn given_jobs_one_after_another_then_one_thread_serves_them_all() {
        let pool = Pool::new(named, || {}, 4, Duration::from_secs(30));
        let (tx, rx) = mpsc::channel();
        let mut threads = BTreeSet::new();
        for i in 0..200 {
            let tx = tx.clone();
            pool.run(move || tx.send((i, tid())).unwrap()).unwrap();
            let (got, t) = rx.recv().unwrap();
            assert_eq!(got, i);
            threads.insert(t);
            // The next job goes to the thread that just finished, once it
            // waits again (it may still be on its way back).
            while pool.idle() == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(threads.len(), 1, "{threads:?}");
    }

    #[test]
    fn given_more_jobs_at_once_than_idle_threads_then_each_runs_and_at_most_keep_stay() {
        let pool = Pool::new(named, || {}, 2, Duration::from_secs(30));
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        for i in 0..8 {
            let (tx, gate) = (tx.clone(), Arc::clone(&gate));
            pool.run(move || {
                let (open, cv) = &*gate;
                let g = cv.wait_while(open.lock().unwrap(), |o| !*o).unwrap();
                drop(g);
                tx.send(i).unwrap();
            })
            .unwrap();
        }
        // All eight are blocked on the gate at once: each got a thread.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let mut got: Vec<i32> = (0..8).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        while pool.idle() < 2 {
            std::thread::yield_now();
        }
        assert_eq!(pool.idle(), 2);
    }

    #[test]
    fn given_an_idle_thread_past_its_wait_then_it_ends_and_the_next_job_starts_a_new_one() {
        static COUNT: Mutex<u32> = Mutex::new(0);
        fn prepare() {
            *COUNT.lock().unwrap() += 1;
        }
        let pool = Pool::new(named, prepare, 4, Duration::from_millis(1));
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        pool.run(move || tx2.send(tid()).unwrap()).unwrap();
        let first = rx.recv().unwrap();
        // Ends after its short wait: nobody is idle any more.
        while pool.idle() > 0 || Arc::strong_count(&pool) > 1 {
            std::thread::yield_now();
        }
        pool.run(move || tx.send(tid()).unwrap()).unwrap();
        let second = rx.recv().unwrap();
        assert_ne!(first, second);
        assert_eq!(*COUNT.lock().unwrap(), 2, "prepare runs once per thread");
    }
}
