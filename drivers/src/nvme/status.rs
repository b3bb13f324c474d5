//! Decoding the status field of a completion into the device layer's typed
//! errors. The raw value stays available (in `Rejected` and in the log) so
//! that nothing the controller said is lost.

use crate::error::IoErrorKind;

/// Status code types.
const SCT_GENERIC: u16 = 0;
const SCT_COMMAND_SPECIFIC: u16 = 1;
const SCT_MEDIA: u16 = 2;
const SCT_PATH: u16 = 3;

/// A decoded 15-bit status field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code_type: u16,
    pub code: u16,
    /// Do Not Retry: the same command would fail again.
    pub do_not_retry: bool,
}

/// Generic "Command Abort Requested": the command was aborted by an Abort
/// that the driver sent after it timed out.
pub const GENERIC_ABORT_REQUESTED: u16 = 0x07;
/// Generic "Command Aborted due to SQ Deletion".
pub const GENERIC_ABORTED_SQ_DELETION: u16 = 0x08;
/// Command specific: "Invalid Queue Identifier" / "Invalid Queue Size".
pub const CREATE_INVALID_QUEUE_ID: u16 = 0x01;

impl Status {
    pub fn from_field(field: u16) -> Status {
        Status { code: field & 0xff, code_type: (field >> 8) & 0x7, do_not_retry: field & 0x4000 != 0 }
    }

    pub fn is_success(&self) -> bool {
        self.code_type == SCT_GENERIC && self.code == 0
    }

    /// The 15-bit field again, for messages.
    pub fn raw(&self) -> u32 {
        (u32::from(self.code_type) << 8) | u32::from(self.code) | if self.do_not_retry { 0x4000 } else { 0 }
    }

    /// What the engine should make of it.
    pub fn to_error_kind(self) -> IoErrorKind {
        const EIO: i32 = libc::EIO;
        match (self.code_type, self.code) {
            (SCT_GENERIC, GENERIC_ABORT_REQUESTED) => IoErrorKind::Timeout,
            (SCT_GENERIC, GENERIC_ABORTED_SQ_DELETION) => IoErrorKind::DeviceGone,
            // Data transfer error, internal error, power loss abort, namespace not ready.
            (SCT_GENERIC, 0x04 | 0x05 | 0x06 | 0x82) => IoErrorKind::Io { errno: EIO },
            // LBA out of range, capacity exceeded.
            (SCT_GENERIC, 0x80 | 0x81) => IoErrorKind::OutOfRange,
            // Write fault, unrecovered read error, end-to-end guard/tag/ref errors, compare failure.
            (SCT_MEDIA, 0x80..=0x85) => IoErrorKind::Media,
            // Path errors: the controller cannot be reached through this path.
            (SCT_PATH, _) => IoErrorKind::Io { errno: EIO },
            _ => IoErrorKind::Rejected { status: self.raw() },
        }
    }

    pub fn describe(&self) -> String {
        let what = match (self.code_type, self.code) {
            (SCT_GENERIC, 0x00) => "success",
            (SCT_GENERIC, 0x01) => "invalid command opcode",
            (SCT_GENERIC, 0x02) => "invalid field in command",
            (SCT_GENERIC, 0x04) => "data transfer error",
            (SCT_GENERIC, 0x06) => "internal error",
            (SCT_GENERIC, GENERIC_ABORT_REQUESTED) => "command abort requested",
            (SCT_GENERIC, GENERIC_ABORTED_SQ_DELETION) => "aborted: submission queue deleted",
            (SCT_GENERIC, 0x0b) => "invalid namespace or format",
            (SCT_GENERIC, 0x80) => "LBA out of range",
            (SCT_COMMAND_SPECIFIC, CREATE_INVALID_QUEUE_ID) => "invalid queue identifier",
            (SCT_COMMAND_SPECIFIC, 0x02) => "invalid queue size",
            (SCT_MEDIA, 0x80) => "write fault",
            (SCT_MEDIA, 0x81) => "unrecovered read error",
            _ => "other",
        };
        format!(
            "{what} (type {:#x} code {:#04x}{})",
            self.code_type,
            self.code,
            if self.do_not_retry { ", DNR" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_typed_errors() {
        assert!(Status::from_field(0).is_success());
        assert_eq!(Status::from_field(0x0080).to_error_kind(), IoErrorKind::OutOfRange);
        assert_eq!(Status::from_field(0x0281).to_error_kind(), IoErrorKind::Media);
        assert_eq!(Status::from_field(0x0007).to_error_kind(), IoErrorKind::Timeout);
        assert_eq!(Status::from_field(0x0008).to_error_kind(), IoErrorKind::DeviceGone);
        assert_eq!(Status::from_field(0x0004).to_error_kind(), IoErrorKind::Io { errno: libc::EIO });
        let invalid_field_dnr = Status::from_field(0x4002);
        assert!(invalid_field_dnr.do_not_retry);
        assert_eq!(invalid_field_dnr.to_error_kind(), IoErrorKind::Rejected { status: 0x4002 });
        assert!(invalid_field_dnr.describe().contains("invalid field"));
    }
}
