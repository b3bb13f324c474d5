//! The configuration as a user meets it: files, flags, and the errors they get.

use std::net::SocketAddr;

use keel_config::{Backend, ByteSize, Config, ConfigError, IdleMode, KvDurability, Origin, Override, Squash};

const EXAMPLE: &str = include_str!("../../systemd/keel.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "keel.toml", &[])
}

fn invalid(text: &str) -> (String, String, Origin) {
    match parse(text) {
        Err(ConfigError::Invalid { key, reason, origin }) => (key, reason, origin),
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid_and_need_no_file() {
    let config = Config::load(None, &[]).unwrap();
    assert_eq!(config, Config::default());
    assert!(config.validate().is_ok());
    assert_eq!(config.device.image_path(), std::path::Path::new("./keel-data/keel.img"));
    assert_eq!(config.kv.listen, "127.0.0.1:6379".parse::<SocketAddr>().unwrap());
    assert!(config.reactors.effective_count() >= 1);
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn the_example_file_parses_and_sets_what_it_says() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.device.backend, Backend::Uring);
    assert_eq!(config.device.data_dir, std::path::Path::new("/var/lib/keel"));
    assert_eq!(config.device.size, ByteSize::gib(4));
    assert_eq!(config.reactors.idle, IdleMode::Adaptive);
    assert_eq!(config.kv.durability, KvDurability::Always);
    assert_eq!(config.nfs.exports.len(), 1);
    assert_eq!(config.nfs.exports[0].squash, Squash::Root);
    // Apart from the paths it spells out, the example shows the defaults.
    let mut expected = Config::default();
    expected.device.backend = Backend::Uring;
    expected.device.data_dir = "/var/lib/keel".into();
    expected.nfs.exports = config.nfs.exports.clone();
    assert_eq!(config, expected);
}

#[test]
fn the_printed_configuration_parses_back_to_itself() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(parse(&config.to_toml()).unwrap(), config);
    let defaults = Config::default();
    assert_eq!(parse(&defaults.to_toml()).unwrap(), defaults);
}

#[test]
fn unknown_keys_are_rejected_at_every_depth_with_their_dotted_path() {
    let cases = [
        ("colour = 1\n", "colour", 1),
        ("[kv]\nlisten = \"127.0.0.1:1\"\nmax_client = 5\n", "kv.max_client", 3),
        ("[reactor]\ncount = 1\n", "reactor", 1),
        ("[nfs]\nenabled = true\n\n[[nfs.export]]\npath = \"/\"\nsquashh = \"all\"\n", "nfs.export[0].squashh", 6),
        ("device = { backend = \"memory\", sise = \"1GiB\" }\n", "device.sise", 1),
    ];
    for (text, key, line) in cases {
        let (found_key, reason, origin) = invalid(text);
        assert_eq!(found_key, key, "{text}");
        assert!(reason.contains("unknown field"), "{key}: {reason}");
        assert_eq!(origin, Origin::File { path: "keel.toml".into(), line: Some(line) }, "{text}");
    }
}

#[test]
fn bad_values_are_rejected_with_key_reason_and_line() {
    let cases: [(&str, &str, &str, usize); 14] = [
        ("[kv]\nmax_clients = 0\n", "kv.max_clients", "out of range", 2),
        ("[kv]\nlisten = \"localhost\"\n", "kv.listen", "socket address", 2),
        ("[kv]\ndurability = \"sometimes\"\n", "kv.durability", "unknown variant", 2),
        ("[device]\nsize = \"4 gigs\"\n", "device.size", "unknown unit", 2),
        ("[device]\nsize = \"1MiB\"\n", "device.size", "out of range", 2),
        ("[device]\nbackend = \"nvme\"\n", "device.pci_addresses", "at least one", 0),
        ("[device]\nsubmit_batch_max = 5000\n", "device.submit_batch_max", "out of range", 2),
        ("[device]\nsubmit_write_batch_max = 5000\n", "device.submit_write_batch_max", "out of range", 2),
        ("[reactors]\ncount = 0\n", "reactors.count", "out of range", 2),
        ("[reactors]\ncores = [0, 100000]\n", "reactors.cores[1]", "does not exist", 2),
        ("[reactors]\nidle = \"sleepy\"\n", "reactors.idle", "unknown variant", 2),
        ("[engine]\nnode_size = \"100KiB\"\n", "engine.node_size", "power of two", 2),
        ("[engine]\ncheckpoint_interval = 30\n", "engine.checkpoint_interval", "needs a unit", 2),
        ("[log]\nlevel = \"loud\"\n", "log.level", "not a level", 2),
    ];
    for (text, key, why, line) in cases {
        let (found_key, reason, origin) = invalid(text);
        assert_eq!(found_key, key, "{text}");
        assert!(reason.contains(why), "{key}: {reason}");
        let expected =
            if line == 0 { Origin::Default } else { Origin::File { path: "keel.toml".into(), line: Some(line) } };
        assert_eq!(origin, expected, "{text}");
    }
}

