//! One NVMe controller: its registers, admin queue, granted I/O queues and
//! interrupt vectors, and its life ([`super::lifecycle`]): bring-up (disable,
//! program the admin queue, enable, identify, negotiate queues), reset after
//! a command timeout (disable, enable again; the queue pairs re-create their
//! queues), failure (quiesce so no DMA can follow, then fail all I/O),
//! removal (release the device to the kernel), and clean shutdown (CC.SHN)
//! when the last user lets go.
//!
//! Shared by the device and its queue pairs through an `Arc`. The only
//! locks are the admin queue's and the queue-id table's, both off the I/O
//! path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::admin::{AdminError, AdminQueue};
use super::bar::{cc, csts, reg, Bar, Cap};
use super::command::{Sqe, CNS_CONTROLLER, CNS_NAMESPACE};
use super::error::NvmeError;
use super::identify::{ControllerIdentity, NamespaceIdentity, IDENTIFY_BYTES};
use super::iova::IovaWindow;
use super::irq::Vectors;
use super::lifecycle::{Lifecycle, STATE_DEAD, STATE_LIVE, STATE_STOPPING};
use super::reset_budget::ResetBudget;
use super::vfio::Vfio;
use super::vfio_sys::{VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX};
use super::NvmeConfig;
use crate::dma::DmaPool;

/// PCI command register: memory space decoding and bus mastering.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// Largest I/O queue the driver creates, in entries (one more than the
/// most commands in flight per queue pair).
pub const IO_QUEUE_ENTRIES_MAX: u32 = 1024;

#[derive(Debug)]
pub struct Controller {
    pub pci_address: String,
    pub cap: Cap,
    pub config: NvmeConfig,
    pub identity: ControllerIdentity,
    pub namespace: NamespaceIdentity,
    pub window: IovaWindow,
    pub vectors: Option<Vectors>,
    life: Lifecycle,
    resets: AtomicU64,
    reset_budget: Mutex<ResetBudget>,
    reason: Mutex<Option<String>>,
    admin: Mutex<AdminQueue>,
    /// `qids[i]` is true when I/O queue id `i + 1` is in use.
    qids: Mutex<Vec<bool>>,
    // Drop order: the BAR mapping and the device file before the pool whose
    // memory the IOMMU maps.
    pub bar: Bar,
    vfio: Mutex<Option<Vfio>>,
    pub pool: Arc<DmaPool>,
}

fn controller_error(pci_address: &str, reason: impl Into<String>) -> NvmeError {
    NvmeError::Controller { pci_address: pci_address.to_owned(), reason: reason.into() }
}

impl Controller {
    /// Opens, resets and enables the controller, identifies it and its
    /// namespace, and negotiates the number of I/O queues.
    pub fn open(config: &NvmeConfig, pool: Arc<DmaPool>) -> Result<Controller, NvmeError> {
        let pci = config.pci_address.as_str();
        let vfio = Vfio::open(pci)?;
        let command = vfio.config_read_u16(PCI_COMMAND)?;
        vfio.config_write_u16(PCI_COMMAND, command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)?;
        let region = vfio.region_info(VFIO_PCI_BAR0_REGION_INDEX)?;
        if !region.mmap {
            return Err(controller_error(pci, "BAR0 cannot be memory-mapped through VFIO"));
        }
        let bar = Bar::map(vfio.device_fd(), region.offset, region.size_bytes as usize, pci)?;
        let cap = Cap::decode(bar.read64(reg::CAP));
        if !cap.nvm_command_set || cap.page_bytes_min > 4096 || cap.page_bytes_max < 4096 {
            return Err(controller_error(pci, format!("unsupported controller capabilities {cap:?}")));
        }
        let window = IovaWindow::map(&vfio, &pool)?;
        let admin = AdminQueue::new(&pool, &window).map_err(|e| controller_error(pci, e.to_string()))?;
        let placeholder_identity = ControllerIdentity {
            vendor_id: 0,
            serial: String::new(),
            model: String::new(),
            firmware: String::new(),
            mdts: 0,
            namespace_count: 0,
            volatile_write_cache: true,
            atomic_write_blocks: 1,
        };
        let placeholder_namespace =
            NamespaceIdentity { size_blocks: 0, block_size_bytes: 512, metadata_bytes: 0, atomic_write_blocks: None };
        let mut controller = Controller {
            pci_address: pci.to_owned(),
            cap,
            config: config.clone(),
            identity: placeholder_identity,
            namespace: placeholder_namespace,
            window,
            vectors: None,
            life: Lifecycle::default(),
            resets: AtomicU64::new(0),
            reset_budget: Mutex::new(ResetBudget::new(
                config.resets_max,
                Duration::from_millis(config.reset_window_ms),
            )),
            reason: Mutex::new(None),
            admin: Mutex::new(admin),
            qids: Mutex::new(Vec::new()),
            bar,
            vfio: Mutex::new(Some(vfio)),
            pool,
        };
        controller.reset_and_enable()?;
        controller.identify()?;
        let granted = controller.negotiate_queues()?;
        controller.qids = Mutex::new(vec![false; usize::from(granted)]);
        if config.interrupts {
            controller.vectors = controller.setup_vectors(granted)?;
        }
        Ok(controller)
    }

