//! How the packed matrix kernels (bf16, int8) split one product `x (m × k) · Wᵀ` into rayon
//! tasks: groups of `nr` 16-column panels × chunks of rows, about [`TASKS`] of them where the
//! shape allows, so that work stealing balances the threads even when one core is busy with
//! other work. Each task writes its own block of the output; the kernel fills in the block.

use std::time::Instant;

use rayon::prelude::*;

use crate::model::profile::{self, ProductTimer};

/// Output columns in one packed panel (one zmm of f32 or i32 accumulators).
pub(crate) const PANEL: usize = 16;

/// Rayon tasks one product is split into, where the shape allows.
const TASKS: usize = 32;

/// A raw output pointer that tasks writing disjoint blocks may share.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub *mut f32);
// SAFETY: tasks given an `OutPtr` write disjoint blocks of one live allocation (see `run`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// The `m × n` output of one product, computed by `block(i0, i1, p0, p1, out)` over tiles of
/// rows `i0..i1` × panels `p0..p1` (`(mr, nr)`: the kernel's register tile of rows and panels),
/// with its time accounted to `kernel`'s `k × n` product (`serial`: when the calling thread
/// started its own preparation, e.g. converting `x`).
///
/// # Safety
/// `block` must write every element of rows `i0..i1` × columns `16·p0..min(16·p1, n)` of the
/// row-major `m × n` output at `out`, and nothing else.
pub(crate) unsafe fn run(
    (m, k, n): (usize, usize, usize),
    (mr, nr): (usize, usize),
    (kernel, timer, serial): (&'static str, ProductTimer, Option<Instant>),
    block: impl Fn(usize, usize, usize, usize, *mut f32) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let ptr = OutPtr(out.as_mut_ptr());
    let panels = n.div_ceil(PANEL);
    let groups = panels.div_ceil(nr);
    let blocks = m.div_ceil(mr);
    let chunks = TASKS.div_ceil(groups).min(blocks);
    let rows_per_chunk = blocks.div_ceil(chunks) * mr;
    let chunks = m.div_ceil(rows_per_chunk);
    let serial = profile::since(serial);
    (0..groups * chunks).into_par_iter().for_each(|t| {
        // Capture the whole `OutPtr` (which is Sync), not its raw-pointer field.
        #[allow(clippy::redundant_locals)]
        let ptr = ptr;
        let (g, c) = (t / chunks, t % chunks);
        let p0 = g * nr;
        let p1 = (p0 + nr).min(panels);
        let i0 = c * rows_per_chunk;
        let i1 = (i0 + rows_per_chunk).min(m);
        // Each task writes only rows i0..i1 × columns 16·p0..min(16·p1, n) of `out`, which no
        // other task touches; `out` has capacity m·n and outlives the loop.
        timer.task(|| block(i0, i1, p0, p1, ptr.0));
    });
    timer.finish(kernel, m, k, n, serial);
    // SAFETY: the tasks above wrote every one of the m·n elements (the caller's contract).
    unsafe { out.set_len(m * n) };
    out
}
