//! The shipped unit file says what `keel serve` relies on.

const UNIT: &str = include_str!("../systemd/keel.service");

fn directive(name: &str) -> Option<&'static str> {
    UNIT.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn the_unit_is_type_notify_with_watchdog_memlock_and_restart() {
    assert_eq!(directive("Type"), Some("notify"));
    assert_eq!(directive("LimitMEMLOCK"), Some("infinity"));
    assert_eq!(directive("Restart"), Some("on-failure"));
    assert_eq!(directive("RestartPreventExitStatus"), Some("78"), "configuration errors exit 78");
    assert!(directive("WatchdogSec").is_some());
    assert_eq!(directive("ExecStart"), Some("/usr/local/bin/keel serve --config /etc/keel/keel.toml"));
    // Setup runs before every start; for backends other than nvme it only
    // reserves hugepages (a short reservation is a warning) and checks memlock.
    assert_eq!(directive("ExecStartPre"), Some("+/usr/local/bin/keel setup --config /etc/keel/keel.toml"));
}

#[test]
fn the_hardening_leaves_devices_visible() {
    assert!(directive("PrivateDevices").is_none(), "PrivateDevices would hide /dev/vfio and block devices");
    assert!(directive("DevicePolicy").is_none());
}
