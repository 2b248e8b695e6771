//! Every head kind on the tiny encoder: outputs, shapes, parameters, and the
//! naming rule for several heads.

mod lower_common;

use lower_common::*;
use tfc::ir::{self, DType};
use tfc::lower::lower;
use tfc::model::*;

fn classifier_parameters(inputs: u64, labels: u64) -> u64 {
    inputs * labels + labels
}

#[test]
fn embedding_heads_pool_to_batch_by_hidden() {
    for pooling in [Pooling::Cls, Pooling::Mean, Pooling::Last, Pooling::Max] {
        for mask in [true, false] {
            let kind = HeadKind::Embedding {
                pooler: false,
                pooling,
                normalize: true,
            };
            let mut model = bert(vec![head("sentence_embedding", kind)]);
            model.inputs.attention_mask = mask;
            let graph = lower(&model).expect("lowers");
            ir::verify(&graph).expect("verifies");
            assert_eq!(graph.parameter_count(), bert_parameters());
            assert_eq!(
                output(&graph, "sentence_embedding"),
                (DType::F32, batch_shape(&[H as i64])),
                "{pooling:?}, mask {mask}"
            );
        }
    }
}

#[test]
fn sequence_classification_with_pooler() {
    let kind = HeadKind::SequenceClassification {
        pooling: Pooling::Cls,
        pooler: true,
        num_labels: 3,
    };
    let graph = lower(&bert(vec![head("logits", kind)])).expect("lowers");
    assert_eq!(
        graph.parameter_count(),
        bert_parameters() + (H * H + H) + classifier_parameters(H, 3)
    );
    assert!(has_weight(&graph, "heads.logits.pooler.dense.weight"));
    assert!(has_weight(&graph, "heads.logits.classifier.bias"));
    assert_eq!(output(&graph, "logits"), (DType::F32, batch_shape(&[3])));
}

#[test]
fn sequence_classification_on_last_token() {
    let kind = HeadKind::SequenceClassification {
        pooling: Pooling::Last,
        pooler: false,
        num_labels: 2,
    };
    let mut model = llama();
    model.heads = vec![head("logits", kind)];
    let graph = lower(&model).expect("lowers");
    let lm = H * V;
    assert_eq!(
        graph.parameter_count(),
        llama_parameters() - lm + classifier_parameters(H, 2)
    );
    assert_eq!(output(&graph, "logits"), (DType::F32, batch_shape(&[2])));
}

#[test]
fn token_classification() {
    let kind = HeadKind::TokenClassification { num_labels: 5 };
    let graph = lower(&bert(vec![head("logits", kind)])).expect("lowers");
    assert_eq!(
        graph.parameter_count(),
        bert_parameters() + classifier_parameters(H, 5)
    );
    assert_eq!(output(&graph, "logits"), (DType::F32, seq_shape(&[5])));
}

#[test]
fn question_answering() {
    let graph = lower(&bert(vec![head("qa", HeadKind::QuestionAnswering)])).expect("lowers");
    assert!(has_weight(&graph, "heads.qa.qa_outputs.weight"));
    assert_eq!(
        graph.parameter_count(),
        bert_parameters() + classifier_parameters(H, 2)
    );
    assert_eq!(output_names(&graph), ["start_logits", "end_logits"]);
    for name in ["start_logits", "end_logits"] {
        assert_eq!(output(&graph, name), (DType::F32, seq_shape(&[])));
    }
}

#[test]
fn tied_language_model_head() {
    let kind = HeadKind::LanguageModel {
        bias: true,
        scale: None,
    };
    let mut model = bert(vec![head("logits", kind)]);
    model.tie_word_embeddings = true;
    let graph = lower(&model).expect("lowers");
    assert_eq!(graph.parameter_count(), bert_parameters() + V);
    assert_eq!(
        output(&graph, "logits"),
        (DType::F32, seq_shape(&[V as i64]))
    );
}

#[test]
fn heads_name_their_outputs() {
    let heads = vec![
        head("hidden", HeadKind::Hidden),
        head("qa", HeadKind::QuestionAnswering),
        head(
            "embed",
            HeadKind::Embedding {
                pooler: false,
                pooling: Pooling::Mean,
                normalize: false,
            },
        ),
    ];
    let graph = lower(&bert(heads)).expect("lowers");
    assert_eq!(
        output_names(&graph),
        ["hidden", "qa/start_logits", "qa/end_logits", "embed"]
    );
}

#[test]
fn half_precision_heads_output_f16() {
    let heads = vec![
        head(
            "embed",
            HeadKind::Embedding {
                pooler: false,
                pooling: Pooling::Max,
                normalize: true,
            },
        ),
        head(
            "cls",
            HeadKind::SequenceClassification {
                pooling: Pooling::Mean,
                pooler: true,
                num_labels: 2,
            },
        ),
    ];
    let mut model = bert(heads);
    model.dtype = FloatType::F16;
    let graph = lower(&model).expect("lowers");
    for (name, _) in &graph.outputs {
        assert_eq!(output(&graph, name).0, DType::F16, "{name}");
    }
}
