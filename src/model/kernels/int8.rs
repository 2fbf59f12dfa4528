//! `y = x · Wᵀ` with 8-bit integer dot products: `W` (`n × k`) held per block of 32 along `k`
//! as unsigned bytes `q` (0..=255) with a scale `d` and a minimum `m` (`w = d·q + m`), and each
//! activation row quantised per block of 32 as llama.cpp's Q8_1 (signed bytes with a scale `d_a`
//! and `s_a = d_a · Σ q_a`), so that
//!
//! `y[r][c] = Σ_b d_w·d_a·(Σ q_w·q_a) + m_w·s_a`,
//!
//! the arithmetic of ggml's `ggml_vec_dot_q4_1_q8_1`. Q4_1 weights map onto this layout exactly
//! (q 0..15, the same `d` and `m`), Q8_0 exactly (`q + 128`, `m = -128·d`); any other type is
//! dequantised and re-quantised per block of 32 to 8 bits ([`Int8Builder::push_f32`]).
//!
//! The activations are quantised as ggml's AVX2 `quantize_row_q8_1` does (scale `amax/127`
//! stored as f16, values `x · 127/amax` rounded to nearest even, `s_a` stored as f16), so the
//! integer sums are llama.cpp's; only the order of the per-block float sums differs (ggml keeps
//! eight partial sums per output and adds the minimum terms apart; here each output has one
//! accumulator, `acc = fma(d_w·d_a, Σ, acc)` then `acc = fma(m_w, s_a, acc)` per block, in block
//! order). Both implementations here compute exactly that, so they agree bit for bit.
//!
//! Layout: `W` is packed into panels of 16 output columns; for panel `p`, block `b` and quad `t`
//! (4 consecutive `k`), one 64-byte vector holds the 4 bytes of each of the 16 columns, so that
//! AVX-512 VNNI's `vpdpbusd` (unsigned bytes × signed bytes, four products summed into each i32
//! lane) multiplies it by an activation's 4 bytes broadcast: 8 of them per block give the 16
//! columns' integer sums, then one convert and two FMAs by the 16 columns' `d_w`, `m_w`. Tiles of
//! [`avx512::MR`] activation rows × [`avx512::NR`] panels let one weight load serve several rows.

use rayon::prelude::*;

use super::tiles::{self, PANEL};
use crate::model::profile::{self, ProductTimer};

/// Values per quantisation block along `k`.
pub const BLOCK: usize = 32;
/// Bytes of one panel's block: 32 `k` × 16 columns.
const PANEL_BLOCK: usize = BLOCK * PANEL;
/// Bytes of a GGUF Q4_1 block: f16 `d`, f16 `m`, 16 bytes of nibbles.
const Q4_1_BYTES: usize = 20;
/// Bytes of a GGUF Q8_0 block: f16 `d`, 32 signed bytes.
const Q8_0_BYTES: usize = 34;

/// Which implementation of the int8 product runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Int8Kind {
    /// x86-64 AVX-512 (F, BW) with VNNI's `vpdpbusd`.
    Avx512Vnni,
    /// Plain Rust, any CPU (the same results, bit for bit).
    Portable,
}

impl Int8Kind {
    /// The best implementation this CPU runs (`PROMPTEVO_KERNEL=portable` forces the fallback).
    pub fn detect() -> Self {
        if Int8Kind::Avx512Vnni.available() {
            Int8Kind::Avx512Vnni
        } else {
            Int8Kind::Portable
        }
    }

    /// Whether it may run here: the CPU has its instructions and, for the SIMD one,
    /// `PROMPTEVO_KERNEL=portable` is not set.
    pub fn available(self) -> bool {
        match self {
            Int8Kind::Portable => true,
            Int8Kind::Avx512Vnni => {
                if super::cpu::portable_forced() {
                    return false;
                }
                #[cfg(target_arch = "x86_64")]
                {
                    use std::arch::is_x86_feature_detected as has;
                    has!("avx512f") && has!("avx512bw") && has!("avx512vnni") && has!("fma")
                }
                #[cfg(not(target_arch = "x86_64"))]
                false
            }
        }
    }
}

