//! `keel setup`: prepares a machine for the nvme backend, like SPDK's setup
//! script. It reserves 2 MiB hugepages for the DMA pool, loads vfio-pci,
//! checks that an IOMMU is on, hands the selected NVMe controllers to
//! vfio-pci (refusing ones the kernel is using, unless forced), checks that
//! their IOMMU groups are viable, and checks the memlock limit that VFIO's
//! DMA mappings count against. Every step prints one line; every failure
//! says why and what to do. `--reset` gives the controllers back to the
//! kernel's nvme driver.

mod checks;
mod limits;

use std::fmt;

use keel_drivers::nvme::pci;

pub use checks::Step;

/// What to prepare.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SetupArgs {
    /// Keel's configuration file: with backend = "nvme" its
    /// device.pci_addresses are prepared, and the hugepages and memlock
    /// checks follow its dma.pool_size (flags given as well still win).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// PCI address of a controller to hand to vfio-pci (repeatable), e.g. 0000:00:04.0.
    #[arg(long = "pci", value_name = "ADDRESS")]
    pub pci_addresses: Vec<String>,
    /// Every NVMe controller the kernel is not using.
    #[arg(long)]
    pub all: bool,
    /// 2 MiB hugepages to have reserved, in MiB (0: leave the reservation
    /// alone). Default: the configuration's dma.pool_size (0 when its
    /// dma.hugepages is "never"), else 256.
    #[arg(long, value_name = "MIB")]
    pub hugepages_mib: Option<u64>,
    /// DMA memory the service will map, in MiB (checked against the memlock
    /// limit). Default: the configuration's dma.pool_size, else 256.
    #[arg(long, value_name = "MIB")]
    pub dma_mib: Option<u64>,
    /// Take controllers from the kernel even when they hold mounted file systems.
    #[arg(long)]
    pub force: bool,
    /// Give the controllers back to the kernel's driver instead.
    #[arg(long)]
    pub reset: bool,
}

/// The outcome of every step, in order.
#[derive(Debug, Default)]
pub struct SetupReport {
    pub steps: Vec<Step>,
}

impl SetupReport {
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.failed())
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        let failed = self.steps.iter().filter(|s| s.failed()).count();
        write!(f, "{} steps, {failed} failed", self.steps.len())
    }
}

/// Runs every step. Later steps still run after a failure where they make
/// sense, so one run shows every problem.
pub fn run(args: &SetupArgs) -> SetupReport {
    let mut report = SetupReport::default();
    let plan = match Plan::of(args) {
        Ok(plan) => plan,
        Err(step) => {
            report.steps.push(step);
            return report;
        }
    };
    let targets = match select_targets(args, &plan.pci_addresses) {
        Ok(t) => t,
        Err(step) => {
            report.steps.push(step);
            return report;
        }
    };
    if args.reset {
        for address in &targets {
            report.steps.push(checks::give_back(address));
        }
        return report;
    }
    if plan.hugepages_mib > 0 {
        let step = checks::hugepages(plan.hugepages_mib);
        report.steps.push(match step.outcome {
            // The pool falls back to ordinary pages (and logs it), so a
            // short reservation must not keep the service from starting.
            checks::Outcome::Fail(why) if !plan.hugepages_required => Step::warn(step.what, why),
            _ => step,
        });
    }
    if targets.is_empty() && !plan.vfio {
        // A uring or memory configuration needs no IOMMU and no vfio-pci, so
        // the systemd unit can run setup before every start whatever the
        // backend, without failing on machines that have neither.
        report.steps.push(Step::ok("VFIO", "not needed: the configured backend is not nvme"));
    } else {
        report.steps.push(checks::iommu_enabled());
        report.steps.push(checks::vfio_loaded());
    }
    for address in &targets {
        let bound = checks::bind(address, args.force);
        let ok = !bound.failed();
        report.steps.push(bound);
        if ok {
            report.steps.push(checks::group_viable(address));
        }
    }
    report.steps.push(limits::memlock(plan.dma_mib << 20));
    report
}

/// The flags with the configuration's values filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    pci_addresses: Vec<String>,
    /// Whether VFIO is wanted at all: without a configuration (an explicit
    /// setup run) or with the nvme backend.
    vfio: bool,
    /// Whether a short hugepage reservation is a failure: with VFIO (the
    /// nvme backend) or `dma.hugepages = "require"`; else only a warning.
    hugepages_required: bool,
    hugepages_mib: u64,
    dma_mib: u64,
}

