//! How much memory the node uses: the allocator's count (INFO
//! `used_memory`, what `maxmemory` is compared with) and the process RSS.
//!
//! As Redis's `zmalloc`, the count is kept by the allocator itself: every
//! allocation and release adjusts one counter, so it is exact at any
//! instant (no sampling) and costs one relaxed atomic add per call. Sizes
//! are rounded as glibc's malloc rounds them (16-byte chunks with an
//! 8-byte header) so the count tracks what the heap really holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting.
pub struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

/// What a request of `size` bytes takes from the heap.
#[inline]
fn charged(size: usize) -> isize {
    ((size + 8 + 15) & !15) as isize
}

// SAFETY: every call is forwarded to `System` unchanged; the counter has
// no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(charged(layout.size()), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(charged(layout.size()), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(charged(layout.size()), Ordering::Relaxed);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_add(
                charged(new_size) - charged(layout.size()),
                Ordering::Relaxed,
            );
        }
        p
    }
}

/// Bytes the heap holds for the process (Redis's `used_memory`).
pub fn used() -> u64 {
    ALLOCATED.load(Ordering::Relaxed).max(0) as u64
}

/// The process's resident set size (`used_memory_rss`).
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * if page > 0 { page as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocations_and_releases() {
        // Other test threads allocate too: compare with a margin far
        // below the block's size.
        let before = used();
        // Zeroed: calloc maps it lazily, nothing is touched.
        let block = vec![0u8; 1 << 30];
        let during = used();
        assert!(during >= before + (900 << 20), "{before} -> {during}");
        drop(block);
        let after = used();
        assert!(after + (900 << 20) <= during, "{during} -> {after}");
    }
}
