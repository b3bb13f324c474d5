//! The real `keel` binary, as a user and as systemd run it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
/// Generous: the machine is shared and tests run in parallel.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP port nobody listens on right now (tests run in parallel).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `keel <args>` on a small data file in `dir`, the KV gateway on a free port.
fn keel(dir: &Path, args: &[&str]) -> Command {
    keel_on_port(dir, args, free_port())
}

/// `keel <args>` on a small data file in `dir`, the KV gateway on `port`.
fn keel_on_port(dir: &Path, args: &[&str], port: u16) -> Command {
    let mut command = Command::new(KEEL);
    command
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--kv-listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--set", "device.size=64MiB", "--set", "dma.pool_size=32MiB"])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("RUST_LOG");
    command
}

/// A running `keel serve` whose stdout lines arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn keel");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, lines, seen: Vec::new() }
    }

    /// Waits for a stdout line starting with `prefix`; panics with the output so far.
    fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = self.child.kill();
            let _ = err.read_to_string(&mut stderr);
        }
        panic!("no line starting with {prefix:?}; stdout: {:#?}\nstderr: {stderr}", self.seen);
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the exit and returns the status and the rest of stdout.
    fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread may not have passed on the last lines
                // yet: take them until it sees the end of stdout.
                while let Ok(line) = self.lines.recv_timeout(START_TIMEOUT) {
                    self.seen.push(line);
                }
                return (status, self.seen);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("keel did not exit; stdout: {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn serve_starts_on_defaults_says_where_it_is_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(keel(dir.path(), &["serve"]));
    server.wait_for_line("Ready");
    let banner = server.seen.join("\n");
    assert!(banner.contains("creating a Keel volume"), "{banner}");
    assert!(banner.contains(&format!("file {}/keel.img (io_uring", dir.path().display())), "{banner}");
    assert!(banner.contains("kv         redis 127.0.0.1:"), "what it listens on: {banner}");
    server.signal("INT");
    let (status, lines) = server.wait();
    assert!(status.success(), "exit status {status:?}; stdout: {lines:#?}");
    assert!(lines.iter().any(|l| l == "Stopped cleanly."), "{lines:#?}");

    // The volume survives, was marked clean, and a second start opens it
    // rather than creating another.
    let inspect = keel(dir.path(), &["inspect"]).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}");
    assert!(text.contains("valid, in force") && text.contains("0x1 (clean)"), "{text}");
    let mut again = Server::start(keel(dir.path(), &["serve"]));
    again.wait_for_line("Ready");
    assert!(!again.seen.iter().any(|l| l.contains("creating a Keel volume")), "{:#?}", again.seen);
    assert!(again.seen.iter().any(|l| l.contains("boot 2")), "{:#?}", again.seen);
    again.signal("TERM");
    assert!(again.wait().0.success());
}

#[test]
fn serve_under_systemd_reports_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let mut command = keel(dir.path(), &["serve"]);
    command.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "1000000");
    let mut server = Server::start(command);
    let receive = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = receive();
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    server.wait_for_line("Ready");
    // Pings come every half period (500 ms) while the reactors answer.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(receive(), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    server.signal("INT");
    let stopping = loop {
        let message = receive();
        if message != "WATCHDOG=1" {
            break message;
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let (status, lines) = server.wait();
    assert!(status.success(), "{status:?} {lines:#?}");
}

#[test]
fn mkfs_refuses_an_existing_volume_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let first = keel(dir.path(), &["mkfs", "--shards", "2"]).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("shards    2"));
    let second = keel(dir.path(), &["mkfs"]).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("already holds a Keel volume") && message.contains("--force"), "{message}");
    let forced = keel(dir.path(), &["mkfs", "--force"]).output().unwrap();
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
}

#[test]
fn serve_refuses_a_device_with_both_superblocks_damaged() {
    let dir = tempfile::tempdir().unwrap();
    assert!(keel(dir.path(), &["mkfs"]).output().unwrap().status.success());
    let image = dir.path().join("keel.img");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[100] ^= 1;
    bytes[4096 + 100] ^= 1;
    std::fs::write(&image, &bytes).unwrap();
    let output = keel(dir.path(), &["serve"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("no valid Keel superblock") && message.contains("checksum mismatch"), "{message}");
}

#[test]
fn a_bad_configuration_exits_78_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(&config, "[kv]\nlisten = \"127.0.0.1:6379\"\nmax_clients = 0\n").unwrap();
    let output = keel(dir.path(), &["serve", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("keel.toml:3: kv.max_clients: 0 is out of range"), "{message}");
}

#[test]
fn help_has_examples_and_version_prints() {
    let help = Command::new(KEEL).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(text.contains("serve") && text.contains("mkfs") && text.contains("inspect") && text.contains("Examples"));
    let serve_help = Command::new(KEEL).args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&serve_help.stdout).contains("--kv-listen"));
    let version = Command::new(KEEL).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("keel {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_prints_a_configuration_that_reflects_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let output = keel(dir.path(), &["config", "--reactors", "3", "--idle", "poll"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("count = 3") && text.contains("idle = \"poll\""), "{text}");
}

/// Writes `count` keys with 100-byte values through the Redis protocol,
/// pipelined, and checks every reply.
fn fill_over_resp(port: u16, count: usize) {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut requests = Vec::new();
    for i in 0..count {
        let (key, value) = (format!("key{i:012}"), format!("{i:0100}"));
        requests
            .extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$100\r\n{value}\r\n", key.len()).as_bytes());
    }
    writer.write_all(&requests).unwrap();
    let mut replies = BufReader::new(stream);
    for i in 0..count {
        let mut line = String::new();
        replies.read_line(&mut line).unwrap();
        assert_eq!(line, "+OK\r\n", "reply to SET number {i}");
    }
}

