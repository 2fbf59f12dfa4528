//! `exp` for f32 as glibc computes it (the algorithm of `__expf`, from Arm's optimized-routines:
//! a 32-entry table of `2^(i/32)` and a cubic in double precision, with the FMAs of glibc's
//! x86-64 FMA build), so that a vectorised SiLU gives bit for bit what `f32::exp` gives there
//! (checked on all 2^32 inputs by an ignored test). SiLU is the only `exp`-heavy step of the
//! forward pass; elsewhere (another libm) the vector path still computes one fixed function, so
//! results never depend on how the work was split.

/// `tab[i] = bits(2^(i/32)) - (i << 52) / 32`.
const TAB: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];
/// `32 / ln 2` (`0x1.71547652b82fep0 · 32`).
const INV_LN2_N: f64 = f64::from_bits(0x40471547652b82fe);
/// `1.5 · 2^52` (`0x1.8p52`): adding it rounds to an integer held in the low mantissa bits.
const SHIFT: f64 = f64::from_bits(0x4338000000000000);
/// Cubic coefficients `0x1.c6af84b912394p-5 / 32³`, `0x1.ebfce50fac4f3p-3 / 32²`,
/// `0x1.62e42ff0c52d6p-1 / 32`.
const C: [f64; 3] = [
    f64::from_bits(0x3ebc6af84b912394),
    f64::from_bits(0x3f2ebfce50fac4f3),
    f64::from_bits(0x3f962e42ff0c52d6),
];
/// `|x|` from which glibc takes its special-case path (`top12(88.0)`).
const LIMIT_TOP12: u32 = 0x42b;

#[cfg(test)]
/// Whether `x` is in the range the table path covers (`|x| < 88`, not NaN).
#[inline(always)]
fn in_range(x: f32) -> bool {
    (x.to_bits() >> 20) & 0x7ff < LIMIT_TOP12
}

#[cfg(test)]
/// `e^x`, the same value as glibc's `expf` (outside the table path it is `f32::exp`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    if !in_range(x) {
        return x.exp();
    }
    let xd = x as f64;
    let kd = INV_LN2_N * xd + SHIFT;
    let ki = kd.to_bits();
    let kd = kd - SHIFT;
    // glibc's FMA build contracts `x · 32/ln2 - kd` into one FMA.
    let r = INV_LN2_N.mul_add(xd, -kd);
    let t = TAB[(ki % 32) as usize].wrapping_add(ki << 47);
    let s = f64::from_bits(t);
    let zc = C[0].mul_add(r, C[1]);
    let r2 = r * r;
    let y = C[2].mul_add(r, 1.0);
    let y = zc.mul_add(r2, y);
    (y * s) as f32
}

