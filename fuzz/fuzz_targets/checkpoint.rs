//! Arbitrary bytes as a `.safetensors` checkpoint loaded into small models.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tfc_fuzz::checkpoint(data);
});
