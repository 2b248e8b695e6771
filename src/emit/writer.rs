//! Streaming protobuf writer, external data and atomic output.
//!
//! Protobuf fields may appear in any order and a length-delimited field only
//! needs its byte length up front. Every part of the model except the
//! initializers' `raw_data` is small and encoded with prost; each
//! initializer's length is its encoded metadata plus the `raw_data` key,
//! length varint and payload size, all known before any weight is
//! generated. The file is written as: the model shell's fields, the key and
//! length of `ModelProto.graph` (field 7), the graph's other fields, then one
//! `GraphProto.initializer` (field 5) per tensor whose payload is streamed
//! from the weight generator.
//!
//! With external data the payloads go to `OUT.onnx.data` instead (offsets
//! aligned to 64 bytes, or 4096 for tensors of 64 KiB and more) and the
//! tensors carry `data_location = EXTERNAL` with `location`, `offset` and
//! `length` entries. Both files are written to temporary files in the target
//! directory and renamed into place only once complete, the data file first.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use tempfile::NamedTempFile;

use super::convert::{Lowered, Tensor, TensorKind};
use super::onnx_proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto};
use super::payload::{self, Piece};
use super::{EmitError, EmitOptions, EmitReport, ExternalData};

/// The largest message protobuf implementations accept (2 GiB − 1).
const PROTO_LIMIT: u64 = i32::MAX as u64;

/// Initializers of at least this many bytes go external with the weights.
const EXTERNAL_MIN_BYTES: u64 = 1024;

/// Wire type of length-delimited fields.
const LEN: u64 = 2;

/// `ModelProto.graph`.
const MODEL_GRAPH: u64 = 7;
/// `GraphProto.initializer`.
const GRAPH_INITIALIZER: u64 = 5;
/// `TensorProto.raw_data`.
const TENSOR_RAW_DATA: u64 = 9;

/// Size of a varint.
fn varint_len(mut v: u64) -> u64 {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends a varint.
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends the key and length of a length-delimited field.
fn put_len_field(buf: &mut Vec<u8>, field: u64, len: u64) {
    put_varint(buf, field << 3 | LEN);
    put_varint(buf, len);
}

/// Size of a length-delimited field holding `len` bytes.
fn len_field_size(field: u64, len: u64) -> u64 {
    varint_len(field << 3 | LEN) + varint_len(len) + len
}

/// Where one initializer's payload goes.
enum Placement {
    Inline,
    External { offset: u64 },
}

/// One initializer ready to write: its encoded metadata and placement.
struct Entry<'a> {
    tensor: &'a Tensor,
    meta: Vec<u8>,
    placement: Placement,
}

impl Entry<'_> {
    /// Size of the `TensorProto` message.
    fn message_len(&self) -> u64 {
        let meta = self.meta.len() as u64;
        match self.placement {
            Placement::Inline => meta + len_field_size(TENSOR_RAW_DATA, self.tensor.bytes),
            Placement::External { .. } => meta,
        }
    }
}

/// The alignment of an external tensor's offset.
fn alignment(bytes: u64) -> u64 {
    if bytes >= 64 * 1024 {
        4096
    } else {
        64
    }
}

/// Plans every initializer, inline or at an offset of the data file named
/// `location`; returns the entries and the data file's size.
fn plan<'a>(lowered: &'a Lowered, external: bool, location: &str) -> (Vec<Entry<'a>>, u64) {
    let mut entries = Vec::with_capacity(lowered.tensors.len());
    let mut end = 0u64;
    for t in &lowered.tensors {
        let mut meta = t.meta();
        let goes_out = t.kind == TensorKind::Weight || t.bytes >= EXTERNAL_MIN_BYTES;
        let placement = if external && goes_out {
            let offset = end.next_multiple_of(alignment(t.bytes));
            end = offset + t.bytes;
            let entry = |k: &str, v: String| StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            };
            meta.data_location = Some(DataLocation::External as i32);
            meta.external_data = vec![
                entry("location", location.to_string()),
                entry("offset", offset.to_string()),
                entry("length", t.bytes.to_string()),
            ];
            Placement::External { offset }
        } else {
            Placement::Inline
        };
        entries.push(Entry {
            tensor: t,
            meta: meta.encode_to_vec(),
            placement,
        });
    }
    (entries, end)
}

