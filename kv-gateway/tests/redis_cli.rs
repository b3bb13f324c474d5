//! The real redis-cli (Debian's redis-tools; scripts/test-all installs it)
//! against a running appliance: its command-line and pipe modes.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Appliance;

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools; scripts/test-all does it)");
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_runs_every_kind_of_command() {
    let app = Appliance::start();
    let p = app.port;
    assert_eq!(redis_cli(p, &["PING"]), "PONG\n");
    assert_eq!(redis_cli(p, &["SET", "a", "1"]), "OK\n");
    assert_eq!(redis_cli(p, &["INCRBY", "a", "41"]), "42\n");
    assert_eq!(redis_cli(p, &["MSET", "b", "x", "c", "y"]), "OK\n");
    assert_eq!(redis_cli(p, &["MGET", "a", "b", "nope"]), "42\nx\n\n");
    assert_eq!(redis_cli(p, &["HSET", "h", "f1", "v1", "f2", "v2"]), "2\n");
    assert_eq!(redis_cli(p, &["HGETALL", "h"]), "f1\nv1\nf2\nv2\n");
    assert_eq!(redis_cli(p, &["ZADD", "z", "2", "two", "1", "one"]), "2\n");
    assert_eq!(redis_cli(p, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"]), "one\n1\ntwo\n2\n");
    assert_eq!(redis_cli(p, &["EXPIRE", "a", "100"]), "1\n");
    // Rounded to the nearest second; a loaded machine may take over half a
    // second between the two redis-cli processes.
    let ttl = redis_cli(p, &["TTL", "a"]);
    assert!(ttl == "100\n" || ttl == "99\n", "{ttl}");
    assert_eq!(redis_cli(p, &["TYPE", "z"]), "zset\n");
    assert_eq!(redis_cli(p, &["DBSIZE"]), "5\n");
    assert!(
        redis_cli(p, &["GET", "h"]).starts_with("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert!(redis_cli(p, &["FOO"]).starts_with("ERR unknown command 'FOO'"));
    assert!(redis_cli(p, &["INFO", "server"]).contains("redis_version:7.2.0"));
    assert!(redis_cli(p, &["--scan"]).lines().count() == 5);
    assert_eq!(redis_cli(p, &["-3", "HELLO", "3"]).lines().next().unwrap_or_default(), "server keel");
    assert_eq!(redis_cli(p, &["DEL", "a", "b", "c", "h", "z"]), "5\n");
}

#[test]
fn redis_cli_pipe_mode_loads_many_commands() {
    let app = Appliance::start();
    let mut input = Vec::new();
    for i in 0..2000 {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        input
            .extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).as_bytes());
    }
    let mut child = Command::new("redis-cli")
        .arg("-p")
        .arg(app.port.to_string())
        .arg("--pipe")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli must be installed");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 2000"), "{text}");
    assert_eq!(redis_cli(app.port, &["DBSIZE"]), "2000\n");
    assert_eq!(redis_cli(app.port, &["GET", "key1999"]), "value1999\n");
}

#[test]
fn redis_cli_authenticates_waits_for_durability_and_speaks_resp3() {
    let config = keel_kv::KvConfig { requirepass: Some("pw".into()), ..keel_kv::KvConfig::default() };
    let app = Appliance::start_with(config);
    let p = app.port;
    assert!(redis_cli(p, &["GET", "k"]).starts_with("NOAUTH"));
    let auth = ["-a", "pw", "--no-auth-warning"];
    let with = |args: &[&str]| redis_cli(p, &[&auth[..], args].concat());
    assert_eq!(with(&["SET", "k", "v"]), "OK\n");
    assert_eq!(with(&["WAITAOF", "1", "0", "0"]), "1\n0\n");
    assert_eq!(with(&["-3", "HSET", "h", "f", "v"]), "1\n");
    // A RESP3 map: redis-cli prints its pairs on one line each.
    assert_eq!(with(&["-3", "HGETALL", "h"]), "f v\n");
    assert_eq!(with(&["-3", "GET", "k"]), "v\n");
    assert!(
        redis_cli(p, &["-a", "wrong", "--no-auth-warning", "GET", "k"]).contains("WRONGPASS")
            || redis_cli(p, &["-a", "wrong", "--no-auth-warning", "GET", "k"]).contains("NOAUTH")
    );
}
