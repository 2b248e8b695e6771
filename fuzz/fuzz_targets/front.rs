//! Arbitrary bytes as a `.tfm` spec: front end, checker and lowering.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tfc_fuzz::front(data);
});
