//! `[reactors]`: how many per-core reactor threads, where, and how they idle.

use serde::{Deserialize, Serialize};

use crate::error::{check_range, Problem};

/// What a reactor does when it finds no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleMode {
    /// Spin for `spin_us`, then sleep until a socket, a message, a device
    /// completion or a timer needs the reactor: an idle appliance costs
    /// nothing. Kind to laptops and shared machines.
    #[default]
    Adaptive,
    /// Busy-poll always: the lowest latency, one whole core per reactor.
    /// What a dedicated production machine sets.
    Poll,
}

impl IdleMode {
    pub fn name(self) -> &'static str {
        match self {
            IdleMode::Adaptive => "adaptive",
            IdleMode::Poll => "poll",
        }
    }
}

/// More reactors than this is a configuration mistake, not a machine.
pub const REACTORS_MAX: usize = 1024;

/// `[reactors]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [reactors] settings")]
pub struct ReactorsConfig {
    /// Number of reactors. Default: see [`ReactorsConfig::effective_count`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Cores to pin reactor i to (`cores[i]`); unpinned when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<Vec<usize>>,
    pub idle: IdleMode,
    /// With `adaptive`: how long a reactor spins on an empty turn before it sleeps.
    pub spin_us: u32,
    /// Messages a reactor's mailbox holds before senders wait.
    pub mailbox_capacity: usize,
    /// Requests in flight per device queue pair.
    pub queue_depth: u32,
}

impl Default for ReactorsConfig {
    fn default() -> Self {
        ReactorsConfig {
            count: None,
            cores: None,
            idle: IdleMode::Adaptive,
            // Measured (BENCHMARKS.md, device): on a shared machine a
            // 200 µs spin never sleeps at 20-40 µs between completions and
            // behaves like `poll`; 20 µs sleeps promptly and matches fio.
            spin_us: 20,
            mailbox_capacity: 4096,
            queue_depth: 128,
        }
    }
}

impl ReactorsConfig {
    /// The number of reactors to start. When neither `count` nor `cores` is
    /// given: one reactor per core but one, so the kernel (interrupts,
    /// io_uring workers), the control thread and the rest of the machine keep
    /// a core; on a machine with two cores or fewer, a single reactor, since
    /// a polling reactor on each core of a laptop would starve everything else.
    pub fn effective_count(&self) -> usize {
        if let Some(count) = self.count {
            return count;
        }
        if let Some(cores) = &self.cores {
            return cores.len();
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores <= 2 {
            1
        } else {
            cores - 1
        }
    }

    pub fn validate(&self) -> Result<(), Problem> {
        if let Some(count) = self.count {
            check_range("reactors.count", count, 1, REACTORS_MAX)?;
        }
        if let Some(cores) = &self.cores {
            self.validate_cores(cores)?;
        }
        check_range("reactors.spin_us", self.spin_us, 0, 1_000_000)?;
        check_range("reactors.mailbox_capacity", self.mailbox_capacity, 16, 1 << 20)?;
        check_range("reactors.queue_depth", self.queue_depth, 1, 65_536)?;
        Ok(())
    }

    fn validate_cores(&self, cores: &[usize]) -> Result<(), Problem> {
        if cores.is_empty() {
            return Err(Problem::new("reactors.cores", "must list at least one core (or be left out)"));
        }
        if let Some(count) = self.count {
            if count != cores.len() {
                return Err(Problem::new(
                    "reactors.cores",
                    format!(
                        "lists {} cores for {count} reactors (reactors.count); give one core per reactor",
                        cores.len()
                    ),
                ));
            }
        }
        let allowed: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().iter().map(|c| c.id).collect();
        for (i, core) in cores.iter().enumerate() {
            if cores[..i].contains(core) {
                return Err(Problem::new(format!("reactors.cores[{i}]"), format!("core {core} is listed twice")));
            }
            if !allowed.is_empty() && !allowed.contains(core) {
                return Err(Problem::new(
                    format!("reactors.cores[{i}]"),
                    format!("core {core} does not exist or is not allowed for this process (allowed: {allowed:?})"),
                ));
            }
        }
        Ok(())
    }
}
