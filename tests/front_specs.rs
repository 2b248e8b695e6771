//! Every spec and example loads without diagnostics, and means what it says.

use std::path::Path;

use tfc::front::{self, SourceMap};
use tfc::model::*;

fn load(path: &str) -> Vec<Model> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let mut sources = SourceMap::new();
    match front::load(&path, &mut sources) {
        Ok(models) => models,
        Err(diags) => panic!("{}", front::render(&diags, &sources, false)),
    }
}

fn model(path: &str, name: &str) -> Model {
    let found = load(path).into_iter().find(|m| m.name == name);
    found.unwrap_or_else(|| panic!("no model {name} in {path}"))
}

#[test]
fn bert_base_means_what_it_says() {
    let m = model("specs/bert-base.tfm", "bert_base");
    let enc = m.encoder.as_ref().expect("encoder");
    assert_eq!(enc.attention.head_dim, 64);
    assert_eq!(enc.feed_forward.intermediate_size, 3072);
    println!("{m:#?}");
}
