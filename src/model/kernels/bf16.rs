//! `y = x · Wᵀ` for f32 activations `x` (`m × k`) and a bf16 weight matrix `W` (`n × k`, row
//! major, as stored in GGUF). Activations are rounded to bf16 (round to nearest even) and the
//! products of bf16 values are accumulated in f32: on AVX-512 BF16 CPUs with an AVX-512 kernel,
//! elsewhere with a portable loop that computes the same rounded products.
//!
//! `W` is packed once into panels of 16 output rows: for panel `p`, k-pair `q` and lane `l`, one
//! 32-bit element holds the bf16 pair `(W[16p+l][2q], W[16p+l][2q+1])` (even k in the low half),
//! `n` padded to a multiple of 16 and `k` to even with zeros (≈ 2 bytes per weight). The AVX-512
//! micro-kernel is an outer product: per k-pair it loads `NR` panel vectors, widens each bf16 half
//! to f32 in registers, broadcasts the two (bf16-rounded) activations of each of `MR` rows and
//! issues `2 · MR · NR` f32 FMAs into `MR × NR` accumulators of 16 output columns each, which are
//! stored straight to `y` (masked in the last panel), with no horizontal reductions.
//!
//! Why FMA and not `vdpbf16ps`: a product of two bf16 values is exact in f32, so `fma(x, w, acc)`
//! accumulates exactly the rounded products `vdpbf16ps` would (up to f32 summation order), and on
//! the Sapphire Rapids VMs this runs on `vdpbf16ps zmm` retires only ~1.3 G/s per core (~41
//! GMAC/s, measured in a register-only loop) while f32 FMAs sustain ~70+ GMAC/s in this kernel.

use super::tiles::{self, PANEL};
use crate::model::profile::{self, ProductTimer};

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
        if KernelKind::Avx512Bf16.available() {
            KernelKind::Avx512Bf16
        } else {
            KernelKind::Portable
        }
    }

    /// Whether this kernel may run here: the CPU has its instructions and, for a SIMD kernel,
    /// `PROMPTEVO_KERNEL=portable` is not set.
    pub fn available(self) -> bool {
        match self {
            KernelKind::Portable => true,
            KernelKind::Avx512Bf16 => {
                if super::cpu::portable_forced() {
                    return false;
                }
                #[cfg(target_arch = "x86_64")]
                {
                    std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512bw")
                        && std::arch::is_x86_feature_detected!("avx512bf16")
                }
                #[cfg(not(target_arch = "x86_64"))]
                false
            }
        }
    }
}

/// [`Bf16Matrix::with_kind`] asked for a kernel this CPU (or `PROMPTEVO_KERNEL`) does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0:?} kernel cannot run here (the CPU lacks its instructions or PROMPTEVO_KERNEL=portable is set); use KernelKind::detect()")]
pub struct KernelUnavailable(pub KernelKind);

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

/// A weight matrix of `rows × cols` bf16 values, packed into 16-row panels (see the module docs).
#[derive(Clone, Debug)]
pub struct Bf16Matrix {
    /// `panels × kp × 16` bf16 pairs.
    packed: Vec<u32>,
    rows: usize,
    cols: usize,
    kind: KernelKind,
}