    /// CC.EN = 0 and wait for CSTS.RDY = 0, within CAP.TO.
    fn disable(&self) -> Result<(), String> {
        let config = self.bar.read32(reg::CC);
        if config & cc::EN != 0 {
            self.bar.write32(reg::CC, config & !cc::EN);
        }
        self.wait_ready(false)
    }

    fn wait_ready(&self, ready: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(self.cap.ready_timeout_ms);
        loop {
            let status = self.bar.read32(reg::CSTS);
            if status == csts::GONE {
                return Err("registers read all-ones: the device is gone".into());
            }
            if ready && status & csts::CFS != 0 {
                return Err(format!("controller fatal status while enabling (CSTS {status:#x})"));
            }
            if (status & csts::RDY != 0) == ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "CSTS.RDY did not become {} within CAP.TO ({} ms; CSTS {status:#x})",
                    u8::from(ready),
                    self.cap.ready_timeout_ms
                ));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn reset_and_enable(&mut self) -> Result<(), NvmeError> {
        let mut admin = self.admin_lock();
        self.disable_and_enable(&mut admin).map_err(|r| controller_error(&self.pci_address, r))
    }

    /// CC.EN = 0 (which destroys every I/O queue and ends all DMA), point
    /// the admin registers at fresh admin rings, CC.EN = 1.
    fn disable_and_enable(&self, admin: &mut AdminQueue) -> Result<(), String> {
        self.disable().map_err(|r| format!("disable: {r}"))?;
        admin.program(&self.bar);
        // MPS = 0 (4 KiB pages), CSS = 0 (NVM), AMS = 0 (round robin).
        self.bar.write32(reg::CC, cc::IOSQES_64 | cc::IOCQES_16 | cc::EN);
        self.wait_ready(true).map_err(|r| format!("enable: {r}"))?;
        let version = self.bar.read32(reg::VS);
        tracing::info!(pci = %self.pci_address, version = format_args!("{}.{}", version >> 16, (version >> 8) & 0xff), "NVMe controller enabled");
        Ok(())
    }

