//! Lowering of tiny hand-built models: each lowers and verifies, keeps
//! symbolic output shapes, and has the parameter count computed by hand.

mod lower_common;

use lower_common::*;
use tfc::ir::{self, DType, Dim, Op};
use tfc::lower::{lower, LowerError};
use tfc::model::*;

fn ops(graph: &ir::Graph) -> Vec<&'static str> {
    graph
        .g
        .node_indices()
        .map(|n| graph.g[n].op.name())
        .collect()
}

#[test]
fn encoder_lowers_with_symbolic_shapes() {
    let model = bert(vec![head("last_hidden_state", HeadKind::Hidden)]);
    let graph = lower(&model).expect("lowers");
    ir::verify(&graph).expect("verifies");
    assert_eq!(graph.parameter_count(), bert_parameters());
    assert_eq!(output_names(&graph), ["last_hidden_state"]);
    assert_eq!(
        output(&graph, "last_hidden_state"),
        (DType::F32, seq_shape(&[H as i64]))
    );
    assert!(graph
        .metadata
        .contains(&("tfc.model".to_string(), "tiny_bert".to_string())));
    for name in [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "encoder.embedding_norm.weight",
        "encoder.layers.0.attention.q_proj.weight",
        "encoder.layers.1.attention.o_proj.bias",
        "encoder.layers.1.attention_norm.bias",
        "encoder.layers.0.feed_forward.up_proj.weight",
        "encoder.layers.0.feed_forward.down_proj.bias",
        "encoder.layers.0.feed_forward_norm.weight",
    ] {
        assert!(has_weight(&graph, name), "missing {name}");
    }
}

#[test]
fn encoder_op_histogram() {
    let graph = lower(&bert(vec![head("last_hidden_state", HeadKind::Hidden)])).expect("lowers");
    let text: String = ir::histogram(&graph)
        .iter()
        .map(|(op, n)| format!("{op:<20} {n}\n"))
        .collect();
    insta::assert_snapshot!(text);
}

#[test]
fn no_constant_depends_on_a_sample_size() {
    // Every constant is a scalar or has a shape fixed by the model; the
    // sequence length only enters through Shape.
    let graph = lower(&llama()).expect("lowers");
    for n in graph.g.node_indices() {
        let node = &graph.g[n];
        if let Op::Reshape { shape } = &node.op {
            let fixed = shape
                .iter()
                .filter(|d| matches!(d, ir::ReshapeDim::Fixed(_)));
            assert!(
                fixed.count() < shape.len(),
                "{} fixes every axis",
                node.name
            );
        }
    }
    assert!(ops(&graph).contains(&"Shape"));
    assert!(ops(&graph).contains(&"Range"));
}

#[test]
fn gqa_rotary_decoder() {
    let graph = lower(&llama()).expect("lowers");
    assert_eq!(graph.parameter_count(), llama_parameters());
    assert_eq!(
        output(&graph, "logits"),
        (DType::F32, seq_shape(&[V as i64]))
    );
    let names = ops(&graph);
    for op in ["Sin", "Cos", "Sigmoid", "Softmax", "Where", "Min"] {
        assert!(names.contains(&op), "no {op}");
    }
    // Grouped-query attention never repeats keys or values.
    assert!(!names.contains(&"Expand"));
    assert!(has_weight(
        &graph,
        "decoder.layers.1.attention.k_proj.weight"
    ));
    assert!(has_weight(
        &graph,
        "decoder.layers.0.feed_forward.gate_proj.weight"
    ));
    assert!(has_weight(&graph, "decoder.final_norm.weight"));
    assert!(has_weight(&graph, "lm_head.weight"));
    // Scores are [batch, kv_heads, groups, queries, keys].
    let softmax = graph
        .g
        .node_indices()
        .find(|n| matches!(graph.g[*n].op, Op::Softmax { .. }))
        .expect("a softmax");
    let scores = &graph.g[softmax].outputs[0].shape;
    assert_eq!(
        scores,
        &vec![
            Dim::sym("batch"),
            Dim::c(2),
            Dim::c(2),
            Dim::sym("sequence"),
            Dim::sym("sequence")
        ]
    );
}

#[test]
fn interleaved_partial_rotary_with_parallel_residual() {
    let graph = lower(&gptj()).expect("lowers");
    assert_eq!(graph.parameter_count(), gptj_parameters());
    assert_eq!(
        output(&graph, "logits"),
        (DType::F32, seq_shape(&[V as i64]))
    );
    let inputs: Vec<String> = graph
        .graph_inputs()
        .iter()
        .map(|n| graph.g[*n].name.clone())
        .collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "position_ids"]);
}

