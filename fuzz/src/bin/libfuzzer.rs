//! The coverage-guided entry point: libFuzzer calls the target named by `CSTORE_FUZZ_TARGET`
//! with each input. Built by scripts/fuzz.sh with sanitizer-coverage flags on stable Rust.
#![no_main]
// libfuzzer-sys's macro exports an unmangled function, which the lint counts as unsafe.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use cstore_fuzz::{Target, alloc_guard, target};

fn chosen() -> &'static Target {
    static CHOSEN: OnceLock<&'static Target> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let name = std::env::var("CSTORE_FUZZ_TARGET").unwrap_or_default();
        target(&name).unwrap_or_else(|| {
            let names: Vec<&str> = cstore_fuzz::TARGETS.iter().map(|t| t.name).collect();
            eprintln!("set CSTORE_FUZZ_TARGET to one of: {}", names.join(", "));
            std::process::exit(2)
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    alloc_guard::set_input(data);
    (chosen().run)(data);
    alloc_guard::clear_input();
});
