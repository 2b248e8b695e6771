//! Ordered, parallel generation of initializer payloads.
//!
//! A file is a list of [`Piece`]s: encoded protobuf bytes written as they
//! are, and tensor payloads. Generated payloads (`Normal`, `Zeros`, `Ones`)
//! are cut into the generator's blocks; worker `w` of `n` produces blocks
//! `w, w + n, w + 2n, …` of the whole file and hands each to the writer over
//! its own bounded channel, so the writer receives them in file order while
//! the workers run ahead by a few blocks. Memory stays at a few blocks per
//! worker, and the bytes are the same for any number of workers. The
//! writer checks [`crate::interrupt`] before every piece and block and stops
//! with [`EmitError::Interrupted`] when asked to.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

use super::convert::Tensor;
use super::EmitError;
use crate::ir::Init;
use crate::weights::init::{block_count, fill_block, WeightError};

/// Blocks each worker may have finished ahead of the writer.
const AHEAD: usize = 4;

/// One part of an output file.
pub(crate) enum Piece<'a> {
    /// Bytes written as they are (encoded fields, padding).
    Bytes(Vec<u8>),
    /// The payload of a tensor.
    Payload(&'a Tensor),
}

/// Fails once an interrupt was requested.
fn check_interrupt() -> Result<(), EmitError> {
    crate::interrupt::check().map_err(|_| EmitError::Interrupted)
}

/// Whether a tensor's payload is generated block by block.
fn generated(t: &Tensor) -> bool {
    !matches!(t.init, Init::Data(_))
}

/// Writes `pieces` to `out` in order with up to `threads` generator
/// threads; `io` turns a write error into the caller's error. Each payload's
/// size is checked against the tensor's declared byte length.
pub(crate) fn write_pieces<W: Write>(
    pieces: &[Piece],
    seed: u64,
    threads: usize,
    out: &mut W,
    io: impl Fn(std::io::Error) -> EmitError,
) -> Result<(), EmitError> {
    let jobs: Vec<(&Tensor, u64)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Payload(t) if generated(t) => Some(*t),
            _ => None,
        })
        .flat_map(|t| (0..block_count(&t.dims)).map(move |b| (t, b)))
        .collect();
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        return write_serial(pieces, seed, out, io);
    }

    thread::scope(|s| {
        let mut rx: Vec<Receiver<Result<Vec<u8>, WeightError>>> = Vec::new();
        for w in 0..threads {
            let (tx, r) = sync_channel(AHEAD);
            rx.push(r);
            let jobs = &jobs;
            s.spawn(move || {
                for (t, b) in jobs.iter().skip(w).step_by(threads) {
                    let mut buf = Vec::new();
                    let res = fill_block(&t.name, t.dtype, &t.dims, &t.init, seed, *b, &mut buf);
                    // A closed channel means the writer stopped.
                    if tx.send(res.map(|()| buf)).is_err() {
                        return;
                    }
                }
            });
        }

        let mut k = 0usize;
        for piece in pieces {
            check_interrupt()?;
            match piece {
                Piece::Bytes(b) => out.write_all(b).map_err(&io)?,
                Piece::Payload(t) if !generated(t) => t.write_bytes(seed, out)?,
                Piece::Payload(t) => {
                    let mut written = 0u64;
                    for _ in 0..block_count(&t.dims) {
                        check_interrupt()?;
                        let block = rx[k % threads].recv().map_err(|_| {
                            io(std::io::Error::other("a weight generator thread failed"))
                        })??;
                        k += 1;
                        written += block.len() as u64;
                        out.write_all(&block).map_err(&io)?;
                    }
                    check_size(t, written, &io)?;
                }
            }
        }
        Ok(())
    })
}

/// [`write_pieces`] on the calling thread.
fn write_serial<W: Write>(
    pieces: &[Piece],
    seed: u64,
    out: &mut W,
    io: impl Fn(std::io::Error) -> EmitError,
) -> Result<(), EmitError> {
    let mut buf = Vec::new();
    for piece in pieces {
        check_interrupt()?;
        match piece {
            Piece::Bytes(b) => out.write_all(b).map_err(&io)?,
            Piece::Payload(t) if !generated(t) => t.write_bytes(seed, out)?,
            Piece::Payload(t) => {
                let mut written = 0u64;
                for b in 0..block_count(&t.dims) {
                    check_interrupt()?;
                    buf.clear();
                    fill_block(&t.name, t.dtype, &t.dims, &t.init, seed, b, &mut buf)?;
                    written += buf.len() as u64;
                    out.write_all(&buf).map_err(&io)?;
                }
                check_size(t, written, &io)?;
            }
        }
    }
    Ok(())
}

/// Fails when a generated payload's size differs from the planned one.
fn check_size(
    t: &Tensor,
    written: u64,
    io: impl Fn(std::io::Error) -> EmitError,
) -> Result<(), EmitError> {
    if written == t.bytes {
        return Ok(());
    }
    let msg = format!("`{}` produced {written} bytes, not {}", t.name, t.bytes);
    Err(io(std::io::Error::other(msg)))
}