#[test]
fn encoder_decoder_with_relative_bias() {
    let graph = lower(&t5()).expect("lowers");
    assert_eq!(graph.parameter_count(), t5_parameters());
    let logits = output(&graph, "logits");
    assert_eq!(
        logits.1,
        vec![
            Dim::sym("batch"),
            Dim::sym("decoder_sequence"),
            Dim::c(V as i64)
        ]
    );
    for name in [
        "encoder.relative_attention_bias.weight",
        "decoder.relative_attention_bias.weight",
        "decoder.layers.1.cross_attention.k_proj.weight",
        "decoder.layers.1.cross_attention_norm.weight",
    ] {
        assert!(has_weight(&graph, name), "missing {name}");
    }
    assert!(!has_weight(&graph, "lm_head.weight"));
    let inputs: Vec<String> = graph
        .graph_inputs()
        .iter()
        .map(|n| graph.g[*n].name.clone())
        .collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "decoder_input_ids"]);
    // The bias is computed once per stack, not once per layer.
    let logs = ops(&graph).iter().filter(|o| **o == "Log").count();
    assert_eq!(logs, 2);
}

#[test]
fn alibi_decoder() {
    let graph = lower(&bloom()).expect("lowers");
    assert_eq!(graph.parameter_count(), bloom_parameters());
    assert_eq!(
        output(&graph, "logits"),
        (DType::F32, seq_shape(&[V as i64]))
    );
    assert!(ops(&graph).contains(&"CumSum"));
    assert!(ops(&graph).contains(&"Tanh"));
}

#[test]
fn sinusoidal_encoder_decoder() {
    let graph = lower(&marian()).expect("lowers");
    assert_eq!(graph.parameter_count(), marian_parameters());
    assert!(has_weight(&graph, "decoder.embed_tokens.weight"));
    assert!(has_weight(&graph, "final_logits_bias"));
    assert_eq!(
        output(&graph, "logits").1,
        vec![
            Dim::sym("batch"),
            Dim::sym("decoder_sequence"),
            Dim::c(V as i64)
        ]
    );
}

#[test]
fn learned_positions_per_stack_in_encoder_decoder() {
    let mut model = marian();
    for stack in [model.encoder.as_mut(), model.decoder.as_mut()] {
        stack.expect("both stacks").position = Position::Learned {
            max_position_embeddings: P + 2,
            offset: 2,
        };
    }
    let graph = lower(&model).expect("lowers");
    assert!(has_weight(&graph, "encoder.embed_positions.weight"));
    assert!(has_weight(&graph, "decoder.embed_positions.weight"));
    assert_eq!(
        graph.parameter_count(),
        marian_parameters() + 2 * (P + 2) * H
    );
}

#[test]
fn half_precision_keeps_norms_and_softmax_in_f32() {
    for mut model in [
        bert(vec![head("last_hidden_state", HeadKind::Hidden)]),
        llama(),
        t5(),
        bloom(),
    ] {
        model.dtype = FloatType::F16;
        let graph = lower(&model).expect("lowers");
        ir::verify(&graph).expect("verifies");
        let dtype = graph.ty(graph.outputs[0].1).dtype;
        assert_eq!(dtype, DType::F16, "{}", model.name);
        for n in graph.g.node_indices() {
            let node = &graph.g[n];
            match &node.op {
                Op::Softmax { .. } | Op::LayerNorm { .. } | Op::ReduceMean { .. } => {
                    assert_eq!(node.outputs[0].dtype, DType::F32, "{}", node.name)
                }
                Op::Weight { dtype, .. } => assert_eq!(*dtype, DType::F16),
                _ => {}
            }
        }
    }
}

#[test]
fn unsupported_combinations_are_typed_errors() {
    let mut model = bert(vec![]);
    let stack = model.encoder.as_mut().expect("encoder");
    stack.parallel_residual = true;
    assert!(matches!(lower(&model), Err(LowerError::Unsupported { .. })));

    let mut model = bert(vec![]);
    model.encoder = None;
    assert!(matches!(lower(&model), Err(LowerError::Unsupported { .. })));

    let mut model = llama();
    model.heads.push(model.heads[0].clone());
    assert!(matches!(lower(&model), Err(LowerError::Unsupported { .. })));
}
