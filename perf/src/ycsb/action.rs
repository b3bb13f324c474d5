//! One YCSB operation, chosen before it is run, so that the synchronous
//! (RESP) and asynchronous (engine) targets share the workload's logic.

use rand::Rng;

use super::workload::{Chooser, OpKind, Shared};

pub type Values = Vec<(String, Vec<u8>)>;

/// What a client does next.
#[derive(Debug, Clone)]
pub enum Action {
    /// Insert record `keynum` (load phase, or the run phase's inserts).
    Insert {
        keynum: i64,
        key: String,
        values: Values,
        acknowledge: bool,
    },
    Read {
        key: String,
        fields: Option<Vec<String>>,
    },
    Update {
        key: String,
        values: Values,
    },
    Scan {
        start: String,
        count: usize,
        fields: Option<Vec<String>>,
    },
    ReadModifyWrite {
        key: String,
        fields: Option<Vec<String>>,
        values: Values,
    },
}

impl Action {
    pub fn label(&self) -> &'static str {
        match self {
            Action::Insert { .. } => OpKind::Insert.label(),
            Action::Read { .. } => OpKind::Read.label(),
            Action::Update { .. } => OpKind::Update.label(),
            Action::Scan { .. } => OpKind::Scan.label(),
            Action::ReadModifyWrite { .. } => OpKind::ReadModifyWrite.label(),
        }
    }

    /// The next load-phase insert, or `None` once every record is loaded.
    pub fn next_load(shared: &Shared, rng: &mut impl Rng) -> Option<Action> {
        let w = &shared.workload;
        let keynum = shared.load_sequence.next_value();
        if keynum >= w.insert_start + w.insert_count {
            return None;
        }
        Some(Action::Insert { keynum, key: w.key_name(keynum), values: w.record(rng), acknowledge: false })
    }

    /// The next transaction-phase operation.
    pub fn next_run(shared: &Shared, chooser: &mut Chooser, rng: &mut impl Rng) -> Action {
        let w = &shared.workload;
        match chooser.next_op(rng) {
            OpKind::Read => {
                Action::Read { key: w.key_name(chooser.next_keynum(rng, shared)), fields: w.read_fields(rng) }
            }
            OpKind::Update => {
                Action::Update { key: w.key_name(chooser.next_keynum(rng, shared)), values: w.update_values(rng) }
            }
            OpKind::Insert => {
                let keynum = shared.insert_sequence.next_value();
                Action::Insert { keynum, key: w.key_name(keynum), values: w.record(rng), acknowledge: true }
            }
            OpKind::Scan => Action::Scan {
                start: w.key_name(chooser.next_keynum(rng, shared)),
                count: chooser.scan_length(rng),
                fields: w.read_fields(rng),
            },
            OpKind::ReadModifyWrite => Action::ReadModifyWrite {
                key: w.key_name(chooser.next_keynum(rng, shared)),
                fields: w.read_fields(rng),
                values: w.update_values(rng),
            },
        }
    }

    /// After the action ran: a run-phase insert makes its record readable.
    pub fn finish(&self, shared: &Shared) {
        if let Action::Insert { keynum, acknowledge: true, .. } = self {
            shared.insert_sequence.acknowledge(*keynum);
        }
    }
}
