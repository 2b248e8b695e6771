//! Deterministic weight initialisation, streamed in blocks.
//!
//! [`fill`] writes the little-endian bytes of one parameter, as the emitter
//! stores them in an ONNX initializer, to any [`Write`] sink in chunks of at
//! most [`BLOCK_ELEMS`] elements, so memory stays small for any model size.
//!
//! `Init::Normal { std }` draws from Normal(0, std). The values of a tensor
//! are split into blocks of [`BLOCK_ELEMS`] elements; block `b` of parameter
//! `name` under build seed `seed` uses its own Xoshiro256++ generator whose
//! 32-byte seed is `SHA-256("tfc.init.normal.v1" ‖ seed (u64 LE) ‖
//! len(name) (u64 LE) ‖ name ‖ b (u64 LE))`. Each value is a
//! `rand_distr::StandardNormal` f32 sample times `std`, rounded to the weight
//! dtype. The stream therefore depends only on (seed, name, dtype, shape,
//! std), never on the other parameters or on how blocks are scheduled, and
//! blocks can be generated in parallel ([`fill_block`]).

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use sha2::{Digest, Sha256};

use crate::ir::{DType, Init};

/// Number of elements per generator block (and per write).
pub const BLOCK_ELEMS: u64 = 1 << 16;

/// Domain-separation label of the normal generator; changes with the stream.
pub const NORMAL_STREAM_ID: &str = "tfc.init.normal.v1";

/// Why a parameter's values could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The initialisation is not defined for the dtype.
    #[error("weight `{name}`: {init} initialisation is not supported for dtype {dtype}")]
    Unsupported {
        /// Parameter name.
        name: String,
        /// The initialisation asked for.
        init: String,
        /// The parameter's dtype.
        dtype: DType,
    },
    /// Explicit data does not match the declared dtype or shape.
    #[error(
        "weight `{name}`: data is {data_dtype}{data_shape:?} ({data_bytes} bytes) \
         but the parameter is {dtype}{shape:?} ({bytes} bytes)"
    )]
    DataMismatch {
        /// Parameter name.
        name: String,
        /// Declared dtype.
        dtype: DType,
        /// Declared shape.
        shape: Vec<u64>,
        /// Expected byte count.
        bytes: u64,
        /// Dtype of the data.
        data_dtype: DType,
        /// Shape of the data.
        data_shape: Vec<u64>,
        /// Byte count of the data.
        data_bytes: u64,
    },
    /// The shape's element or byte count overflows.
    #[error("weight `{name}`: shape {shape:?} is too large")]
    TooLarge {
        /// Parameter name.
        name: String,
        /// Declared shape.
        shape: Vec<u64>,
    },
    /// Writing to the sink failed.
    #[error("weight `{name}`: write failed: {source}")]
    Io {
        /// Parameter name.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Number of elements of `shape`, or `None` on overflow.
pub fn numel(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d))
}

/// Storage size in bytes of a `dtype` tensor of `shape` (sub-byte types are
/// packed, the last byte padded), or `None` on overflow.
pub fn byte_len(dtype: DType, shape: &[u64]) -> Option<u64> {
    let bits = numel(shape)?.checked_mul(dtype.bits())?;
    Some(bits.div_ceil(8))
}

/// Checks that `init` can produce a `dtype` tensor of `shape` and returns its
/// byte length, without generating anything.
pub fn check(name: &str, dtype: DType, shape: &[u64], init: &Init) -> Result<u64, WeightError> {
    let bytes = byte_len(dtype, shape).ok_or_else(|| WeightError::TooLarge {
        name: name.to_string(),
        shape: shape.to_vec(),
    })?;
    match init {
        Init::Normal { .. } if !dtype.is_float() => Err(WeightError::Unsupported {
            name: name.to_string(),
            init: init.to_string(),
            dtype,
        }),
        Init::Data(d) if d.dtype != dtype || d.bytes.len() as u64 != bytes => {
            Err(WeightError::DataMismatch {
                name: name.to_string(),
                dtype,
                shape: shape.to_vec(),
                bytes,
                data_dtype: d.dtype,
                data_shape: d.shape.clone(),
                data_bytes: d.bytes.len() as u64,
            })
        }
        _ => Ok(bytes),
    }
}

/// Writes the bytes of parameter `name` (`dtype`, `shape`, initialised by
/// `init` under build seed `seed`) to `out`, one block at a time. Returns the
/// number of bytes written.
pub fn fill(
    name: &str,
    dtype: DType,
    shape: &[u64],
    init: &Init,
    seed: u64,
    out: &mut impl Write,
) -> Result<u64, WeightError> {
    let total = check(name, dtype, shape, init)?;
    let io = |source| WeightError::Io {
        name: name.to_string(),
        source,
    };
    if let Init::Data(d) = init {
        out.write_all(&d.bytes).map_err(io)?;
        return Ok(total);
    }
    let mut buf = Vec::new();
    for b in 0..block_count(shape) {
        buf.clear();
        fill_block(name, dtype, shape, init, seed, b, &mut buf)?;
        out.write_all(&buf).map_err(io)?;
    }
    Ok(total)
}

/// Number of generator blocks of a tensor of `shape`.
pub fn block_count(shape: &[u64]) -> u64 {
    numel(shape).unwrap_or(0).div_ceil(BLOCK_ELEMS)
}

