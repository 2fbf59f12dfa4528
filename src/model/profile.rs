//! Opt-in accounting of where the CPU forward pass spends its threads' time, for the scoring
//! bench's breakdown: each parallel task of a kernel adds its busy time to its part (matrix
//! products per shape, attention, norms, activations, RoPE, residual adds, gathers, the
//! tokenizer), so the parts add up to core-seconds and what the threads did not spend in any of
//! them (serial work between steps, waiting, scheduling) is the rest of `wall × threads`.
//!
//! Off unless [`start`] was called: then each task costs one relaxed atomic load. Process-wide,
//! so one measurement at a time (the bench runs each row in its own process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A part of the forward pass other than the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Attention over the cached and new keys and values.
    Attention,
    /// RMS norms of whole rows (before attention, before the MLP, the final norm, post-norms).
    Norm,
    /// The MLP's gating (SiLU or GELU times up).
    Activation,
    /// Per-row steps on q/k/v: biases, per-head norms, RoPE.
    Rope,
    /// Residual adds.
    Residual,
    /// Row gathers (the last layer's kept rows).
    Gather,
    /// Turning texts into tokens.
    Tokenize,
}

impl Part {
    /// Every part, in report order.
    pub const ALL: [Part; 7] = [
        Part::Attention,
        Part::Norm,
        Part::Activation,
        Part::Rope,
        Part::Residual,
        Part::Gather,
        Part::Tokenize,
    ];

    /// How the breakdown names it.
    pub fn name(self) -> &'static str {
        match self {
            Part::Attention => "attention",
            Part::Norm => "RMS norms",
            Part::Activation => "SiLU/GELU gating",
            Part::Rope => "RoPE, q/k norms, biases",
            Part::Residual => "residual adds",
            Part::Gather => "row gathers",
            Part::Tokenize => "tokenizer",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static BUSY: [AtomicU64; Part::ALL.len()] = [const { AtomicU64::new(0) }; Part::ALL.len()];
static PRODUCTS: Mutex<Vec<Product>> = Mutex::new(Vec::new());

/// Whether accounting is on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Runs `f`, adding its time to `part` when accounting is on.
pub(crate) fn busy<R>(part: Part, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let t = Instant::now();
    let r = f();
    BUSY[part as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}

/// Adds the time until it is dropped to a part (when accounting was on at its creation): for
/// task bodies that return early.
pub(crate) struct Busy {
    part: Part,
    start: Option<Instant>,
}

impl Busy {
    /// Starts timing `part`.
    pub(crate) fn new(part: Part) -> Self {
        Self { part, start: now() }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(t) = self.start {
            BUSY[self.part as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// The busy time of one matrix product's tasks, added up as they run.
pub(crate) struct ProductTimer {
    nanos: AtomicU64,
    on: bool,
}

impl ProductTimer {
    /// A timer for one product (inert when accounting is off).
    pub(crate) fn new() -> Self {
        Self {
            nanos: AtomicU64::new(0),
            on: enabled(),
        }
    }

    /// Runs one task of the product, adding its time.
    pub(crate) fn task<R>(&self, f: impl FnOnce() -> R) -> R {
        if !self.on {
            return f();
        }
        let t = Instant::now();
        let r = f();
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }

    /// Records the product `x (m × k) · Wᵀ (k × n)` of `kernel` with its tasks' time (and
    /// `serial`, time its calling thread spent outside the tasks, e.g. converting `x`).
    pub(crate) fn finish(self, kernel: &'static str, m: usize, k: usize, n: usize, serial: u64) {
        if !self.on {
            return;
        }
        let nanos = self.nanos.into_inner() + serial;
        let mut products = PRODUCTS.lock().unwrap_or_else(|e| e.into_inner());
        match products
            .iter_mut()
            .find(|p| p.kernel == kernel && p.k == k && p.n == n)
        {
            Some(p) => {
                p.rows += m as u64;
                p.calls += 1;
                p.seconds += nanos as f64 * 1e-9;
            }
            None => products.push(Product {
                kernel,
                k,
                n,
                rows: m as u64,
                calls: 1,
                seconds: nanos as f64 * 1e-9,
            }),
        }
    }
}

/// Nanoseconds since `t` (for [`ProductTimer::finish`]'s serial part); 0 when accounting is off.
pub(crate) fn since(t: Option<Instant>) -> u64 {
    t.map_or(0, |t| t.elapsed().as_nanos() as u64)
}

/// Now, when accounting is on.
pub(crate) fn now() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// The matrix products of one shape and kernel, added up.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Product {
    /// Which kernel (`bf16`, `q8_0`, ...).
    pub kernel: &'static str,
    /// Input width.
    pub k: usize,
    /// Output width.
    pub n: usize,
    /// Activation rows multiplied, over all calls.
    pub rows: u64,
    /// Calls.
    pub calls: u64,
    /// Core-seconds spent.
    pub seconds: f64,
}

impl Product {
    /// Floating-point operations done (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * self.rows as f64 * self.k as f64 * self.n as f64
    }
}

/// Where the threads' time went since [`start`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Breakdown {
    /// Matrix products by shape and kernel, largest time first.
    pub products: Vec<Product>,
    /// The other parts: (name, core-seconds).
    pub parts: Vec<(String, f64)>,
}

impl Breakdown {
    /// Core-seconds accounted for.
    pub fn accounted(&self) -> f64 {
        self.products.iter().map(|p| p.seconds).sum::<f64>()
            + self.parts.iter().map(|p| p.1).sum::<f64>()
    }
}

/// Clears the counters and turns accounting on.
pub fn start() {
    for b in &BUSY {
        b.store(0, Ordering::Relaxed);
    }
    PRODUCTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ON.store(true, Ordering::Relaxed);
}

/// Turns accounting off and returns what it counted since [`start`].
pub fn finish() -> Breakdown {
    ON.store(false, Ordering::Relaxed);
    let mut products = std::mem::take(&mut *PRODUCTS.lock().unwrap_or_else(|e| e.into_inner()));
    products.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let parts = Part::ALL
        .iter()
        .map(|&p| {
            (
                p.name().to_string(),
                BUSY[p as usize].load(Ordering::Relaxed) as f64 * 1e-9,
            )
        })
        .collect();
    Breakdown { products, parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_on_and_groups_products_by_shape() {
        let busy_wait = || {
            let t = Instant::now();
            while t.elapsed().as_micros() < 200 {}
        };
        busy(Part::Attention, busy_wait);
        let p = ProductTimer::new();
        p.task(busy_wait);
        p.finish("profile-test", 4, 32, 64, 0);
        start();
        busy(Part::Attention, busy_wait);
        for m in [3, 5] {
            let p = ProductTimer::new();
            p.task(busy_wait);
            p.task(busy_wait);
            p.finish("profile-test", m, 32, 64, 0);
        }
        let b = finish();
        // Other tests of this binary may run kernels meanwhile: look at this test's own entries.
        let ours: Vec<&Product> = b
            .products
            .iter()
            .filter(|p| p.kernel == "profile-test")
            .collect();
        assert_eq!(ours.len(), 1, "{b:?}");
        let p = ours[0];
        assert_eq!((p.rows, p.calls, p.k, p.n), (8, 2, 32, 64));
        assert_eq!(p.flops(), 2.0 * 8.0 * 32.0 * 64.0);
        assert!(p.seconds >= 4.0 * 200e-6, "{p:?}");
        let attention = b.parts.iter().find(|x| x.0 == "attention").unwrap().1;
        assert!(attention >= 200e-6, "{attention}");
        assert!(!enabled());
    }
}