    /// Resets the controller after a command timed out (or it reported
    /// fatal status): disable, enable, ask for the same number of queues
    /// again. Every I/O queue dies with it; queue pairs notice the new
    /// generation and create theirs again. A reset that fails fails the
    /// controller. Returns when this or another thread's reset is over (or
    /// at once if the controller is failing or dead).
    pub fn reset(&self, reason: &str) {
        if !self.life.begin_reset() {
            return;
        }
        let admitted = self.reset_budget.lock().unwrap_or_else(|p| p.into_inner()).admit(Instant::now());
        if let Err(spent) = admitted {
            // Failing is allowed from RESETTING and wins over the reset.
            self.fail(&format!("{reason}; {spent}"));
            return;
        }
        tracing::warn!(pci = %self.pci_address, reason, "resetting the NVMe controller");
        let mut admin = self.admin_lock();
        let result = self.disable_and_enable(&mut admin).and_then(|()| {
            let wanted = self.config.io_queue_pairs_max.clamp(1, 1024);
            let sqe = Sqe::set_queue_count(wanted);
            match admin.execute(&self.bar, &self.cap, sqe, self.admin_timeout()) {
                Ok(_) => Ok(()),
                // The count the controller granted at start-up still stands.
                Err(AdminError::Status(s)) => {
                    tracing::warn!(pci = %self.pci_address, status = %s.describe(), "set features (number of queues) after reset");
                    Ok(())
                }
                Err(e) => Err(format!("set features (number of queues): {e}")),
            }
        });
        // The new generation is published under the admin lock: a queue
        // pair creating its queues reads it under the same lock.
        let generation = result.as_ref().ok().and_then(|()| self.life.end_reset());
        drop(admin);
        match (result, generation) {
            (Ok(()), Some(generation)) => {
                self.resets.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pci = %self.pci_address, generation, "NVMe controller reset; queue pairs re-create their queues");
            }
            (Ok(()), None) => {}
            (Err(e), _) => self.fail(&format!("reset after {reason} failed: {e}")),
        }
    }

    /// Controller resets that succeeded since it was opened.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    fn identify(&mut self) -> Result<(), NvmeError> {
        let data = self.admin_identify(CNS_CONTROLLER, 0, "identify controller")?;
        self.identity = ControllerIdentity::parse(&data);
        let nsid = self.config.nsid;
        if nsid == 0 || nsid > self.identity.namespace_count {
            return Err(NvmeError::Namespace {
                pci_address: self.pci_address.clone(),
                nsid,
                reason: format!("the controller has namespaces 1..={}", self.identity.namespace_count),
            });
        }
        let data = self.admin_identify(CNS_NAMESPACE, nsid, "identify namespace")?;
        self.namespace = NamespaceIdentity::parse(&data).map_err(|reason| NvmeError::Namespace {
            pci_address: self.pci_address.clone(),
            nsid,
            reason,
        })?;
        if self.namespace.metadata_bytes != 0 {
            return Err(NvmeError::Namespace {
                pci_address: self.pci_address.clone(),
                nsid,
                reason: format!(
                    "formatted with {} bytes of metadata per block; Keel needs none",
                    self.namespace.metadata_bytes
                ),
            });
        }
        tracing::info!(
            pci = %self.pci_address, model = %self.identity.model, serial = %self.identity.serial,
            firmware = %self.identity.firmware, nsid, blocks = self.namespace.size_blocks,
            block_size_bytes = self.namespace.block_size_bytes, vwc = self.identity.volatile_write_cache,
            mdts = self.identity.mdts, "NVMe namespace identified"
        );
        Ok(())
    }

    fn admin_identify(&self, cns: u32, nsid: u32, what: &'static str) -> Result<Box<[u8; IDENTIFY_BYTES]>, NvmeError> {
        let mut admin = self.admin_lock();
        let sqe = Sqe::identify(cns, nsid, admin.data_iova());
        admin.execute(&self.bar, &self.cap, sqe, self.admin_timeout()).map_err(|e| self.admin_error(what, e))?;
        let mut data = Box::new([0u8; IDENTIFY_BYTES]);
        data.copy_from_slice(&admin.data()[..IDENTIFY_BYTES]);
        Ok(data)
    }

    /// Asks for `config.io_queue_pairs_max` queue pairs; returns how many
    /// the controller granted (the smaller of its submission and
    /// completion counts).
    fn negotiate_queues(&self) -> Result<u16, NvmeError> {
        let wanted = self.config.io_queue_pairs_max.clamp(1, 1024);
        let cqe = self.admin(Sqe::set_queue_count(wanted), "set features (number of queues)")?;
        let submission = (cqe.dw0 & 0xffff) as u16;
        let completion = (cqe.dw0 >> 16) as u16;
        let granted = submission.min(completion).saturating_add(1).min(wanted);
        tracing::info!(pci = %self.pci_address, wanted, granted, "I/O queue pairs negotiated");
        Ok(granted)
    }

    /// One MSI-X vector per I/O queue pair (vector = queue id), plus vector
    /// 0 that the admin queue uses (its completions are polled).
    fn setup_vectors(&self, granted: u16) -> Result<Option<Vectors>, NvmeError> {
        let vfio = self.vfio.lock().unwrap_or_else(|p| p.into_inner());
        let Some(vfio) = vfio.as_ref() else { return Ok(None) };
        let available = vfio.irq_count(VFIO_PCI_MSIX_IRQ_INDEX)?;
        if available < 2 {
            tracing::warn!(pci = %self.pci_address, available, "no MSI-X vectors for I/O queues: queue pairs poll only");
            return Ok(None);
        }
        let count = available.min(u32::from(granted) + 1);
        let vectors = Vectors::new(count).map_err(|source| NvmeError::Vfio {
            pci_address: self.pci_address.clone(),
            what: "eventfd",
            source,
        })?;
        vfio.set_irq_eventfds(VFIO_PCI_MSIX_IRQ_INDEX, 0, &vectors.raw_fds())?;
        Ok(Some(vectors))
    }

    pub fn admin_timeout(&self) -> Duration {
        Duration::from_millis(self.config.admin_timeout_ms)
    }

    fn admin_lock(&self) -> MutexGuard<'_, AdminQueue> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admin_error(&self, command: &'static str, e: AdminError) -> NvmeError {
        NvmeError::Admin { pci_address: self.pci_address.clone(), command, reason: e.to_string() }
    }

    /// Runs one admin command. A timeout or a controller that stopped
    /// answering fails the controller: an admin command that never
    /// completes leaves nothing else to trust.
    pub fn admin(&self, sqe: Sqe, command: &'static str) -> Result<super::command::Cqe, NvmeError> {
        self.admin_timed(sqe, command, self.admin_timeout())
    }

    pub fn admin_timed(
        &self,
        sqe: Sqe,
        command: &'static str,
        timeout: Duration,
    ) -> Result<super::command::Cqe, NvmeError> {
        if !self.is_live() {
            return Err(self.not_live_error());
        }
        let result = self.admin_lock().execute(&self.bar, &self.cap, sqe, timeout);
        result.map_err(|e| self.admin_failed(command, e))
    }

    /// An admin command timed out or found the controller down: nothing
    /// it said can be trusted any more, so reset it (which fails it when
    /// the reset does not work).
    fn admin_failed(&self, command: &'static str, e: AdminError) -> NvmeError {
        if matches!(e, AdminError::Timeout(_) | AdminError::ControllerDown(_)) {
            self.reset(&format!("admin command {command}: {e}"));
        }
        self.admin_error(command, e)
    }

    /// Creates I/O completion queue and submission queue `qid` (the pair of
    /// a queue pair) and returns the reset generation they belong to.
    pub fn create_io_queues(
        &self,
        qid: u16,
        entries: u32,
        cq_iova: u64,
        sq_iova: u64,
        vector: Option<u16>,
    ) -> Result<u64, NvmeError> {
        let mut admin = self.admin_lock();
        if !self.is_live() {
            return Err(self.not_live_error());
        }
        let generation = self.life.generation();
        let timeout = self.admin_timeout();
        let cq = Sqe::create_io_cq(qid, entries, cq_iova, vector);
        if let Err(e) = admin.execute(&self.bar, &self.cap, cq, timeout) {
            drop(admin);
            return Err(self.admin_failed("create I/O completion queue", e));
        }
        let sq = Sqe::create_io_sq(qid, entries, sq_iova, qid);
        if let Err(e) = admin.execute(&self.bar, &self.cap, sq, timeout) {
            let undo = admin.execute(&self.bar, &self.cap, Sqe::delete_io_cq(qid), timeout);
            drop(admin);
            if let Err(undo) = undo {
                tracing::warn!(pci = %self.pci_address, qid, error = %undo, "deleting the completion queue of a failed queue pair");
            }
            return Err(self.admin_failed("create I/O submission queue", e));
        }
        Ok(generation)
    }

    pub fn state(&self) -> u8 {
        self.life.state()
    }

    /// Resets completed so far: queues created in an older generation no
    /// longer exist.
    pub fn generation(&self) -> u64 {
        self.life.generation()
    }

    pub fn is_live(&self) -> bool {
        self.state() == STATE_LIVE
    }

    /// Failing or failed for good (a reset in progress is not gone).
    pub fn is_gone(&self) -> bool {
        matches!(self.state(), STATE_STOPPING | STATE_DEAD)
    }

    pub fn gone_error(&self) -> NvmeError {
        let reason = self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
        NvmeError::Gone { pci_address: self.pci_address.clone(), reason: reason.unwrap_or_else(|| "failed".into()) }
    }

    fn not_live_error(&self) -> NvmeError {
        if self.is_gone() {
            self.gone_error()
        } else {
            controller_error(&self.pci_address, "the controller is being reset; try again")
        }
    }

    /// Declares the controller failed: stops it so that it can no longer
    /// touch memory (CC.EN = 0, then bus mastering off), then marks it dead
    /// so queue pairs fail and release everything in flight. Idempotent;
    /// the first reason wins.
    pub fn fail(&self, reason: &str) {
        if !self.life.begin_fail() {
            return;
        }
        tracing::error!(pci = %self.pci_address, reason, "NVMe controller failed; all its I/O fails from now on");
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
        if let Err(e) = self.disable() {
            tracing::warn!(pci = %self.pci_address, error = %e, "disabling the failed controller");
        }
        self.stop_bus_mastering();
        self.life.end_fail();
    }

    fn stop_bus_mastering(&self) {
        let vfio = self.vfio.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(vfio) = vfio.as_ref() {
            if let Ok(command) = vfio.config_read_u16(PCI_COMMAND) {
                let _ = vfio.config_write_u16(PCI_COMMAND, command & !PCI_COMMAND_MASTER);
            }
        }
    }

    /// The kernel wants the device back (unbind, hot-remove): fail it, then
    /// release the device file so the kernel's removal can finish. The
    /// container (and with it the IOMMU mappings) stays until the device
    /// value is dropped.
    pub fn release_to_kernel(&self) {
        self.fail("the kernel asked for the device back (unbind or hot-remove)");
        self.bar.detach();
        let vfio = self.vfio.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(vfio);
        tracing::warn!(pci = %self.pci_address, "NVMe device released to the kernel");
    }

    /// Runs `f` with the VFIO device, if it has not been released.
    pub fn with_vfio<T>(&self, f: impl FnOnce(&Vfio) -> T) -> Option<T> {
        self.vfio.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(f)
    }

    pub fn alloc_qid(&self) -> Result<u16, NvmeError> {
        let mut qids = self.qids.lock().unwrap_or_else(|p| p.into_inner());
        let index = qids.iter().position(|used| !used).ok_or_else(|| NvmeError::QueuesExhausted {
            pci_address: self.pci_address.clone(),
            limit: qids.len() as u16,
        })?;
        qids[index] = true;
        Ok(index as u16 + 1)
    }

    pub fn free_qid(&self, qid: u16) {
        let mut qids = self.qids.lock().unwrap_or_else(|p| p.into_inner());
        let index = usize::from(qid) - 1;
        assert!(qids[index], "queue id {qid} freed twice");
        qids[index] = false;
    }

    /// Normal shutdown: CC.SHN and wait for CSTS.SHST = complete.
    fn shutdown(&self) {
        let config = self.bar.read32(reg::CC);
        self.bar.write32(reg::CC, (config & !cc::SHN_MASK) | cc::SHN_NORMAL);
        let deadline = Instant::now() + Duration::from_millis(self.cap.ready_timeout_ms.max(5000));
        loop {
            let status = self.bar.read32(reg::CSTS);
            if status == csts::GONE {
                return;
            }
            if status & csts::SHST_MASK == csts::SHST_COMPLETE {
                tracing::info!(pci = %self.pci_address, "NVMe controller shut down cleanly");
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(pci = %self.pci_address, "shutdown did not complete in time");
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if self.is_live() {
            self.shutdown();
            self.disable().ok();
        }
        if let Some(vfio) = self.vfio.get_mut().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if self.vectors.is_some() {
                vfio.disable_irqs(VFIO_PCI_MSIX_IRQ_INDEX);
            }
            vfio.unmap_dma(self.window.iova_base, self.window.len_bytes);
        }
    }
}