/// Why quantised weights could not be taken as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Int8Error {
    /// The bytes are not whole rows of whole blocks of the matrix's width.
    #[error("{what}: {len} bytes are not whole rows of {k} values ({block} bytes per 32 values)")]
    Shape {
        /// The block type read.
        what: &'static str,
        /// Bytes given.
        len: usize,
        /// Values per row.
        k: usize,
        /// Bytes per block of 32 values.
        block: usize,
    },
    /// [`Int8Kind`] asked for an implementation this CPU (or `PROMPTEVO_KERNEL`) does not allow.
    #[error("the {0:?} int8 kernel cannot run here (the CPU lacks its instructions or PROMPTEVO_KERNEL=portable is set); use Int8Kind::detect()")]
    Unavailable(Int8Kind),
}

/// Rows of a weight matrix gathered in the quantised form (`q`, `d`, `m` per block of 32),
/// row major, before [`Int8Builder::build`] packs them into panels. Rows from different source
/// types (stacked q/k/v of different types) may be mixed.
#[derive(Clone, Debug)]
pub struct Int8Builder {
    /// Values per row (`k`), before padding to whole blocks.
    k: usize,
    /// `rows × blocks · 32` unsigned values.
    q: Vec<u8>,
    /// `rows × blocks` scales.
    d: Vec<f32>,
    /// `rows × blocks` minimums.
    m: Vec<f32>,
}

impl Int8Builder {
    /// An empty matrix of rows of `k` values.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            q: Vec::new(),
            d: Vec::new(),
            m: Vec::new(),
        }
    }

    /// Blocks per row (`k` padded up to a multiple of 32).
    fn blocks(&self) -> usize {
        self.k.div_ceil(BLOCK)
    }

    /// Rows gathered so far.
    pub fn rows(&self) -> usize {
        self.d.len() / self.blocks().max(1)
    }

    /// Checks that `len` bytes are whole rows of `block`-byte blocks (`k` a multiple of 32).
    fn check(&self, what: &'static str, len: usize, block: usize) -> Result<(), Int8Error> {
        let row = self.k / BLOCK * block;
        if self.k == 0 || !self.k.is_multiple_of(BLOCK) || !len.is_multiple_of(row) {
            return Err(Int8Error::Shape {
                what,
                len,
                k: self.k,
                block,
            });
        }
        Ok(())
    }

    /// Appends rows stored as GGUF Q4_1 blocks (`d`, `m` as f16, then 16 bytes whose low nibbles
    /// are values 0..16 and high nibbles values 16..32): exactly, `q` 0..15 with the same `d`, `m`.
    pub fn push_q4_1(&mut self, bytes: &[u8]) -> Result<(), Int8Error> {
        self.check("Q4_1", bytes.len(), Q4_1_BYTES)?;
        for block in bytes.chunks_exact(Q4_1_BYTES) {
            self.d.push(f16_le(&block[0..2]));
            self.m.push(f16_le(&block[2..4]));
            let nibbles = &block[4..];
            self.q.extend(nibbles.iter().map(|&b| b & 0x0f));
            self.q.extend(nibbles.iter().map(|&b| b >> 4));
        }
        Ok(())
    }

    /// Appends rows stored as GGUF Q8_0 blocks (`d` as f16, 32 signed bytes): exactly, as
    /// `q + 128` with `m = -128·d` (a power-of-two multiple, so exact in f32).
    pub fn push_q8_0(&mut self, bytes: &[u8]) -> Result<(), Int8Error> {
        self.check("Q8_0", bytes.len(), Q8_0_BYTES)?;
        for block in bytes.chunks_exact(Q8_0_BYTES) {
            let d = f16_le(&block[0..2]);
            self.d.push(d);
            self.m.push(-128.0 * d);
            self.q
                .extend(block[2..].iter().map(|&b| (b as i8 as i16 + 128) as u8));
        }
        Ok(())
    }

    /// Appends rows of f32 values (`len` a multiple of `k`), quantised per block of 32 to 8 bits
    /// between the block's minimum and maximum: `d = (max - min)/255`, `m = min`,
    /// `q = round((w - m)/d)`. A row's last block, when `k` is not a multiple of 32, is padded
    /// with its minimum (those values meet zero activations).
    pub fn push_f32(&mut self, values: &[f32]) {
        assert!(
            self.k > 0 && values.len().is_multiple_of(self.k),
            "int8: {} values are not rows of {}",
            values.len(),
            self.k
        );
        for row in values.chunks_exact(self.k) {
            for block in row.chunks(BLOCK) {
                let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (hi - lo) / 255.0;
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                self.d.push(d);
                self.m.push(lo);
                self.q.extend(
                    block
                        .iter()
                        .map(|&w| ((w - lo) * id).round().clamp(0.0, 255.0) as u8),
                );
                self.q.extend(std::iter::repeat_n(0, BLOCK - block.len()));
            }
        }
    }

    /// Packs the rows into 16-column panels for the kernel this CPU runs.
    pub fn build(self) -> Int8Matrix {
        let n = self.rows();
        let nb = self.blocks();
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0u8; panels * nb * PANEL_BLOCK];
        let mut d = vec![0f32; panels * nb * PANEL];
        let mut m = vec![0f32; panels * nb * PANEL];
        for c in 0..n {
            let (p, l) = (c / PANEL, c % PANEL);
            for b in 0..nb {
                let src = &self.q[(c * nb + b) * BLOCK..][..BLOCK];
                let base = (p * nb + b) * PANEL_BLOCK;
                for (t, quad) in src.chunks_exact(4).enumerate() {
                    let at = base + t * 4 * PANEL + l * 4;
                    packed[at..at + 4].copy_from_slice(quad);
                }
                d[(p * nb + b) * PANEL + l] = self.d[c * nb + b];
                m[(p * nb + b) * PANEL + l] = self.m[c * nb + b];
            }
        }
        Int8Matrix {
            packed,
            d,
            m,
            rows: n,
            cols: self.k,
            kind: Int8Kind::detect(),
        }
    }
}

