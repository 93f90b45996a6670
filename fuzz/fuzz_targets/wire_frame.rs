//! `read_frame` on an arbitrary byte stream, read frame after frame until
//! it fails. Checks that it never panics, that every frame body is
//! 1..=MAX_FRAME bytes and exactly the announced slice of the stream, that
//! the error is the right one, and — with a counting global allocator —
//! that no single allocation made while reading exceeds MAX_FRAME bytes.
#![no_main]

use codext_wire::{read_frame, FrameError, MAX_FRAME};
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Records the largest allocation made while `ARMED` is set.
struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the only
// addition is bookkeeping in atomics, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let mut stream: &[u8] = data;
    loop {
        let before = stream;
        LARGEST.store(0, Ordering::Relaxed);
        ARMED.store(true, Ordering::Relaxed);
        let res = read_frame(&mut stream);
        ARMED.store(false, Ordering::Relaxed);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest <= MAX_FRAME,
            "read_frame allocated {largest} bytes (MAX_FRAME is {MAX_FRAME})"
        );
        let announced = (before.len() >= 4)
            .then(|| u32::from_be_bytes([before[0], before[1], before[2], before[3]]) as usize);
        match res {
            Ok(body) => {
                let n = announced.expect("a frame was read from fewer than 4 bytes");
                assert!((1..=MAX_FRAME).contains(&body.len()));
                assert_eq!(body.len(), n);
                assert_eq!(body.as_slice(), &before[4..4 + n]);
                assert_eq!(stream, &before[4 + n..]);
            }
            Err(FrameError::BadLength(len)) => {
                let n = announced.expect("BadLength from fewer than 4 bytes");
                assert_eq!(len as usize, n);
                assert!(n == 0 || n > MAX_FRAME);
                break;
            }
            Err(FrameError::Truncated) => {
                match announced {
                    None => {}
                    Some(n) => {
                        assert!((1..=MAX_FRAME).contains(&n));
                        assert!(before.len() < 4 + n);
                    }
                }
                break;
            }
            Err(FrameError::Io(e)) => panic!("a byte slice gave an I/O error: {e}"),
        }
    }
});
