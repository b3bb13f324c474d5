//! Every command with hostile arguments (empty, extreme integers, option
//! words in odd places, stray floats): each request gets exactly one reply
//! and the connection keeps serving. A panic in a request path would close
//! the connection (a command run on the connection's reactor) or come back
//! as an internal error (a command run on another reactor); neither may
//! happen.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::replies::{clip, reply_len, request};
use common::Appliance;
use keel_kv::cmd::COMMANDS;

const HOSTILE: &[&[u8]] = &[
    b"",
    b"k",
    b"0",
    b"-1",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"99999999999999999999",
    b"inf",
    b"-inf",
    b"nan",
    b"1e308",
    b"LIMIT",
    b"EX",
    b"PXAT",
    b"GET",
    b"NX",
    b"XX",
    b"KEEPTTL",
    b"WITHSCORES",
    b"INCR",
    b"MATCH",
    b"COUNT",
    b"TYPE",
    b"(1",
    b"[",
    b"*",
];

/// Sends `req` and then a PING; returns the reply to `req`, or why the
/// connection failed.
fn one_reply(s: &mut TcpStream, req: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = req.to_vec();
    out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    s.write_all(&out).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(n) = reply_len(&got) {
            if got.len() >= n + 7 {
                let (reply, rest) = got.split_at(n);
                return if rest == b"+PONG\r\n" {
                    Ok(reply.to_vec())
                } else {
                    Err(format!("after the reply: {}", clip(rest)))
                };
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("connection closed after {}", clip(&got))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{e} after {}", clip(&got))),
        }
    }
}

#[test]
fn every_command_with_hostile_arguments_gets_one_reply_and_the_connection_serves_on() {
    let app = Appliance::start();
    let mut s = app.raw();
    // Some keys of every type, so commands meet existing records too.
    for setup in [&[&b"set"[..], b"k", b"1"][..], &[b"hset", b"0", b"f", b"v"], &[b"zadd", b"-1", b"1", b"m"]] {
        one_reply(&mut s, &request(setup)).unwrap();
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut sent = 0;
    for spec in COMMANDS.iter().filter(|s| !matches!(s.name, "quit" | "hello" | "auth" | "reset")) {
        for argc in 0..=6 {
            for _ in 0..6 {
                let mut args: Vec<&[u8]> = vec![spec.name.as_bytes()];
                args.extend((0..argc).map(|_| HOSTILE[next(HOSTILE.len())]));
                let req = request(&args);
                let reply =
                    one_reply(&mut s, &req).unwrap_or_else(|why| panic!("{} gave no single reply: {why}", clip(&req)));
                let text = String::from_utf8_lossy(&reply);
                assert!(!text.contains("internal error"), "{} -> {text}", clip(&req));
                sent += 1;
            }
        }
    }
    assert!(sent > 1000, "{sent} requests");
}
