//! Snapshots: point-in-time copies of the dataset on disk (backups,
//! restarts, the base crash recovery replays the log on) and over the WAN
//! for full syncs (the same file, shipped in chunks).
//!
//! Layout, format version 2 ([`FORMAT_VERSION`]; version 1 files, whose
//! header lacks `repl_db`, are still read):
//!
//! ```text
//! "QUIRESNP" | u16 LE format version | u32 LE header length | header (postcard)
//! zstd stream of records, each: u32 LE length | record (postcard)
//! ```
//!
//! The last record is [`Record::End`], carrying the record count and a CRC32
//! of every record's bytes before it, so a truncated or corrupted file is
//! detected. Loading builds a fresh keyspace and only replaces the live one
//! once the whole file has verified: never a half-load. Writes go to a
//! temporary file, are fsynced and renamed into place.
//!
//! Collections are split into chunks of at most [`CHUNK_ITEMS`] elements
//! (`Record::Key` then `Record::More`), so writer and reader work in bounded
//! memory per record and a stream can be produced and consumed incrementally.

use crate::keyspace::stream::{Group, NodeLimits, Pending, Stream, StreamId};
use crate::keyspace::{
    Blob, Db, HashValue, Image, Keyspace, Libraries, ListValue, SetValue, Value, ZSet, DATABASES,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"QUIRESNP";
/// 2 added `repl_db` to the header; version 1 files are still read.
pub const FORMAT_VERSION: u16 = 2;
pub const CHUNK_ITEMS: usize = 1024;
/// Largest record accepted when reading: a 512 MB string plus framing.
pub const MAX_RECORD_BYTES: usize = 600 * 1024 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Quire snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    #[error("snapshot is truncated")]
    Truncated,
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
}

/// Facts about a snapshot, stored before the records.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SnapshotHeader {
    pub created_unix_ms: i64,
    /// Replication id and offset the data corresponds to (empty/0 when
    /// replication is not in use).
    pub repl_id: String,
    pub repl_offset: u64,
    pub node: String,
    /// The database selected in the replication stream at `repl_offset`:
    /// the stream after it assumes that database until its next SELECT.
    pub repl_db: u32,
}

