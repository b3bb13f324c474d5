//! Durability modes other than `always`, WAITAOF in them, and the atomicity
//! of multi-key writes whose keys live on different shards.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Appliance;
use keel_kv::{Durability, KvConfig};
use redis::{cmd, Commands};

fn info_field(c: &mut redis::Connection, name: &str) -> String {
    let info: String = cmd("INFO").arg("persistence").query(c).unwrap();
    let line = info.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_else(|| panic!("{info}"));
    line[name.len() + 1..].to_string()
}

#[test]
fn everysec_and_no_reply_at_once_and_waitaof_waits_for_the_clients_writes() {
    for (durability, name) in [(Durability::Everysec, "everysec"), (Durability::No, "no")] {
        let app = Appliance::start_with(KvConfig { durability, ..KvConfig::default() });
        let mut c = app.client();
        assert_eq!(info_field(&mut c, "keel_durability"), name);
        let cfg: Vec<String> = cmd("CONFIG").arg("GET").arg("appendfsync").query(&mut c).unwrap();
        assert_eq!(cfg, vec!["appendfsync".to_string(), name.to_string()]);
        for i in 0..100 {
            let _: () = c.set(format!("k{i}"), i).unwrap();
        }
        let acked: Vec<i64> = cmd("WAITAOF").arg(1).arg(0).arg(0).query(&mut c).unwrap();
        assert_eq!(acked, vec![1, 0], "{name}");
        let durable: u64 = info_field(&mut c, "keel_lsn_durable").parse().unwrap();
        assert!(durable >= 100, "{name}: WAITAOF returned before 100 writes were durable ({durable})");
        let acked: Vec<i64> = cmd("WAITAOF").arg(1).arg(0).arg(500).query(&mut c).unwrap();
        assert_eq!(acked, vec![1, 0], "{name}");
        assert_eq!(c.get::<_, i64>("k99").unwrap(), 99);
    }
}

/// MSET of many keys (spread over the appliance's 4 shards) races MGET of
/// the same keys: every MGET sees one MSET whole, never a mix.
#[test]
fn mset_is_atomic_across_shards_for_concurrent_readers() {
    let app = Appliance::start();
    let keys: Vec<String> = (0..16).map(|i| format!("atomic:{i}")).collect();
    let mut c = app.client();
    let _: () = c.mset(&keys.iter().map(|k| (k.as_str(), 0)).collect::<Vec<_>>()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (keys, done, mut r) = (keys.clone(), Arc::clone(&done), app.client());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) || reads < 10 {
                    let got: Vec<i64> = r.mget(&keys).unwrap();
                    assert!(got.iter().all(|&v| v == got[0]), "a torn MSET: {got:?}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 1..=300 {
        let _: () = c.mset(&keys.iter().map(|k| (k.as_str(), round)).collect::<Vec<_>>()).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 10);
    }
    let got: Vec<i64> = c.mget(&keys).unwrap();
    assert_eq!(got, vec![300; 16]);
}