/// The f16 at `bytes[0..2]` (little endian) as f32 (exact).
fn f16_le(bytes: &[u8]) -> f32 {
    half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
}

/// Rounds through f16 (round to nearest even, as F16C's `vcvtps2ph` with rounding mode 0).
fn through_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// A weight matrix (`rows × cols`) packed for the int8 product (see the module docs).
#[derive(Clone, Debug)]
pub struct Int8Matrix {
    /// `panels × blocks × 8 quads × 16 columns × 4` bytes.
    packed: Vec<u8>,
    /// `panels × blocks × 16` scales (0 in padded columns).
    d: Vec<f32>,
    /// `panels × blocks × 16` minimums (0 in padded columns).
    m: Vec<f32>,
    rows: usize,
    cols: usize,
    kind: Int8Kind,
}

/// Activation rows quantised per block of 32 as ggml's Q8_1.
struct Q8Rows {
    /// `m × blocks · 32` values.
    q: Vec<i8>,
    /// `m × blocks` scales (f16-rounded).
    d: Vec<f32>,
    /// `m × blocks` `d · Σ q` (f16-rounded).
    s: Vec<f32>,
}

/// Quantises `x` (`m × k`) as ggml's AVX2 `quantize_row_q8_1` (a short last block padded with
/// zeros), with AVX-512 where the CPU has it (the same values: the maximum does not depend on
/// the order, and `vcvtps2dq` rounds to nearest even as `round_ties_even`).
fn quantize_rows(x: &[f32], m: usize, k: usize) -> Q8Rows {
    let nb = k.div_ceil(BLOCK);
    let mut q = vec![0i8; m * nb * BLOCK];
    let mut d = vec![0f32; m * nb];
    let mut s = vec![0f32; m * nb];
    let wide = super::cpu::wide_vectors();
    q.par_chunks_mut(nb * BLOCK)
        .zip(d.par_chunks_mut(nb))
        .zip(s.par_chunks_mut(nb))
        .zip(x.par_chunks(k.max(1)))
        .with_min_len(8)
        .for_each(|(((qr, dr), sr), xr)| {
            for (b, xb) in xr.chunks(BLOCK).enumerate() {
                let qb = &mut qr[b * BLOCK..(b + 1) * BLOCK];
                #[cfg(target_arch = "x86_64")]
                let (scale, sum) = if wide {
                    // SAFETY: `wide_vectors` checked AVX-512 F and VL.
                    unsafe { avx512::quantize_block(xb, qb) }
                } else {
                    quantize_block(xb, qb)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let (scale, sum) = {
                    let _ = wide;
                    quantize_block(xb, qb)
                };
                dr[b] = through_f16(scale);
                sr[b] = through_f16(scale * sum as f32);
            }
        });
    Q8Rows { q, d, s }
}

/// One block of at most 32 values into `q` (32 bytes, zeros past the values): returns the
/// unrounded scale `amax/127` and the sum of the quantised values.
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (o, &v) in q.iter_mut().zip(x) {
        let v = (v * id).round_ties_even().clamp(-128.0, 127.0) as i8;
        *o = v;
        sum += i32::from(v);
    }
    (amax / 127.0, sum)
}

