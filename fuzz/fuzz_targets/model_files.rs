#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mltrail_fuzzing::model_files::run(data));
