//! Recovery: replay the log from the head and find where it ends — or prove
//! that it was damaged.
//!
//! The scan validates each record (magic, epoch, expected LSN, length bounds,
//! CRC), skips pads and page tails, and stops at the first record that fails.
//! A stop is either the clean end of the log (a batch that never became
//! durable, or was torn by the crash) or damage to a durable one. To tell them
//! apart, the rest of the ring is searched for later records of the same
//! epoch: each carries the durable LSN known when its batch was sealed, and
//! one that vouches for the stop LSN proves it had been acknowledged durable,
//! so the stop is corruption, reported as such and never silently dropped.

use crate::config::{JournalConfig, JournalIdentity, JournalRegion};
use crate::error::JournalError;
use crate::format::{
    crc_seed, decode_header, record_bytes, record_crc, RecordHeader, RecordKind, HEADER_BYTES, PAGE_BYTES,
};
use crate::reader::RingReader;
use crate::Lsn;

/// Where the log ended and where appending resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryOutcome {
    /// Data records handed to the caller.
    pub records_replayed: u64,
    /// The LSN the next record gets (one past the last valid record).
    pub next_lsn: Lsn,
    /// Where the first invalid record (the end) was found.
    pub end_offset: u64,
    /// Why the scan stopped there, for logs and `keel inspect`.
    pub end_reason: String,
    /// Where the next batch starts: the first page boundary at or after the
    /// end, so no later write touches a page that holds replayed records.
    pub next_offset: u64,
    /// The highest durable-LSN hint any valid record carries: every LSN up to
    /// it was acknowledged durable before the crash. A caller that must end
    /// the log earlier (data a record names did not survive) checks against
    /// it: ending at or below it would drop acknowledged data.
    pub lsn_vouched: Lsn,
}

enum Scan {
    Data { payload_at: u64, payload_bytes: usize, next: u64 },
    Pad { next: u64 },
    Stop(String),
}

struct Scanner<'a> {
    reader: RingReader,
    identity: &'a JournalIdentity,
    seed: u32,
    ring_bytes: u64,
    payload_bytes_max: usize,
    /// Nothing at or past this logical offset belongs to the live log.
    limit: u64,
    /// The highest durable-LSN hint seen in a valid record.
    vouched: Lsn,
}

fn floor_page(offset: u64) -> u64 {
    offset / PAGE_BYTES as u64 * PAGE_BYTES as u64
}

/// Replays the log of `region` from the head the superblock recorded:
/// `apply(lsn, payload)` is called for every valid data record in LSN order,
/// the first being `head_lsn` (which may precede what the checkpoint holds:
/// the caller skips those). Runs on a reactor.
pub async fn recover(
    region: JournalRegion,
    config: &JournalConfig,
    identity: JournalIdentity,
    head_lsn: Lsn,
    head_offset: u64,
    mut apply: impl FnMut(Lsn, &[u8]),
) -> Result<RecoveryOutcome, JournalError> {
    let ring_bytes = region.ring_bytes();
    let mut scanner = Scanner {
        reader: RingReader::new(region),
        identity: &identity,
        seed: crc_seed(&identity.volume_uuid, identity.epoch),
        ring_bytes,
        payload_bytes_max: config.record_payload_bytes_max,
        limit: floor_page(head_offset) + ring_bytes,
        vouched: 0,
    };
    let (mut at, mut lsn, mut replayed) = (head_offset, head_lsn, 0u64);
    let end_reason = loop {
        if at >= scanner.limit {
            break "the ring is full up to the head".to_owned();
        }
        let page_left = PAGE_BYTES as u64 - at % PAGE_BYTES as u64;
        if page_left < HEADER_BYTES as u64 {
            at += page_left;
            continue;
        }
        match scanner.scan(at, lsn).await? {
            Scan::Data { payload_at, payload_bytes, next } => {
                apply(lsn, scanner.reader.bytes(payload_at, payload_bytes).await?);
                replayed += 1;
                lsn += 1;
                at = next;
            }
            Scan::Pad { next } => at = next,
            Scan::Stop(reason) => break reason,
        }
    };
    scanner.check_vouchers(at, lsn, &end_reason).await?;
    let next_offset = at.next_multiple_of(PAGE_BYTES as u64);
    tracing::info!(records = replayed, next_lsn = lsn, end_offset = at, reason = %end_reason, "journal recovered");
    Ok(RecoveryOutcome {
        records_replayed: replayed,
        next_lsn: lsn,
        end_offset: at,
        end_reason,
        next_offset,
        lsn_vouched: scanner.vouched,
    })
}

