#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mltrail_fuzzing::scoring::run(data));