/// The header as format version 1 wrote it.
#[derive(Deserialize)]
struct HeaderV1 {
    created_unix_ms: i64,
    repl_id: String,
    repl_offset: u64,
    node: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Payload {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Set(Vec<Vec<u8>>),
    ZSet(Vec<(Vec<u8>, f64)>),
    /// Stream entries in ID order: (ms, seq, fields and values).
    StreamEntries(Vec<StreamEntryImage>),
    /// A stream's counters and consumer groups, after all its entries.
    StreamMeta(StreamMeta),
}

pub type StreamEntryImage = (u64, u64, Vec<Vec<u8>>);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamMeta {
    pub last_id: (u64, u64),
    pub first_id: (u64, u64),
    pub max_deleted_id: (u64, u64),
    pub entries_added: u64,
    pub groups: Vec<GroupImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupImage {
    pub name: Vec<u8>,
    pub last_id: (u64, u64),
    pub entries_read: i64,
    /// (ms, seq, consumer, delivery time, delivery count)
    pub pel: Vec<(u64, u64, Vec<u8>, i64, u64)>,
    /// (name, seen time)
    pub consumers: Vec<(Vec<u8>, i64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Record {
    SelectDb(u16),
    /// A key with its deadline and its value (or the value's first chunk).
    Key {
        key: Vec<u8>,
        expire_ms: Option<i64>,
        payload: Payload,
    },
    /// More elements of the previous key's collection, same type.
    More(Payload),
    End {
        records: u64,
        crc32: u32,
    },
    /// A function library's source (appended variant: older snapshots,
    /// without it, still read).
    Library {
        name: String,
        source: Vec<u8>,
    },
}

/// Writes records into any `Write`, compressing and checksumming.
pub struct SnapshotWriter<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, W>,
    crc: crc32fast::Hasher,
    records: u64,
}

impl<W: Write> SnapshotWriter<W> {
    pub fn new(mut inner: W, header: &SnapshotHeader) -> Result<Self, SnapshotError> {
        let header_bytes =
            postcard::to_stdvec(header).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        inner.write_all(MAGIC)?;
        inner.write_all(&FORMAT_VERSION.to_le_bytes())?;
        inner.write_all(&(header_bytes.len() as u32).to_le_bytes())?;
        inner.write_all(&header_bytes)?;
        let mut encoder = zstd::stream::write::Encoder::new(inner, 3)?;
        encoder.include_checksum(true)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header_bytes);
        Ok(SnapshotWriter {
            encoder,
            crc,
            records: 0,
        })
    }

    pub fn write(&mut self, record: &Record) -> Result<(), SnapshotError> {
        let bytes =
            postcard::to_stdvec(record).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        self.crc.update(&bytes);
        self.records += 1;
        self.encoder
            .write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.encoder.write_all(&bytes)?;
        Ok(())
    }

    /// Writes the function libraries, then every key of the databases
    /// (skipping keys already expired at `now_ms`).
    pub fn write_image(
        &mut self,
        dbs: &[Db],
        functions: &Libraries,
        now_ms: i64,
    ) -> Result<(), SnapshotError> {
        for (name, source) in functions.iter() {
            self.write(&Record::Library {
                name: name.to_string(),
                source: source.to_vec(),
            })?;
        }
        for (index, db) in dbs.iter().enumerate() {
            if db.is_empty() {
                continue;
            }
            self.write(&Record::SelectDb(index as u16))?;
            for (key, value, expire) in db.iter() {
                if matches!(expire, Some(at) if at <= now_ms) {
                    continue;
                }
                self.write_key(key, value, expire)?;
            }
        }
        Ok(())
    }

    fn write_key(
        &mut self,
        key: &Blob,
        value: &Value,
        expire_ms: Option<i64>,
    ) -> Result<(), SnapshotError> {
        let mut chunks = payload_chunks(value).into_iter();
        let first = chunks.next().unwrap_or(Payload::Str(Vec::new()));
        self.write(&Record::Key {
            key: key.to_vec(),
            expire_ms,
            payload: first,
        })?;
        for chunk in chunks {
            self.write(&Record::More(chunk))?;
        }
        Ok(())
    }

    /// Writes the end record and flushes; returns the inner writer.
    pub fn finish(mut self) -> Result<W, SnapshotError> {
        let end = Record::End {
            records: self.records,
            crc32: self.crc.clone().finalize(),
        };
        let bytes = postcard::to_stdvec(&end).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        self.encoder
            .write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.encoder.write_all(&bytes)?;
        let mut inner = self.encoder.finish()?;
        inner.flush()?;
        Ok(inner)
    }
}

fn payload_chunks(value: &Value) -> Vec<Payload> {
    fn chunked<T: Clone>(items: Vec<T>, wrap: fn(Vec<T>) -> Payload) -> Vec<Payload> {
        if items.is_empty() {
            return vec![wrap(Vec::new())];
        }
        items
            .chunks(CHUNK_ITEMS)
            .map(|c| wrap(c.to_vec()))
            .collect()
    }
    match value {
        Value::Str(_) | Value::Int(_) | Value::Raw(_) => vec![Payload::Str(
            value.with_string(|s| s.to_vec()).unwrap_or_default(),
        )],
        Value::List(l) => chunked(l.iter().map(|m| m.to_vec()).collect(), Payload::List),
        Value::Hash(h) => chunked(
            h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect(),
            Payload::Hash,
        ),
        Value::Set(s) => chunked(s.iter().map(|m| m.to_vec()).collect(), Payload::Set),
        Value::ZSet(z) => chunked(
            z.iter_from_rank(0).map(|(m, s)| (m.to_vec(), s)).collect(),
            Payload::ZSet,
        ),
        Value::Stream(st) => {
            let entries: Vec<StreamEntryImage> = st
                .entries()
                .map(|e| {
                    (
                        e.id.ms,
                        e.id.seq,
                        e.fields.iter().map(|f| f.to_vec()).collect(),
                    )
                })
                .collect();
            let mut chunks = chunked(entries, Payload::StreamEntries);
            chunks.push(Payload::StreamMeta(stream_meta(st)));
            chunks
        }
    }
}

fn pair(id: StreamId) -> (u64, u64) {
    (id.ms, id.seq)
}

fn stream_meta(st: &Stream) -> StreamMeta {
    StreamMeta {
        last_id: pair(st.last_id),
        first_id: pair(st.first_id),
        max_deleted_id: pair(st.max_deleted_id),
        entries_added: st.entries_added,
        groups: st
            .groups
            .iter()
            .map(|(name, g)| GroupImage {
                name: name.to_vec(),
                last_id: pair(g.last_id),
                entries_read: g.entries_read,
                pel: g
                    .pel
                    .iter()
                    .map(|(id, p)| {
                        (
                            id.ms,
                            id.seq,
                            p.consumer.to_vec(),
                            p.delivery_time,
                            p.delivery_count,
                        )
                    })
                    .collect(),
                consumers: g
                    .consumers
                    .iter()
                    .map(|(n, c)| (n.to_vec(), c.seen_time))
                    .collect(),
            })
            .collect(),
    }
}

fn stream_append(st: &mut Stream, entries: Vec<StreamEntryImage>) -> Result<(), SnapshotError> {
    for (ms, seq, fields) in entries {
        let id = StreamId::new(ms, seq);
        // Every ID is above 0-0 and above the one before it.
        if id <= st.last_id || fields.len() % 2 != 0 {
            return Err(SnapshotError::Corrupt("stream entries out of order".into()));
        }
        st.append(
            id,
            fields.iter().map(|f| Blob::new(f)).collect(),
            NodeLimits::default(),
        );
    }
    Ok(())
}

fn stream_apply_meta(st: &mut Stream, meta: StreamMeta) -> Result<(), SnapshotError> {
    let id = |(ms, seq): (u64, u64)| StreamId::new(ms, seq);
    if id(meta.last_id) < st.last_id {
        return Err(SnapshotError::Corrupt(
            "stream last ID below its entries".into(),
        ));
    }
    st.last_id = id(meta.last_id);
    st.first_id = id(meta.first_id);
    st.max_deleted_id = id(meta.max_deleted_id);
    st.entries_added = meta.entries_added;
    for g in meta.groups {
        let mut group = Group {
            last_id: id(g.last_id),
            entries_read: g.entries_read,
            ..Default::default()
        };
        for (name, seen) in g.consumers {
            group.consumer_mut(&name, seen);
        }
        for (ms, seq, consumer, time, count) in g.pel {
            let pid = StreamId::new(ms, seq);
            let owner = group
                .consumers
                .get_mut(consumer.as_slice())
                .ok_or_else(|| {
                    SnapshotError::Corrupt("pending entry of an unknown consumer".into())
                })?;
            owner.pel.insert(pid);
            group.pel.insert(
                pid,
                Pending {
                    consumer: Blob::new(&consumer),
                    delivery_time: time,
                    delivery_count: count,
                },
            );
        }
        st.groups.insert(Blob::new(&g.name), group);
    }
    Ok(())
}

/// Reads records from any `Read`, verifying framing and the final checksum.
pub struct SnapshotReader<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, std::io::BufReader<R>>,
    crc: crc32fast::Hasher,
    records: u64,
    finished: bool,
    pub header: SnapshotHeader,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(mut inner: R) -> Result<Self, SnapshotError> {
        let mut magic = [0u8; 8];
        read_exact(&mut inner, &mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut word = [0u8; 2];
        read_exact(&mut inner, &mut word)?;
        let version = u16::from_le_bytes(word);
        if version != FORMAT_VERSION && version != 1 {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let mut len = [0u8; 4];
        read_exact(&mut inner, &mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_HEADER_BYTES {
            return Err(SnapshotError::Corrupt(format!(
                "header length {len} is too large"
            )));
        }
        let mut header = vec![0u8; len];
        read_exact(&mut inner, &mut header)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        let header = if version == 1 {
            let v1: HeaderV1 = postcard::from_bytes(&header)
                .map_err(|e| SnapshotError::Corrupt(format!("header: {e}")))?;
            SnapshotHeader {
                created_unix_ms: v1.created_unix_ms,
                repl_id: v1.repl_id,
                repl_offset: v1.repl_offset,
                node: v1.node,
                repl_db: 0,
            }
        } else {
            postcard::from_bytes(&header)
                .map_err(|e| SnapshotError::Corrupt(format!("header: {e}")))?
        };
        let decoder = zstd::stream::read::Decoder::new(inner)?;
        Ok(SnapshotReader {
            decoder,
            crc,
            records: 0,
            finished: false,
            header,
        })
    }

    /// The next data record; `Ok(None)` after a verified end record.
    pub fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        if self.finished {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        read_exact(&mut self.decoder, &mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(SnapshotError::Corrupt(format!(
                "record length {len} exceeds the limit"
            )));
        }
        let mut bytes = Vec::new();
        (&mut self.decoder)
            .take(len as u64)
            .read_to_end(&mut bytes)?;
        if bytes.len() != len {
            return Err(SnapshotError::Truncated);
        }
        let record: Record = postcard::from_bytes(&bytes)
            .map_err(|e| SnapshotError::Corrupt(format!("record {}: {e}", self.records)))?;
        if let Record::End { records, crc32 } = record {
            if records != self.records || crc32 != self.crc.clone().finalize() {
                return Err(SnapshotError::Corrupt("checksum mismatch".into()));
            }
            // The compressed stream must end right here, intact (zstd
            // verifies its own frame checksum on the way).
            let mut rest = [0u8; 1];
            match self.decoder.read(&mut rest) {
                Ok(0) => {}
                Ok(_) => return Err(SnapshotError::Corrupt("data after the end record".into())),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(SnapshotError::Truncated)
                }
                Err(e) => return Err(SnapshotError::Corrupt(format!("compressed stream: {e}"))),
            }
            self.finished = true;
            return Ok(None);
        }
        self.crc.update(&bytes);
        self.records += 1;
        Ok(Some(record))
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), SnapshotError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
        _ => SnapshotError::Io(e),
    })
}

/// Builds a keyspace from records, checking each against the previous one.
#[derive(Default)]
pub struct KeyspaceBuilder {
    dbs: Vec<Db>,
    functions: Libraries,
    current_db: usize,
    last_key: Option<Vec<u8>>,
    pub keys: u64,
}

impl KeyspaceBuilder {
    pub fn new() -> Self {
        KeyspaceBuilder {
            dbs: (0..DATABASES).map(|_| Db::new()).collect(),
            ..Default::default()
        }
    }

