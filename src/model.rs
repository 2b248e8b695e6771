//! The resolved model: what a `.tfm` spec means once it has been parsed,
//! derived, evaluated and checked.
//!
//! The front end (`crate::front`) produces a [`Model`]; lowering
//! (`crate::lower`) turns it into an IR graph and `crate::inspect` counts its
//! parameters. Every size here is already evaluated and validated: widths are
//! positive, heads divide the width, key/value heads divide heads, a rotary
//! dimension is even and fits in a head. Field names follow the Hugging Face
//! config vocabulary where one exists (`hidden_size`, `num_key_value_heads`,
//! `rope_theta`, `layer_norm_eps`).

use crate::front::span::Span;

/// Element type of the emitted model's floating-point tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision; norms and softmax still accumulate in fp32.
    F16,
}

/// A fully resolved model description.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The name the spec gave the model (`model bert_base { ... }`).
    pub name: String,
    /// Where the model was declared.
    pub span: Span,
    /// Token vocabulary size (`vocab_size`).
    pub vocab_size: u64,
    /// Model width (`hidden_size`, the paper's d_model).
    pub hidden_size: u64,
    /// Element type of weights and activations.
    pub dtype: FloatType,
    /// Token id used for padding, if the spec names one (`pad_token_id`).
    pub pad_token_id: Option<u64>,
    /// Token that starts a sequence (`bos_token_id`), if any.
    pub bos_token_id: Option<u64>,
    /// Token that ends generation (`eos_token_id`), if any.
    pub eos_token_id: Option<u64>,
    /// First decoder token of an encoder–decoder (`decoder_start_token_id`);
    /// generation falls back to the pad id when unset, as Hugging Face does.
    pub decoder_start_token_id: Option<u64>,
    /// Token, segment and position embeddings.
    pub embeddings: Embeddings,
    /// Bidirectional stack, present for encoder-only and encoder–decoder models.
    pub encoder: Option<Stack>,
    /// Causal stack, present for decoder-only and encoder–decoder models.
    pub decoder: Option<Stack>,
    /// Whether the decoder shares the encoder's token embedding (T5, BART).
    /// Only meaningful when both stacks exist.
    pub shared_embeddings: bool,
    /// Whether an LM head reuses the token embedding matrix (`tie_word_embeddings`).
    pub tie_word_embeddings: bool,
    /// Task heads, in spec order; each produces one or more named outputs.
    pub heads: Vec<Head>,
    /// Names of the symbolic dimensions of the model's inputs and outputs.
    pub dims: DimNames,
    /// Which optional graph inputs the model takes.
    pub inputs: InputSet,
}

/// Symbolic dimension names that appear in the emitted graph's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimNames {
    /// Batch dimension (default `batch`).
    pub batch: String,
    /// Encoder (or decoder-only) sequence dimension (default `sequence`).
    pub sequence: String,
    /// Decoder sequence dimension of encoder–decoder models (default `decoder_sequence`).
    pub decoder_sequence: String,
}

/// Optional inputs of the graph. `input_ids` is always present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSet {
    /// `attention_mask` `[batch, sequence]`, 1 for real tokens and 0 for padding.
    pub attention_mask: bool,
    /// `token_type_ids` `[batch, sequence]`; defaults to true when segment embeddings exist.
    pub token_type_ids: bool,
    /// `position_ids` `[batch, sequence]`; when absent positions are `0..sequence`.
    pub position_ids: bool,
}

/// The embedding block.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Segment (token type) vocabulary size (`type_vocab_size`), if any.
    pub type_vocab_size: Option<u64>,
    /// Multiplier applied to token embeddings (e.g. √d_model in the 2017 paper).
    pub scale: Option<f64>,
}

