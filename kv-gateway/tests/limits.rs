//! Malformed and oversized input, client limits and idle clients: each gets
//! an error (or its own connection closed) while other clients are served.

mod common;

use std::time::Duration;

use common::{closed, exchange, read_at_least, Appliance};
use keel_kv::resp::DecodeLimits;
use keel_kv::KvConfig;
use redis::{cmd, Commands};

fn small_limits() -> KvConfig {
    let decode =
        DecodeLimits { bulk_bytes_max: 1024, multibulk_len_max: 64, request_bytes_max: 4096, inline_bytes_max: 256 };
    KvConfig { decode, query_buffer_bytes_max: 8192, max_clients: 4, ..KvConfig::default() }
}

#[test]
fn an_oversized_bulk_gets_an_error_and_the_connection_keeps_serving() {
    let app = Appliance::start_with(small_limits());
    let mut s = app.raw();
    let big = vec![b'x'; 5000];
    let mut req = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", big.len()).into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
    let got = exchange(&mut s, &req, 10);
    let text = String::from_utf8_lossy(&got).to_string();
    let text = if text.contains("PONG") { text } else { text + &String::from_utf8_lossy(&read_at_least(&mut s, 7)) };
    assert!(text.starts_with("-ERR Protocol error: bulk of 5000 bytes exceeds"), "{text}");
    assert!(text.ends_with("+PONG\r\n"), "{text}");
}