#[test]
fn the_error_message_reads_file_line_key_reason() {
    let err = parse("[kv]\n\nmax_clients = 0\n").unwrap_err();
    assert_eq!(err.to_string(), "keel.toml:3: kv.max_clients: 0 is out of range: must be between 1 and 1000000");
    assert_eq!(err.key(), Some("kv.max_clients"));
    assert_eq!(err.line(), Some(3));
}

#[test]
fn a_syntax_error_names_its_line() {
    let err = parse("[kv]\nlisten = \"127.0.0.1:6379\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert_eq!(err.line(), Some(2), "{err}");
}

#[test]
fn export_tables_need_a_path_and_a_clean_one() {
    let (key, reason, _) = invalid("[nfs]\nenabled = true\n[[nfs.export]]\nclients = [\"*\"]\n");
    assert_eq!(key, "nfs.export[0]");
    assert!(reason.contains("missing field `path`"), "{reason}");
    let (key, reason, _) = invalid("[[nfs.export]]\npath = \"/a/../b\"\n");
    assert_eq!(key, "nfs.export[0].path");
    assert!(reason.contains("clean absolute path"), "{reason}");
    let (key, _, _) = invalid("[[nfs.export]]\npath = \"/a\"\nclients = [\"10.0.0.0/40\"]\n");
    assert_eq!(key, "nfs.export[0].clients[0]");
    let (key, reason, _) = invalid("[nfs]\nenabled = true\n");
    assert_eq!(key, "nfs.export");
    assert!(reason.contains("at least one"), "{reason}");
}

#[test]
fn command_line_overrides_win_over_the_file() {
    let text = "[kv]\nlisten = \"127.0.0.1:7000\"\nmax_clients = 5\n[reactors]\nidle = \"poll\"\n";
    let overrides = [
        Override::new("kv.listen", "0.0.0.0:7001", "--kv-listen").unwrap(),
        Override::new("reactors.idle", "adaptive", "--idle").unwrap(),
        Override::parse_set("kv.max_clients=6").unwrap(),
        Override::parse_set("device.size=8GiB").unwrap(),
        Override::parse_set("reactors.count=2").unwrap(),
    ];
    let config = Config::from_toml(text, "keel.toml", &overrides).unwrap();
    assert_eq!(config.kv.listen, "0.0.0.0:7001".parse::<SocketAddr>().unwrap());
    assert_eq!(config.reactors.idle, IdleMode::Adaptive);
    assert_eq!(config.kv.max_clients, 6);
    assert_eq!(config.device.size, ByteSize::gib(8));
    assert_eq!(config.reactors.effective_count(), 2);
}

#[test]
fn the_last_of_two_overrides_of_one_key_wins() {
    let overrides =
        [Override::parse_set("kv.max_clients=6").unwrap(), Override::parse_set("kv.max_clients=7").unwrap()];
    assert_eq!(Config::load(None, &overrides).unwrap().kv.max_clients, 7);
}

#[test]
fn a_bad_override_is_blamed_on_its_flag() {
    let overrides = [Override::parse_set("kv.max_clients=0").unwrap()];
    let err = Config::from_toml("[kv]\nmax_clients = 5\n", "keel.toml", &overrides).unwrap_err();
    match &err {
        ConfigError::Invalid { key, origin, .. } => {
            assert_eq!(key, "kv.max_clients");
            assert_eq!(*origin, Origin::Flag("--set kv.max_clients=0".into()));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("--set kv.max_clients=0: kv.max_clients:"), "{err}");
    let overrides = [Override::parse_set("kv.maxclients=1").unwrap()];
    let err = Config::load(None, &overrides).unwrap_err();
    assert_eq!(err.key(), Some("kv.maxclients"));
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn reactor_cores_and_count_must_agree() {
    let (key, reason, _) = invalid("[reactors]\ncount = 2\ncores = [0]\n");
    assert_eq!(key, "reactors.cores");
    assert!(reason.contains("one core per reactor"), "{reason}");
    let config = parse("[reactors]\ncores = [0]\n").unwrap();
    assert_eq!(config.reactors.effective_count(), 1);
}

#[test]
fn a_missing_file_is_an_error_that_names_it() {
    let err = Config::load(Some(std::path::Path::new("/nonexistent/keel.toml")), &[]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/keel.toml"), "{err}");
}

#[test]
fn set_can_add_an_export_from_the_command_line() {
    let overrides = [
        Override::parse_set("nfs.enabled=true").unwrap(),
        Override::parse_set("nfs.export[0].path=/").unwrap(),
        Override::parse_set("nfs.export[0].clients=[\"*\"]").unwrap(),
    ];
    let config = Config::load(None, &overrides).unwrap();
    assert_eq!(config.nfs.exports[0].path, "/");
    assert_eq!(config.nfs.exports[0].clients, ["*"]);
}
