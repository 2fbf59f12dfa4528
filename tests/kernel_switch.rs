//! `PROMPTEVO_KERNEL=portable` turns off every SIMD kernel of the native path (bf16 and int8
//! matmul, attention, RMS norm, SiLU), and `Bf16Matrix::with_kind` (`Int8Matrix::with_kind`) refuses a kernel that may not run.
//!
//! The switch is read once per process, so the checks run in a child process (this test binary
//! re-run on one test) with the variable set.

use std::process::Command;

use promptevo::model::kernels::{
    Bf16Matrix, Int8Builder, Int8Error, Int8Kind, KernelChoice, KernelKind, KernelUnavailable,
};

/// Runs the named test of this binary in a child with `PROMPTEVO_KERNEL=portable`.
fn run_child(test: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROMPTEVO_KERNEL", "portable")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {test} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {test} did not run:\n{text}"
    );
}

#[test]
fn portable_switch_turns_off_every_simd_kernel() {
    run_child("child_every_kernel_is_portable");
}

#[test]
fn with_kind_refuses_a_kernel_the_switch_rules_out() {
    run_child("child_with_kind_refuses_avx512");
}

#[test]
#[ignore = "run by portable_switch_turns_off_every_simd_kernel with PROMPTEVO_KERNEL=portable"]
fn child_every_kernel_is_portable() {
    assert_eq!(std::env::var("PROMPTEVO_KERNEL").as_deref(), Ok("portable"));
    assert_eq!(
        KernelChoice::current(),
        KernelChoice {
            matmul: KernelKind::Portable,
            int8: Int8Kind::Portable,
            attention_avx512: false,
            rms_norm_avx512: false,
            silu_avx512: false,
        }
    );
}

#[test]
#[ignore = "run by with_kind_refuses_a_kernel_the_switch_rules_out with PROMPTEVO_KERNEL=portable"]
fn child_with_kind_refuses_avx512() {
    let m = Bf16Matrix::from_f32(&[1.0; 64], 2, 32);
    assert_eq!(m.kind(), KernelKind::Portable);
    assert_eq!(
        m.clone().with_kind(KernelKind::Avx512Bf16).err(),
        Some(KernelUnavailable(KernelKind::Avx512Bf16))
    );
    assert!(m.with_kind(KernelKind::Portable).is_ok());
    let mut b = Int8Builder::new(32);
    b.push_f32(&[1.0; 64]);
    let w = b.build();
    assert_eq!(w.kind(), Int8Kind::Portable);
    assert_eq!(
        w.clone().with_kind(Int8Kind::Avx512Vnni).err(),
        Some(Int8Error::Unavailable(Int8Kind::Avx512Vnni))
    );
    assert!(w.with_kind(Int8Kind::Portable).is_ok());
}

#[test]
fn without_the_switch_with_kind_accepts_exactly_the_available_kinds() {
    let m = Bf16Matrix::from_f32(&[1.0; 64], 2, 32);
    for kind in [KernelKind::Portable, KernelKind::Avx512Bf16] {
        assert_eq!(m.clone().with_kind(kind).is_ok(), kind.available());
    }
    let mut b = Int8Builder::new(32);
    b.push_f32(&[1.0; 64]);
    let w = b.build();
    for kind in [Int8Kind::Portable, Int8Kind::Avx512Vnni] {
        assert_eq!(w.clone().with_kind(kind).is_ok(), kind.available());
    }
}