impl Int8Matrix {
    /// Output features (rows of `W`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (columns of `W`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The implementation in use.
    pub fn kind(&self) -> Int8Kind {
        self.kind
    }

    /// Forces an implementation (tests and benchmarks compare them); refused unless
    /// [`Int8Kind::available`], since a SIMD kind on a CPU without it would be undefined
    /// behaviour.
    pub fn with_kind(mut self, kind: Int8Kind) -> Result<Self, Int8Error> {
        if !kind.available() {
            return Err(Int8Error::Unavailable(kind));
        }
        self.kind = kind;
        Ok(self)
    }

    /// The weight at row `r`, column `c` as the kernel sees it (`d·q + m`), for tests.
    pub fn weight(&self, r: usize, c: usize) -> f32 {
        let nb = self.cols.div_ceil(BLOCK);
        let (p, l, b, j) = (r / PANEL, r % PANEL, c / BLOCK, c % BLOCK);
        let q = self.packed[(p * nb + b) * PANEL_BLOCK + (j / 4) * 4 * PANEL + l * 4 + j % 4];
        let at = (p * nb + b) * PANEL + l;
        self.d[at] * f32::from(q) + self.m[at]
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
        let xq = quantize_rows(x, m, k);
        let tile = match self.kind {
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Avx512Vnni => (avx512::MR, avx512::NR),
            _ => (4, 1),
        };
        // SAFETY: `block` writes exactly rows i0..i1 × the panels' columns of the output.
        unsafe {
            tiles::run(
                (m, k, n),
                tile,
                ("int8", timer, serial),
                |i0, i1, p0, p1, out| self.block(&xq, i0, i1, p0, p1, out),
            )
        }
    }

