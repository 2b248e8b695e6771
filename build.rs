//! Build script: generates the ONNX protobuf types (`onnx.rs` in `OUT_DIR`) from the
//! vendored `proto/onnx.proto` with the pure-Rust `protox` parser, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