/// Size of the graph message and of the whole model file for a plan.
fn sizes(shell: &[u8], graph: &[u8], entries: &[Entry]) -> (u64, u64) {
    let inits: u64 = entries
        .iter()
        .map(|e| len_field_size(GRAPH_INITIALIZER, e.message_len()))
        .sum();
    let graph_len = graph.len() as u64 + inits;
    let model_len = shell.len() as u64 + len_field_size(MODEL_GRAPH, graph_len);
    (graph_len, model_len)
}

/// The planned layout of the output files.
struct Layout<'a> {
    entries: Vec<Entry<'a>>,
    data_len: u64,
    graph_len: u64,
    model_len: u64,
    /// Whether a data file is written.
    external: bool,
}

/// Decides on external data from the exact size the single file would
/// have, and plans both files.
fn layout<'a>(
    lowered: &'a Lowered,
    shell: &[u8],
    graph: &[u8],
    mode: ExternalData,
    location: &str,
) -> Result<Layout<'a>, EmitError> {
    let (inline, _) = plan(lowered, false, location);
    let (_, inline_len) = sizes(shell, graph, &inline);
    let external = match mode {
        ExternalData::Always => true,
        ExternalData::Never => false,
        ExternalData::Auto => inline_len > PROTO_LIMIT,
    };
    let (entries, data_len) = if external {
        plan(lowered, true, location)
    } else {
        (inline, 0)
    };
    let (graph_len, model_len) = sizes(shell, graph, &entries);
    if model_len > PROTO_LIMIT {
        return Err(EmitError::TooLarge { bytes: model_len });
    }
    let external = entries
        .iter()
        .any(|e| !matches!(e.placement, Placement::Inline));
    Ok(Layout {
        entries,
        data_len,
        graph_len,
        model_len,
        external,
    })
}

/// A writer that counts what passes through.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A temporary file in `dir` that will become `target`.
struct Pending {
    file: Counting<BufWriter<NamedTempFile>>,
    target: PathBuf,
}