    /// Computes rows `i0..i1` × panels `p0..p1` of the output.
    unsafe fn block(&self, xq: &Q8Rows, i0: usize, i1: usize, p0: usize, p1: usize, out: *mut f32) {
        match self.kind {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `kind` is only ever a kind `Int8Kind::available` accepted (`build` through
            // `detect`, `with_kind` checks), so the CPU has AVX-512 F/BW, VNNI and FMA.
            Int8Kind::Avx512Vnni => avx512::block(self, xq, i0, i1, p0, p1, out),
            _ => self.portable_block(xq, i0, i1, p0, p1, out),
        }
    }

    /// The portable kernel: per output, the same integer sums and the same float steps, in the
    /// same order, as the SIMD one.
    unsafe fn portable_block(
        &self,
        xq: &Q8Rows,
        i0: usize,
        i1: usize,
        p0: usize,
        p1: usize,
        out: *mut f32,
    ) {
        let n = self.rows;
        let nb = self.cols.div_ceil(BLOCK);
        for p in p0..p1 {
            let cols = (n - p * PANEL).min(PANEL);
            for i in i0..i1 {
                let mut acc = [0f32; PANEL];
                for b in 0..nb {
                    let w = &self.packed[(p * nb + b) * PANEL_BLOCK..][..PANEL_BLOCK];
                    let a = &xq.q[(i * nb + b) * BLOCK..][..BLOCK];
                    let mut sums = [0i32; PANEL];
                    for (t, quad) in w.chunks_exact(4 * PANEL).enumerate() {
                        let aq = &a[4 * t..4 * t + 4];
                        for (s, wl) in sums.iter_mut().zip(quad.chunks_exact(4)) {
                            *s += wl
                                .iter()
                                .zip(aq)
                                .map(|(&w, &a)| i32::from(w) * i32::from(a))
                                .sum::<i32>();
                        }
                    }
                    let (da, sa) = (xq.d[i * nb + b], xq.s[i * nb + b]);
                    let at = (p * nb + b) * PANEL;
                    for l in 0..PANEL {
                        let scale = self.d[at + l] * da;
                        acc[l] = scale.mul_add(sums[l] as f32, acc[l]);
                        acc[l] = self.m[at + l].mul_add(sa, acc[l]);
                    }
                }
                for (l, &a) in acc.iter().enumerate().take(cols) {
                    *out.add(i * n + p * PANEL + l) = a;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Int8Matrix, Q8Rows, BLOCK, PANEL, PANEL_BLOCK};
    use std::arch::x86_64::*;

    /// Register tile: `MR` activation rows × `NR` panels of 16 columns: `MR·NR` i32 block sums
    /// and as many f32 accumulators, plus `NR` weight vectors and a broadcast.
    pub(super) const MR: usize = 4;
    pub(super) const NR: usize = 3;

    /// [`super::quantize_block`] with AVX-512: one block of at most 32 values into `q`.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
        let len = x.len().min(BLOCK);
        let lo = ((1u32 << len.min(16)) - 1) as u16;
        let hi = ((1u32 << (len.max(16) - 16)) - 1) as u16;
        let v0 = _mm512_maskz_loadu_ps(lo, x.as_ptr());
        let v1 = _mm512_maskz_loadu_ps(hi, x.as_ptr().add(16.min(len)));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let id = _mm512_set1_ps(id);
        // Rounds to nearest even (the default MXCSR mode), saturating to i8 as the clamp does.
        let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
        let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        _mm_storeu_si128(q.as_mut_ptr() as *mut _, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(q.as_mut_ptr().add(16) as *mut _, _mm512_cvtsepi32_epi8(q1));
        (amax / 127.0, sum)
    }

    /// Computes rows `i0..i1` × panels `p0..p1` of the output (`ldc = n`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
    pub(super) unsafe fn block(
        w: &Int8Matrix,
        xq: &Q8Rows,
        i0: usize,
        i1: usize,
        p0: usize,
        p1: usize,
        out: *mut f32,
    ) {
        let n = w.rows;
        let nb = w.cols.div_ceil(BLOCK);
        let mut p = p0;
        while p < p1 {
            let nr = (p1 - p).min(NR);
            let mut masks = [0xffffu16; NR];
            for (s, mk) in masks.iter_mut().enumerate().take(nr) {
                let cols = (n - (p + s) * PANEL).min(PANEL);
                *mk = ((1u32 << cols) - 1) as u16;
            }
            let wp = Panels {
                q: w.packed.as_ptr().add(p * nb * PANEL_BLOCK),
                d: w.d.as_ptr().add(p * nb * PANEL),
                m: w.m.as_ptr().add(p * nb * PANEL),
                nb,
            };
            let mut i = i0;
            while i < i1 {
                let mr = (i1 - i).min(MR);
                let x = Rows {
                    q: xq.q.as_ptr().add(i * nb * BLOCK),
                    d: xq.d.as_ptr().add(i * nb),
                    s: xq.s.as_ptr().add(i * nb),
                };
                let c = out.add(i * n + p * PANEL);
                macro_rules! go {
                    ($s:literal) => {
                        match mr {
                            4 => tile::<4, $s>(&x, &wp, c, n, &masks),
                            3 => tile::<3, $s>(&x, &wp, c, n, &masks),
                            2 => tile::<2, $s>(&x, &wp, c, n, &masks),
                            _ => tile::<1, $s>(&x, &wp, c, n, &masks),
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

    /// Consecutive weight panels from the first of a tile.
    struct Panels {
        q: *const u8,
        d: *const f32,
        m: *const f32,
        nb: usize,
    }

    /// Consecutive quantised activation rows from the first of a tile.
    struct Rows {
        q: *const i8,
        d: *const f32,
        s: *const f32,
    }

    /// `R` activation rows × `S` consecutive panels over every block; stores the `R × 16S` block
    /// at `c` (row stride `ldc`), lanes masked by `masks`.
    #[inline(always)]
    unsafe fn tile<const R: usize, const S: usize>(
        x: &Rows,
        w: &Panels,
        c: *mut f32,
        ldc: usize,
        masks: &[u16; NR],
    ) {
        let nb = w.nb;
        let mut acc = [[_mm512_setzero_ps(); S]; R];
        for b in 0..nb {
            let mut sums = [[_mm512_setzero_si512(); S]; R];
            for t in 0..BLOCK / 4 {
                let mut wv = [_mm512_setzero_si512(); S];
                for (s, v) in wv.iter_mut().enumerate() {
                    let at = (s * nb + b) * PANEL_BLOCK + t * 4 * PANEL;
                    *v = _mm512_loadu_si512(w.q.add(at) as *const _);
                }
                for (r, row) in sums.iter_mut().enumerate() {
                    let a = (x.q.add(r * nb * BLOCK + b * BLOCK + 4 * t) as *const i32)
                        .read_unaligned();
                    let a = _mm512_set1_epi32(a);
                    for (sum, v) in row.iter_mut().zip(&wv) {
                        *sum = _mm512_dpbusd_epi32(*sum, *v, a);
                    }
                }
            }
            let mut dw = [_mm512_setzero_ps(); S];
            let mut mw = [_mm512_setzero_ps(); S];
            for s in 0..S {
                dw[s] = _mm512_loadu_ps(w.d.add((s * nb + b) * PANEL));
                mw[s] = _mm512_loadu_ps(w.m.add((s * nb + b) * PANEL));
            }
            for (r, (row, sum)) in acc.iter_mut().zip(&sums).enumerate() {
                let da = _mm512_set1_ps(*x.d.add(r * nb + b));
                let sa = _mm512_set1_ps(*x.s.add(r * nb + b));
                for s in 0..S {
                    let scale = _mm512_mul_ps(dw[s], da);
                    let a = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sum[s]), row[s]);
                    row[s] = _mm512_fmadd_ps(mw[s], sa, a);
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

    /// The product computed from its definition, with plain loops over the builder's
    /// row-major values (before packing).
    fn reference(w: &Int8Builder, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (w.rows(), w.k);
        let nb = k.div_ceil(BLOCK);
        let xq = quantize_rows(x, m, k);
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for c in 0..n {
                let mut acc = 0f32;
                for b in 0..nb {
                    let (dw, mw) = (w.d[c * nb + b], w.m[c * nb + b]);
                    let mut sum = 0i32;
                    for j in 0..BLOCK {
                        let q = i32::from(w.q[(c * nb + b) * BLOCK + j]);
                        sum += q * i32::from(xq.q[(i * nb + b) * BLOCK + j]);
                    }
                    acc = (dw * xq.d[i * nb + b]).mul_add(sum as f32, acc);
                    acc = mw.mul_add(xq.s[i * nb + b], acc);
                }
                out[i * n + c] = acc;
            }
        }
        out
    }

    fn random(rng: &mut impl Rng, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
    }

    #[test]
    fn every_kernel_equals_the_reference_bit_for_bit_on_odd_shapes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for &(m, n, k) in &[
            (1, 1, 32),
            (5, 7, 64),
            (4, 16, 32),
            (9, 130, 96),
            (3, 65, 576),
            (17, 49, 160),
            (13, 200, 1536),
            (37, 192, 64),
            (50, 1536, 576),
        ] {
            let mut b = Int8Builder::new(k);
            b.push_f32(&random(&mut rng, n * k, 0.1));
            let x = random(&mut rng, m * k, 2.0);
            let want = reference(&b, &x, m);
            let w = b.build();
            for kind in [Int8Kind::Portable, Int8Kind::detect()] {
                let got = w.clone().with_kind(kind).unwrap().matmul(&x, m);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{kind:?} {m}x{n}x{k} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_product_is_close_to_the_float_product() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (m, n, k) = (6, 40, 256);
        let wf = random(&mut rng, n * k, 0.1);
        let x = random(&mut rng, m * k, 1.0);
        let mut b = Int8Builder::new(k);
        b.push_f32(&wf);
        let got = b.build().matmul(&x, m);
        for i in 0..m {
            for c in 0..n {
                let exact: f32 = (0..k).map(|t| x[i * k + t] * wf[c * k + t]).sum();
                let g = got[i * n + c];
                // 8-bit weights and activations: errors of ~1/255 and ~1/254 of each block's range.
                assert!((g - exact).abs() < 0.02, "[{i}][{c}]: {g} vs {exact}");
            }
        }
    }

    #[test]
    fn k_not_a_multiple_of_32_pads_with_zero_activations() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (m, n, k) = (3, 20, 45);
        let wf = random(&mut rng, n * k, 0.1);
        let x = random(&mut rng, m * k, 1.0);
        let mut b = Int8Builder::new(k);
        b.push_f32(&wf);
        let want = reference(&b, &x, m);
        let w = b.build();
        for kind in [Int8Kind::Portable, Int8Kind::detect()] {
            let got = w.clone().with_kind(kind).unwrap().matmul(&x, m);
            assert_eq!(got, want, "{kind:?}");
        }
    }

    /// Q4_1 blocks as GGUF stores them: f16 d, f16 m, nibbles (value j low, j + 16 high).
    fn q4_1_block(d: f32, m: f32, q: &[u8; 32]) -> Vec<u8> {
        let mut out = half::f16::from_f32(d).to_le_bytes().to_vec();
        out.extend(half::f16::from_f32(m).to_le_bytes());
        out.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        out
    }

    #[test]
    fn q4_1_and_q8_0_map_exactly() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let (n, k) = (18, 64);
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for _ in 0..n * k / BLOCK {
            let d = through_f16(rng.gen_range(0.001..0.05));
            let m = through_f16(rng.gen_range(-0.4..0.0));
            let q: [u8; 32] = std::array::from_fn(|_| rng.gen_range(0..16));
            bytes.extend(q4_1_block(d, m, &q));
            want.extend(q.iter().map(|&q| d * f32::from(q) + m));
        }
        let mut b = Int8Builder::new(k);
        b.push_q4_1(&bytes).unwrap();
        // Q8_0 rows stacked after the Q4_1 ones, as q/k/v of different types would be.
        let mut q8 = Vec::new();
        for _ in 0..2 * k / BLOCK {
            let d = through_f16(rng.gen_range(0.001..0.05));
            q8.extend(half::f16::from_f32(d).to_le_bytes());
            let q: [i8; 32] = std::array::from_fn(|_| rng.gen_range(-128..=127));
            q8.extend(q.iter().map(|&v| v as u8));
            want.extend(q.iter().map(|&v| d * f32::from(v)));
        }
        b.push_q8_0(&q8).unwrap();
        let w = b.build();
        assert_eq!(w.rows(), n + 2);
        for r in 0..n + 2 {
            for c in 0..k {
                let got = w.weight(r, c);
                let exact = want[r * k + c];
                // d·q + m in f32 equals the f32 dequantisation (ggml computes the same).
                assert_eq!(
                    got.to_bits(),
                    exact.to_bits(),
                    "[{r}][{c}]: {got} vs {exact}"
                );
            }
        }
        assert!(matches!(
            Int8Builder::new(64).push_q4_1(&bytes[..30]),
            Err(Int8Error::Shape { .. })
        ));
    }

    #[test]
    fn simd_and_portable_activation_quantisation_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for len in [32, 31, 17, 16, 5, 1] {
            for _ in 0..200 {
                let mut x = random(&mut rng, len, 3.0);
                // Exact halves after scaling: amax 127 makes id 1.
                x[0] = 127.0;
                if len > 3 {
                    x[1] = 2.5;
                    x[2] = -0.5;
                }
                let mut want = [0i8; 32];
                let (d, sum) = quantize_block(&x, &mut want);
                #[cfg(target_arch = "x86_64")]
                if crate::model::kernels::wide_vectors() {
                    let mut got = [0i8; 32];
                    let (gd, gsum) = unsafe { avx512::quantize_block(&x, &mut got) };
                    assert_eq!((got, gd.to_bits(), gsum), (want, d.to_bits(), sum), "{x:?}");
                }
            }
        }
    }

    #[test]
    fn activations_quantise_as_ggml_q8_1() {
        // amax 127: d = 1 and id = 1 exactly; halves round to even (0.5 -> 0, 1.5 -> 2,
        // 2.5 -> 2, -3.5 -> -4).
        let mut x = vec![0f32; 32];
        x[..6].copy_from_slice(&[127.0, -127.0, 0.5, 1.5, 2.5, -3.5]);
        let q = quantize_rows(&x, 1, 32);
        assert_eq!(&q.q[..6], &[127, -127, 0, 2, 2, -4]);
        assert_eq!(q.d[0], 1.0);
        assert_eq!(q.s[0], 0.0 + 2.0 + 2.0 - 4.0);
        // The scale is stored as f16: amax 1 gives d = f16(1/127), s = f16(d·Σq) from the f32 d.
        let mut x = vec![0f32; 32];
        x[0] = 1.0;
        x[1] = 0.5;
        let q = quantize_rows(&x, 1, 32);
        assert_eq!(&q.q[..2], &[127, 64]);
        assert_eq!(q.d[0], through_f16(1.0 / 127.0));
        assert_eq!(q.s[0], through_f16(1.0 / 127.0 * 191.0));
        let zero = quantize_rows(&[0f32; 32], 1, 32);
        assert!(zero.q.iter().all(|&v| v == 0) && zero.d[0] == 0.0 && zero.s[0] == 0.0);
    }
}
