//! The state of one client connection and the commands that act on it:
//! AUTH, HELLO, SELECT, QUIT, RESET, CLIENT, COMMAND, INFO, CONFIG, PING,
//! ECHO, WAITAOF.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_engine::Lsn;
use keel_reactor::time;

use crate::cmd::args::{self, is, syntax, wrong_arity};
use crate::cmd::{Spec, COMMANDS};
use crate::resp::{Protocol, Reply};
use crate::server::Shared;
use crate::stats::Stats;

/// Longest client name accepted.
const CLIENT_NAME_BYTES_MAX: usize = 256;

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub authenticated: bool,
    pub name: Option<Vec<u8>>,
    pub lib_name: Option<Vec<u8>>,
    pub lsn_last_write: Lsn,
    pub connected: Instant,
    pub shared: Arc<Shared>,
    /// Set by QUIT: close after the replies are written.
    pub closing: bool,
}

impl Session {
    pub fn new(id: u64, peer: SocketAddr, shared: Arc<Shared>) -> Session {
        let authenticated = shared.config.requirepass.is_none();
        Session {
            id,
            peer,
            protocol: Protocol::Resp2,
            authenticated,
            name: None,
            lib_name: None,
            lsn_last_write: 0,
            connected: Instant::now(),
            shared,
            closing: false,
        }
    }

    /// Whether a command may run before AUTH.
    pub fn allowed_unauthenticated(name: &str) -> bool {
        matches!(name, "auth" | "hello" | "quit" | "reset")
    }

    /// Runs a session command.
    pub async fn run(&mut self, spec: &Spec, a: &[Vec<u8>]) -> Reply {
        match spec.name {
            "ping" => self.ping(a),
            "echo" => Reply::Bulk(a[1].clone()),
            "auth" => self.auth(a),
            "hello" => self.hello(a),
            "select" => match args::int(&a[1]) {
                Ok(0) => Reply::Ok,
                Ok(_) => Reply::error("ERR DB index is out of range"),
                Err(e) => e,
            },
            "quit" => {
                self.closing = true;
                Reply::Ok
            }
            "reset" => {
                self.protocol = Protocol::Resp2;
                self.name = None;
                self.authenticated = self.shared.config.requirepass.is_none();
                Reply::Simple("RESET".into())
            }
            "client" => self.client(a),
            "command" => command(a),
            "info" => self.info(a).await,
            "config" => self.config(a),
            "waitaof" => self.waitaof(a).await,
            other => Reply::error(format!("ERR '{other}' is not a session command")),
        }
    }

