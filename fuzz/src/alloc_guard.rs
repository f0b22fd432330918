//! The allocation guard: a global allocator that stops the process at the first allocation
//! above [`ALLOCATION_BYTES_MAX`].
//!
//! A decoder that trusts a length prefix (`with_capacity(declared)`) allocates what the bytes
//! claim, and a claim of 4 GiB is four bytes long. libFuzzer's own `-malloc_limit_mb` only sees
//! allocations through a sanitizer's hooks, which stable Rust does not have; this guard sees
//! every Rust allocation in both the smoke runner and the libFuzzer build. At the bound it
//! prints the size and the input that asked for it (hex) to stderr without allocating, then
//! aborts: libFuzzer saves the input as a crash, the smoke runner reports a crash.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The largest single allocation a target may make. Inputs are at most a few hundred KiB and
/// the largest legitimate buffer (a snapshot chunk, a segment read) is a few MiB.
pub const ALLOCATION_BYTES_MAX: usize = 64 << 20;

static INPUT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Names the input being run, for the report at the bound. The slice must outlive the run;
/// [`clear_input`] forgets it.
pub fn set_input(input: &[u8]) {
    INPUT_LEN.store(input.len(), Ordering::Relaxed);
    INPUT_PTR.store(input.as_ptr().cast_mut(), Ordering::Relaxed);
}

/// Forgets the input named by [`set_input`].
pub fn clear_input() {
    INPUT_PTR.store(std::ptr::null_mut(), Ordering::Relaxed);
    INPUT_LEN.store(0, Ordering::Relaxed);
}

/// The system allocator with the bound.
#[derive(Debug)]
pub struct AllocGuard;

// SAFETY: every call is forwarded to `System` unchanged; the guard only reads the size first.
unsafe impl GlobalAlloc for AllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn check(size: usize) {
    if size > ALLOCATION_BYTES_MAX {
        report(size);
        std::process::abort();
    }
}

/// Writes the report with stack buffers only: allocating here would recurse.
fn report(size: usize) {
    let mut err = std::io::stderr();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = err.write_all(b"\n==ALLOCATION LIMIT== an allocation of ");
    let _ = err.write_all(&digits[at..]);
    let _ = err.write_all(b" bytes is above the fuzz targets' bound (alloc_guard.rs)\n");
    let ptr = INPUT_PTR.load(Ordering::Relaxed);
    let len = INPUT_LEN.load(Ordering::Relaxed);
    if ptr.is_null() {
        return;
    }
    // SAFETY: `set_input` stored a live slice that stays borrowed until `clear_input`.
    let input = unsafe { std::slice::from_raw_parts(ptr, len) };
    let _ = err.write_all(b"input (hex): ");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in input.chunks(256) {
        let mut line = [0u8; 512];
        for (i, byte) in chunk.iter().enumerate() {
            line[2 * i] = HEX[usize::from(byte >> 4)];
            line[2 * i + 1] = HEX[usize::from(byte & 15)];
        }
        let _ = err.write_all(&line[..2 * chunk.len()]);
    }
    let _ = err.write_all(b"\n");
}
