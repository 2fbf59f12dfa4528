//! Walks a GGUF header with every count, length and size checked against the file's real size
//! before candle parses it, so that a crafted file is an error and never a panic, a wrapped size
//! or an allocation the file cannot back (llama.cpp's GGUF loader has had each of these).
//!
//! candle 0.11 already bounds string and array lengths; what it leaves to the caller, and this
//! scan refuses: a `general.alignment` of 0 (a division by zero in candle) or not a power of
//! two, a tensor whose element count or byte size overflows 64 bits (2^42+1 wrapping to a small
//! size), an element count that is not a whole number of quantisation blocks, and tensor data
//! beyond the end of the file.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::GgmlDType;

/// Nested arrays deeper than this are refused (candle's own cap is 64).
const MAX_DEPTH: usize = 8;
/// Dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// What the scan learnt: where tensor data starts and how many bytes the tensors need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes from the start of the file to the end of the last tensor's data.
    pub needed: u64,
}

struct Walker<'r, R> {
    r: &'r mut R,
    file_len: u64,
    /// Bytes consumed so far (tracked here: asking the OS costs a syscall per field).
    pos: u64,
    long_lengths: bool,
}

/// Why a GGUF header is refused: one line saying what is wrong (the caller names the file and
/// the fix).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(std::io::Error),
    /// A count, length, size or value in the header is impossible for this file.
    #[error("{0}")]
    Malformed(String),
}

impl From<String> for ScanError {
    fn from(message: String) -> Self {
        ScanError::Malformed(message)
    }
}

impl From<&str> for ScanError {
    fn from(message: &str) -> Self {
        ScanError::Malformed(message.to_string())
    }
}

type Res<T> = std::result::Result<T, ScanError>;

impl<R: Read + Seek> Walker<'_, R> {
    fn remaining(&mut self) -> Res<u64> {
        Ok(self.file_len.saturating_sub(self.pos))
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Res<[u8; N]> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| format!("file ends inside {what}"))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Res<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Res<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn length(&mut self, what: &str) -> Res<u64> {
        if self.long_lengths {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn skip(&mut self, n: u64, what: &str) -> Res<()> {
        if n > self.remaining()? {
            return Err(format!(
                "{what} claims {n} bytes, more than the file's remaining {}",
                self.remaining()?
            )
            .into());
        }
        // Read through (not seek): a seek would throw away a BufReader's buffer on every field.
        let got = std::io::copy(&mut self.r.by_ref().take(n), &mut std::io::sink())
            .map_err(ScanError::Io)?;
        if got != n {
            return Err(format!("file ends inside {what}").into());
        }
        self.pos += n;
        Ok(())
    }

    /// Reads a string (at most `keep` bytes of it are returned, the rest skipped).
    fn string(&mut self, what: &str, keep: usize) -> Res<String> {
        let len = self.length(what)?;
        if len > self.remaining()? {
            return Err(format!(
                "{what} claims a {len}-byte string, more than the file's remaining {}",
                self.remaining()?
            )
            .into());
        }
        if len as usize <= keep {
            let mut v = vec![0u8; len as usize];
            self.r
                .read_exact(&mut v)
                .map_err(|_| format!("file ends inside {what}"))?;
            self.pos += len;
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        self.skip(len, what)?;
        Ok(String::new())
    }

    /// Minimum bytes one value of this type takes on disk, or None for an unknown type.
    fn min_size(&self, ty: u32) -> Option<u64> {
        let prefix = if self.long_lengths { 8 } else { 4 };
        Some(match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => prefix,
            9 => 4 + prefix,
            _ => return None,
        })
    }

    /// Skips one value of type `ty`; returns it when it is an unsigned integer (for alignment).
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Res<Option<u64>> {
        match ty {
            0 | 1 | 7 => Ok(Some(u64::from(self.bytes::<1>(key)?[0]))),
            2 | 3 => Ok(Some(u64::from(u16::from_le_bytes(self.bytes(key)?)))),
            4 | 5 => Ok(Some(u64::from(self.u32(key)?))),
            6 => self.skip(4, key).map(|_| None),
            10 | 11 => Ok(Some(self.u64(key)?)),
            12 => self.skip(8, key).map(|_| None),
            8 => self.string(key, 0).map(|_| None),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(
                        format!("metadata '{key}' nests arrays deeper than {MAX_DEPTH}").into(),
                    );
                }
                let inner = self.u32(key)?;
                let min = self
                    .min_size(inner)
                    .ok_or_else(|| format!("metadata '{key}' has unknown array type {inner}"))?;
                let count = self.length(key)?;
                let remaining = self.remaining()?;
                if count.saturating_mul(min) > remaining {
                    return Err(format!(
                        "metadata '{key}' claims {count} array elements, more than the file's remaining {remaining} bytes hold"
                    ).into());
                }
                match inner {
                    // Fixed-size elements: one bounded seek.
                    0..=7 | 10..=12 => self.skip(count * min, key)?,
                    _ => {
                        for _ in 0..count {
                            self.value(inner, key, depth + 1)?;
                        }
                    }
                }
                Ok(None)
            }
            _ => Err(format!("metadata '{key}' has unknown value type {ty}").into()),
        }
    }
}