impl Pending {
    fn create(dir: &Path, target: &Path) -> Result<Pending, EmitError> {
        let prefix = match target.file_name() {
            Some(n) => format!(".{}.", n.to_string_lossy()),
            None => ".tfc.".to_string(),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = builder.tempfile_in(dir).map_err(|e| io_err(target, e))?;
        Ok(Pending {
            file: Counting {
                inner: BufWriter::with_capacity(1 << 20, tmp),
                count: 0,
            },
            target: target.to_path_buf(),
        })
    }

    /// Writes `pieces` with up to `threads` generator threads.
    fn pieces(&mut self, pieces: &[Piece], seed: u64, threads: usize) -> Result<(), EmitError> {
        let target = &self.target;
        let io = |e| io_err(target, e);
        payload::write_pieces(pieces, seed, threads, &mut self.file, io)
    }

    /// Flushes and returns the finished temporary file and its size.
    fn finish(self) -> Result<(NamedTempFile, u64, PathBuf), EmitError> {
        let count = self.file.count;
        let target = self.target;
        let tmp = self
            .file
            .inner
            .into_inner()
            .map_err(|e| io_err(&target, e.into_error()))?;
        Ok((tmp, count, target))
    }
}

fn io_err(path: &Path, source: io::Error) -> EmitError {
    EmitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Moves a finished temporary file to its target.
fn persist(tmp: NamedTempFile, target: &Path) -> Result<File, EmitError> {
    tmp.persist(target).map_err(|e| io_err(target, e.error))
}

/// Writes the model (and its data file) for `lowered` inside `shell` to `out`.
pub(crate) fn write(
    lowered: &Lowered,
    shell: &ModelProto,
    opts: &EmitOptions,
    out: &Path,
) -> Result<EmitReport, EmitError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = match out.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a file path");
            return Err(io_err(out, e));
        }
    };
    let location = format!("{file_name}.data");
    let data_path = dir.join(&location);

    let shell_bytes = shell.encode_to_vec();
    let graph_bytes = lowered.graph.encode_to_vec();
    let Layout {
        entries,
        data_len,
        graph_len,
        model_len,
        external,
    } = layout(
        lowered,
        &shell_bytes,
        &graph_bytes,
        opts.external_data,
        &location,
    )?;

    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };

    // The data file: payloads at their aligned offsets.
    let data = if external {
        let mut pieces = Vec::new();
        let mut end = 0;
        for e in &entries {
            if let Placement::External { offset } = e.placement {
                pieces.push(Piece::Bytes(vec![0; (offset - end) as usize]));
                pieces.push(Piece::Payload(e.tensor));
                end = offset + e.tensor.bytes;
            }
        }
        let mut f = Pending::create(&dir, &data_path)?;
        f.pieces(&pieces, opts.seed, threads)?;
        let (tmp, n, target) = f.finish()?;
        if n != data_len {
            let msg = format!("wrote {n} bytes, planned {data_len}");
            return Err(io_err(&target, io::Error::other(msg)));
        }
        Some((tmp, n, target))
    } else {
        None
    };

    // The model file: shell, graph header, graph fields, initializers.
    let mut head = shell_bytes;
    put_len_field(&mut head, MODEL_GRAPH, graph_len);
    head.extend_from_slice(&graph_bytes);
    let mut pieces = vec![Piece::Bytes(head)];
    for e in &entries {
        let mut buf = Vec::with_capacity(e.meta.len() + 24);
        put_len_field(&mut buf, GRAPH_INITIALIZER, e.message_len());
        buf.extend_from_slice(&e.meta);
        if let Placement::Inline = e.placement {
            put_len_field(&mut buf, TENSOR_RAW_DATA, e.tensor.bytes);
            pieces.push(Piece::Bytes(buf));
            pieces.push(Piece::Payload(e.tensor));
        } else {
            pieces.push(Piece::Bytes(buf));
        }
    }
    let mut f = Pending::create(&dir, out)?;
    f.pieces(&pieces, opts.seed, threads)?;
    let (model_tmp, model_bytes, _) = f.finish()?;
    if model_bytes != model_len {
        let msg = format!("wrote {model_bytes} bytes, planned {model_len}");
        return Err(io_err(out, io::Error::other(msg)));
    }

    // Rename into place: the data first, so a model never names missing data.
    let (data_path, data_bytes) = match data {
        Some((tmp, n, target)) => {
            persist(tmp, &target)?;
            (Some(target), n)
        }
        None => (None, 0),
    };
    persist(model_tmp, out)?;

    let content_hash = super::model::hash_of(shell);
    Ok(EmitReport {
        model_path: out.to_path_buf(),
        data_path,
        model_bytes,
        data_bytes,
        nodes: lowered.graph.node.len(),
        initializers: lowered.tensors.len(),
        parameters: 0,
        weight_bytes: lowered.tensors.iter().map(|t| t.bytes).sum(),
        content_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::convert::lower;
    use crate::ir::{DType, Graph, Init, TensorData};

    /// A graph with a `[n]` f32 weight and a 2 KiB constant.
    fn lowered(n: u64) -> Lowered {
        let mut g = Graph::new("big");
        let w = g.weight("w", DType::F32, &[n], Init::Zeros);
        let c = g.constant("table", TensorData::f32(vec![512], &[0.0; 512]));
        let s = g.constant("small", TensorData::scalar_f32(1.0));
        g.set_output("w_out", w);
        g.set_output("table_out", c);
        g.set_output("small_out", s);
        lower(&g, &EmitOptions::default()).unwrap()
    }

    fn placements(l: &Layout) -> Vec<Option<u64>> {
        l.entries
            .iter()
            .map(|e| match e.placement {
                Placement::Inline => None,
                Placement::External { offset } => Some(offset),
            })
            .collect()
    }

    #[test]
    fn auto_goes_external_only_past_two_gib() {
        let small = lowered(1000);
        let l = layout(&small, &[], &[], ExternalData::Auto, "m.data").unwrap();
        assert!(!l.external);
        assert_eq!(placements(&l), [None, None, None]);

        // 600M f32 values: 2.4 GB, over the protobuf limit.
        let big = lowered(600_000_000);
        let l = layout(&big, &[], &[], ExternalData::Auto, "m.data").unwrap();
        assert!(l.external && l.model_len < 4096);
        // The constant follows the weight at a 64-byte boundary; the scalar
        // stays inline.
        let after = 2_400_000_000u64.next_multiple_of(64);
        assert_eq!(placements(&l), [Some(0), Some(after), None]);
        assert_eq!(l.data_len, after + 2048);

        let err = layout(&big, &[], &[], ExternalData::Never, "m.data");
        assert!(matches!(err, Err(EmitError::TooLarge { .. })));
    }

    #[test]
    fn varints_match_prost() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            assert_eq!(ours.len() as u64, varint_len(v));
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs);
        }
    }
}
