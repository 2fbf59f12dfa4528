//! Matrix-kernel micro-benchmark: `x · Wᵀ` on SmolLM2-135M's shapes, candle's f32 gemm and Q8_0
//! QMatMul against promptevo's bf16 and int8 kernels (the int8 time includes quantising the
//! activations), interleaved in one run so that machine noise hits them alike. Prints GMAC/s per
//! kernel and the ratios to candle f32 and int8 to bf16.
//!
//! `cargo bench --bench kernels`

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use promptevo::model::kernels::{Bf16Matrix, Int8Builder, Int8Kind};

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    println!(
        "kernel: {:?}, int8: {:?}",
        promptevo::model::kernels::KernelKind::detect(),
        Int8Kind::detect()
    );
    println!("| m x k x n | candle f32 GMAC/s | candle Q8_0 GMAC/s | promptevo bf16 GMAC/s | promptevo int8 GMAC/s | bf16 / f32 | int8 / bf16 |");
    println!("|---|---|---|---|---|---|---|");
    for &(m, k, n) in &[
        (240usize, 576usize, 1536usize),
        (240, 1536, 576),
        (240, 576, 576),
        (32, 576, 1536),
    ] {
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (1, m, k), &dev)?;
        let f32w = QMatMul::Tensor(w.clone());
        let q8 = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0)?)?;
        let bw = Bf16Matrix::from_f32(&w.flatten_all()?.to_vec1()?, n, k);
        let mut iw = Int8Builder::new(k);
        iw.push_f32(&w.flatten_all()?.to_vec1()?);
        let iw = iw.build();
        let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let macs = (m * k * n) as f64;
        let (mut t_f32, mut t_q8, mut t_bf, mut t_i8) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..15 {
            let s = Instant::now();
            f32w.forward(&x)?;
            t_f32 = t_f32.min(s.elapsed().as_secs_f64());
            let s = Instant::now();
            q8.forward(&x)?;
            t_q8 = t_q8.min(s.elapsed().as_secs_f64());
            let s = Instant::now();
            std::hint::black_box(bw.matmul(&xv, m));
            t_bf = t_bf.min(s.elapsed().as_secs_f64());
            let s = Instant::now();
            std::hint::black_box(iw.matmul(&xv, m));
            t_i8 = t_i8.min(s.elapsed().as_secs_f64());
        }
        let g = |t: f64| macs / t / 1e9;
        println!(
            "| {m} x {k} x {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            g(t_f32),
            g(t_q8),
            g(t_bf),
            g(t_i8),
            t_f32 / t_bf,
            t_bf / t_i8
        );
    }
    Ok(())
}
