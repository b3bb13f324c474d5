//! Every command against a running appliance, through the `redis` crate.

mod common;

use std::collections::HashMap;
use std::thread::sleep;
use std::time::Duration;

use common::Appliance;
use redis::{cmd, Commands, RedisResult, Value};

fn err_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    let e = r.expect_err("expected an error reply");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

#[test]
fn strings_set_get_and_their_options() {
    let app = Appliance::start();
    let mut c = app.client();
    let _: () = c.set("k", "v1").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v1");
    assert_eq!(cmd("SET").arg("k").arg("v2").arg("NX").query::<Option<String>>(&mut c).unwrap(), None);
    assert_eq!(
        cmd("SET").arg("k").arg("v2").arg("XX").arg("GET").query::<Option<String>>(&mut c).unwrap(),
        Some("v1".into())
    );
    assert_eq!(cmd("SET").arg("new").arg("x").arg("XX").query::<Option<String>>(&mut c).unwrap(), None);
    assert_eq!(c.get::<_, Option<String>>("new").unwrap(), None);
    let _: () = cmd("SET").arg("t").arg("1").arg("EX").arg(100).query(&mut c).unwrap();
    assert!((99..=100).contains(&c.ttl::<_, i64>("t").unwrap()));
    let _: () = cmd("SET").arg("t").arg("2").arg("KEEPTTL").query(&mut c).unwrap();
    assert!(c.ttl::<_, i64>("t").unwrap() > 0);
    let _: () = c.set("t", "3").unwrap();
    assert_eq!(c.ttl::<_, i64>("t").unwrap(), -1);
    assert!(err_text(cmd("SET").arg("k").arg("v").arg("EX").arg(0).query::<()>(&mut c)).contains("invalid expire time"));
    assert!(err_text(cmd("SET").arg("k").arg("v").arg("NX").arg("XX").query::<()>(&mut c)).contains("syntax"));
    assert_eq!(cmd("GETDEL").arg("k").query::<String>(&mut c).unwrap(), "v2");
    assert_eq!(c.exists::<_, i64>("k").unwrap(), 0);
    assert_eq!(c.append::<_, _, i64>("s", "ab").unwrap(), 2);
    assert_eq!(c.append::<_, _, i64>("s", "cd").unwrap(), 4);
    assert_eq!(c.strlen::<_, i64>("s").unwrap(), 4);
    assert_eq!(c.get::<_, String>("s").unwrap(), "abcd");
    let empty: Vec<u8> = Vec::new();
    let _: () = c.set("empty", &empty).unwrap();
    assert_eq!(c.get::<_, Vec<u8>>("empty").unwrap(), empty);
    let _: () = c.set("", "empty key").unwrap();
    assert_eq!(c.get::<_, String>("").unwrap(), "empty key");
}

#[test]
fn counters_increment_and_refuse_non_integers() {
    let app = Appliance::start();
    let mut c = app.client();
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(cmd("INCR").arg("n").query::<i64>(&mut c).unwrap(), 2);
    assert_eq!(cmd("INCRBY").arg("n").arg(10).query::<i64>(&mut c).unwrap(), 12);
    assert_eq!(cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(), 11);
    assert_eq!(cmd("DECRBY").arg("n").arg(20).query::<i64>(&mut c).unwrap(), -9);
    let _: () = c.set("big", i64::MAX).unwrap();
    assert!(err_text(cmd("INCR").arg("big").query::<i64>(&mut c)).contains("overflow"));
    let _: () = c.set("word", "abc").unwrap();
    assert!(err_text(cmd("INCR").arg("word").query::<i64>(&mut c)).contains("not an integer"));
    let _: () = c.set("padded", " 1").unwrap();
    assert!(err_text(cmd("INCR").arg("padded").query::<i64>(&mut c)).contains("not an integer"));
}

