//! `y = x · Wᵀ` for f32 activations `x` (`m × k`) and a bf16 weight matrix `W` (`n × k`, row
//! major, as stored in GGUF). Activations are rounded to bf16 and products are accumulated in f32:
//! on AVX-512 BF16 CPUs with `vdpbf16ps` (32 multiply-adds per instruction), elsewhere with a
//! portable loop that computes the same rounded products.

use rayon::prelude::*;

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum KernelKind {
    /// x86-64 AVX-512 with the BF16 extension.
    Avx512Bf16,
    /// Plain Rust, any CPU.
    Portable,
}

impl KernelKind {
    /// The best kernel this CPU runs (`PROMPTEVO_KERNEL=portable` forces the fallback).
    pub fn detect() -> Self {
        if std::env::var("PROMPTEVO_KERNEL").is_ok_and(|v| v == "portable") {
            return KernelKind::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512bf16")
            {
                return KernelKind::Avx512Bf16;
            }
        }
        KernelKind::Portable
    }
}

/// Rounds an f32 to bf16 (round to nearest even), as `vcvtneps2bf16` does.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = ((b >> 16) & 1) + 0x7fff;
    (b.wrapping_add(round) >> 16) as u16
}

/// Widens a bf16 to f32 (exact).
#[inline]
pub fn bf16_to_f32(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// A weight matrix of `rows × cols` bf16 values, row major.
#[derive(Clone, Debug)]
pub struct Bf16Matrix {
    data: Vec<u16>,
    rows: usize,
    cols: usize,
    kind: KernelKind,
}

/// Rows of `W` handed to one rayon task.
const ROWS_PER_TASK: usize = 48;

/// A raw output pointer that tasks writing disjoint columns may share.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl Bf16Matrix {
    /// Rounds an f32 matrix (`rows × cols`, row major) to bf16.
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            values.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Self {
            data: values.iter().map(|&v| f32_to_bf16(v)).collect(),
            rows,
            cols,
            kind: KernelKind::detect(),
        }
    }

    /// Output features (rows of `W`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (columns of `W`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The kernel in use.
    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// Forces a kernel (tests compare them).
    pub fn with_kind(mut self, kind: KernelKind) -> Self {
        self.kind = kind;
        self
    }

    /// Bytes of weight data.
    pub fn size_in_bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// `x · Wᵀ` for `x` of `m × cols` (row major); returns `m × rows`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        assert_eq!(
            x.len(),
            m * k,
            "activation shape does not match the weight's input size"
        );
        let xb: Vec<u16> = x.iter().map(|&v| f32_to_bf16(v)).collect();
        let mut out = vec![0f32; m * n];
        let ptr = OutPtr(out.as_mut_ptr());
        let tasks = n.div_ceil(ROWS_PER_TASK);
        (0..tasks).into_par_iter().for_each(|t| {
            let ptr = ptr;
            let n0 = t * ROWS_PER_TASK;
            let n1 = (n0 + ROWS_PER_TASK).min(n);
            // SAFETY: each task writes only columns n0..n1 of `out`, which no other task touches,
            // and `out` outlives the parallel loop.
            unsafe { self.block(&xb, m, n0, n1, ptr.0) };
        });
        out
    }

    /// Computes columns `n0..n1` of the output.
    unsafe fn block(&self, xb: &[u16], m: usize, n0: usize, n1: usize, out: *mut f32) {
        match self.kind {
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512Bf16 => {
                avx512::block(xb, &self.data, m, self.rows, self.cols, n0, n1, out)
            }
            _ => portable_block(xb, &self.data, m, self.rows, self.cols, n0, n1, out),
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn portable_block(
    xb: &[u16],
    w: &[u16],
    m: usize,
    n: usize,
    k: usize,
    n0: usize,
    n1: usize,
    out: *mut f32,
) {
    for j in n0..n1 {
        let wr = &w[j * k..(j + 1) * k];
        for i in 0..m {
            let xr = &xb[i * k..(i + 1) * k];
            let mut acc = 0f32;
            for (a, b) in xr.iter().zip(wr) {
                acc += bf16_to_f32(*a) * bf16_to_f32(*b);
            }
            *out.add(i * n + j) = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows of x and of W in one register tile: 8 × 3 = 24 accumulators, 3 weight registers
    /// and one activation register fit AVX-512's 32, and each weight load (from L2) feeds 8
    /// dot products while the activation rows stay in L1.
    const MR: usize = 8;
    const NR: usize = 3;

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn block(
        xb: &[u16],
        w: &[u16],
        m: usize,
        n: usize,
        k: usize,
        n0: usize,
        n1: usize,
        out: *mut f32,
    ) {
        let mut i = 0;
        while i < m {
            let mr = (m - i).min(MR);
            let x = xb.as_ptr().add(i * k);
            let mut j = n0;
            while j < n1 {
                let nr = (n1 - j).min(NR);
                let wp = w.as_ptr().add(j * k);
                let c = out.add(i * n + j);
                if mr == MR && nr == NR {
                    tile::<MR, NR>(x, wp, k, c, n);
                } else if nr == NR {
                    for r in 0..mr {
                        tile::<1, NR>(x.add(r * k), wp, k, c.add(r * n), n);
                    }
                } else if mr == MR {
                    for s in 0..nr {
                        tile::<MR, 1>(x, wp.add(s * k), k, c.add(s), n);
                    }
                } else {
                    for r in 0..mr {
                        for s in 0..nr {
                            tile::<1, 1>(x.add(r * k), wp.add(s * k), k, c.add(r * n + s), n);
                        }
                    }
                }
                j += nr;
            }
            i += mr;
        }
    }

    /// `R × S` dot products of rows of x and rows of W, each of length k.
    #[inline(always)]
    unsafe fn tile<const R: usize, const S: usize>(
        x: *const u16,
        w: *const u16,
        k: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); S]; R];
        let mut kk = 0;
        while kk + 32 <= k {
            let mut wv = [_mm512_setzero_si512(); S];
            for (s, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(w.add(s * k + kk) as *const _);
            }
            for r in 0..R {
                let xv = _mm512_loadu_si512(x.add(r * k + kk) as *const _);
                for s in 0..S {
                    acc[r][s] = _mm512_dpbf16_ps(
                        acc[r][s],
                        std::mem::transmute::<__m512i, __m512bh>(xv),
                        std::mem::transmute::<__m512i, __m512bh>(wv[s]),
                    );
                }
            }
            kk += 32;
        }
        if kk < k {
            let mask: __mmask32 = (1u32 << (k - kk)) - 1;
            let mut wv = [_mm512_setzero_si512(); S];
            for s in 0..S {
                wv[s] = _mm512_maskz_loadu_epi16(mask, w.add(s * k + kk) as *const _);
            }
            for r in 0..R {
                let xv = _mm512_maskz_loadu_epi16(mask, x.add(r * k + kk) as *const _);
                for s in 0..S {
                    acc[r][s] = _mm512_dpbf16_ps(
                        acc[r][s],
                        std::mem::transmute::<__m512i, __m512bh>(xv),
                        std::mem::transmute::<__m512i, __m512bh>(wv[s]),
                    );
                }
            }
        }
        for r in 0..R {
            for s in 0..S {
                *c.add(r * ldc + s) = _mm512_reduce_add_ps(acc[r][s]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|t| {
                        bf16_to_f32(f32_to_bf16(x[i * k + t]))
                            * bf16_to_f32(f32_to_bf16(w[j * k + t]))
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn rounding_matches_known_values() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    }

    #[test]
    fn every_kernel_matches_the_naive_product_on_awkward_shapes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 7, 33),
            (4, 4, 64),
            (9, 130, 70),
            (3, 65, 576),
        ] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let want = naive(&x, &w, m, n, k);
            for kind in [KernelKind::Portable, KernelKind::detect()] {
                let got = Bf16Matrix::from_f32(&w, n, k).with_kind(kind).matmul(&x, m);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-3 * (1.0 + b.abs()),
                        "{kind:?} {m}x{n}x{k}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
