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
    /// PCI address of a controller to hand to vfio-pci (repeatable), e.g. 0000:00:04.0.
    #[arg(long = "pci", value_name = "ADDRESS")]
    pub pci_addresses: Vec<String>,
    /// Every NVMe controller the kernel is not using.
    #[arg(long)]
    pub all: bool,
    /// 2 MiB hugepages to have reserved, in MiB (0: leave the reservation alone).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub hugepages_mib: u64,
    /// DMA memory the service will map, in MiB (checked against the memlock limit).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub dma_mib: u64,
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
    let targets = match select_targets(args) {
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
    if args.hugepages_mib > 0 {
        report.steps.push(checks::hugepages(args.hugepages_mib));
    }
    report.steps.push(checks::iommu_enabled());
    report.steps.push(checks::vfio_loaded());
    for address in &targets {
        let bound = checks::bind(address, args.force);
        let ok = !bound.failed();
        report.steps.push(bound);
        if ok {
            report.steps.push(checks::group_viable(address));
        }
    }
    report.steps.push(limits::memlock(args.dma_mib << 20));
    report
}

fn select_targets(args: &SetupArgs) -> Result<Vec<String>, Step> {
    let mut targets = args.pci_addresses.clone();
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