#[test]
fn multi_key_commands_span_shards() {
    let app = Appliance::start();
    let mut c = app.client();
    let pairs: Vec<(String, String)> = (0..50).map(|i| (format!("m{i}"), format!("v{i}"))).collect();
    let _: () = c.mset(&pairs).unwrap();
    let keys: Vec<String> = (0..52).map(|i| format!("m{i}")).collect();
    let got: Vec<Option<String>> = c.mget(&keys).unwrap();
    assert_eq!(got.len(), 52);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v.as_deref(), (i < 50).then(|| format!("v{i}")).as_deref());
    }
    assert_eq!(cmd("EXISTS").arg("m1").arg("m1").arg("m2").arg("nope").query::<i64>(&mut c).unwrap(), 3);
    assert_eq!(c.del::<_, i64>(&keys[..10]).unwrap(), 10);
    assert_eq!(cmd("UNLINK").arg(&keys[10..20]).arg("nope").query::<i64>(&mut c).unwrap(), 10);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 30);
    let _: () = cmd("FLUSHDB").query(&mut c).unwrap();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(c.get::<_, Option<String>>("m30").unwrap(), None);
}

#[test]
fn hashes_hold_fields_and_check_types() {
    let app = Appliance::start();
    let mut c = app.client();
    assert_eq!(cmd("HSET").arg("h").arg("a").arg("1").arg("b").arg("2").query::<i64>(&mut c).unwrap(), 2);
    assert_eq!(cmd("HSET").arg("h").arg("a").arg("9").arg("c").arg("3").query::<i64>(&mut c).unwrap(), 1);
    let _: () = cmd("HMSET").arg("h").arg("d").arg("4").query(&mut c).unwrap();
    assert_eq!(c.hget::<_, _, String>("h", "a").unwrap(), "9");
    assert_eq!(c.hget::<_, _, Option<String>>("h", "zz").unwrap(), None);
    let got: Vec<Option<String>> = cmd("HMGET").arg("h").arg("b").arg("x").arg("d").query(&mut c).unwrap();
    assert_eq!(got, vec![Some("2".into()), None, Some("4".into())]);
    let all: HashMap<String, String> = c.hgetall("h").unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all["c"], "3");
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 4);
    assert_eq!(c.hexists::<_, _, i64>("h", "b").unwrap(), 1);
    assert_eq!(c.hdel::<_, _, i64>("h", &["a", "b", "nope"]).unwrap(), 2);
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 2);
    assert_eq!(cmd("TYPE").arg("h").query::<String>(&mut c).unwrap(), "hash");
    let _: () = c.set("s", "x").unwrap();
    assert!(err_text(cmd("HSET").arg("s").arg("f").arg("v").query::<i64>(&mut c)).starts_with("WRONGTYPE"));
    assert!(err_text(c.get::<_, String>("h")).starts_with("WRONGTYPE"));
    assert_eq!(c.hdel::<_, _, i64>("h", &["c", "d"]).unwrap(), 2);
    assert_eq!(c.exists::<_, i64>("h").unwrap(), 0, "an emptied hash no longer exists");
    let _: () = cmd("HSET").arg("h2").arg("f").arg("v").query(&mut c).unwrap();
    let _: () = c.set("h2", "now a string").unwrap();
    assert_eq!(cmd("TYPE").arg("h2").query::<String>(&mut c).unwrap(), "string");
    let _: () = cmd("HSET").arg("h2b").arg("x").arg("y").query(&mut c).unwrap();
    let _: i64 = c.del("h2").unwrap();
    let _: () = cmd("HSET").arg("h2").arg("g").arg("w").query(&mut c).unwrap();
    let all: HashMap<String, String> = c.hgetall("h2").unwrap();
    assert_eq!(all.len(), 1, "a new hash does not inherit fields of an old key: {all:?}");
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 3);
}