/// Packs two bf16 values into one 32-bit element, `lo` (even k) in the low half.
#[inline]
fn pair(lo: u16, hi: u16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

impl Bf16Matrix {
    /// Rounds an f32 matrix (`rows × cols`, row major) to bf16 and packs it into panels.
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            values.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        let kp = cols.div_ceil(2);
        let panels = rows.div_ceil(PANEL);
        let mut packed = vec![0u32; panels * kp * PANEL];
        for (j, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
            let (p, l) = (j / PANEL, j % PANEL);
            let base = p * kp * PANEL + l;
            for q in 0..kp {
                let lo = f32_to_bf16(row[2 * q]);
                let hi = if 2 * q + 1 < cols {
                    f32_to_bf16(row[2 * q + 1])
                } else {
                    0
                };
                packed[base + q * PANEL] = pair(lo, hi);
            }
        }
        Self {
            packed,
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

    /// Forces a kernel (tests and benchmarks compare them). Refused unless
    /// [`KernelKind::available`]: the matrix's kind is what `matmul` executes, so an AVX-512 kind
    /// on a CPU without those instructions would be undefined behaviour.
    pub fn with_kind(mut self, kind: KernelKind) -> Result<Self, KernelUnavailable> {
        if !kind.available() {
            return Err(KernelUnavailable(kind));
        }
        self.kind = kind;
        Ok(self)
    }

    /// `x · Wᵀ` for `x` of `m × cols` (row major); returns `m × rows`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        assert_eq!(
            x.len(),
            m * k,
            "activation shape does not match the weight's input size"
        );
        if m == 0 || n == 0 {
            return vec![0f32; m * n];
        }
        let timer = ProductTimer::new();
        let serial = profile::now();
        let kp = k.div_ceil(2);
        // Activations as rows of bf16 pairs (`m × kp`, odd k padded with a zero).
        let mut xb;
        match self.kind {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `kind` is only ever set to a kind that `KernelKind::available` accepted
            // (`from_f32` through `detect`, `with_kind` checks), so the CPU has AVX-512 BF16.
            KernelKind::Avx512Bf16 => {
                xb = vec![0u32; m * 2 * kp];
                unsafe { avx512::widen_rows(x, m, k, &mut xb) }
            }
            _ => {
                xb = vec![0u32; m * kp];
                convert_rows(x, m, k, &mut xb)
            }
        }
        let tile = match self.kind {
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512Bf16 => (avx512::MR, avx512::NR),
            _ => (4, 1),
        };
        // SAFETY: `block` writes exactly rows i0..i1 × the panels' columns of the output.
        unsafe {
            tiles::run(
                (m, k, n),
                tile,
                ("bf16", timer, serial),
                |i0, i1, p0, p1, out| self.block(&xb, i0, i1, p0, p1, out),
            )
        }
    }

    /// Computes rows `i0..i1` × panels `p0..p1` of the output.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(&self, xb: &[u32], i0: usize, i1: usize, p0: usize, p1: usize, out: *mut f32) {
        let (n, kp) = (self.rows, self.cols.div_ceil(2));
        match self.kind {
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512Bf16 => avx512::block(xb, &self.packed, n, kp, i0, i1, p0, p1, out),
            _ => portable_block(xb, &self.packed, n, kp, i0, i1, p0, p1, out),
        }
    }
}

/// Rounds `x` (`m × k`) to rows of bf16 pairs (`m × ceil(k/2)`).
fn convert_rows(x: &[f32], m: usize, k: usize, xb: &mut [u32]) {
    let kp = k.div_ceil(2);
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for (q, o) in xb[i * kp..(i + 1) * kp].iter_mut().enumerate() {
            let lo = f32_to_bf16(xr[2 * q]);
            let hi = xr.get(2 * q + 1).map_or(0, |&v| f32_to_bf16(v));
            *o = pair(lo, hi);
        }
    }
}