const DEFAULT_MIB: u64 = 256;

impl Plan {
    fn of(args: &SetupArgs) -> Result<Plan, Step> {
        let Some(path) = &args.config else {
            return Ok(Plan {
                pci_addresses: Vec::new(),
                vfio: true,
                hugepages_required: true,
                hugepages_mib: args.hugepages_mib.unwrap_or(DEFAULT_MIB),
                dma_mib: args.dma_mib.unwrap_or(DEFAULT_MIB),
            });
        };
        let config = keel_config::Config::load(Some(path), &[])
            .map_err(|e| Step::fail("read the configuration", e.to_string()))?;
        let pool_mib = config.dma.pool_size.bytes().div_ceil(1 << 20);
        let nvme = config.device.backend == keel_config::Backend::Nvme;
        let pci_addresses = if nvme { config.device.pci_addresses.clone() } else { Vec::new() };
        let hugepages_default = if config.dma.hugepages == keel_config::Hugepages::Never { 0 } else { pool_mib };
        Ok(Plan {
            pci_addresses,
            vfio: nvme,
            hugepages_required: nvme || config.dma.hugepages == keel_config::Hugepages::Require,
            hugepages_mib: args.hugepages_mib.unwrap_or(hugepages_default),
            dma_mib: args.dma_mib.unwrap_or(pool_mib),
        })
    }
}

fn select_targets(args: &SetupArgs, configured: &[String]) -> Result<Vec<String>, Step> {
    let mut targets = args.pci_addresses.clone();
    for address in configured {
        if !targets.contains(address) {
            targets.push(address.clone());
        }
    }
    if args.all {
        for address in pci::nvme_controllers() {
            if !targets.contains(&address) && (args.reset || args.force || !checks::in_use(&address)) {
                targets.push(address);
            }
        }
    }
    if let Some(bad) = targets.iter().find(|a| !pci::is_valid_address(a)) {
        return Err(Step::fail(
            "select controllers",
            format!("'{bad}' is not a PCI address of the form 0000:00:04.0 (see `lspci -D`)"),
        ));
    }
    Ok(targets)
}

/// `keel setup`: runs, prints the report, exits 1 when a step failed.
pub fn main(args: &SetupArgs) -> std::process::ExitCode {
    let report = run(args);
    println!("{report}");
    if report.failed() {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<std::path::PathBuf>) -> SetupArgs {
        SetupArgs {
            config,
            pci_addresses: vec!["0000:00:04.0".into()],
            all: false,
            hugepages_mib: None,
            dma_mib: None,
            force: false,
            reset: false,
        }
    }

    #[test]
    fn the_configuration_names_the_controllers_and_sizes_the_pool() {
        let dir = std::env::temp_dir().join(format!("keel-setup-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keel.toml");
        std::fs::write(
            &path,
            "[device]\nbackend = \"nvme\"\npci_addresses = [\"0000:01:00.0\", \"0000:04:00.0\"]\n[dma]\npool_size = \"128MiB\"\n",
        )
        .unwrap();
        let plan = Plan::of(&args(Some(path.clone()))).unwrap();
        assert_eq!(plan.pci_addresses, vec!["0000:01:00.0".to_owned(), "0000:04:00.0".to_owned()]);
        assert_eq!((plan.hugepages_mib, plan.dma_mib), (128, 128));
        let targets = select_targets(&args(Some(path.clone())), &plan.pci_addresses).unwrap();
        assert_eq!(targets, vec!["0000:00:04.0", "0000:01:00.0", "0000:04:00.0"]);
        let defaults = Plan::of(&args(None)).unwrap();
        assert_eq!((defaults.hugepages_mib, defaults.dma_mib, defaults.pci_addresses.len()), (256, 256, 0));
        std::fs::write(&path, "[device]\nbackend = \"nvme\"\npci_addresses = []\n").unwrap();
        let refused = Plan::of(&args(Some(path.clone()))).unwrap_err();
        assert!(refused.failed() && refused.to_string().contains("pci_addresses"), "{refused}");
        std::fs::write(&path, "[device]\nbackend = \"memory\"\n").unwrap();
        let memory = Plan::of(&args(Some(path))).unwrap();
        assert!(!memory.vfio && !memory.hugepages_required && memory.pci_addresses.is_empty());
        assert!(Plan::of(&args(None)).unwrap().vfio);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