/// The ggml type of a GGUF type code (the codes candle reads; its own map is private).
fn ggml_dtype(code: u32) -> Option<GgmlDType> {
    use GgmlDType::*;
    Some(match code {
        0 => F32,
        1 => F16,
        2 => Q4_0,
        3 => Q4_1,
        6 => Q5_0,
        7 => Q5_1,
        8 => Q8_0,
        9 => Q8_1,
        10 => Q2K,
        11 => Q3K,
        12 => Q4K,
        13 => Q5K,
        14 => Q6K,
        15 => Q8K,
        30 => BF16,
        _ => return None,
    })
}

/// Scans the GGUF header of `r` (a file of `file_len` bytes, read from its start) and leaves the
/// reader at the start again. The error is one line saying what is wrong.
pub(crate) fn scan<R: Read + Seek>(r: &mut R, file_len: u64) -> Res<Scan> {
    r.seek(SeekFrom::Start(0)).map_err(ScanError::Io)?;
    let mut w = Walker {
        r,
        file_len,
        pos: 0,
        long_lengths: true,
    };
    let magic = w.bytes::<4>("the magic number")?;
    if &magic != b"GGUF" {
        return Err("does not start with the GGUF magic number".into());
    }
    let version = w.u32("the version")?;
    w.long_lengths = match version {
        1 => false,
        2 | 3 => true,
        v => return Err(format!("unsupported GGUF version {v}").into()),
    };
    let tensors = w.length("the tensor count")?;
    let kvs = w.length("the metadata count")?;
    let remaining = w.remaining()?;
    // A key-value pair takes at least 13 bytes, a tensor info 24 (v2/v3 length prefixes).
    if kvs
        .saturating_mul(9)
        .saturating_add(tensors.saturating_mul(20))
        > remaining
    {
        return Err(format!(
            "header claims {tensors} tensors and {kvs} metadata entries, more than the file's {file_len} bytes hold"
        ).into());
    }
    let mut alignment = 32u64;
    for _ in 0..kvs {
        let key = w.string("a metadata key", 256)?;
        let ty = w.u32(&key)?;
        let v = w.value(ty, &key, 0)?;
        if key == "general.alignment" {
            // candle reads the alignment from 8-, 16- and 32-bit integers and ignores others.
            if matches!(ty, 0..=5) {
                alignment = v.unwrap_or(32);
            }
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(format!("general.alignment is {alignment}, not a power of two").into());
            }
        }
    }
    let mut infos = Vec::new();
    for _ in 0..tensors {
        let name = w.string("a tensor name", 256)?;
        let n_dims = w.u32(&name)?;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "tensor '{name}' has {n_dims} dimensions, at most {MAX_DIMS} are allowed"
            )
            .into());
        }
        let mut elems: u64 = 1;
        for _ in 0..n_dims {
            let d = if w.long_lengths {
                w.u64(&name)?
            } else {
                u64::from(w.u32(&name)?)
            };
            elems = elems
                .checked_mul(d)
                .ok_or_else(|| format!("tensor '{name}' has more elements than 2^64"))?;
        }
        let ty = w.u32(&name)?;
        let dtype =
            ggml_dtype(ty).ok_or_else(|| format!("tensor '{name}' has unknown type {ty}"))?;
        let offset = w.u64(&name)?;
        let block = dtype.block_size() as u64;
        if !elems.is_multiple_of(block) {
            return Err(format!(
                "tensor '{name}' has {elems} elements, not a whole number of {dtype:?} blocks of {block}"
            ).into());
        }
        let bytes = (elems / block)
            .checked_mul(dtype.type_size() as u64)
            .ok_or_else(|| format!("tensor '{name}' is larger than 2^64 bytes"))?;
        if usize::try_from(elems).is_err() || usize::try_from(bytes).is_err() {
            return Err(format!("tensor '{name}' is too large for this machine").into());
        }
        infos.push((name, offset, bytes));
    }
    let data_start = w.pos.div_ceil(alignment) * alignment;
    let mut needed = data_start;
    for (name, offset, bytes) in infos {
        let end = data_start
            .checked_add(offset)
            .and_then(|s| s.checked_add(bytes))
            .ok_or_else(|| format!("tensor '{name}' ends past 2^64 bytes"))?;
        needed = needed.max(end);
    }
    w.r.seek(SeekFrom::Start(0)).map_err(ScanError::Io)?;
    Ok(Scan { needed })
}
