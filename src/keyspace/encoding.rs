//! Redis's thresholds for its compact encodings, which OBJECT ENCODING
//! answers by (configured under Redis's names, see `config::params`).

/// Redis's thresholds for its compact encodings (`hash-max-listpack-*`,
/// `zset-max-listpack-*`, `set-max-intset-entries`, list sizes): Quire
/// keeps one representation per type, and OBJECT ENCODING answers what
/// Redis 7.0 would for the same data under the same thresholds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EncodingLimits {
    pub hash_max_listpack_entries: u64,
    pub hash_max_listpack_value: u64,
    pub list_max_listpack_size: i64,
    pub list_compress_depth: u64,
    pub set_max_intset_entries: u64,
    pub zset_max_listpack_entries: u64,
    pub zset_max_listpack_value: u64,
    /// Past this many bytes a sparse HyperLogLog turns dense.
    pub hll_sparse_max_bytes: u64,
    /// A stream node holds at most this many entries (deleted included)…
    pub stream_node_max_entries: u64,
    /// …and about this many bytes (0: no byte limit).
    pub stream_node_max_bytes: u64,
}

impl Default for EncodingLimits {
    fn default() -> Self {
        EncodingLimits {
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            list_max_listpack_size: -2,
            list_compress_depth: 0,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            hll_sparse_max_bytes: 3000,
            stream_node_max_entries: 100,
            stream_node_max_bytes: 4096,
        }
    }
}

impl EncodingLimits {
    pub fn stream_nodes(&self) -> super::stream::NodeLimits {
        super::stream::NodeLimits {
            max_entries: self.stream_node_max_entries,
            max_bytes: self.stream_node_max_bytes,
        }
    }
}