#[test]
fn fsck_passes_a_clean_volume_and_reports_a_corrupted_leaf_and_inspect_shows_the_trees() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(keel_on_port(dir.path(), &["serve"], port));
    server.wait_for_line("Ready");
    fill_over_resp(port, 3000);
    server.signal("INT");
    assert!(server.wait().0.success());

    let image = dir.path().join("keel.img");
    let before = std::fs::read(&image).unwrap();
    let fsck = keel(dir.path(), &["fsck"]).output().unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert_eq!(fsck.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&fsck.stderr));
    assert!(text.contains("Clean: every checksum"), "{text}");
    assert!(before == std::fs::read(&image).unwrap(), "fsck changed the volume");

    let inspect = keel(dir.path(), &["inspect", "--blocks"]).output().unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.status.success(), "{text}");
    assert!(
        text.contains("nodes per level") && text.contains("L0 ") && text.contains("nodes / cache budget"),
        "{text}"
    );
    let entries: u64 = text
        .lines()
        .skip_while(|l| !l.starts_with("Trees"))
        .skip(2)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter_map(|cells| {
            let fill = cells.iter().rposition(|c| c.ends_with('%'))?;
            let (entries, buffered) = (cells.get(fill + 1)?, cells.get(fill + 2)?);
            Some(entries.parse::<u64>().ok()? + buffered.parse::<u64>().ok()?)
        })
        .sum();
    // The gateways keep a few keys of their own besides the records.
    assert!((3000..3100).contains(&entries), "every key sits in a leaf or a buffer: {text}");
    let leaf_page: u64 = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&"leaf"))
        .and_then(|cells| cells[2].parse().ok())
        .unwrap_or_else(|| panic!("no leaf in the block list: {text}"));

    let mut bytes = before;
    bytes[leaf_page as usize * 4096 + 200] ^= 0x10;
    std::fs::write(&image, &bytes).unwrap();
    let fsck = keel(dir.path(), &["fsck"]).output().unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert_eq!(fsck.status.code(), Some(4), "{text}{}", String::from_utf8_lossy(&fsck.stderr));
    assert!(text.contains("Problems (1):") && text.contains("checksum"), "{text}");
    assert!(String::from_utf8_lossy(&fsck.stderr).contains("the volume has 1 problem(s)"));
}

/// Reads `key` through the Redis protocol; `None` for a missing key.
fn get_over_resp(port: u16, key: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    stream.write_all(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes()).unwrap();
    let mut replies = BufReader::new(stream);
    let mut header = String::new();
    replies.read_line(&mut header).unwrap();
    if header == "$-1\r\n" {
        return None;
    }
    let mut value = String::new();
    replies.read_line(&mut value).unwrap();
    Some(value.trim_end().to_owned())
}

/// `keel <args>` with `device.paths` set to `paths` in a configuration file.
fn keel_on_paths(dir: &Path, args: &[&str], port: u16, paths: &[&Path]) -> Command {
    let config = dir.join("set.toml");
    let list: Vec<String> = paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    std::fs::write(&config, format!("[device]\npaths = [{}]\n", list.join(", "))).unwrap();
    let mut args = args.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    keel_on_port(dir, &args, port)
}

#[test]
fn serve_stripes_a_volume_over_two_files_keeps_it_across_a_restart_and_refuses_them_swapped_or_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    let port = free_port();
    let mut server = Server::start(keel_on_paths(dir.path(), &["serve"], port, &[&a, &b]));
    server.wait_for_line("Ready");
    let banner = server.seen.join("\n");
    assert!(banner.contains("Labelled 2 devices as a new striped set"), "{banner}");
    assert!(banner.contains("striped set") && banner.contains("a.img") && banner.contains("b.img"), "{banner}");
    fill_over_resp(port, 3000);
    server.signal("INT");
    assert!(server.wait().0.success());
    for image in [&a, &b] {
        let bytes = std::fs::read(image).unwrap();
        assert_eq!(&bytes[..8], b"KEELSET\0", "{} is labelled", image.display());
        assert!(bytes[4096..].iter().any(|&x| x != 0), "{} holds data", image.display());
    }

    let mut again = Server::start(keel_on_paths(dir.path(), &["serve"], port, &[&a, &b]));
    again.wait_for_line("Ready");
    assert!(again.seen.iter().any(|l| l.contains("boot 2")), "{:#?}", again.seen);
    assert_eq!(get_over_resp(port, "key000000000007"), Some(format!("{:0100}", 7)));
    assert_eq!(get_over_resp(port, "key000000002999"), Some(format!("{:0100}", 2999)));
    again.signal("INT");
    assert!(again.wait().0.success());

    let swapped = keel_on_paths(dir.path(), &["serve"], port, &[&b, &a]).output().unwrap();
    let message = String::from_utf8_lossy(&swapped.stderr);
    assert_eq!(swapped.status.code(), Some(1), "{message}");
    assert!(message.contains("position 0") && message.contains("different order"), "{message}");
    let alone = keel_on_paths(dir.path(), &["serve"], port, &[&a]).output().unwrap();
    let message = String::from_utf8_lossy(&alone.stderr);
    assert_eq!(alone.status.code(), Some(1), "{message}");
    assert!(message.contains("member 0 of the striped set") && message.contains("2 devices"), "{message}");
    let inspect = keel_on_paths(dir.path(), &["inspect"], port, &[&a, &b]).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
}