/// `o = silu(g) · u = g / (1 + e^-g) · u`, as candle's `silu` then `mul`.
pub(crate) fn silu_mul(o: &mut [f32], g: &[f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if silu_vectorised() {
        // SAFETY: `silu_vectorised` checked the CPU features.
        return unsafe { avx512::silu_mul(o, g, u) };
    }
    silu_mul_scalar(o, g, u)
}

/// Whether [`silu_mul`] runs its AVX-512 loop: the CPU has AVX-512 F and DQ and
/// `PROMPTEVO_KERNEL=portable` is not set.
pub(crate) fn silu_vectorised() -> bool {
    if super::cpu::portable_forced() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `x = e^x` for every element (`-inf` gives 0), the same values as `f32::exp` gives with
/// glibc, 16 lanes at a time where [`silu_vectorised`] allows.
pub(crate) fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if silu_vectorised() {
        // SAFETY: `silu_vectorised` checked the CPU features.
        return unsafe { avx512::exp_in_place(x) };
    }
    exp_scalar(x)
}

/// The scalar loop of [`exp_in_place`] (also the vector one's tail and out-of-range groups).
fn exp_scalar(x: &mut [f32]) {
    for v in x {
        *v = v.exp();
    }
}

/// The scalar loop (also the tail of the vector one).
fn silu_mul_scalar(o: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// [`exp`] of 8 lanes already known to be in range.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn exp8(x: __m256, tab: &[__m512i; 4]) -> __m256 {
        let xd = _mm512_cvtps_pd(x);
        let inv = _mm512_set1_pd(INV_LN2_N);
        let shift = _mm512_set1_pd(SHIFT);
        let kd = _mm512_add_pd(_mm512_mul_pd(inv, xd), shift);
        let ki = _mm512_castpd_si512(kd);
        let kd = _mm512_sub_pd(kd, shift);
        let r = _mm512_fmsub_pd(inv, xd, kd);
        let idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
        let lo = _mm512_permutex2var_epi64(tab[0], idx, tab[1]);
        let hi = _mm512_permutex2var_epi64(tab[2], idx, tab[3]);
        let upper = _mm512_test_epi64_mask(idx, _mm512_set1_epi64(16));
        let t = _mm512_mask_blend_epi64(upper, lo, hi);
        let s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
        let zc = _mm512_fmadd_pd(_mm512_set1_pd(C[0]), r, _mm512_set1_pd(C[1]));
        let r2 = _mm512_mul_pd(r, r);
        let y = _mm512_fmadd_pd(_mm512_set1_pd(C[2]), r, _mm512_set1_pd(1.0));
        let y = _mm512_fmadd_pd(zc, r2, y);
        _mm512_cvtpd_ps(_mm512_mul_pd(y, s))
    }

    /// The four 512-bit registers of the `2^(i/32)` table.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn table() -> [__m512i; 4] {
        [
            _mm512_loadu_si512(TAB.as_ptr() as *const _),
            _mm512_loadu_si512(TAB.as_ptr().add(8) as *const _),
            _mm512_loadu_si512(TAB.as_ptr().add(16) as *const _),
            _mm512_loadu_si512(TAB.as_ptr().add(24) as *const _),
        ]
    }

    /// [`exp8`] of 16 lanes in range.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn exp16(x: __m512, tab: &[__m512i; 4]) -> __m512 {
        let e0 = exp8(_mm512_castps512_ps256(x), tab);
        let e1 = exp8(
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))),
            tab,
        );
        _mm512_insertf32x8::<1>(_mm512_castps256_ps512(e0), e1)
    }

    /// Whether any lane of `x` is outside the table path (`|x| >= 88`, infinite or NaN).
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn out_of_range(x: __m512) -> bool {
        let abs = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fff_ffff));
        _mm512_cmpge_epu32_mask(abs, _mm512_set1_epi32((LIMIT_TOP12 << 20) as i32)) != 0
    }

    /// [`super::exp_in_place`], 16 lanes at a time; a group with a lane out of range (masked
    /// keys' `-inf` among them) takes the scalar loop.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn exp_in_place(x: &mut [f32]) {
        let tab = table();
        let n = x.len();
        let mut i = 0;
        while i + 16 <= n {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            if out_of_range(v) {
                exp_scalar(&mut x[i..i + 16]);
            } else {
                _mm512_storeu_ps(x.as_mut_ptr().add(i), exp16(v, &tab));
            }
            i += 16;
        }
        exp_scalar(&mut x[i..n]);
    }

    /// [`super::silu_mul`], 16 lanes at a time.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn silu_mul(o: &mut [f32], g: &[f32], u: &[f32]) {
        let n = o.len().min(g.len()).min(u.len());
        let tab = table();
        let one = _mm512_set1_ps(1.0);
        let mut i = 0;
        while i + 16 <= n {
            let gv = _mm512_loadu_ps(g.as_ptr().add(i));
            // -g (a sign flip, as scalar negation).
            let x = _mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(gv),
                _mm512_set1_epi32(i32::MIN),
            ));
            // |x| >= 88 or NaN: the whole group takes the scalar path (rare).
            if out_of_range(x) {
                silu_mul_scalar(&mut o[i..i + 16], &g[i..i + 16], &u[i..i + 16]);
                i += 16;
                continue;
            }
            let e = exp16(x, &tab);
            let s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            let r = _mm512_mul_ps(s, _mm512_loadu_ps(u.as_ptr().add(i)));
            _mm512_storeu_ps(o.as_mut_ptr().add(i), r);
            i += 16;
        }
        silu_mul_scalar(&mut o[i..n], &g[i..n], &u[i..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `step`-th f32 bit pattern.
    fn check(step: u32) {
        let mut bad = Vec::new();
        let mut bits = 0u32;
        loop {
            let x = f32::from_bits(bits);
            let (a, b) = (exp(x), x.exp());
            if a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()) && bad.len() < 10 {
                bad.push((x, a, b));
            }
            match bits.checked_add(step) {
                Some(b) => bits = b,
                None => break,
            }
        }
        assert!(bad.is_empty(), "differs from f32::exp: {bad:?}");
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn scalar_exp_is_glibc_expf_on_a_sample_of_all_floats() {
        check(997);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[ignore = "exhaustive: 2^32 inputs"]
    fn silu_mul_matches_the_scalar_formula_on_all_floats() {
        let chunk = 1 << 20;
        let u = vec![1f32; chunk];
        let (mut got, mut want) = (vec![0f32; chunk], vec![0f32; chunk]);
        for c in 0..(1u64 << 32) / chunk as u64 {
            let g: Vec<f32> = (0..chunk as u64)
                .map(|i| f32::from_bits((c * chunk as u64 + i) as u32))
                .collect();
            silu_mul(&mut got, &g, &u);
            silu_mul_scalar(&mut want, &g, &u);
            for ((a, b), x) in got.iter().zip(&want).zip(&g) {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "g = {x:e}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn silu_mul_matches_the_scalar_formula_bit_for_bit() {
        let n = 16 * 4099 + 5;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.0137).sin() * (1.0 + (i % 97) as f32))
            .chain([
                90.0,
                -90.0,
                f32::NAN,
                f32::INFINITY,
                -0.0,
                87.9,
                -87.9,
                -103.0,
                200.0,
            ])
            .collect();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let mut got = vec![0f32; g.len()];
        silu_mul(&mut got, &g, &u);
        let mut want = vec![0f32; g.len()];
        silu_mul_scalar(&mut want, &g, &u);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "g = {}: {a} vs {b}",
                g[i]
            );
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn exp_in_place_is_f32_exp_bit_for_bit_masked_keys_included() {
        // Softmax inputs: x - max <= 0, with masked keys at -inf and some far below -88.
        let mut x: Vec<f32> = (0..16 * 997 + 7)
            .map(|i| match i % 53 {
                0 => f32::NEG_INFINITY,
                1 => -100.0 - i as f32,
                _ => -((i as f32) * 0.003_71).rem_euclid(90.0),
            })
            .collect();
        x.extend([0.0, -0.0, 1.5, 87.9, f32::NAN]);
        let want: Vec<u32> = x.iter().map(|v| v.exp().to_bits()).collect();
        exp_in_place(&mut x);
        let got: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }
}
