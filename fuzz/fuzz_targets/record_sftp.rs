//! The recorder's sftp decoder (`codext-record/src/sftp.rs`) fed arbitrary
//! client and server bytes in arbitrary chunks, as the agent controls
//! both. Checks that nothing panics and that what it keeps stays within
//! its bounds (paths at most MAX_PATH bytes).
#![no_main]

use codext_record::proto::MAX_PATH;
use codext_record::sftp::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let n = usize::from(head & 0x7f).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        if head & 0x80 == 0 {
            for op in d.client(chunk) {
                assert!(op.path.len() <= MAX_PATH && op.path2.len() <= MAX_PATH);
            }
        } else {
            d.server(chunk);
        }
        rest = after;
    }
});
