//! The meta cache (`src/meta_cache.rs`) answers only what the tree holds:
//! type changes, deletes, expiry and FLUSHDB through a running appliance
//! (2 reactors, 4 shards), with the default cache and with one too small to
//! hold the keys (eviction on every write), and under concurrent clients.

mod common;

use std::collections::HashMap;
use std::thread;

use common::Appliance;
use keel_kv::KvConfig;
use rand::{Rng, SeedableRng};
use redis::{cmd, Commands};

fn info_field(c: &mut redis::Connection, field: &str) -> u64 {
    let info: String = cmd("INFO").arg("keel").query(c).unwrap();
    let line = info.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap_or_else(|| panic!("{info}"));
    line.split(':').nth(1).unwrap().parse().unwrap()
}

#[test]
fn cached_keys_follow_type_changes_deletes_expiry_and_flushdb() {
    let app = Appliance::start();
    let mut c = app.client();
    let _: () = c.set("k", "v1").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v1");
    assert!(info_field(&mut c, "meta_cache_entries") >= 1);
    assert!(c.hset::<_, _, _, i64>("k", "f", "x").is_err(), "a cached string is still a string");
    let _: () = c.del("k").unwrap();
    assert_eq!(c.get::<_, Option<String>>("k").unwrap(), None);
    let _: i64 = c.hset("k", "f", "x").unwrap();
    assert!(c.get::<_, String>("k").is_err(), "a hash after a cached delete answers WRONGTYPE");
    let _: () = c.set("k", "v2").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v2");
    assert_eq!(c.hget::<_, _, Option<String>>("k", "f").ok().flatten(), None);
    let _: () = cmd("SET").arg("t").arg("1").arg("PX").arg(50).query(&mut c).unwrap();
    assert_eq!(c.get::<_, String>("t").unwrap(), "1");
    thread::sleep(std::time::Duration::from_millis(120));
    assert_eq!(c.get::<_, Option<String>>("t").unwrap(), None, "a cached meta still expires");
    let _: () = cmd("FLUSHDB").query(&mut c).unwrap();
    assert_eq!(c.get::<_, Option<String>>("k").unwrap(), None);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
}

/// Random SETs, DELs, INCRs and GETs against a model, with a cache of
/// `cache_bytes`.
fn matches_a_model(cache_bytes: usize) {
    let app = Appliance::start_with(KvConfig { meta_cache_bytes: cache_bytes, ..KvConfig::default() });
    let mut c = app.client();
    let mut model: HashMap<String, String> = HashMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..1500 {
        let key = format!("key{}", rng.gen_range(0..200));
        match rng.gen_range(0..4) {
            0 => {
                let value = format!("v{i}");
                let _: () = c.set(&key, &value).unwrap();
                model.insert(key, value);
            }
            1 => {
                let _: () = c.del(&key).unwrap();
                model.remove(&key);
            }
            2 => {
                let _: () = c.set(&key, "10").unwrap();
                let n: i64 = c.incr(&key, 5).unwrap();
                assert_eq!(n, 15);
                model.insert(key, "15".into());
            }
            _ => assert_eq!(c.get::<_, Option<String>>(&key).unwrap(), model.get(&key).cloned(), "{key}"),
        }
    }
    for i in 0..200 {
        let key = format!("key{i}");
        assert_eq!(c.get::<_, Option<String>>(&key).unwrap(), model.get(&key).cloned(), "{key}");
    }
    assert_eq!(cmd("DBSIZE").query::<usize>(&mut c).unwrap(), model.len());
    let bytes = info_field(&mut c, "meta_cache_bytes");
    assert!(bytes as usize <= cache_bytes.max(1), "{bytes} bytes cached, budget {cache_bytes}");
}

#[test]
fn gets_match_a_model_with_the_default_cache() {
    matches_a_model(KvConfig::default().meta_cache_bytes);
}

#[test]
fn gets_match_a_model_with_a_cache_smaller_than_the_keys() {
    matches_a_model(4 << 10);
}

#[test]
fn gets_match_a_model_with_the_cache_off() {
    matches_a_model(0);
}

#[test]
fn concurrent_writers_leave_their_last_values_visible() {
    let app = Appliance::start();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = app.client();
            thread::spawn(move || {
                for i in 0..300 {
                    // Shared keys: every writer's last write of a key is one
                    // of the values a later GET may see, never an older one.
                    let key = format!("shared{}", i % 10);
                    let _: () = c.set(&key, format!("{w}:{i}")).unwrap();
                    let own = format!("own{w}");
                    let _: () = c.set(&own, i).unwrap();
                    assert_eq!(c.get::<_, i64>(&own).unwrap(), i);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut c = app.client();
    for k in 0..10 {
        let v: String = c.get(format!("shared{k}")).unwrap();
        let i: i64 = v.split(':').nth(1).unwrap().parse().unwrap();
        assert!(i >= 290, "shared{k} = {v}: older than every writer's last write of it");
    }
}
