//! Snapshot files (on disk, or shipped in a full sync): a damaged file is
//! refused with an error and never half-loaded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use quire::persist::{KeyspaceBuilder, SnapshotReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = SnapshotReader::new(std::io::Cursor::new(data)) else { return };
    let mut builder = KeyspaceBuilder::new();
    let mut records = 0;
    while let Ok(Some(record)) = reader.next_record() {
        if builder.apply(record).is_err() || records > 100_000 {
            return;
        }
        records += 1;
    }
});
