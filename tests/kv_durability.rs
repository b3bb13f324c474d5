//! The Redis-protocol gateway inside the real `keel serve`: it answers
//! clients, and in `always` mode every acknowledged write survives kill -9.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_keel(dir: &Path, port: u16) -> Child {
    let mut child = Command::new(KEEL)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--kv-listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--set", "device.size=256MiB", "--set", "dma.pool_size=32MiB", "--set", "kv.durability=always"])
        .args(["--set", "nfs.enabled=false"])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn keel");
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(mut c) = Client::connect(port) {
            if c.call(&["PING"]).as_deref() == Ok("+PONG") {
                return child;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("keel serve did not answer PING on port {port}");
}

/// A minimal RESP client: one request, one reply line (enough for SET/GET of
/// short values and PING).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client { reader: BufReader::new(s.try_clone()?), writer: s })
    }

    /// Sends a command; returns its first reply line, or the bulk's content.
    fn call(&mut self, args: &[&str]) -> Result<String, String> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        self.writer.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("closed".into());
        }
        let line = line.trim_end().to_string();
        if let Some(len) = line.strip_prefix('$') {
            if len == "-1" {
                return Ok(String::new());
            }
            let mut value = String::new();
            self.reader.read_line(&mut value).map_err(|e| e.to_string())?;
            return Ok(value.trim_end().to_string());
        }
        Ok(line)
    }
}

#[test]
fn keel_serve_answers_redis_clients_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_keel(dir.path(), port);
    let mut c = Client::connect(port).unwrap();
    assert_eq!(c.call(&["SET", "k", "v"]).unwrap(), "+OK");
    assert_eq!(c.call(&["GET", "k"]).unwrap(), "v");
    assert_eq!(c.call(&["CONFIG", "GET", "appendfsync"]).unwrap(), "*2");
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "keel did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keys acknowledged by `clients` threads writing until `stop`.
fn write_until_stopped(
    port: u16,
    round: usize,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|c| {
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let Ok(mut client) = Client::connect(port) else { return acked };
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("r{round}:c{c}:{n}");
                    match client.call(&["SET", &key, &key]) {
                        Ok(reply) if reply == "+OK" => acked.push(key),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect()
}

#[test]
fn acknowledged_writes_survive_kill_9_with_concurrent_clients() {
    const ROUNDS: usize = 4;
    const CLIENTS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut acked_total: Vec<String> = Vec::new();
    for round in 0..=ROUNDS {
        let mut child = start_keel(dir.path(), port);
        let mut checker = Client::connect(port).unwrap();
        let missing: Vec<&String> =
            acked_total.iter().filter(|k| checker.call(&["GET", k]).as_deref() != Ok(k.as_str())).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged writes lost, e.g. {:?}",
            missing.len(),
            acked_total.len(),
            &missing[..missing.len().min(5)]
        );
        println!("round {round}: all {} acknowledged writes present after kill -9", acked_total.len());
        if round == ROUNDS {
            child.kill().unwrap();
            let _ = child.wait();
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers = write_until_stopped(port, round, CLIENTS, &stop);
        std::thread::sleep(Duration::from_millis(700 + 300 * round as u64));
        child.kill().unwrap(); // SIGKILL, mid-write
        let _ = child.wait();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            acked_total.extend(w.join().unwrap());
        }
    }
    assert!(acked_total.len() > 100, "the clients wrote too little to prove anything: {}", acked_total.len());
}