    fn ping(&self, a: &[Vec<u8>]) -> Reply {
        match a.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(a[1].clone()),
            _ => wrong_arity("ping"),
        }
    }

    /// Checks a password in time independent of where it differs.
    fn password_ok(&self, given: &[u8]) -> bool {
        let Some(want) = self.shared.config.requirepass.as_deref() else { return false };
        let want = want.as_bytes();
        let mut diff = u8::from(want.len() != given.len());
        for (i, &w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }

    fn auth(&mut self, a: &[Vec<u8>]) -> Reply {
        let (user, pass) = match a.len() {
            2 => (&b"default"[..], &a[1]),
            3 => (a[1].as_slice(), &a[2]),
            _ => return syntax(),
        };
        self.try_auth(user, pass)
    }

    fn try_auth(&mut self, user: &[u8], pass: &[u8]) -> Reply {
        if self.shared.config.requirepass.is_none() {
            return Reply::error(
                "ERR AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            );
        }
        if user == b"default" && self.password_ok(pass) {
            self.authenticated = true;
            Reply::Ok
        } else {
            Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    fn hello(&mut self, a: &[Vec<u8>]) -> Reply {
        let mut protocol = self.protocol;
        if let Some(v) = a.get(1) {
            protocol = match args::int(v) {
                Ok(2) => Protocol::Resp2,
                Ok(3) => Protocol::Resp3,
                Ok(_) => return Reply::error("NOPROTO unsupported protocol version"),
                Err(_) => return Reply::error("ERR Protocol version is not an integer or out of range"),
            };
        }
        let mut i = 2;
        let mut name = None;
        while i < a.len() {
            if is(&a[i], "AUTH") && i + 2 < a.len() {
                let reply = self.try_auth(&a[i + 1].clone(), &a[i + 2].clone());
                if reply.is_error() {
                    return reply;
                }
                i += 3;
            } else if is(&a[i], "SETNAME") && i + 1 < a.len() {
                name = Some(a[i + 1].clone());
                i += 2;
            } else {
                return Reply::error(format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(&a[i])));
            }
        }
        if !self.authenticated {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
                 AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
                 version at the same time",
            );
        }
        if let Some(n) = name {
            if let Err(e) = self.set_name(n) {
                return e;
            }
        }
        self.protocol = protocol;
        let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
        let s = |t: &str| Reply::bulk(t.as_bytes().to_vec());
        Reply::Map(vec![
            (s("server"), s("keel")),
            (s("version"), s(crate::REDIS_VERSION)),
            (s("proto"), Reply::Integer(proto)),
            (s("id"), Reply::Integer(i64::try_from(self.id).unwrap_or(i64::MAX))),
            (s("mode"), s("standalone")),
            (s("role"), s("master")),
            (s("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn set_name(&mut self, name: Vec<u8>) -> Result<(), Reply> {
        if name.len() > CLIENT_NAME_BYTES_MAX || name.iter().any(|&b| b <= b' ' || b > b'~') {
            return Err(Reply::error("ERR Client names cannot contain spaces, newlines or special characters."));
        }
        self.name = (!name.is_empty()).then_some(name);
        Ok(())
    }

    fn client(&mut self, a: &[Vec<u8>]) -> Reply {
        let sub = a[1].to_ascii_lowercase();
        match (sub.as_slice(), a.len()) {
            (b"setname", 3) => match self.set_name(a[2].clone()) {
                Ok(()) => Reply::Ok,
                Err(e) => e,
            },
            (b"getname", 2) => self.name.clone().map_or(Reply::Nil, Reply::Bulk),
            (b"id", 2) => Reply::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            (b"info", 2) => Reply::Bulk(self.client_line().into_bytes()),
            (b"setinfo", 4) => {
                if is(&a[2], "LIB-NAME") {
                    self.lib_name = Some(a[3].clone());
                }
                Reply::Ok
            }
            (b"setname" | b"getname" | b"id" | b"info" | b"setinfo", _) => wrong_arity("client"),
            _ => Reply::error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT SETNAME, GETNAME, ID, INFO.",
                String::from_utf8_lossy(&a[1])
            )),
        }
    }

    fn client_line(&self) -> String {
        let name = self.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let lib = self.lib_name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        format!(
            "id={} addr={} laddr=127.0.0.1:{} name={} age={} db=0 flags=N resp={} lib-name={}\n",
            self.id,
            self.peer,
            self.shared.port.load(std::sync::atomic::Ordering::Relaxed),
            name,
            self.connected.elapsed().as_secs(),
            if self.protocol == Protocol::Resp3 { 3 } else { 2 },
            lib
        )
    }

    async fn info(&self, a: &[Vec<u8>]) -> Reply {
        let section = a.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
        let want = |name: &str| section.as_deref().is_none_or(|s| s == name || s == "all" || s == "default");
        let shared = &self.shared;
        let c = &shared.config;
        let mut out = String::new();
        if want("server") {
            out += &format!(
                "# Server\r\nredis_version:{}\r\nkeel_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\n\
                 tcp_port:{}\r\nuptime_in_seconds:{}\r\nreactors:{}\r\nshards:{}\r\n\r\n",
                crate::REDIS_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                shared.port.load(std::sync::atomic::Ordering::Relaxed),
                shared.started.elapsed().as_secs(),
                keel_reactor::reactor_count(),
                shared.db.engine.shard_count(),
            );
        }
        if want("clients") {
            out +=
                &format!("# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n", shared.clients(), c.max_clients);
        }
        if want("persistence") {
            out += &format!(
                "# Persistence\r\naof_enabled:1\r\nkeel_durability:{}\r\nkeel_lsn_durable:{}\r\n\r\n",
                c.durability.name(),
                shared.db.engine.lsn_durable()
            );
        }
        if want("stats") {
            let s = &shared.stats;
            out += &format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 rejected_connections:{}\r\nexpired_keys:{}\r\nprotocol_errors:{}\r\n\r\n",
                Stats::get(&s.connections_total),
                Stats::get(&s.commands_total),
                Stats::get(&s.connections_rejected),
                Stats::get(&s.expired_keys),
                Stats::get(&s.protocol_errors),
            );
        }
        if want("keel") {
            out += &self.keel_info().await;
        }
        if want("replication") {
            out += "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n";
        }
        if want("keyspace") {
            out += "# Keyspace\r\n";
            if let Ok(outcome) = crate::cmd::keyspace::dbsize(&shared.db).await {
                if let Reply::Integer(n) = outcome.reply {
                    if n > 0 {
                        out += &format!("db0:keys={n},expires=0,avg_ttl=0\r\n");
                    }
                }
            }
        }
        Reply::Bulk(out.into_bytes())
    }

    /// INFO's `# Keel` section: the journal's running totals (records, batch
    /// writes, device flushes) and the meta cache's size, for benchmarks.
    async fn keel_info(&self) -> String {
        let db = &self.shared.db;
        let (entries, bytes) = db.cache.usage();
        let mut out = format!("# Keel\r\nmeta_cache_entries:{entries}\r\nmeta_cache_bytes:{bytes}\r\n");
        if let Ok(s) = db.engine.stats().await {
            let j = s.journal;
            out += &format!(
                "journal_records:{}\r\njournal_batches:{}\r\njournal_flushes:{}\r\njournal_batch_bytes:{}\r\n",
                j.records, j.batches, j.flushes, j.batch_bytes_written
            );
        }
        out + "\r\n"
    }

    fn config(&self, a: &[Vec<u8>]) -> Reply {
        let sub = a[1].to_ascii_lowercase();
        match sub.as_slice() {
            b"get" if a.len() >= 3 => {
                let c = &self.shared.config;
                let params: [(&str, String); 6] = [
                    ("save", String::new()),
                    ("appendonly", "yes".into()),
                    ("appendfsync", c.durability.name().into()),
                    ("maxclients", c.max_clients.to_string()),
                    ("databases", "1".into()),
                    ("timeout", c.idle_timeout.map_or(0, |d| d.as_secs()).to_string()),
                ];
                let mut pairs = Vec::new();
                for pattern in &a[2..] {
                    let pattern = pattern.to_ascii_lowercase();
                    for (name, value) in &params {
                        if crate::glob::matches(&pattern, name.as_bytes()) {
                            pairs.push((Reply::bulk(name.as_bytes().to_vec()), Reply::bulk(value.as_bytes().to_vec())));
                        }
                    }
                }
                Reply::Map(pairs)
            }
            b"resetstat" => Reply::Ok,
            b"set" => Reply::error("ERR CONFIG SET is not supported: change keel.toml and restart"),
            _ => Reply::error("ERR unknown CONFIG subcommand; try CONFIG GET"),
        }
    }

    /// WAITAOF numlocal numreplicas timeout: waits until this client's last
    /// write is durable. Replies `[1, 0]`, or `[0, 0]` on timeout.
    async fn waitaof(&self, a: &[Vec<u8>]) -> Reply {
        let (Ok(numlocal), Ok(numreplicas), Ok(timeout_ms)) = (args::int(&a[1]), args::int(&a[2]), args::int(&a[3]))
        else {
            return args::not_integer();
        };
        if numlocal < 0 || numreplicas < 0 || timeout_ms < 0 {
            return Reply::error("ERR timeout is negative");
        }
        if numreplicas > 0 {
            return Reply::error("ERR WAITAOF cannot wait for replicas: this appliance has none");
        }
        let engine = &self.shared.db.engine;
        let lsn = self.lsn_last_write;
        let waited = if timeout_ms == 0 {
            engine.wait_durable(lsn).await.map(|()| true)
        } else {
            let limit = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(u64::MAX));
            match time::timeout(limit, engine.wait_durable(lsn)).await {
                Ok(r) => r.map(|()| true),
                Err(_) => Ok(false),
            }
        };
        match waited {
            Ok(done) => Reply::Array(vec![Reply::Integer(i64::from(done)), Reply::Integer(0)]),
            Err(e) => e.into(),
        }
    }
}

/// COMMAND [COUNT | INFO name... | DOCS ... | LIST].
fn command(a: &[Vec<u8>]) -> Reply {
    let Some(sub) = a.get(1).map(|s| s.to_ascii_lowercase()) else {
        return Reply::Array(COMMANDS.iter().map(command_info).collect());
    };
    match sub.as_slice() {
        b"count" => Reply::Integer(COMMANDS.len() as i64),
        b"list" => Reply::Array(COMMANDS.iter().map(|s| Reply::bulk(s.name.as_bytes().to_vec())).collect()),
        b"info" => {
            Reply::Array(a[2..].iter().map(|n| crate::cmd::lookup(n).map_or(Reply::NilArray, command_info)).collect())
        }
        b"docs" => Reply::Map(Vec::new()),
        _ => Reply::error(format!("ERR unknown subcommand '{}'", String::from_utf8_lossy(&a[1]))),
    }
}

fn command_info(s: &Spec) -> Reply {
    let flags = if s.write { vec!["write"] } else { vec!["readonly", "fast"] };
    Reply::Array(vec![
        Reply::bulk(s.name.as_bytes().to_vec()),
        Reply::Integer(i64::from(s.arity)),
        Reply::Array(flags.into_iter().map(|f| Reply::Simple(f.into())).collect()),
        Reply::Integer(i64::from(s.first_key)),
        Reply::Integer(i64::from(s.last_key)),
        Reply::Integer(i64::from(s.key_step)),
    ])
}