#[test]
fn sorted_sets_range_by_score_as_ycsb_uses_them() {
    let app = Appliance::start();
    let mut c = app.client();
    for i in 0..20 {
        let added: i64 =
            cmd("ZADD").arg("_indices").arg(f64::from(i) * 1.5 - 10.0).arg(format!("user{i}")).query(&mut c).unwrap();
        assert_eq!(added, 1);
    }
    assert_eq!(cmd("ZADD").arg("_indices").arg(100).arg("user0").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(cmd("ZCARD").arg("_indices").query::<i64>(&mut c).unwrap(), 20);
    assert_eq!(cmd("ZSCORE").arg("_indices").arg("user0").query::<f64>(&mut c).unwrap(), 100.0);
    assert_eq!(cmd("ZSCORE").arg("_indices").arg("user3").query::<f64>(&mut c).unwrap(), -5.5);
    let got: Vec<String> =
        cmd("ZRANGEBYSCORE").arg("_indices").arg(-5.5).arg("+inf").arg("LIMIT").arg(0).arg(3).query(&mut c).unwrap();
    assert_eq!(got, vec!["user3", "user4", "user5"]);
    let got: Vec<String> = cmd("ZRANGEBYSCORE").arg("_indices").arg("(-5.5").arg("(-2.5").query(&mut c).unwrap();
    assert_eq!(got, vec!["user4"]);
    let got: Vec<String> =
        cmd("ZRANGEBYSCORE").arg("_indices").arg("50").arg("+inf").arg("WITHSCORES").query(&mut c).unwrap();
    assert_eq!(got, vec!["user0", "100"]);
    let all: Vec<String> = cmd("ZRANGEBYSCORE").arg("_indices").arg("-inf").arg("+inf").query(&mut c).unwrap();
    assert_eq!(all.len(), 20);
    assert_eq!(all.last().unwrap(), "user0");
    assert_eq!(cmd("ZREM").arg("_indices").arg("user0").arg("nope").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(cmd("ZCARD").arg("_indices").query::<i64>(&mut c).unwrap(), 19);
    assert!(err_text(cmd("ZRANGEBYSCORE").arg("_indices").arg("x").arg("1").query::<Vec<String>>(&mut c))
        .contains("not a float"));
    assert!(
        err_text(cmd("ZADD").arg("_indices").arg("nan").arg("m").query::<i64>(&mut c)).contains("not a valid float")
    );
    assert_eq!(cmd("TYPE").arg("_indices").query::<String>(&mut c).unwrap(), "zset");
}

#[test]
fn keel_scanhash_returns_hashes_in_index_order() {
    let app = Appliance::start();
    let mut c = app.client();
    for i in 0..10 {
        let key = format!("user{i}");
        let _: () = cmd("HMSET").arg(&key).arg("field0").arg(format!("v{i}")).query(&mut c).unwrap();
        let _: i64 = cmd("ZADD").arg("_indices").arg(i).arg(&key).query(&mut c).unwrap();
    }
    let got: Vec<(String, HashMap<String, String>)> =
        cmd("KEEL.SCANHASH").arg("_indices").arg(4).arg(3).query(&mut c).unwrap();
    let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["user4", "user5", "user6"]);
    assert_eq!(got[1].1["field0"], "v5");
}

#[test]
fn expiry_is_enforced_on_read_and_swept_actively() {
    let app = Appliance::start();
    let mut c = app.client();
    let _: () = cmd("SET").arg("gone").arg("x").arg("PX").arg(50).query(&mut c).unwrap();
    let _: () = cmd("HSET").arg("hgone").arg("f").arg("v").query(&mut c).unwrap();
    assert_eq!(cmd("PEXPIRE").arg("hgone").arg(50).query::<i64>(&mut c).unwrap(), 1);
    let _: () = c.set("stay", "y").unwrap();
    assert_eq!(cmd("EXPIRE").arg("stay").arg(100).query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(cmd("EXPIRE").arg("stay").arg(200).arg("NX").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(cmd("PERSIST").arg("stay").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(cmd("TTL").arg("stay").query::<i64>(&mut c).unwrap(), -1);
    assert_eq!(cmd("TTL").arg("missing").query::<i64>(&mut c).unwrap(), -2);
    let pttl: i64 = cmd("PTTL").arg("gone").query(&mut c).unwrap();
    assert!((0..=50).contains(&pttl), "{pttl}");
    sleep(Duration::from_millis(80));
    assert_eq!(c.get::<_, Option<String>>("gone").unwrap(), None, "expired on read");
    assert_eq!(c.hgetall::<_, HashMap<String, String>>("hgone").unwrap().len(), 0);
    // The sweep removes them for good: DBSIZE counts only "stay" soon.
    let mut size = 0;
    for _ in 0..50 {
        size = cmd("DBSIZE").query::<i64>(&mut c).unwrap();
        if size == 1 {
            break;
        }
        sleep(Duration::from_millis(50));
    }
    assert_eq!(size, 1);
    assert_eq!(cmd("EXPIRE").arg("stay").arg(-1).query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(c.exists::<_, i64>("stay").unwrap(), 0, "a negative expiry deletes");
    let info: String = cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(info.contains("expired_keys:2"), "{info}");
}

#[test]
fn scan_visits_every_key_once_with_match_count_and_type() {
    let app = Appliance::start();
    let mut c = app.client();
    for i in 0..300 {
        let _: () = c.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..7 {
        let _: () = cmd("HSET").arg(format!("hash:{i}")).arg("a").arg("b").arg("c").arg("d").query(&mut c).unwrap();
    }
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    let mut calls = 0;
    loop {
        let (next, keys): (String, Vec<String>) =
            cmd("SCAN").arg(&cursor).arg("MATCH").arg("key:1*").arg("COUNT").arg(25).query(&mut c).unwrap();
        for k in keys {
            assert!(k.starts_with("key:1"));
            assert!(seen.insert(k), "a key came back twice");
        }
        calls += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 111, "key:1, key:10..19, key:100..199");
    assert!(calls > 5);
    let hashes: Vec<String> = c.scan_match::<_, String>("*").unwrap().collect();
    assert_eq!(hashes.len(), 307);
    let (_, only): (String, Vec<String>) =
        cmd("SCAN").arg(0).arg("TYPE").arg("hash").arg("COUNT").arg(10_000).query(&mut c).unwrap();
    assert_eq!(only.len(), 7);
}

#[test]
fn connection_commands_answer_like_redis() {
    let app = Appliance::start();
    let mut c = app.client();
    assert_eq!(cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    assert_eq!(cmd("PING").arg("hi").query::<String>(&mut c).unwrap(), "hi");
    assert_eq!(cmd("ECHO").arg("x y").query::<String>(&mut c).unwrap(), "x y");
    let _: () = cmd("SELECT").arg(0).query(&mut c).unwrap();
    assert!(err_text(cmd("SELECT").arg(1).query::<()>(&mut c)).contains("out of range"));
    let _: () = cmd("CLIENT").arg("SETNAME").arg("tester").query(&mut c).unwrap();
    assert_eq!(cmd("CLIENT").arg("GETNAME").query::<String>(&mut c).unwrap(), "tester");
    let id: i64 = cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    assert!(id > 0);
    let info: String = cmd("CLIENT").arg("INFO").query(&mut c).unwrap();
    assert!(info.contains(&format!("id={id} ")) && info.contains("name=tester"), "{info}");
    let count: i64 = cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    let all: Vec<Value> = cmd("COMMAND").query(&mut c).unwrap();
    assert_eq!(all.len() as i64, count);
    let info: String = cmd("INFO").query(&mut c).unwrap();
    for section in ["# Server", "# Clients", "# Persistence", "# Stats", "# Keyspace"] {
        assert!(info.contains(section), "{section} missing");
    }
    assert!(info.contains("keel_durability:always"));
    let cfg: HashMap<String, String> = cmd("CONFIG").arg("GET").arg("append*").query(&mut c).unwrap();
    assert_eq!(cfg["appendfsync"], "always");
    assert!(err_text(cmd("NOSUCH").arg("a").query::<()>(&mut c)).contains("unknown command 'NOSUCH'"));
    assert!(err_text(cmd("GET").query::<()>(&mut c)).contains("wrong number of arguments for 'get'"));
    let acked: Vec<i64> = cmd("WAITAOF").arg(1).arg(0).arg(0).query(&mut c).unwrap();
    assert_eq!(acked, vec![1, 0]);
    let _: () = c.set("w", "1").unwrap();
    let acked: Vec<i64> = cmd("WAITAOF").arg(1).arg(0).arg(1000).query(&mut c).unwrap();
    assert_eq!(acked, vec![1, 0]);
    assert!(err_text(cmd("WAITAOF").arg(1).arg(1).arg(0).query::<Vec<i64>>(&mut c)).contains("replicas"));
    let _: () = cmd("QUIT").query(&mut c).unwrap();
}

#[test]
fn pipelined_requests_reply_in_order_across_shards() {
    let app = Appliance::start();
    let mut c = app.client();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
        pipe.cmd("INCR").arg(format!("p{i}"));
        pipe.cmd("GET").arg(format!("p{}", i / 2));
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 1000);
    for i in 0..500usize {
        assert_eq!(replies[2 * i], Value::Int(i as i64 + 1));
        let expect = if (i / 2) < i { (i / 2 + 1).to_string() } else { (i + 1).to_string() };
        assert_eq!(replies[2 * i + 1], Value::BulkString(expect.into_bytes()), "pipeline order at {i}");
    }
}

/// A pipeline's consecutive plain SETs commit as one transaction: the
/// replies, values, types, key count and expiries must be those of running
/// them one by one.
#[test]
fn pipelined_plain_sets_commit_together_like_one_by_one() {
    let app = Appliance::start();
    let mut c = app.client();
    let _: () = c.hset("h", "f", "v").unwrap();
    let _: () = cmd("SET").arg("x").arg("old").arg("PX").arg(400).query(&mut c).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..40 {
        pipe.cmd("SET").arg(format!("run{}", i % 30)).arg(i);
    }
    pipe.cmd("SET").arg("h").arg("now a string");
    pipe.cmd("SET").arg("x").arg("new");
    pipe.cmd("SET").arg("after").arg("last");
    let replies: Vec<String> = pipe.query(&mut c).unwrap();
    assert_eq!(replies, vec!["OK".to_string(); 43]);
    for i in 0..30 {
        let last = if i < 10 { i + 30 } else { i };
        assert_eq!(c.get::<_, String>(format!("run{i}")).unwrap(), last.to_string());
    }
    assert_eq!(cmd("TYPE").arg("h").query::<String>(&mut c).unwrap(), "string");
    assert_eq!(c.get::<_, String>("h").unwrap(), "now a string");
    assert_eq!(c.ttl::<_, i64>("x").unwrap(), -1);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 33);
    // The old expiry of x must not remove its new value.
    sleep(Duration::from_millis(700));
    assert_eq!(c.get::<_, String>("x").unwrap(), "new");
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 33);
}

#[test]
fn resp3_replies_use_maps_doubles_and_nulls() {
    let app = Appliance::start();
    let mut c = redis::Client::open(format!("{}?protocol=resp3", app.url())).unwrap().get_connection().unwrap();
    let _: () = cmd("HSET").arg("h").arg("f").arg("v").query(&mut c).unwrap();
    let v: Value = cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert!(matches!(v, Value::Map(ref m) if m.len() == 1), "{v:?}");
    let _: i64 = cmd("ZADD").arg("z").arg(1.5).arg("m").query(&mut c).unwrap();
    let v: Value = cmd("ZSCORE").arg("z").arg("m").query(&mut c).unwrap();
    assert_eq!(v, Value::Double(1.5));
    let v: Value = cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let v: Value = cmd("HELLO").arg(3).query(&mut c).unwrap();
    assert!(matches!(v, Value::Map(_)), "{v:?}");
}

#[test]
fn requirepass_demands_auth_before_anything_else() {
    let config = keel_kv::KvConfig { requirepass: Some("s3cret".into()), ..keel_kv::KvConfig::default() };
    let app = Appliance::start_with(config);
    let mut c = app.client();
    assert!(err_text(c.get::<_, Option<String>>("k")).starts_with("NOAUTH"));
    assert!(err_text(cmd("AUTH").arg("wrong").query::<()>(&mut c)).starts_with("WRONGPASS"));
    assert!(err_text(cmd("HELLO").arg(3).query::<Value>(&mut c)).starts_with("NOAUTH"));
    let _: () = cmd("AUTH").arg("s3cret").query(&mut c).unwrap();
    let _: () = c.set("k", "v").unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}/", app.port);
    let mut c2 = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(c2.get::<_, String>("k").unwrap(), "v");
    let mut c3 = app.client();
    let v: Value = cmd("HELLO").arg(2).arg("AUTH").arg("default").arg("s3cret").query(&mut c3).unwrap();
    assert!(matches!(v, Value::Array(_)), "{v:?}");
    assert_eq!(c3.get::<_, String>("k").unwrap(), "v");
}

fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(now.as_millis()).unwrap()
}

#[test]
fn expiry_takes_absolute_times_and_conditions() {
    let app = Appliance::start();
    let mut c = app.client();
    let now_s = unix_ms() / 1000;
    let _: () = cmd("SET").arg("a").arg("1").arg("EXAT").arg(now_s + 100).query(&mut c).unwrap();
    assert!((98..=100).contains(&c.ttl::<_, i64>("a").unwrap()));
    let _: () = cmd("SET").arg("b").arg("1").arg("PXAT").arg(unix_ms() + 50_000).query(&mut c).unwrap();
    assert!((48_000..=50_000).contains(&cmd("PTTL").arg("b").query::<i64>(&mut c).unwrap()));
    assert_eq!(cmd("EXPIREAT").arg("a").arg(now_s + 200).query::<i64>(&mut c).unwrap(), 1);
    assert!((198..=200).contains(&c.ttl::<_, i64>("a").unwrap()));
    assert_eq!(cmd("PEXPIREAT").arg("b").arg(unix_ms() + 300_000).query::<i64>(&mut c).unwrap(), 1);
    assert!((298..=300).contains(&c.ttl::<_, i64>("b").unwrap()));
    // GT and LT compare with the current expiry; a key without one counts
    // as never expiring (GT refuses, LT accepts), as in Redis.
    assert_eq!(cmd("EXPIRE").arg("a").arg(50).arg("GT").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("a").arg(500).arg("GT").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(cmd("EXPIRE").arg("a").arg(1000).arg("LT").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("a").arg(10).arg("LT").query::<i64>(&mut c).unwrap(), 1);
    assert!((9..=10).contains(&c.ttl::<_, i64>("a").unwrap()));
    let _: () = c.set("plain", "v").unwrap();
    assert_eq!(cmd("EXPIRE").arg("plain").arg(10).arg("GT").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("plain").arg(10).arg("XX").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("plain").arg(10).arg("LT").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(cmd("EXPIRE").arg("missing").arg(10).query::<i64>(&mut c).unwrap(), 0);
    assert!(
        err_text(cmd("EXPIRE").arg("a").arg(10).arg("NX").arg("XX").query::<i64>(&mut c)).contains("not compatible")
    );
    assert_eq!(cmd("EXPIREAT").arg("b").arg(now_s - 10).query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(c.exists::<_, i64>("b").unwrap(), 0, "a time in the past deletes the key");
}

#[test]
fn hello_client_command_and_reset_subcommands() {
    let app = Appliance::start();
    let mut c = app.client();
    let v: Value = cmd("HELLO").arg(3).arg("SETNAME").arg("via-hello").query(&mut c).unwrap();
    assert!(
        matches!(v, Value::Map(ref m) if m.iter().any(|(k, v)| *k == Value::BulkString(b"proto".to_vec())
        && *v == Value::Int(3))),
        "{v:?}"
    );
    assert_eq!(cmd("CLIENT").arg("GETNAME").query::<String>(&mut c).unwrap(), "via-hello");
    assert!(err_text(cmd("HELLO").arg(4).query::<Value>(&mut c)).starts_with("NOPROTO"));
    assert!(err_text(cmd("CLIENT").arg("SETNAME").arg("a b").query::<()>(&mut c)).contains("cannot contain spaces"));
    assert!(err_text(cmd("CLIENT").arg("KILL").query::<()>(&mut c)).contains("unknown subcommand"));
    let info: Vec<Value> = cmd("COMMAND").arg("INFO").arg("get").arg("nosuch").query(&mut c).unwrap();
    assert_eq!(info.len(), 2);
    assert!(
        matches!(&info[0], Value::Array(row) if row[0] == Value::BulkString(b"get".to_vec())
        && row[1] == Value::Int(2)),
        "{info:?}"
    );
    assert_eq!(info[1], Value::Nil);
    let names: Vec<String> = cmd("COMMAND").arg("LIST").query(&mut c).unwrap();
    for name in ["zrangebyscore", "waitaof", "keel.scanhash", "hello"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from COMMAND LIST");
    }
    let _: Value = cmd("COMMAND").arg("DOCS").query(&mut c).unwrap();
    let v: Value = cmd("RESET").query(&mut c).unwrap();
    assert_eq!(v, Value::SimpleString("RESET".into()));
    assert_eq!(cmd("CLIENT").arg("GETNAME").query::<Option<String>>(&mut c).unwrap(), None);
}