/// Appends the bytes of block `block` (elements `block * BLOCK_ELEMS ..`) of
/// a generated parameter to `buf`. `Init::Data` is not split into blocks:
/// block 0 is the whole data and later blocks are empty.
pub fn fill_block(
    name: &str,
    dtype: DType,
    shape: &[u64],
    init: &Init,
    seed: u64,
    block: u64,
    buf: &mut Vec<u8>,
) -> Result<(), WeightError> {
    check(name, dtype, shape, init)?;
    let n = numel(shape).unwrap_or(0);
    let start = block.saturating_mul(BLOCK_ELEMS).min(n);
    let count = (n - start).min(BLOCK_ELEMS) as usize;
    match init {
        Init::Data(d) => {
            if block == 0 {
                buf.extend_from_slice(&d.bytes);
            }
        }
        Init::Zeros => constant_block(dtype, start, count, false, buf),
        Init::Ones => constant_block(dtype, start, count, true, buf),
        Init::Normal { std } => {
            let mut rng = Xoshiro256PlusPlus::from_seed(block_seed(seed, name, block));
            let mut sample = || rng.sample::<f32, _>(StandardNormal) * std;
            match dtype {
                DType::F32 => {
                    buf.reserve(count * 4);
                    for _ in 0..count {
                        buf.extend_from_slice(&sample().to_le_bytes());
                    }
                }
                DType::F16 => {
                    buf.reserve(count * 2);
                    for _ in 0..count {
                        let v = half::f16::from_f32(sample());
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
                DType::BF16 => {
                    buf.reserve(count * 2);
                    for _ in 0..count {
                        let v = half::bf16::from_f32(sample());
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
                // `check` rejected every non-float dtype above.
                _ => {}
            }
        }
    }
    Ok(())
}

/// The 32-byte generator seed of one block (see the module docs).
fn block_seed(seed: u64, name: &str, block: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(NORMAL_STREAM_ID.as_bytes());
    h.update(seed.to_le_bytes());
    h.update((name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(block.to_le_bytes());
    h.finalize().into()
}

/// Appends `count` zeros or ones of `dtype`; `start` is the index of the
/// first element, needed to pack 4-bit values.
fn constant_block(dtype: DType, start: u64, count: usize, one: bool, buf: &mut Vec<u8>) {
    let elem: &[u8] = match (dtype, one) {
        (_, false) => &[0],
        (DType::F32, true) => &[0x00, 0x00, 0x80, 0x3f],
        (DType::F16, true) => &[0x00, 0x3c],
        (DType::BF16, true) => &[0x80, 0x3f],
        (DType::I64, true) => &[1, 0, 0, 0, 0, 0, 0, 0],
        (DType::I32, true) => &[1, 0, 0, 0],
        (DType::I8 | DType::U8 | DType::Bool, true) => &[1],
        (DType::I4, true) => &[0x11],
    };
    if dtype == DType::I4 {
        // Two values per byte, low nibble first; blocks start on even
        // elements because BLOCK_ELEMS is even.
        debug_assert!(start.is_multiple_of(2));
        let bytes = count.div_ceil(2);
        buf.extend(std::iter::repeat_n(elem[0], bytes));
        if one && count % 2 == 1 {
            if let Some(last) = buf.last_mut() {
                *last = 0x01;
            }
        }
        return;
    }
    let size = (dtype.bits() / 8) as usize;
    if one {
        for _ in 0..count {
            buf.extend_from_slice(elem);
        }
    } else {
        buf.resize(buf.len() + count * size, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorData;
    use std::sync::Arc;

    fn bytes(dtype: DType, shape: &[u64], init: &Init, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = fill("w", dtype, shape, init, seed, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn normal_is_deterministic_and_seeded() {
        let init = Init::Normal { std: 0.02 };
        let a = bytes(DType::F32, &[300, 301], &init, 7);
        assert_eq!(a.len(), 300 * 301 * 4);
        assert_eq!(a, bytes(DType::F32, &[300, 301], &init, 7));
        assert_ne!(a, bytes(DType::F32, &[300, 301], &init, 8));
        let vals: Vec<f32> = a
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / vals.len() as f32;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 1e-3, "std {}", var.sqrt());
    }

    #[test]
    fn f16_rounds_the_f32_stream() {
        let init = Init::Normal { std: 1.0 };
        let f32s = bytes(DType::F32, &[1000], &init, 1);
        let f16s = bytes(DType::F16, &[1000], &init, 1);
        for (a, b) in f32s.chunks_exact(4).zip(f16s.chunks_exact(2)) {
            let a = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
            let b = half::f16::from_le_bytes([b[0], b[1]]);
            assert_eq!(half::f16::from_f32(a), b);
        }
    }

    #[test]
    fn constants_and_packing() {
        assert_eq!(bytes(DType::F16, &[2], &Init::Ones, 0), [0, 0x3c, 0, 0x3c]);
        assert_eq!(bytes(DType::I4, &[3], &Init::Ones, 0), [0x11, 0x01]);
        assert_eq!(bytes(DType::I64, &[2], &Init::Zeros, 0), [0; 16]);
        assert_eq!(bytes(DType::F32, &[0], &Init::Ones, 0), [0u8; 0]);
    }

    #[test]
    fn data_is_checked() {
        let d = Arc::new(TensorData::f32(vec![2], &[1.0, 2.0]));
        let ok = bytes(DType::F32, &[2], &Init::Data(d.clone()), 0);
        assert_eq!(ok, d.bytes);
        let mut sink = Vec::new();
        let err = fill("w", DType::F32, &[3], &Init::Data(d), 0, &mut sink);
        assert!(matches!(err, Err(WeightError::DataMismatch { .. })));
        let err = fill(
            "w",
            DType::I64,
            &[3],
            &Init::Normal { std: 1.0 },
            0,
            &mut sink,
        );
        assert!(matches!(err, Err(WeightError::Unsupported { .. })));
    }
}