/// A positional scheme.
///
/// Learned and sinusoidal positions are added to the embeddings; rotary is
/// applied to queries and keys inside attention; ALiBi and relative bias add to
/// the attention scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// No positional information (some decoders rely on causality alone).
    None,
    /// A learned table `[max_position_embeddings, hidden]`.
    Learned {
        /// Rows in the table.
        max_position_embeddings: u64,
        /// Added to every position id before lookup (RoBERTa uses pad_id + 1, BART 2).
        offset: u64,
    },
    /// The fixed sine/cosine table of "Attention Is All You Need".
    Sinusoidal {
        /// Rows in the table.
        max_position_embeddings: u64,
        /// Column layout of sines and cosines.
        layout: SinusoidalLayout,
    },
    /// Rotary position embedding applied to queries and keys.
    Rotary(Rotary),
    /// Attention with linear biases (Press et al.), per-head slopes.
    Alibi,
    /// T5's bucketed relative position bias, computed in the first layer of a stack
    /// and shared by the others.
    RelativeBias {
        /// Number of buckets (`relative_attention_num_buckets`).
        num_buckets: u64,
        /// Largest distance with its own bucket (`relative_attention_max_distance`).
        max_distance: u64,
    },
}

/// How the sinusoidal table lays out its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinusoidalLayout {
    /// sin, cos, sin, cos, … as in the 2017 paper (`PE(pos, 2i) = sin`, `PE(pos, 2i+1) = cos`).
    Interleaved,
    /// All sines in the first half of the width, all cosines in the second (Marian, fairseq).
    Halves,
}

/// Rotary embedding parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    /// Base θ of the frequencies (`rope_theta`).
    pub theta: f64,
    /// Number of leading dimensions of each head that rotate (`rotary_dim`);
    /// equal to the head dimension for full rotary. Always even.
    pub dim: u64,
    /// Pairing of rotated dimensions.
    pub layout: RotaryLayout,
}

/// Which dimensions rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotaryLayout {
    /// Dimension i pairs with i + dim/2 (GPT-NeoX, LLaMA in Hugging Face layout).
    RotateHalf,
    /// Dimension 2i pairs with 2i + 1 (GPT-J, original RoFormer).
    Interleaved,
}

/// One repeated stack of blocks (encoder or decoder).
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// Where the stack was declared.
    pub span: Span,
    /// Number of layers (`num_hidden_layers`).
    pub layers: u64,
    /// Self-attention of each layer (causal in a decoder).
    pub attention: Attention,
    /// Cross-attention over the encoder output (decoder of an encoder–decoder only).
    pub cross_attention: Option<Attention>,
    /// The position-wise feed-forward network.
    pub feed_forward: FeedForward,
    /// Normalization around each sub-block.
    pub norm: Norm,
    /// Where the norm sits relative to each residual sub-block.
    pub norm_position: NormPosition,
    /// Whether attention and feed-forward read the same input and are summed
    /// (GPT-J / GPT-NeoX parallel residual) instead of running in sequence.
    pub parallel_residual: bool,
    /// Norm applied to the stack's output (`final_norm`), usual with pre-norm.
    pub final_norm: Option<Norm>,
    /// How positions enter this stack. Learned and sinusoidal tables are
    /// per stack (BART's encoder and decoder have their own); rotary, ALiBi and
    /// relative bias act inside this stack's attention. A spec sets it once in
    /// `embeddings` and a stack may override it.
    pub position: Position,
    /// Norm applied to the summed embeddings before the first layer (BERT,
    /// BLOOM, BART's `layernorm_embedding`), if any.
    pub embedding_norm: Option<Norm>,
}

/// Attention parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// Number of query heads (`num_attention_heads`).
    pub heads: u64,
    /// Number of key/value heads (`num_key_value_heads`); 1 is multi-query,
    /// fewer than `heads` is grouped-query. Always divides `heads`.
    pub kv_heads: u64,
    /// Width of one head; `heads * head_dim` may differ from `hidden_size` (T5).
    pub head_dim: u64,
    /// Bias on the query, key and value projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub out_bias: bool,
    /// Multiplier of the attention scores; `None` means 1/√head_dim.
    pub scale: Option<f64>,
}

/// Feed-forward parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForward {
    /// Hidden width (`intermediate_size`).
    pub intermediate_size: u64,
    /// Activation; gated activations add a second input projection.
    pub activation: Activation,
    /// Bias on the projections.
    pub bias: bool,
}

/// Feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// Exact GELU with erf.
    Gelu,
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// x·σ(x).
    Silu,
    /// silu(gate(x)) · up(x) (LLaMA).
    SwiGlu,
    /// gelu(gate(x)) · up(x) (T5 v1.1 uses the tanh form; this is erf).
    GeGlu,
}

impl Activation {
    /// Whether the activation multiplies a gate projection with an up projection.
    pub fn is_gated(self) -> bool {
        matches!(self, Activation::SwiGlu | Activation::GeGlu)
    }
}

/// A normalization layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    /// LayerNorm or RMSNorm.
    pub kind: NormKind,
    /// Epsilon added to the variance.
    pub eps: f64,
}

/// Normalization kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// Mean-centred, with weight and bias.
    LayerNorm,
    /// Root-mean-square, weight only (T5, LLaMA).
    RmsNorm,
}

/// Placement of the norm of each residual sub-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPosition {
    /// `x + f(norm(x))` (GPT-2, LLaMA, T5).
    Pre,
    /// `norm(x + f(x))` (the 2017 paper, BERT).
    Post,
}

/// Pooling of a sequence of hidden states into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (BERT's `[CLS]`).
    Cls,
    /// Mean over non-padding tokens (sentence-transformers).
    Mean,
    /// The last non-padding token (decoder classifiers).
    Last,
    /// Element-wise maximum over non-padding tokens.
    Max,
}

/// A task head on top of the trunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Name given in the spec; used as the prefix of the head's parameters.
    pub name: String,
    /// Where the head was declared.
    pub span: Span,
    /// What the head computes.
    pub kind: HeadKind,
}

/// The kinds of task head.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadKind {
    /// The trunk's hidden states themselves, output `last_hidden_state`.
    Hidden,
    /// Pooled vector per sequence `[batch, hidden]`: a sentence embedding, or
    /// BERT's `pooler_output` (cls pooling with the pooler).
    Embedding {
        /// Pooling over the sequence.
        pooling: Pooling,
        /// BERT's pooler: dense + tanh after pooling.
        pooler: bool,
        /// Divide by the L2 norm.
        normalize: bool,
    },
    /// Sequence classification, output `logits` `[batch, num_labels]`.
    SequenceClassification {
        /// Pooling over the sequence.
        pooling: Pooling,
        /// BERT's pooler: dense + tanh before the classifier.
        pooler: bool,
        /// Number of classes.
        num_labels: u64,
    },
    /// Token classification (NER), output `logits` `[batch, sequence, num_labels]`.
    TokenClassification {
        /// Number of classes.
        num_labels: u64,
    },
    /// Extractive question answering, outputs `start_logits`, `end_logits` `[batch, sequence]`.
    QuestionAnswering,
    /// Causal language-model head, output `logits` `[batch, sequence, vocab]`.
    LanguageModel {
        /// Bias on the output projection (BART's `final_logits_bias`).
        bias: bool,
        /// Multiplier of the hidden state before the projection (T5 with tied
        /// embeddings uses hidden_size^-0.5).
        scale: Option<f64>,
    },
}

impl Head {
    /// Names of the graph outputs this head produces, given how many heads the
    /// model has. A head with one output names it after the head
    /// (`logits = language_model` gives `logits`); question answering gives
    /// `start_logits` and `end_logits`, prefixed `{head}/` when the model has
    /// other heads too.
    pub fn output_names(&self, heads_in_model: usize) -> Vec<String> {
        match self.kind {
            HeadKind::QuestionAnswering if heads_in_model > 1 => vec![
                format!("{}/start_logits", self.name),
                format!("{}/end_logits", self.name),
            ],
            HeadKind::QuestionAnswering => {
                vec!["start_logits".to_string(), "end_logits".to_string()]
            }
            _ => vec![self.name.clone()],
        }
    }
}

impl Model {
    /// True when the model has both an encoder and a decoder.
    pub fn is_encoder_decoder(&self) -> bool {
        self.encoder.is_some() && self.decoder.is_some()
    }

    /// The stack whose output the heads read: the decoder if there is one,
    /// otherwise the encoder.
    pub fn top_stack(&self) -> Option<&Stack> {
        self.decoder.as_ref().or(self.encoder.as_ref())
    }
}
