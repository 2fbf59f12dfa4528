//! What the SIMD kernels may use on this CPU in this process: the `PROMPTEVO_KERNEL=portable`
//! switch and the AVX-512 check. A leaf that every kernel asks.

use std::sync::OnceLock;

/// Whether `PROMPTEVO_KERNEL=portable` asks for the portable code everywhere (read once).
pub(crate) fn portable_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("PROMPTEVO_KERNEL").is_ok_and(|v| v == "portable"))
}

/// Whether the AVX-512 (F, VL) builds of attention and RMS norm may run: the CPU has the
/// features and the portable switch is off.
pub(crate) fn wide_vectors() -> bool {
    if portable_forced() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