impl Scanner<'_> {
    /// Validates the record at `at`, which must carry `lsn`.
    async fn scan(&mut self, at: u64, lsn: Lsn) -> Result<Scan, JournalError> {
        let header = match self.header(at).await? {
            Ok(header) => header,
            Err(reason) => return Ok(Scan::Stop(reason)),
        };
        if header.lsn != lsn {
            return Ok(Scan::Stop(format!("record carries LSN {} where LSN {lsn} belongs", header.lsn)));
        }
        Ok(match header.kind {
            RecordKind::Data => Scan::Data {
                payload_at: at + HEADER_BYTES as u64,
                payload_bytes: header.payload_bytes as usize,
                next: at + record_bytes(header.payload_bytes as usize) as u64,
            },
            RecordKind::Pad => Scan::Pad { next: at + (HEADER_BYTES + header.payload_bytes as usize) as u64 },
        })
    }

    /// Decodes and fully verifies the record at `at` (any LSN). The outer
    /// error is an I/O failure; the inner one says why the bytes are not a
    /// valid record of this log.
    async fn header(&mut self, at: u64) -> Result<Result<RecordHeader, String>, JournalError> {
        let bytes = self.reader.bytes(at, HEADER_BYTES).await?;
        let header = match decode_header(bytes) {
            Ok(header) => header,
            Err(fault) => return Ok(Err(format!("no record header ({fault:?})"))),
        };
        if header.epoch != self.identity.epoch {
            return Ok(Err(format!("record of epoch {} in a log of epoch {}", header.epoch, self.identity.epoch)));
        }
        let payload_bytes = header.payload_bytes as usize;
        let span = match header.kind {
            RecordKind::Data if payload_bytes > self.payload_bytes_max => {
                return Ok(Err(format!("payload length {payload_bytes} is beyond the limit")));
            }
            RecordKind::Data => record_bytes(payload_bytes) as u64,
            RecordKind::Pad if !payload_bytes.is_multiple_of(8) => return Ok(Err("misaligned pad length".to_owned())),
            RecordKind::Pad => (HEADER_BYTES + payload_bytes) as u64,
        };
        if at % self.ring_bytes + span > self.ring_bytes {
            return Ok(Err(format!("a record of {span} bytes would cross the ring's end")));
        }
        let checked_bytes = HEADER_BYTES + if header.kind == RecordKind::Data { payload_bytes } else { 0 };
        let record = self.reader.bytes(at, checked_bytes).await?;
        if record_crc(self.seed, record, header.kind, payload_bytes) != header.crc {
            return Ok(Err(format!("checksum mismatch in the record for LSN {}", header.lsn)));
        }
        self.vouched = self.vouched.max(header.lsn_durable_hint);
        Ok(Ok(header))
    }

    /// The record at `at` if it is a valid record of an epoch later than this
    /// log's (checked with that epoch's checksum seed).
    async fn later_epoch_record(&mut self, at: u64) -> Result<Option<RecordHeader>, JournalError> {
        let bytes = self.reader.bytes(at, HEADER_BYTES).await?;
        let Ok(header) = decode_header(bytes) else { return Ok(None) };
        if header.epoch <= self.identity.epoch {
            return Ok(None);
        }
        let payload_bytes = header.payload_bytes as usize;
        let checked_bytes = match header.kind {
            RecordKind::Data if payload_bytes > self.payload_bytes_max => return Ok(None),
            RecordKind::Data => HEADER_BYTES + payload_bytes,
            RecordKind::Pad => HEADER_BYTES,
        };
        if at % self.ring_bytes + checked_bytes as u64 > self.ring_bytes {
            return Ok(None);
        }
        let record = self.reader.bytes(at, checked_bytes).await?;
        let seed = crc_seed(&self.identity.volume_uuid, header.epoch);
        Ok((record_crc(seed, record, header.kind, payload_bytes) == header.crc).then_some(header))
    }

    /// Searches the ring from the end for proof that the log went on past
    /// it: a record that says the end LSN was acknowledged durable, or a
    /// record of a later epoch. A later epoch is only ever appended after a
    /// superblock recording it was durable, so finding one means the
    /// superblock this recovery started from is older than one that was
    /// lost or damaged, and everything that newer superblock accounted for
    /// would be dropped. Every batch starts at a page boundary with a record,
    /// so one look per page suffices.
    async fn check_vouchers(&mut self, end: u64, end_lsn: Lsn, end_reason: &str) -> Result<(), JournalError> {
        let mut page = floor_page(end);
        while page < self.limit {
            if let Some(later) = self.later_epoch_record(page).await? {
                return Err(JournalError::Corrupt {
                    lsn: end_lsn,
                    offset: end,
                    evidence: format!(
                        "{end_reason}; yet the ring holds a record of epoch {} (LSN {}) at ring offset {page}, later than the epoch {} the superblock in force names: a newer superblock was lost or damaged",
                        later.epoch, later.lsn, self.identity.epoch
                    ),
                });
            }
            if page > floor_page(end) {
                if let Ok(header) = self.header(page).await? {
                    if header.lsn >= end_lsn && header.lsn_durable_hint >= end_lsn {
                        return Err(JournalError::Corrupt {
                            lsn: end_lsn,
                            offset: end,
                            evidence: format!(
                                "{end_reason}; yet the record for LSN {} at ring offset {page} was sealed when every LSN up to {} was durable",
                                header.lsn, header.lsn_durable_hint
                            ),
                        });
                    }
                }
            }
            page += PAGE_BYTES as u64;
        }
        Ok(())
    }
}