    pub fn apply(&mut self, record: Record) -> Result<(), SnapshotError> {
        match record {
            Record::SelectDb(i) => {
                if i as usize >= DATABASES {
                    return Err(SnapshotError::Corrupt(format!(
                        "database index {i} out of range"
                    )));
                }
                self.current_db = i as usize;
                self.last_key = None;
            }
            Record::Key {
                key,
                expire_ms,
                payload,
            } => {
                let value = new_value(payload)?;
                let db = &mut self.dbs[self.current_db];
                db.set(&key, value, false);
                if let Some(at) = expire_ms {
                    db.set_expire(&key, at);
                }
                self.keys += 1;
                self.last_key = Some(key);
            }
            Record::More(payload) => {
                let key = self
                    .last_key
                    .as_ref()
                    .ok_or_else(|| SnapshotError::Corrupt("continuation without a key".into()))?;
                let db = &mut self.dbs[self.current_db];
                let value = db.get_mut(key, i64::MIN).ok_or_else(|| {
                    SnapshotError::Corrupt("continuation of a missing key".into())
                })?;
                extend_value(value, payload)?;
            }
            Record::Library { name, source } => {
                if self.functions.get(&name).is_some() {
                    return Err(SnapshotError::Corrupt(format!(
                        "function library {name} saved twice"
                    )));
                }
                self.functions.insert(name, source.into());
            }
            Record::End { .. } => {
                return Err(SnapshotError::Corrupt("unexpected end record".into()))
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Image {
        Image {
            dbs: self.dbs,
            functions: self.functions,
            pin: Default::default(),
        }
    }
}

fn new_value(payload: Payload) -> Result<Value, SnapshotError> {
    Ok(match payload {
        Payload::Str(s) => Value::string(&s),
        Payload::List(items) => Value::List(Arc::new(
            items.iter().map(|m| Blob::new(m)).collect::<ListValue>(),
        )),
        Payload::Hash(pairs) => Value::Hash(Arc::new(
            pairs
                .iter()
                .map(|(f, v)| (Blob::new(f), Blob::new(v)))
                .collect::<HashValue>(),
        )),
        Payload::Set(items) => Value::Set(Arc::new(
            items.iter().map(|m| Blob::new(m)).collect::<SetValue>(),
        )),
        Payload::ZSet(items) => {
            let mut z = ZSet::new();
            for (m, s) in items {
                z.insert(&m, s);
            }
            Value::ZSet(Arc::new(z))
        }
        Payload::StreamEntries(entries) => {
            let mut st = Stream::new();
            stream_append(&mut st, entries)?;
            Value::Stream(Arc::new(st))
        }
        Payload::StreamMeta(meta) => {
            let mut st = Stream::new();
            stream_apply_meta(&mut st, meta)?;
            Value::Stream(Arc::new(st))
        }
    })
}

fn extend_value(value: &mut Value, payload: Payload) -> Result<(), SnapshotError> {
    match (value, payload) {
        (Value::List(l), Payload::List(items)) => {
            Arc::make_mut(l).extend(items.iter().map(|m| Blob::new(m)))
        }
        (Value::Hash(h), Payload::Hash(pairs)) => {
            Arc::make_mut(h).extend(pairs.iter().map(|(f, v)| (Blob::new(f), Blob::new(v))))
        }
        (Value::Set(s), Payload::Set(items)) => {
            Arc::make_mut(s).extend(items.iter().map(|m| Blob::new(m)))
        }
        (Value::Stream(st), Payload::StreamEntries(entries)) => {
            stream_append(Arc::make_mut(st), entries)?
        }
        (Value::Stream(st), Payload::StreamMeta(meta)) => {
            stream_apply_meta(Arc::make_mut(st), meta)?
        }
        (Value::ZSet(z), Payload::ZSet(items)) => {
            let z = Arc::make_mut(z);
            for (m, s) in items {
                z.insert(&m, s);
            }
        }
        _ => {
            return Err(SnapshotError::Corrupt(
                "continuation of a different type".into(),
            ))
        }
    }
    Ok(())
}

/// Writes the databases and libraries to `path` atomically: temp file,
/// fsync, rename, fsync dir.
pub fn save_to_file(
    path: &Path,
    dbs: &[Db],
    functions: &Libraries,
    header: &SnapshotHeader,
    now_ms: i64,
) -> Result<u64, SnapshotError> {
    let tmp = temp_path(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut writer =
            SnapshotWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), header)?;
        writer.write_image(dbs, functions, now_ms)?;
        let buf = writer.finish()?;
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok::<_, SnapshotError>(file.metadata()?.len())
    })();
    match result {
        Ok(size) => {
            std::fs::rename(&tmp, path)?;
            sync_parent(path);
            Ok(size)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads a whole snapshot file; nothing is returned unless it all verified.
pub fn load_from_file(path: &Path) -> Result<(SnapshotHeader, Image, u64), SnapshotError> {
    let file = std::fs::File::open(path)?;
    let mut reader = SnapshotReader::new(std::io::BufReader::with_capacity(1 << 20, file))?;
    let mut builder = KeyspaceBuilder::new();
    while let Some(record) = reader.next_record()? {
        builder.apply(record)?;
    }
    let keys = builder.keys;
    Ok((reader.header.clone(), builder.finish(), keys))
}

/// Reads only a snapshot file's header (what history and offset it holds).
pub fn read_header(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    let file = std::fs::File::open(path)?;
    Ok(SnapshotReader::new(std::io::BufReader::new(file))?.header)
}

/// Installs a loaded image into a keyspace (keeping its WATCH state).
pub fn install(ks: &mut Keyspace, image: Image) {
    ks.functions = image.functions;
    for (live, mut loaded) in ks.dbs.iter_mut().zip(image.dbs) {
        live.clear();
        // Time 0: no loaded key counts as expired, so every watcher of a
        // loaded key is touched (the conservative answer for EXEC).
        live.swap_data(&mut loaded, 0);
    }
}

/// Loads `image` on top of what `ks` holds (DEBUG RELOAD NOFLUSH). With
/// `replace` (MERGE) what was loaded wins; without, a key or library held
/// on both sides refuses the load before anything changed. Keys already
/// expired at `now_ms` do not count as held.
pub fn merge(ks: &mut Keyspace, image: Image, replace: bool, now_ms: i64) -> Result<(), String> {
    if !replace {
        for (i, (live, loaded)) in ks.dbs.iter_mut().zip(&image.dbs).enumerate() {
            if let Some((key, _, _)) = loaded.iter().find(|(k, _, _)| live.contains(k, now_ms)) {
                return Err(format!(
                    "duplicate key '{}' in db {i}",
                    String::from_utf8_lossy(key.as_bytes())
                ));
            }
        }
        if let Some((name, _)) = image
            .functions
            .iter()
            .find(|(n, _)| ks.functions.get(n).is_some())
        {
            return Err(format!("library '{name}' already exists"));
        }
    }
    for (name, source) in image.functions.iter() {
        ks.functions.insert(name.to_string(), source.clone());
    }
    for (live, loaded) in ks.dbs.iter_mut().zip(image.dbs) {
        for (key, value, expire) in loaded.iter() {
            live.set(key.as_bytes(), value.clone(), false);
            if let Some(at) = expire {
                live.set_expire(key.as_bytes(), at);
            }
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let dir = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Replaces `path` with `bytes` atomically (config rewrite, small files).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Image {
        let mut ks = Keyspace::new();
        ks.functions.insert(
            "lib1".into(),
            bytes::Bytes::from_static(
                b"#!lua name=lib1\nredis.register_function('f1', function() return 1 end)",
            ),
        );
        let db = &mut ks.dbs[0];
        db.set(b"s", Value::string(b"hello"), false);
        db.set(b"n", Value::string(b"42"), false);
        db.set_expire(b"n", i64::MAX / 2);
        let list: ListValue = (0..3000)
            .map(|i| Blob::new(format!("item{i}").as_bytes()))
            .collect();
        db.set(b"l", Value::List(Arc::new(list)), false);
        let mut z = ZSet::new();
        z.insert(b"a", 1.5);
        z.insert(b"b", f64::NEG_INFINITY);
        ks.dbs[3].set(b"z", Value::ZSet(Arc::new(z)), false);
        ks.snapshot()
    }

    fn to_bytes(image: &Image) -> Vec<u8> {
        let header = SnapshotHeader {
            repl_id: "abc".into(),
            repl_offset: 77,
            ..Default::default()
        };
        let mut w = SnapshotWriter::new(Vec::new(), &header).unwrap();
        w.write_image(&image.dbs, &image.functions, 0).unwrap();
        w.finish().unwrap()
    }

    fn from_bytes(bytes: &[u8]) -> Result<(SnapshotHeader, Image), SnapshotError> {
        let mut r = SnapshotReader::new(bytes)?;
        let mut b = KeyspaceBuilder::new();
        while let Some(rec) = r.next_record()? {
            b.apply(rec)?;
        }
        Ok((r.header.clone(), b.finish()))
    }

    #[test]
    fn roundtrip_preserves_digest() {
        let image = sample();
        let bytes = to_bytes(&image);
        let (header, loaded) = from_bytes(&bytes).unwrap();
        assert_eq!(header.repl_offset, 77);
        assert_eq!(loaded.functions, image.functions);
        assert_eq!(loaded.functions.len(), 1);
        let (dbs, loaded) = (image.dbs, loaded.dbs);
        let digest = |dbs: Vec<Db>| {
            let mut ks = Keyspace::new();
            ks.dbs = dbs;
            crate::keyspace::digest::dataset_digest(&ks, 0)
        };
        assert_eq!(digest(dbs), digest(loaded));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let bytes = to_bytes(&sample());
        for cut in (0..bytes.len()).step_by(7) {
            assert!(
                from_bytes(&bytes[..cut]).is_err(),
                "truncated at {cut} accepted"
            );
        }
        for pos in (0..bytes.len()).step_by(11) {
            let mut corrupt = bytes.clone();
            corrupt[pos] ^= 0x5a;
            assert!(from_bytes(&corrupt).is_err(), "flip at {pos} accepted");
        }
    }

    #[test]
    fn a_library_saved_twice_is_refused() {
        let mut b = KeyspaceBuilder::new();
        let lib = || Record::Library {
            name: "lib1".into(),
            source: b"#!lua name=lib1\n".to_vec(),
        };
        b.apply(lib()).unwrap();
        assert!(matches!(b.apply(lib()), Err(SnapshotError::Corrupt(_))));
    }

    #[test]
    fn installing_an_image_replaces_the_libraries() {
        let mut ks = Keyspace::new();
        ks.functions
            .insert("old".into(), bytes::Bytes::from_static(b"#!lua name=old\n"));
        install(&mut ks, sample());
        assert!(ks.functions.get("old").is_none());
        assert!(ks.functions.get("lib1").is_some());
    }
}
