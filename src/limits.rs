//! Limits on work done for untrusted input that the input's own engine cannot bound: an
//! allocation budget for the current thread, enforced by [`BudgetedAlloc`] when a binary installs
//! it as the global allocator.
//!
//! A chat template comes from a downloaded GGUF file and is code: minijinja's fuel bounds its
//! instructions and a capped writer its output, but a few instructions can still double a string
//! forty times (`{% set s = s ~ s %}`), and minijinja does not count memory. While a render holds
//! a [`Budget`], every allocation on its thread is charged; past the limit the process writes the
//! budget's one-line message to stderr and exits with status 2 (the allocator cannot return an
//! error to the render, and returning null would abort).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

thread_local! {
    /// Bytes this thread may still allocate (`usize::MAX`: no budget).
    static LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// The line to print when the budget is spent.
    static MESSAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An allocation budget for the current thread, lifted when dropped. Budgets do not nest: an
/// inner one replaces the outer one until it is dropped.
pub struct Budget {
    previous: usize,
}

impl Budget {
    /// Charges every allocation of this thread against `bytes` (allocated, not live: frees are
    /// not credited back) until the budget is dropped; past it, `message` ends the process.
    pub fn new(bytes: usize, message: &str) -> Self {
        let mut line = format!("promptevo: error: {message}\n").into_bytes();
        line.shrink_to_fit();
        MESSAGE.with(|m| *m.borrow_mut() = line);
        let previous = LEFT.with(|l| l.replace(bytes));
        Self { previous }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        LEFT.with(|l| l.set(self.previous));
    }
}

/// Charges `size` bytes to the current thread's budget; false when it is spent.
fn charge(size: usize) -> bool {
    LEFT.try_with(|l| {
        let left = l.get();
        if left == usize::MAX {
            return true;
        }
        match left.checked_sub(size) {
            Some(rest) => {
                l.set(rest);
                true
            }
            None => false,
        }
    })
    .unwrap_or(true)
}

/// Writes the budget's message and exits with status 2, without allocating.
fn spent() -> ! {
    use std::io::Write;
    // The budget is lifted first so that nothing below is charged again.
    let _ = LEFT.try_with(|l| l.set(usize::MAX));
    let _ = MESSAGE.try_with(|m| {
        if let Ok(m) = m.try_borrow() {
            let _ = std::io::stderr().write_all(&m);
        }
    });
    // No destructors run: the render that spent the budget is abandoned where it stands.
    std::process::exit(2)
}

/// The system allocator, charging the current thread's [`Budget`] (install it with
/// `#[global_allocator]`; without a budget it costs one thread-local read per allocation).
pub struct BudgetedAlloc;

// SAFETY: every method forwards to `System` with the same arguments; the budget check neither
// allocates nor touches the memory.
unsafe impl GlobalAlloc for BudgetedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !charge(layout.size()) {
            spent()
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !charge(layout.size()) {
            spent()
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !charge(new_size.saturating_sub(layout.size())) {
            spent()
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}
