//! Quire as a cache: `maxmemory` with the LRU and LFU policies under a
//! Zipf-distributed cache-aside workload writing twice the limit's worth,
//! side by side with Debian's redis-server running the same sequence.
//! Memory must stay within 5 % of the limit, the hit rate within 5 points
//! of Redis's, and a replica must end with exactly the primary's keys.
//!
//! The nodes run as processes of their own: `used_memory` is the
//! process's allocator count, which an in-process node would share with
//! the test.

mod common;

use common::proc::{Group, Proc};
use common::{reserve_port, wait_until, RedisServer};
use std::time::Duration;

const MAXMEMORY: u64 = 16 << 20;
const VALUE_LEN: usize = 1000;
const UNIVERSE: usize = 60_000;
const OPS: usize = 300_000;
const BATCH: usize = 100;

/// A small deterministic generator (xorshift64*), so both servers see the
/// very same key sequence.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Key ranks drawn from Zipf(1.0) over the universe.
fn zipf_sequence(seed: u64) -> Vec<usize> {
    let mut cdf = Vec::with_capacity(UNIVERSE);
    let mut total = 0.0;
    for rank in 1..=UNIVERSE {
        total += 1.0 / rank as f64;
        cdf.push(total);
    }
    let mut rng = Rng(seed);
    (0..OPS)
        .map(|_| {
            let x = rng.next_f64() * total;
            cdf.partition_point(|&c| c < x).min(UNIVERSE - 1)
        })
        .collect()
}

fn info(con: &mut redis::Connection, field: &str) -> u64 {
    common::info_field(con, "memory", field)
        .parse()
        .unwrap_or(0)
}

/// What the server counts against `maxmemory` (Redis's rule: used memory
/// less what is not counted for eviction).
fn counted(con: &mut redis::Connection) -> u64 {
    let text: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    field("used_memory").saturating_sub(field("mem_not_counted_for_evict"))
}

/// Runs the cache-aside workload (GET; on a miss, SET) in pipelined
/// batches; returns the hit rate and the most memory seen between batches.
fn cache_workload(con: &mut redis::Connection, keys: &[usize]) -> (f64, u64) {
    let value = vec![b'v'; VALUE_LEN];
    let (mut hits, mut peak) = (0usize, 0u64);
    for batch in keys.chunks(BATCH) {
        let mut gets = redis::pipe();
        for k in batch {
            gets.cmd("GET").arg(format!("key:{k}"));
        }
        let replies: Vec<Option<Vec<u8>>> = gets.query(con).unwrap();
        let mut sets = redis::pipe();
        let mut missed = 0;
        for (k, reply) in batch.iter().zip(replies) {
            match reply {
                Some(_) => hits += 1,
                None => {
                    sets.cmd("SET").arg(format!("key:{k}")).arg(&value).ignore();
                    missed += 1;
                }
            }
        }
        if missed > 0 {
            if let Err(e) = sets.query::<()>(con) {
                let memory: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
                let keys: u64 = redis::cmd("DBSIZE").query(con).unwrap();
                panic!("{e} with {keys} keys; {memory}");
            }
        }
        peak = peak.max(counted(con));
    }
    (hits as f64 / keys.len() as f64, peak)
}

fn configure(con: &mut redis::Connection, policy: &str) {
    for (k, v) in [
        ("maxmemory", MAXMEMORY.to_string()),
        ("maxmemory-policy", policy.to_string()),
    ] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(con)
            .unwrap();
    }
}

fn side_by_side(policy: &str, seed: u64) {
    let keys = zipf_sequence(seed);
    let redis_server = RedisServer::start(&[]);
    let mut redis_con = redis::Client::open(format!("redis://127.0.0.1:{}/", redis_server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    configure(&mut redis_con, policy);
    let (redis_hits, _) = cache_workload(&mut redis_con, &keys);

    let group = Group::start();
    let (primary, replica) = (&group.primary, &group.replica);
    assert!(wait_until(Duration::from_secs(30), || replica
        .info("replication", "master_link_status")
        == "up"));
    let mut con = primary.client();
    configure(&mut con, policy);
    let (quire_hits, peak) = cache_workload(&mut con, &keys);

    let written = (keys.len() as f64 * (1.0 - quire_hits)) as u64 * VALUE_LEN as u64;
    assert!(
        written >= 2 * MAXMEMORY,
        "the workload wrote {written} bytes, less than twice maxmemory"
    );
    let evicted: u64 = common::info_field(&mut con, "stats", "evicted_keys")
        .parse()
        .unwrap();
    assert!(evicted > 0, "nothing was evicted");
    assert!(
        peak as f64 <= MAXMEMORY as f64 * 1.05,
        "{policy}: memory reached {peak} bytes, over 5 % above maxmemory {MAXMEMORY}"
    );
    assert!(
        (quire_hits - redis_hits).abs() <= 0.05,
        "{policy}: hit rate {quire_hits:.3} vs redis-server's {redis_hits:.3}"
    );
    eprintln!(
        "{policy}: hit rate quire {quire_hits:.3}, redis-server {redis_hits:.3}; peak {peak} of {MAXMEMORY}; evicted {evicted}; used_memory {}",
        info(&mut con, "used_memory")
    );

    // Evictions reached the replica as DELs: the same keys, the same data.
    let target: u64 = primary
        .info("replication", "master_repl_offset")
        .parse()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || replica
            .info("replication", "master_repl_offset")
            .parse::<u64>()
            .unwrap_or(0)
            >= target),
        "replica caught up"
    );
    // The primary's cron may still finish a round of eviction: compare
    // once both are quiet.
    let dbsize = |p: &Proc| -> u64 { redis::cmd("DBSIZE").query(&mut p.client()).unwrap() };
    assert!(
        wait_until(Duration::from_secs(30), || dbsize(primary)
            == dbsize(replica)
            && primary.digest() == replica.digest()),
        "replica holds {} keys, primary {}",
        dbsize(replica),
        dbsize(primary)
    );
    assert_eq!(
        common::info_field(&mut replica.client(), "stats", "evicted_keys"),
        "0",
        "replicas do not evict on their own"
    );
}

#[test]
fn allkeys_lru_cache_stays_at_its_limit_with_redis_hit_rate() {
    side_by_side("allkeys-lru", 0x9E37_79B9_7F4A_7C15);
}

#[test]
fn allkeys_lfu_cache_stays_at_its_limit_with_redis_hit_rate() {
    side_by_side("allkeys-lfu", 0xD1B5_4A32_D192_ED03);
}

#[test]
fn volatile_policy_without_volatile_keys_refuses_writes_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = reserve_port(false);
    let node = Proc::start(dir.path(), port, "");
    let mut con = node.client();
    let value = vec![b'x'; 10_000];
    for i in 0..2000 {
        let () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    let used = counted(&mut con);
    configure(&mut con, "volatile-lru");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used / 2)
        .query(&mut con)
        .unwrap();
    let err = redis::cmd("SET")
        .arg("more")
        .arg("v")
        .query::<()>(&mut con)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "OOM: command not allowed when used memory > 'maxmemory'."
    );
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, 2000, "no key without a TTL may go");
    // Reads still work; under an allkeys policy the next write evicts.
    let _: Option<Vec<u8>> = redis::cmd("GET").arg("k1").query(&mut con).unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-random")
        .query(&mut con)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("more")
        .arg("v")
        .query(&mut con)
        .unwrap();
    // A command evicts for at most its time limit; the cron goes on.
    assert!(wait_until(Duration::from_secs(10), || counted(&mut con) <= used / 2));
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert!(dbsize < 1100, "{dbsize} keys left");
}
