//! A set: several block devices (members, any backend) striped into one.
//!
//! The engine sees one device and the volume format does not change: the set
//! deals stripes of `stripe_bytes` round-robin to its members, so sequential
//! and concurrent I/O spread over every controller. Each member's first 4 KiB
//! is a label (set id, member index and count, geometry; docs/FORMAT.md,
//! "Member labels"), so a member that is swapped, missing, replaced or from
//! another set is refused at open, with a message naming it.
//!
//! Striping rather than concatenation: the journal sits at the front of the
//! volume and every shard's tree in its own range, so concatenated members
//! would leave all journal traffic on the first controller.
//!
//! - A request is cut at stripe boundaries into one child request per piece;
//!   the buffer is cut in place ([`DmaBuf::split_at`]), not copied, so all
//!   members must share one DMA pool (checked at open).
//! - A flush goes to every member with a volatile write cache; FUA is passed
//!   to each piece of a write.
//! - The set's logical block is at least 4 KiB (and at least every member's
//!   block), so every cut falls on a DMA page boundary; its maximum transfer
//!   and queue depth are the members' smallest; its capacity is the members'
//!   smallest data region, rounded down to whole stripes, times their count.
//! - A queue pair of the set is one queue pair on every member, driven by the
//!   same thread; its completion descriptor is an epoll over theirs.

mod label;
mod qpair;
mod set;
mod stripe;
mod sync_io;
mod wake;

use std::sync::Arc;

pub use label::{format_set_id, Label, LabelState, LABEL_BYTES};
pub use set::{Listed, SetError, Verdict};
pub use stripe::Stripes;

use crate::device::{BlockDevice, DeviceInfo, QueuePair};
use crate::dma::{DmaPool, REGION_BYTES};
use crate::error::DeviceError;

/// The default stripe: large enough that a 32 KiB tree node or a journal
/// batch rarely spans two members, small enough that a 1 MiB value spans all
/// of a few.
pub const STRIPE_BYTES_DEFAULT: u32 = 128 << 10;
/// Most members one set takes.
pub const MEMBERS_MAX: usize = 64;

/// What opening may do to the members' labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelPolicy {
    /// Open a set that exists; change nothing.
    Existing,
    /// Open a set that exists, or label members that are all blank as a new set.
    CreateIfBlank,
    /// Label the members as a new set whatever they hold (destroys their data).
    Relabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetConfig {
    /// For a new set; an existing set keeps the stripe in its labels.
    pub stripe_bytes: u32,
    pub labels: LabelPolicy,
}

impl Default for SetConfig {
    fn default() -> Self {
        SetConfig { stripe_bytes: STRIPE_BYTES_DEFAULT, labels: LabelPolicy::CreateIfBlank }
    }
}

/// A striped set of member devices, itself a block device.
#[derive(Debug)]
pub struct SetDevice {
    info: DeviceInfo,
    label: Label,
    stripes: Stripes,
    members: Vec<Arc<dyn BlockDevice>>,
    pool: Arc<DmaPool>,
    created: bool,
}

impl SetDevice {
    /// Opens the members, in order, as one set (checking or writing labels as
    /// `config.labels` allows).
    pub fn open(members: Vec<Arc<dyn BlockDevice>>, config: &SetConfig) -> Result<SetDevice, DeviceError> {
        let pool = check_members(&members)?;
        let block_bytes = members.iter().map(|m| m.info().block_size_bytes).max().unwrap_or(0).max(LABEL_BYTES as u32);
        let listed = read_labels(&members, block_bytes as usize)?;
        let verdict = if config.labels == LabelPolicy::Relabel { Verdict::AllBlank } else { set::verify(&listed)? };
        let (label, created) = match verdict {
            Verdict::Complete(label) => (label, false),
            Verdict::AllBlank if config.labels == LabelPolicy::Existing => {
                return Err(DeviceError::Other(format!(
                    "the {} members listed are blank: there is no set on them yet",
                    members.len()
                )))
            }
            Verdict::AllBlank => (write_new_labels(&members, block_bytes, config.stripe_bytes)?, true),
        };
        let stripes = Stripes::from_label(&label);
        let info = set_info(&members, &label, &stripes);
        tracing::info!(
            device = %info.name,
            set = %format_set_id(&label.set_id),
            members = members.len(),
            stripe_bytes = label.stripe_bytes,
            capacity_bytes = info.capacity_bytes(),
            created,
            "opened a striped set"
        );
        Ok(SetDevice { info, label, stripes, members, pool, created })
    }

    /// The label of member 0 (the set id and geometry).
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// True when this open labelled the members as a new set.
    pub fn created(&self) -> bool {
        self.created
    }

    pub fn members(&self) -> &[Arc<dyn BlockDevice>] {
        &self.members
    }
}

/// Reads what a device's first 4 KiB hold, to tell a user who opened a set
/// member on its own what it is.
pub fn probe_label(device: &dyn BlockDevice) -> Result<LabelState, DeviceError> {
    let len = (device.info().block_size_bytes as usize).max(LABEL_BYTES);
    Ok(Label::decode(&sync_io::read_head(device, len)?))
}

