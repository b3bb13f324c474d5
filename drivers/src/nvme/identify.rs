//! The parts of the Identify Controller and Identify Namespace data
//! structures (4096 bytes each, little-endian) that the driver uses.

/// From Identify Controller (CNS 01h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerIdentity {
    pub vendor_id: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Maximum data transfer size as a power of two of the minimum page
    /// size; 0 means no limit.
    pub mdts: u8,
    pub namespace_count: u32,
    /// A volatile write cache is present (VWC bit 0).
    pub volatile_write_cache: bool,
    /// Atomic write unit on power fail, in logical blocks (AWUPF + 1).
    pub atomic_write_blocks: u32,
}

/// From Identify Namespace (CNS 00h), for the formatted LBA format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceIdentity {
    pub size_blocks: u64,
    pub block_size_bytes: u32,
    pub metadata_bytes: u16,
    /// Namespace-specific atomic write unit on power fail, when reported.
    pub atomic_write_blocks: Option<u32>,
}

fn u16_at(data: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([data[off], data[off + 1]])
}

fn u32_at(data: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
}

fn u64_at(data: &[u8], off: usize) -> u64 {
    u64::from(u32_at(data, off)) | (u64::from(u32_at(data, off + 4)) << 32)
}

fn ascii(data: &[u8]) -> String {
    data.iter()
        .map(|&b| match b {
            0 => ' ',
            0x20..0x7f => b as char,
            _ => '.',
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

pub const IDENTIFY_BYTES: usize = 4096;

impl ControllerIdentity {
    pub fn parse(data: &[u8; IDENTIFY_BYTES]) -> ControllerIdentity {
        ControllerIdentity {
            vendor_id: u16_at(data, 0),
            serial: ascii(&data[4..24]),
            model: ascii(&data[24..64]),
            firmware: ascii(&data[64..72]),
            mdts: data[77],
            namespace_count: u32_at(data, 516),
            volatile_write_cache: data[525] & 1 == 1,
            atomic_write_blocks: u32::from(u16_at(data, 530)) + 1,
        }
    }
}

impl NamespaceIdentity {
    /// Parses the namespace data. Returns an error when the namespace is
    /// inactive or formatted with an LBA format this driver cannot use.
    pub fn parse(data: &[u8; IDENTIFY_BYTES]) -> Result<NamespaceIdentity, String> {
        let size_blocks = u64_at(data, 0);
        if size_blocks == 0 {
            return Err("the namespace is inactive (size 0)".into());
        }
        let nsfeat = data[24];
        let lba_format_count = u32::from(data[25]) + 1;
        let flbas = data[26];
        let index = u32::from(flbas & 0xf) | (u32::from(flbas >> 5 & 0x3) << 4);
        if index >= lba_format_count.min(64) {
            return Err(format!("formatted LBA format {index} is not among its {lba_format_count} formats"));
        }
        let format = u32_at(data, 128 + 4 * index as usize);
        let metadata_bytes = (format & 0xffff) as u16;
        let lba_shift = (format >> 16) & 0xff;
        if !(9..=12).contains(&lba_shift) {
            return Err(format!("logical block size 2^{lba_shift} is outside 512..=4096 bytes"));
        }
        let nawupf = u32::from(u16_at(data, 40)) + 1;
        Ok(NamespaceIdentity {
            size_blocks,
            block_size_bytes: 1 << lba_shift,
            metadata_bytes,
            // NSFEAT bit 1: NAWUN/NAWUPF/NACWU are defined for this namespace.
            atomic_write_blocks: (nsfeat & 0b10 != 0).then_some(nawupf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_fields_are_read_from_their_offsets() {
        let mut data = [0u8; IDENTIFY_BYTES];
        data[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        data[4..24].copy_from_slice(b"vmtest0             ");
        data[24..34].copy_from_slice(b"QEMU NVMe ");
        data[77] = 7;
        data[516..520].copy_from_slice(&256u32.to_le_bytes());
        data[525] = 1;
        data[530..532].copy_from_slice(&7u16.to_le_bytes());
        let id = ControllerIdentity::parse(&data);
        assert_eq!(id.vendor_id, 0x1b36);
        assert_eq!(id.serial, "vmtest0");
        assert_eq!(id.model, "QEMU NVMe");
        assert_eq!(id.mdts, 7);
        assert_eq!(id.namespace_count, 256);
        assert!(id.volatile_write_cache);
        assert_eq!(id.atomic_write_blocks, 8);
    }

    #[test]
    fn namespace_uses_the_formatted_lba_format() {
        let mut data = [0u8; IDENTIFY_BYTES];
        data[0..8].copy_from_slice(&131072u64.to_le_bytes());
        data[25] = 1; // two formats
        data[26] = 1; // formatted with the second
        data[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
        data[132..136].copy_from_slice(&(12u32 << 16).to_le_bytes());
        let ns = NamespaceIdentity::parse(&data).expect("a valid namespace");
        assert_eq!(ns.block_size_bytes, 4096);
        assert_eq!(ns.size_blocks, 131072);
        assert_eq!(ns.atomic_write_blocks, None);
        data[26] = 5;
        assert!(NamespaceIdentity::parse(&data).is_err());
        data[26] = 0;
        data[128..132].copy_from_slice(&(16u32 << 16).to_le_bytes());
        assert!(NamespaceIdentity::parse(&data).expect_err("a 64 KiB block").contains("outside"));
        data[0..8].fill(0);
        assert!(NamespaceIdentity::parse(&data).is_err());
    }
}
