//! Block devices for Keel.
//!
//! This crate owns everything that touches a storage device, and nothing else:
//! it knows no tree, no journal and no protocol.
//!
//! - [`device`]: the contract every backend implements. It is NVMe's: one queue
//!   pair per reactor; reads, writes (optionally FUA) and flushes; completions in
//!   any order; a completed write is durable only after a later flush completes,
//!   unless the device has no volatile write cache or the write carried FUA.
//! - [`conformance`]: the suite every backend must pass, callable as a library.
//! - [`checksum`]: CRC-32C of long buffers by carry-less multiplication (it
//!   needs `unsafe` intrinsics, so it lives here; see the module).
//! - [`dma`]: the bounded pool of DMA-able buffers every request carries.
//! - [`aggregate`]: a striped set of member devices (any backend), itself a
//!   device, with on-disk member labels.
//! - [`memory`]: a RAM-backed device for tests and CPU-path benchmarks.
//! - [`uring`]: a file or block device through io_uring (O_DIRECT, fixed
//!   buffers and file, one ring per queue pair).
//! - [`test_devices`]: wrappers for crash and fault tests (crash recorder,
//!   fault injector).
//!
//! `unsafe` is allowed in this crate only, and only in the DMA pool, the checksum
//! module and the io_uring and VFIO backends; every block carries a `// SAFETY:` comment.

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod aggregate;
pub mod checksum;
pub mod conformance;
pub mod device;
pub mod dma;
pub mod error;
pub mod memory;
pub mod nvme;
pub mod test_devices;
pub mod uring;

pub use device::{BlockDevice, Completion, DeviceInfo, Op, OpKind, QueuePair, Request, SubmitError};
pub use dma::{DmaBuf, DmaPool, DmaPoolConfig, HugepagePolicy};
pub use error::{DeviceError, IoError, IoErrorKind};
