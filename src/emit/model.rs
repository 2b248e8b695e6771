//! The `ModelProto` shell around a converted graph, and the content hash.
//!
//! The shell carries everything but the graph: IR version, opset imports,
//! producer, doc string and metadata. Metadata is the graph's own entries
//! followed by `tfc.version` and `tfc.content_hash`.
//!
//! `tfc.content_hash` is the lowercase hex SHA-256 of, in order:
//! the label `tfc.content.v1`; the opset imports; the prost encoding of the
//! `GraphProto` without initializers (nodes, names, attributes, inputs,
//! outputs, so it covers the op forms and the weight mode); and for every
//! initializer in file order its name, ONNX data type, dims and a
//! description of its contents: `normal` with the generator id, the standard
//! deviation's f32 bits and the seed; `zeros`; `ones`; or `data` with the
//! SHA-256 of the bytes. Every string and list is length-prefixed (u64 LE).
//! Generated weights are therefore covered through what determines them,
//! without reading their bytes; the hash does not depend on whether the
//! bytes are stored inline or as external data.

use prost::Message;
use sha2::{Digest, Sha256};

use super::convert::{lower, Lowered};
use super::onnx_proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use super::{EmitError, EmitOptions};
use crate::ir::{Graph, Init};
use crate::weights::init::NORMAL_STREAM_ID;

/// The `ModelProto.ir_version` that goes with an opset of the standard domain.
pub(crate) fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        21 | 22 => 10,
        _ => 11,
    }
}

/// The model without its graph.
pub(crate) fn shell(
    graph: &Graph,
    lowered: &Lowered,
    opts: &EmitOptions,
) -> Result<ModelProto, EmitError> {
    let mut opset_import = vec![OperatorSetIdProto {
        domain: Some(String::new()),
        version: Some(opts.opset),
    }];
    for domain in &lowered.domains {
        opset_import.push(OperatorSetIdProto {
            domain: Some(domain.clone()),
            version: Some(1),
        });
    }

    let hash = hash_lowered(lowered, &opset_import, opts.seed);
    let tfc = [
        ("tfc.version", env!("CARGO_PKG_VERSION")),
        ("tfc.content_hash", hash.as_str()),
    ];
    let mut keys = std::collections::HashSet::new();
    let mut metadata_props = Vec::new();
    let entries = graph.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (key, value) in entries.chain(tfc) {
        if !keys.insert(key) {
            return Err(EmitError::DuplicateName {
                kind: "metadata key",
                name: key.to_string(),
            });
        }
        metadata_props.push(StringStringEntryProto {
            key: Some(key.to_string()),
            value: Some(value.to_string()),
        });
    }

    Ok(ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import,
        producer_name: Some("tfc".into()),
        producer_version: Some(opts.producer_version.clone()),
        doc_string: opts.doc_string.clone(),
        metadata_props,
        ..ModelProto::default()
    })
}

/// The `tfc.content_hash` that [`super::emit`] would write for `graph`.
pub fn content_hash(graph: &Graph, opts: &EmitOptions) -> Result<String, EmitError> {
    let lowered = lower(graph, opts)?;
    let shell = shell(graph, &lowered, opts)?;
    Ok(hash_of(&shell))
}

/// The `tfc.content_hash` metadata value of a shell (empty when absent).
pub(crate) fn hash_of(shell: &ModelProto) -> String {
    shell
        .metadata_props
        .iter()
        .find(|p| p.key.as_deref() == Some("tfc.content_hash"))
        .and_then(|p| p.value.clone())
        .unwrap_or_default()
}

/// Hashes a converted graph as described in the module docs.
fn hash_lowered(lowered: &Lowered, opsets: &[OperatorSetIdProto], seed: u64) -> String {
    fn bytes(h: &mut Sha256, b: &[u8]) {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    let mut h = Sha256::new();
    bytes(&mut h, b"tfc.content.v1");
    h.update((opsets.len() as u64).to_le_bytes());
    for o in opsets {
        bytes(&mut h, &o.encode_to_vec());
    }
    bytes(&mut h, &lowered.graph.encode_to_vec());
    for t in &lowered.tensors {
        bytes(&mut h, t.name.as_bytes());
        h.update(t.dtype.onnx_code().to_le_bytes());
        h.update((t.dims.len() as u64).to_le_bytes());
        for d in &t.dims {
            h.update(d.to_le_bytes());
        }
        match &t.init {
            Init::Normal { std } => {
                bytes(&mut h, b"normal");
                bytes(&mut h, NORMAL_STREAM_ID.as_bytes());
                h.update(std.to_bits().to_le_bytes());
                h.update(seed.to_le_bytes());
            }
            Init::Zeros => bytes(&mut h, b"zeros"),
            Init::Ones => bytes(&mut h, b"ones"),
            Init::Data(d) => {
                bytes(&mut h, b"data");
                h.update(Sha256::digest(&d.bytes));
            }
        }
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}