#[test]
fn malformed_protocol_closes_only_that_connection() {
    let app = Appliance::start_with(small_limits());
    let mut other = app.client();
    let _: () = other.set("k", "v").unwrap();
    for bad in [&b"*1\r\n:5\r\n"[..], b"*abc\r\n", b"*1\r\n$-7\r\n", b"*1000\r\n", b"*1\r\n$2\r\nabcd\r\n"] {
        let mut s = app.raw();
        let got = exchange(&mut s, bad, 5);
        assert!(got.starts_with(b"-ERR Protocol error"), "{:?} -> {:?}", bad, String::from_utf8_lossy(&got));
        assert!(closed(&mut s));
    }
    let mut s = app.raw();
    let long_inline = vec![b'a'; 600];
    let got = exchange(&mut s, &long_inline, 5);
    assert!(got.starts_with(b"-ERR Protocol error: too big inline"), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(other.get::<_, String>("k").unwrap(), "v", "other clients are unaffected");
}

#[test]
fn inline_commands_work_for_telnet_users() {
    let app = Appliance::start();
    let mut s = app.raw();
    let got = exchange(&mut s, b"SET greeting \"hello world\"\r\nGET greeting\r\n", 22);
    assert_eq!(got, b"+OK\r\n$11\r\nhello world\r\n");
}

#[test]
fn clients_beyond_max_clients_are_refused_with_an_error() {
    let app = Appliance::start_with(small_limits());
    let mut held: Vec<redis::Connection> = (0..4).map(|_| app.client()).collect();
    let mut s = app.raw();
    let got = read_at_least(&mut s, 10);
    assert_eq!(got, b"-ERR max number of clients reached\r\n");
    assert_eq!(cmd("PING").query::<String>(&mut held[0]).unwrap(), "PONG");
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(100));
    let mut c = app.client();
    assert_eq!(cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
}

#[test]
fn idle_clients_are_closed_after_the_idle_timeout() {
    let config = KvConfig { idle_timeout: Some(Duration::from_millis(400)), ..KvConfig::default() };
    let app = Appliance::start_with(config);
    let mut s = app.raw();
    assert_eq!(exchange(&mut s, b"PING\r\n", 7), b"+PONG\r\n");
    let started = std::time::Instant::now();
    assert!(closed(&mut s));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn keys_too_long_for_the_engine_get_an_error() {
    let app = Appliance::start();
    let mut c = app.client();
    let long = "k".repeat(5000);
    let e = c.set::<_, _, ()>(&long, "v").unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    let _: () = c.set("fine", "v").unwrap();
}

#[test]
fn a_request_over_the_request_size_limit_gets_an_error_and_the_connection_keeps_serving() {
    let app = Appliance::start_with(small_limits());
    let mut s = app.raw();
    // Six 1000-byte values: each bulk is within its limit, the request
    // (over 6000 bytes) is not.
    let value = vec![b'v'; 1000];
    let mut req = b"*13\r\n$4\r\nMSET\r\n".to_vec();
    for i in 0..6 {
        req.extend_from_slice(format!("$2\r\nk{i}\r\n$1000\r\n").as_bytes());
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"*2\r\n$6\r\nEXISTS\r\n$2\r\nk0\r\n");
    let mut got = exchange(&mut s, &req, 10);
    while !got.ends_with(b":0\r\n") && got.len() < 200 {
        let more = read_at_least(&mut s, 1);
        assert!(!more.is_empty(), "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&more);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("-ERR Protocol error: request exceeds the limit of 4096 bytes\r\n"), "{text}");
    assert!(text.ends_with(":0\r\n"), "nothing of the refused MSET was written: {text}");
}

#[test]
fn a_client_over_its_output_buffer_limit_is_closed_and_others_are_served() {
    let config = KvConfig { output_buffer_bytes_max: 16 << 10, ..KvConfig::default() };
    let app = Appliance::start_with(config);
    let mut c = app.client();
    let _: () = c.set("big", vec![b'x'; 20 << 10]).unwrap();
    let _: () = c.set("small", "fine").unwrap();
    let mut s = app.raw();
    let got = exchange(&mut s, b"GET big\r\n", 1);
    assert!(got.is_empty(), "no reply over the limit: {} bytes came", got.len());
    assert!(closed(&mut s));
    assert_eq!(c.get::<_, String>("small").unwrap(), "fine", "other clients are unaffected");
}

#[test]
fn a_pipeline_whose_replies_together_exceed_the_output_buffer_limit_gets_them_all() {
    // Each reply is far under the limit; the pipeline's replies together are
    // 20 times over it. The connection writes them out as it goes: a
    // well-formed pipeline is never answered by a dropped connection.
    let config = KvConfig { output_buffer_bytes_max: 16 << 10, ..KvConfig::default() };
    let app = Appliance::start_with(config);
    let mut c = app.client();
    let value = vec![b'x'; 1000];
    for i in 0..8 {
        let _: () = c.set(format!("k{i}"), &value).unwrap();
    }
    let mut pipe = redis::pipe();
    for i in 0..320 {
        pipe.get(format!("k{}", i % 8));
    }
    let values: Vec<Vec<u8>> = pipe.query(&mut c).unwrap();
    assert_eq!(values.len(), 320);
    assert!(values.iter().all(|v| *v == value));
}

#[test]
fn a_client_that_writes_its_whole_pipeline_before_reading_gets_every_reply() {
    // 48 MiB of ECHOs, written before any reply is read: more than the
    // socket buffers of both directions hold, so the appliance must keep
    // reading while its replies wait for the client (a deadlock before).
    let app = Appliance::start();
    let mut s = app.raw();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let arg = vec![b'e'; 256 << 10];
    let count = 192;
    let mut one = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", arg.len()).into_bytes();
    one.extend_from_slice(&arg);
    one.extend_from_slice(b"\r\n");
    let pipeline: Vec<u8> = one.iter().copied().cycle().take(one.len() * count).collect();
    std::io::Write::write_all(&mut s, &pipeline).expect("the appliance reads while it writes");
    let reply_bytes = count * (arg.len() + format!("${}\r\n\r\n", arg.len()).len());
    let got = read_at_least(&mut s, reply_bytes);
    assert_eq!(got.len(), reply_bytes);
}

#[test]
fn a_request_of_exactly_the_query_buffer_limit_is_served() {
    // keel serve sets the request limit and the query buffer limit both to
    // kv.max_query_buffer, which may equal kv.max_bulk_size. A request of
    // exactly that size, its last byte late, is held whole with its framing.
    let limit_bytes = 100_000;
    let decode =
        DecodeLimits { bulk_bytes_max: limit_bytes, request_bytes_max: limit_bytes, ..DecodeLimits::default() };
    let config = KvConfig { decode, query_buffer_bytes_max: limit_bytes, ..KvConfig::default() };
    let app = Appliance::start_with(config);
    let mut s = app.raw();
    let value = vec![b'v'; limit_bytes - "SET".len() - "k".len()];
    let mut req = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    let (head, last) = req.split_at(req.len() - 1);
    std::io::Write::write_all(&mut s, head).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let got = exchange(&mut s, last, 5);
    assert_eq!(String::from_utf8_lossy(&got), "+OK\r\n");
}