impl BlockDevice for SetDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn dma_pool(&self) -> &Arc<DmaPool> {
        &self.pool
    }

    fn open_queue_pair(&self, queue_depth: u32) -> Result<Box<dyn QueuePair>, DeviceError> {
        let depth = queue_depth.clamp(1, self.info.queue_depth_max);
        let mut members = Vec::with_capacity(self.members.len());
        for device in &self.members {
            members.push(qpair::Member {
                qp: device.open_queue_pair(depth)?,
                block_bytes: u64::from(device.info().block_size_bytes),
                volatile_write_cache: device.info().volatile_write_cache,
                backlog: Default::default(),
            });
        }
        Ok(Box::new(qpair::SetQueuePair::new(self.info.clone(), self.stripes, members, depth)))
    }
}

/// At least one member, not too many, one shared pool, block sizes that
/// divide 4 KiB pages or are whole numbers of them.
fn check_members(members: &[Arc<dyn BlockDevice>]) -> Result<Arc<DmaPool>, DeviceError> {
    let Some(first) = members.first() else {
        return Err(DeviceError::Other("a set needs at least one member".into()));
    };
    if members.len() > MEMBERS_MAX {
        return Err(DeviceError::Other(format!("a set takes at most {MEMBERS_MAX} members, {} listed", members.len())));
    }
    for m in members {
        if !m.dma_pool().same_pool(first.dma_pool()) {
            return Err(DeviceError::Other(format!(
                "set member {} uses another DMA pool than {}: the members of a set share one",
                m.info().name,
                first.info().name
            )));
        }
        if !m.info().block_size_bytes.is_power_of_two() {
            return Err(DeviceError::Other(format!(
                "set member {} has a block size of {} bytes, not a power of two",
                m.info().name,
                m.info().block_size_bytes
            )));
        }
    }
    Ok(Arc::clone(first.dma_pool()))
}

fn read_labels(members: &[Arc<dyn BlockDevice>], len_bytes: usize) -> Result<Vec<Listed>, DeviceError> {
    members
        .iter()
        .map(|m| {
            let head = sync_io::read_head(m.as_ref(), len_bytes)?;
            Ok(Listed {
                name: m.info().name.clone(),
                capacity_bytes: m.info().capacity_bytes(),
                state: Label::decode(&head),
            })
        })
        .collect()
}

/// Labels every member as a new set and returns member 0's label.
fn write_new_labels(
    members: &[Arc<dyn BlockDevice>],
    block_bytes: u32,
    stripe_bytes: u32,
) -> Result<Label, DeviceError> {
    let stripe_bytes = u64::from(stripe_bytes.max(block_bytes)) / u64::from(block_bytes) * u64::from(block_bytes);
    let data_offset_bytes = u64::from(block_bytes);
    let smallest = members.iter().map(|m| m.info().capacity_bytes()).min().unwrap_or(0);
    let member_data_bytes = smallest.saturating_sub(data_offset_bytes) / stripe_bytes * stripe_bytes;
    if member_data_bytes == 0 {
        return Err(DeviceError::Other(format!(
            "the smallest member holds {smallest} bytes: no room for a label and one stripe of {stripe_bytes} bytes"
        )));
    }
    let mut label = Label {
        set_id: random_set_id()?,
        member_index: 0,
        member_count: members.len() as u32,
        block_size_bytes: block_bytes,
        stripe_bytes: stripe_bytes as u32,
        data_offset_bytes,
        member_data_bytes,
    };
    let mut head = vec![0u8; block_bytes as usize];
    for (index, member) in members.iter().enumerate() {
        label.member_index = index as u32;
        head[..LABEL_BYTES].copy_from_slice(&label.encode());
        sync_io::write_head(member.as_ref(), &head)?;
    }
    label.member_index = 0;
    tracing::info!(set = %format_set_id(&label.set_id), members = members.len(), "labelled the members as a new set");
    Ok(label)
}

fn set_info(members: &[Arc<dyn BlockDevice>], label: &Label, stripes: &Stripes) -> DeviceInfo {
    let block = label.block_size_bytes;
    let min = |f: &dyn Fn(&DeviceInfo) -> u64| members.iter().map(|m| f(m.info())).min().unwrap_or(0);
    let max_transfer = min(&|i| u64::from(i.max_transfer_bytes)).min(REGION_BYTES as u64) as u32;
    let atomic_bytes = min(&|i| u64::from(i.atomic_write_blocks) * u64::from(i.block_size_bytes));
    let names: Vec<&str> = members.iter().map(|m| m.info().name.as_str()).collect();
    DeviceInfo {
        name: format!("set:{}", names.join("+")),
        block_size_bytes: block,
        capacity_blocks: stripes.capacity_blocks(),
        volatile_write_cache: members.iter().any(|m| m.info().volatile_write_cache),
        fua: members.iter().all(|m| m.info().fua),
        max_transfer_bytes: max_transfer / block * block,
        queue_depth_max: min(&|i| u64::from(i.queue_depth_max)) as u32,
        atomic_write_blocks: (atomic_bytes / u64::from(block)).clamp(1, u64::from(label.stripe_bytes / block)) as u32,
    }
}

fn random_set_id() -> Result<[u8; 16], DeviceError> {
    use std::io::Read;
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| DeviceError::Other(format!("cannot read /dev/urandom for a set id: {e}")))?;
    Ok(id)
}
