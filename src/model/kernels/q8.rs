//! `y = x · Wᵀ` for a Q8_0 weight matrix (the output projection of models whose embedding is
//! stored as Q8_0, e.g. SmolLM2's), giving bit for bit what candle's quantized CPU matmul gives,
//! several times faster.
//!
//! candle quantises each activation row to Q8_0 (`BlockQ8_0::from_float`, reused here) and, on
//! CPUs with AVX2 and FMA, takes each output as `vec_dot_q8_0_q8_0`: per block of 32, the eight
//! i32 sums of four byte products, converted to f32 and accumulated lane-wise with one FMA by
//! the product of the two f16 scales, then a fixed horizontal sum. That reads every weight row
//! once per activation row and converts two f16 scales per block in software. This kernel does
//! the same arithmetic per output, in the same order (so the same bits), but holds the weight
//! scales as f32 once, and computes tiles of 4 activation rows × 2 weight rows per pass, so each
//! weight block is loaded once for four rows; with AVX-512 VNNI, two weight rows share one
//! 512-bit register and `vpdpbusd` forms the same integer sums. Where candle would not take its AVX2 path (no
//! AVX2/FMA, or `PROMPTEVO_KERNEL=portable`), [`Q8Matrix::new`] declines and candle runs.

use candle_core::quantized::k_quants::{BlockQ8_0, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

use crate::model::profile::{self, ProductTimer};

/// Values per Q8_0 block.
const BLOCK: usize = 32;
/// Bytes of one candle `BlockQ8_0` (`#[repr(C)] { d: f16, qs: [i8; 32] }`).
const BLOCK_BYTES: usize = 34;
/// Activation rows per tile.
const ROWS: usize = 4;
/// Weight rows (output columns) per tile.
const COLS: usize = 2;
/// Output columns per rayon task.
const COLS_PER_TASK: usize = 256;

/// A Q8_0 matrix (`n × k`) split into its quantised values and its scales as f32.
pub struct Q8Matrix {
    n: usize,
    k: usize,
    /// `n × k` values, row major.
    qs: Vec<i8>,
    /// `n × k / 32` scales (the f16 scales, converted exactly).
    scales: Vec<f32>,
    /// For the AVX-512 VNNI tile: per pair of rows `p` and block `b`, the 64 bytes
    /// `|W[2p][b]| ++ |W[2p+1][b]|` (as candle's `_mm256_sign_epi8(w, w)`), `n` padded to even.
    pairs_abs: Vec<u8>,
    /// Per pair and block, bit `i` set where byte `i` of those 64 is a negative weight.
    pairs_neg: Vec<u64>,
}

/// The f16 at `bytes[0..2]` (little endian) as f32.
fn f16_le(bytes: &[u8]) -> f32 {
    half_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// IEEE half to single, exactly (every f16 is an f32).
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7f80_0000 | (m << 13) | 0x0040_0000,
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Splits candle `BlockQ8_0`s (raw bytes) into values and f32 scales.
fn split_blocks(bytes: &[u8], qs: &mut Vec<i8>, scales: &mut Vec<f32>) {
    for block in bytes.chunks_exact(BLOCK_BYTES) {
        scales.push(f16_le(&block[..2]));
        qs.extend(block[2..].iter().map(|&b| b as i8));
    }
}

/// Whether candle takes its AVX2 path for Q8_0 dot products here (and this kernel may stand in).
fn available() -> bool {
    if super::cpu::portable_forced() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the AVX-512 VNNI tile runs (its integer sums are those of candle's AVX2 sequence).
fn vnni() -> bool {
    if super::cpu::portable_forced() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl Q8Matrix {
    /// The matrix of a Q8_0 `(n, k)` tensor, when this CPU runs the kernel; None otherwise (or
    /// for another dtype), and candle's own matmul is used.
    pub fn new(t: &QTensor) -> Option<Self> {
        Self::build(t, vnni())
    }

    /// As [`Q8Matrix::new`], with the AVX-512 VNNI layout when `pairs` (then the row-major
    /// values are dropped: only the pairs are read, and keeping both would hold the matrix
    /// twice, about 28 MB more for SmolLM2's embedding), else the AVX2 layout.
    fn build(t: &QTensor, pairs: bool) -> Option<Self> {
        if t.dtype() != GgmlDType::Q8_0 || !available() {
            return None;
        }
        let (n, k) = t.shape().dims2().ok()?;
        if k % BLOCK != 0 {
            return None;
        }
        let data = t.data().ok()?;
        if data.len() != n * k / BLOCK * BLOCK_BYTES {
            return None;
        }
        let mut qs = Vec::with_capacity(n * k);
        let mut scales = Vec::with_capacity(n * k / BLOCK);
        split_blocks(&data, &mut qs, &mut scales);
        let (mut pairs_abs, mut pairs_neg) = (Vec::new(), Vec::new());
        if pairs {
            let nb = k / BLOCK;
            for p in 0..n.div_ceil(2) {
                for b in 0..nb {
                    let mut neg = 0u64;
                    for (half, row) in [2 * p, 2 * p + 1].into_iter().enumerate() {
                        for i in 0..BLOCK {
                            let w = if row < n {
                                qs[row * k + b * BLOCK + i]
                            } else {
                                0
                            };
                            pairs_abs.push(w.unsigned_abs());
                            if w < 0 {
                                neg |= 1 << (half * BLOCK + i);
                            }
                        }
                    }
                    pairs_neg.push(neg);
                }
            }
            qs = Vec::new();
        }
        Some(Self {
            n,
            k,
            qs,
            scales,
            pairs_abs,
            pairs_neg,
        })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// `x` (`m × k`) times the transpose: `m × n`, row major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let nb = k / BLOCK;
        assert_eq!(x.len(), m * k, "q8 matmul: x is not {m} × {k}");
        let timer = ProductTimer::new();
        let serial = profile::now();
        // The activations quantised exactly as candle does.
        let mut blocks = vec![BlockQ8_0::zeros(); nb];
        let mut xq = Vec::with_capacity(m * k);
        let mut xs = Vec::with_capacity(m * nb);
        for row in x.chunks_exact(k) {
            BlockQ8_0::from_float(row, &mut blocks);
            // SAFETY: BlockQ8_0 is `#[repr(C)]` and 34 bytes (candle asserts it); these are the
            // bytes of `nb` initialised blocks.
            let bytes = unsafe {
                std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), nb * BLOCK_BYTES)
            };
            split_blocks(bytes, &mut xq, &mut xs);
        }
        let mut out = vec![0f32; m * n];
        let serial = profile::since(serial);
        let tasks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(COLS_PER_TASK))
            .into_par_iter()
            .map(|t| {
                timer.task(|| {
                    let c0 = t * COLS_PER_TASK;
                    let c1 = (c0 + COLS_PER_TASK).min(n);
                    let mut part = vec![0f32; m * (c1 - c0)];
                    self.columns(&xq, &xs, m, c0, c1, &mut part);
                    (c0, part)
                })
            })
            .collect();
        let copy = profile::now();
        for (c0, part) in tasks {
            let w = part.len() / m.max(1);
            for (r, src) in part.chunks_exact(w.max(1)).enumerate().take(m) {
                out[r * n + c0..r * n + c0 + w].copy_from_slice(src);
            }
        }
        timer.finish("q8_0", m, k, n, serial + profile::since(copy));
        out
    }

    /// Outputs of columns `c0..c1` for every row into `part` (`m × (c1 - c0)`).
    fn columns(&self, xq: &[i8], xs: &[f32], m: usize, c0: usize, c1: usize, part: &mut [f32]) {
        let w = c1 - c0;
        let mut c = c0;
        while c < c1 {
            let cols = COLS.min(c1 - c);
            let mut r = 0;
            while r < m {
                let rows = ROWS.min(m - r);
                let mut tile = [[0f32; COLS]; ROWS];
                #[cfg(target_arch = "x86_64")]
                if !self.pairs_abs.is_empty() {
                    // SAFETY: the pairs exist only where `vnni()` held (AVX-512 F/BW/DQ/VNNI);
                    // `c` is even (tiles of COLS = 2 from an even start).
                    unsafe { self.tile_vnni(xq, xs, r, rows, c, &mut tile) };
                } else {
                    // SAFETY: `available()` held when the matrix was made: AVX2 and FMA.
                    unsafe { self.tile_avx2(xq, xs, r, rows, c, cols, &mut tile) };
                }
                for (i, trow) in tile.iter().enumerate().take(rows) {
                    for (j, &v) in trow.iter().enumerate().take(cols) {
                        part[(r + i) * w + (c - c0) + j] = v;
                    }
                }
                r += rows;
            }
            c += cols;
        }
    }

    /// Dot products of activation rows `r..r + rows` with weight rows `c..c + cols`, each
    /// exactly candle's `vec_dot_q8_0_q8_0` (avx.rs): lane-wise FMAs over the blocks in order,
    /// then its horizontal sum.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx2(
        &self,
        xq: &[i8],
        xs: &[f32],
        r: usize,
        rows: usize,
        c: usize,
        cols: usize,
        tile: &mut [[f32; COLS]; ROWS],
    ) {
        use std::arch::x86_64::*;
        let k = self.k;
        let nb = k / BLOCK;
        let mut acc = [[_mm256_setzero_ps(); COLS]; ROWS];
        let ones = _mm256_set1_epi16(1);
        for b in 0..nb {
            let mut wv = [_mm256_setzero_si256(); COLS];
            let mut wd = [0f32; COLS];
            for j in 0..cols {
                let at = (c + j) * k + b * BLOCK;
                wv[j] = _mm256_loadu_si256(self.qs[at..at + BLOCK].as_ptr().cast());
                wd[j] = self.scales[(c + j) * nb + b];
            }
            for i in 0..rows {
                let at = (r + i) * k + b * BLOCK;
                let y = _mm256_loadu_si256(xq[at..at + BLOCK].as_ptr().cast());
                let yd = xs[(r + i) * nb + b];
                for j in 0..cols {
                    // candle: d = to_f32(x.d) * to_f32(y.d), x the weight block.
                    let d = _mm256_set1_ps(wd[j] * yd);
                    let ax = _mm256_sign_epi8(wv[j], wv[j]);
                    let sy = _mm256_sign_epi8(y, wv[j]);
                    let dot = _mm256_maddubs_epi16(ax, sy);
                    let q = _mm256_cvtepi32_ps(_mm256_madd_epi16(ones, dot));
                    acc[i][j] = _mm256_fmadd_ps(d, q, acc[i][j]);
                }
            }
        }
        for i in 0..rows {
            for j in 0..cols {
                let x = acc[i][j];
                let res = _mm256_extractf128_ps(x, 1);
                let res = _mm_add_ps(res, _mm256_castps256_ps128(x));
                let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
                let res = _mm_add_ss(res, _mm_movehdup_ps(res));
                tile[i][j] = _mm_cvtss_f32(res);
            }
        }
    }
}

impl Q8Matrix {
    /// [`Q8Matrix::tile_avx2`] for the weight rows `c`, `c + 1` (a pair; `c` even) in one
    /// 512-bit register, with VNNI's `vpdpbusd` for the byte products: each i32 lane is the same
    /// sum of four products (`|w| · sign(y, w)`, no saturation in either), converted and
    /// accumulated with the same FMA by the same scale product, and each half summed as
    /// candle's `hsum_float_8`. Same bits as candle.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vnni")]
    unsafe fn tile_vnni(
        &self,
        xq: &[i8],
        xs: &[f32],
        r: usize,
        rows: usize,
        c: usize,
        tile: &mut [[f32; COLS]; ROWS],
    ) {
        use std::arch::x86_64::*;
        let k = self.k;
        let nb = k / BLOCK;
        let p = c / 2;
        let n = self.n;
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); ROWS];
        for b in 0..nb {
            let at = (p * nb + b) * 2 * BLOCK;
            let aw = _mm512_loadu_si512(self.pairs_abs[at..at + 2 * BLOCK].as_ptr().cast());
            let neg = self.pairs_neg[p * nb + b];
            let d0 = self.scales[c * nb + b];
            let d1 = if c + 1 < n {
                self.scales[(c + 1) * nb + b]
            } else {
                0.0
            };
            for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                let at = (r + i) * k + b * BLOCK;
                let y = _mm256_loadu_si256(xq[at..at + BLOCK].as_ptr().cast());
                let yy = _mm512_broadcast_i64x4(y);
                // sign(y, w): -y where w < 0 (where w = 0, |w| = 0 makes the product 0).
                let sy = _mm512_mask_sub_epi8(yy, neg, zero, yy);
                let q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, aw, sy));
                let yd = xs[(r + i) * nb + b];
                let d = _mm512_insertf32x8::<1>(
                    _mm512_castps256_ps512(_mm256_set1_ps(d0 * yd)),
                    _mm256_set1_ps(d1 * yd),
                );
                *acc = _mm512_fmadd_ps(d, q, *acc);
            }
        }
        for (i, acc) in acc.iter().enumerate().take(rows) {
            for (j, half) in [
                _mm512_castps512_ps256(*acc),
                _mm512_extractf32x8_ps::<1>(*acc),
            ]
            .into_iter()
            .enumerate()
            {
                let res = _mm256_extractf128_ps(half, 1);
                let res = _mm_add_ps(res, _mm256_castps256_ps128(half));
                let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
                let res = _mm_add_ss(res, _mm_movehdup_ps(res));
                tile[i][j] = _mm_cvtss_f32(res);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn halves_convert_exactly() {
        let cases = [
            (0u16, 0.0f32),
            (0x8000, -0.0),
            (0x3c00, 1.0),
            (0xbc00, -1.0),
            (0x3555, 0.333_251_95),
            (0x0001, 2f32.powi(-24)),
            (0x03ff, 1023.0 * 2f32.powi(-24)),
            (0x0400, 2f32.powi(-14)),
            (0x7bff, 65504.0),
            (0x7c00, f32::INFINITY),
        ];
        for (h, want) in cases {
            assert_eq!(half_to_f32(h).to_bits(), want.to_bits(), "{h:#06x}");
        }
        assert!(half_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn equals_candles_quantized_matmul_bit_for_bit() {
        let Some(_) = Q8Matrix::new(
            &QTensor::quantize(
                &Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
                GgmlDType::Q8_0,
            )
            .unwrap(),
        ) else {
            return; // this CPU runs candle's portable dot product; nothing to stand in for
        };
        let dev = Device::Cpu;
        // Odd shapes: columns not a multiple of the tile, rows not a multiple of 4.
        for (m, n, k) in [(1, 7, 64), (5, 300, 96), (64, 513, 576), (3, 2, 32)] {
            let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
            let ours = Q8Matrix::new(&q).unwrap();
            // The same matrix without the VNNI pairs runs the AVX2 tile.
            let avx2 = Q8Matrix::build(&q, false).unwrap();
            let theirs = QMatMul::from_qtensor(q).unwrap();
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let want: Vec<f32> = theirs
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            for (name, kernel) in [("best", &ours), ("avx2", &avx2)] {
                let got = kernel.matmul(&xv, m);
                assert_eq!(got.len(), want.len());
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{name} ({m}, {n}, {k}) output {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