/// The portable kernel: reads the packed panels, 16 output columns at a time.
#[allow(clippy::too_many_arguments)]
unsafe fn portable_block(
    xb: &[u32],
    w: &[u32],
    n: usize,
    kp: usize,
    i0: usize,
    i1: usize,
    p0: usize,
    p1: usize,
    out: *mut f32,
) {
    let lo = |v: u32| f32::from_bits(v << 16);
    let hi = |v: u32| f32::from_bits(v & 0xffff_0000);
    for p in p0..p1 {
        let panel = &w[p * kp * PANEL..(p + 1) * kp * PANEL];
        let cols = (n - p * PANEL).min(PANEL);
        for i in i0..i1 {
            let xr = &xb[i * kp..(i + 1) * kp];
            let mut acc = [0f32; PANEL];
            for (&xv, wq) in xr.iter().zip(panel.chunks_exact(PANEL)) {
                let (x0, x1) = (lo(xv), hi(xv));
                for (a, &wv) in acc.iter_mut().zip(wq) {
                    *a += x0 * lo(wv) + x1 * hi(wv);
                }
            }
            for (l, &a) in acc.iter().enumerate().take(cols) {
                *out.add(i * n + p * PANEL + l) = a;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::PANEL;
    use std::arch::x86_64::*;

    /// Register tile: `MR` activation rows × `NR` panels of 16 columns = 24 zmm accumulators,
    /// plus `2·NR` widened weight registers and one broadcast: 31 of AVX-512's 32 registers.
    /// (12 × 2 was measured at less than half the speed of 8 × 3: it runs out of registers.)
    pub(super) const MR: usize = 8;
    pub(super) const NR: usize = 3;

    /// Rounds `x` (`m × k`) to bf16 and widens it back to f32 (as bits), in rows of `2·ceil(k/2)`
    /// (odd k padded with a zero): `xf[i][t] = bf16_to_f32(f32_to_bf16(x[i][t]))`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn widen_rows(x: &[f32], m: usize, k: usize, xf: &mut [u32]) {
        let ld = 2 * k.div_ceil(2);
        let ones = _mm512_set1_epi32(1);
        let bias = _mm512_set1_epi32(0x7fff);
        let quiet = _mm512_set1_epi32(0x40);
        for i in 0..m {
            let src = x.as_ptr().add(i * k);
            let dst = xf.as_mut_ptr().add(i * ld);
            let mut t = 0;
            while t < k {
                let mask: __mmask16 = if k - t >= 16 {
                    0xffff
                } else {
                    (1u16 << (k - t)) - 1
                };
                let v = _mm512_maskz_loadu_ps(mask, src.add(t));
                let b = _mm512_castps_si512(v);
                let hi = _mm512_srli_epi32::<16>(b);
                let lsb = _mm512_and_si512(hi, ones);
                let r = _mm512_srli_epi32::<16>(_mm512_add_epi32(b, _mm512_add_epi32(bias, lsb)));
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                let r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, quiet));
                _mm512_mask_storeu_epi32(dst.add(t) as *mut _, mask, _mm512_slli_epi32::<16>(r));
                t += 16;
            }
        }
    }

    /// Computes rows `i0..i1` × panels `p0..p1` of the output (`ldc = n`).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn block(
        xb: &[u32],
        w: &[u32],
        n: usize,
        kp: usize,
        i0: usize,
        i1: usize,
        p0: usize,
        p1: usize,
        out: *mut f32,
    ) {
        let mut p = p0;
        while p < p1 {
            let nr = (p1 - p).min(NR);
            let mut masks = [0xffffu16; NR];
            for (s, mk) in masks.iter_mut().enumerate().take(nr) {
                let cols = (n - (p + s) * PANEL).min(PANEL);
                *mk = ((1u32 << cols) - 1) as u16;
            }
            let wp = w.as_ptr().add(p * kp * PANEL);
            let mut i = i0;
            while i < i1 {
                let mr = (i1 - i).min(MR);
                let xp = xb.as_ptr().add(i * 2 * kp);
                let c = out.add(i * n + p * PANEL);
                macro_rules! go {
                    ($s:literal) => {
                        match mr {
                            8 => tile::<8, $s>(xp, wp, kp, c, n, &masks),
                            7 => tile::<7, $s>(xp, wp, kp, c, n, &masks),
                            6 => tile::<6, $s>(xp, wp, kp, c, n, &masks),
                            5 => tile::<5, $s>(xp, wp, kp, c, n, &masks),
                            4 => tile::<4, $s>(xp, wp, kp, c, n, &masks),
                            3 => tile::<3, $s>(xp, wp, kp, c, n, &masks),
                            2 => tile::<2, $s>(xp, wp, kp, c, n, &masks),
                            _ => tile::<1, $s>(xp, wp, kp, c, n, &masks),
                        }
                    };
                }
                match nr {
                    3 => go!(3),
                    2 => go!(2),
                    _ => go!(1),
                }
                i += mr;
            }
            p += nr;
        }
    }

    /// `R` rows of widened x (row stride `2·kp` f32) × `S` consecutive panels, over all `kp`
    /// k-pairs; stores the `R × 16S` block at `c` (row stride `ldc`), lanes masked by `masks`.
    ///
    /// Each bf16 pair of a panel is widened in registers (even k: shift left by 16, odd k: clear
    /// the low half) and multiplied with f32 FMAs: products of two bf16 are exact in f32, so this
    /// accumulates the same rounded products as `vdpbf16ps`, at the higher f32 FMA rate.
    #[inline(always)]
    unsafe fn tile<const R: usize, const S: usize>(
        x: *const u32,
        w: *const u32,
        kp: usize,
        c: *mut f32,
        ldc: usize,
        masks: &[u16; NR],
    ) {
        let mut acc = [[_mm512_setzero_ps(); S]; R];
        let pstride = kp * PANEL;
        let x = x as *const f32;
        let hi_mask = _mm512_set1_epi32(0xffff_0000u32 as i32);
        for q in 0..kp {
            let mut we = [_mm512_setzero_ps(); S];
            let mut wo = [_mm512_setzero_ps(); S];
            for s in 0..S {
                let v = _mm512_loadu_si512(w.add(s * pstride + q * PANEL) as *const _);
                we[s] = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v));
                wo[s] = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let xe = _mm512_set1_ps(*x.add(r * 2 * kp + 2 * q));
                for (a, w) in row.iter_mut().zip(&we) {
                    *a = _mm512_fmadd_ps(xe, *w, *a);
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let xo = _mm512_set1_ps(*x.add(r * 2 * kp + 2 * q + 1));
                for (a, w) in row.iter_mut().zip(&wo) {
                    *a = _mm512_fmadd_ps(xo, *w, *a);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (s, a) in row.iter().enumerate() {
                _mm512_mask_storeu_ps(c.add(r * ldc + s * PANEL), masks[s], *a);
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
            (17, 49, 31),
            (13, 200, 577),
            (8, 48, 2),
            (1, 15, 3),
            (37, 192, 65),
            (50, 1536, 64),
        ] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let want = naive(&x, &w, m, n, k);
            for kind in [KernelKind::Portable, KernelKind::detect()] {
                let got = Bf16Matrix::from_f32(&w, n, k)
                    .with_kind(kind)
                    .expect("detected kinds are available")
                    .matmul(&x, m);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-3 * (1.0 + b.abs()),
                        "{kind:?} {m}x{n}x{k}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn activation_rounding_matches_f32_to_bf16_in_every_kernel() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut x: Vec<f32> = (0..3 * 37).map(|_| rng.gen_range(-3.0..3.0)).collect();
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            f32::MIN_POSITIVE / 3.0,
            f32::MAX,
            f32::from_bits(0x7f7f_ffff),
        ];
        x[..specials.len()].copy_from_slice(&specials);
        let (m, k): (usize, usize) = (3, 37);
        let kp = k.div_ceil(2);
        let mut want = vec![0u32; m * kp];
        convert_rows(&x, m, k, &mut want);
        for i in 0..m {
            for t in 0..k {
                let v = want[i * kp + t / 2];
                let h = if t % 2 == 0 {
                    v as u16
                } else {
                    (v >> 16) as u16
                };
                assert_eq!(h, f32_to_bf16(x[i * k + t]));
            }
            assert_eq!(want[i * kp + kp - 1] >> 16, 0, "odd k is padded with zero");
        }
        #[cfg(target_arch = "x86_64")]
        if KernelKind::detect() == KernelKind::Avx512Bf16 {
            let mut got = vec![0u32; m * 2 * kp];
            unsafe { avx512::widen_rows(&x, m, k, &mut got) };
            for i in 0..m {
                for t in 0..2 * kp {
                    let h = if t < k { f32_to_bf16(x[i * k + t]) } else { 0 };
                    assert_eq!(got[i * 2 * kp + t], (h as u32) << 16);
                }
            }
        }
    }
}
