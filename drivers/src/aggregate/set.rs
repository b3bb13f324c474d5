//! Deciding, from the labels the listed members carry, whether they form one
//! complete set in the listed order, and saying exactly what is wrong when
//! they do not: a member swapped with another, missing, blank (replaced),
//! from another set, or not a member at all.

use super::label::{format_set_id, Label, LabelState};

/// A listed member and what its label area holds.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The member's device name ("nvme:0000:00:04.0").
    pub name: String,
    pub capacity_bytes: u64,
    pub state: LabelState,
}

/// Why listed members do not open as a set. Positions are 0-based places in
/// the configured list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("member at position {position} ({name}) has a damaged set label ({reason})")]
    Damaged { position: usize, name: String, reason: String },
    #[error(
        "member at position {position} ({name}) holds data that is not a Keel set label (a volume of its own or \
         another program's data); refusing to use it (`keel mkfs --force` labels it anew, destroying that data)"
    )]
    NotAMember { position: usize, name: String },
    #[error(
        "member at position {position} ({name}) is blank, but set {set} expects its member {position} there: \
         a replaced or wiped device; the set cannot be opened without it"
    )]
    Blank { position: usize, name: String, set: String },
    #[error("member at position {position} ({name}) belongs to another set ({other}, member {index} of {count}), not to set {set}")]
    OtherSet { position: usize, name: String, other: String, index: u32, count: u32, set: String },
    #[error("set {set} has {count} members but {listed} are listed; missing: member(s) {missing:?}")]
    Missing { set: String, count: u32, listed: usize, missing: Vec<u32> },
    #[error("set {set} has {count} members but {listed} are listed")]
    CountMismatch { set: String, count: u32, listed: usize },
    #[error(
        "member at position {position} ({name}) is member {index} of set {set}: the members are listed in a \
         different order than when the set was made; list them in their order"
    )]
    WrongPosition { position: usize, name: String, index: u32, set: String },
    #[error("member at position {position} ({name}) disagrees with member 0 of set {set} on the set's geometry")]
    Geometry { position: usize, name: String, set: String },
    #[error("member at position {position} ({name}) holds {capacity_bytes} bytes, less than the set's label says it had ({needed_bytes})")]
    Shrunk { position: usize, name: String, capacity_bytes: u64, needed_bytes: u64 },
}

/// What the labels amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every member is blank: a new set may be made.
    AllBlank,
    /// A complete set in order; the label of member 0.
    Complete(Label),
}

/// Checks the listed members' labels, in list order.
pub fn verify(listed: &[Listed]) -> Result<Verdict, SetError> {
    for (position, member) in listed.iter().enumerate() {
        match &member.state {
            LabelState::Damaged(reason) => {
                return Err(SetError::Damaged { position, name: member.name.clone(), reason: reason.clone() })
            }
            LabelState::NotALabel => return Err(SetError::NotAMember { position, name: member.name.clone() }),
            _ => {}
        }
    }
    let labels: Vec<(usize, &Label)> = listed
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match &m.state {
            LabelState::Labelled(label) => Some((i, label)),
            _ => None,
        })
        .collect();
    let Some(&(_, reference)) = labels.first() else {
        return Ok(Verdict::AllBlank);
    };
    let set = format_set_id(&reference.set_id);
    check_membership(listed, &labels, reference, &set)?;
    check_count(listed, &labels, reference, &set)?;
    for &(position, label) in &labels {
        let name = listed[position].name.clone();
        if label.member_index as usize != position {
            return Err(SetError::WrongPosition { position, name, index: label.member_index, set });
        }
        if !same_geometry(label, reference) {
            return Err(SetError::Geometry { position, name, set });
        }
        let needed_bytes = label.data_offset_bytes + label.member_data_bytes;
        if listed[position].capacity_bytes < needed_bytes {
            let capacity_bytes = listed[position].capacity_bytes;
            return Err(SetError::Shrunk { position, name, capacity_bytes, needed_bytes });
        }
    }
    let mut first = *reference;
    first.member_index = 0;
    Ok(Verdict::Complete(first))
}

/// Every labelled member is of the reference's set.
fn check_membership(
    listed: &[Listed],
    labels: &[(usize, &Label)],
    reference: &Label,
    set: &str,
) -> Result<(), SetError> {
    for &(position, label) in labels {
        if label.set_id != reference.set_id {
            return Err(SetError::OtherSet {
                position,
                name: listed[position].name.clone(),
                other: format_set_id(&label.set_id),
                index: label.member_index,
                count: label.member_count,
                set: set.to_owned(),
            });
        }
    }
    Ok(())
}

/// The list is as long as the set; a blank position means a replaced member;
/// a short list names the members not listed.
fn check_count(listed: &[Listed], labels: &[(usize, &Label)], reference: &Label, set: &str) -> Result<(), SetError> {
    let listed_count = listed.len();
    let count = reference.member_count;
    if (count as usize) < listed_count && labels.len() <= count as usize {
        return Err(SetError::CountMismatch { set: set.to_owned(), count, listed: listed_count });
    }
    if (count as usize) > listed_count {
        let missing = (0..count).filter(|i| !labels.iter().any(|(_, l)| l.member_index == *i)).collect();
        return Err(SetError::Missing { set: set.to_owned(), count, listed: listed_count, missing });
    }
    if labels.len() < listed_count {
        // Same count, some positions blank: the first blank one is named.
        let labelled: Vec<usize> = labels.iter().map(|&(p, _)| p).collect();
        if let Some(position) = (0..listed_count).find(|p| !labelled.contains(p)) {
            return Err(SetError::Blank { position, name: listed[position].name.clone(), set: set.to_owned() });
        }
    }
    Ok(())
}

fn same_geometry(a: &Label, b: &Label) -> bool {
    (a.member_count, a.block_size_bytes, a.stripe_bytes, a.data_offset_bytes, a.member_data_bytes)
        == (b.member_count, b.block_size_bytes, b.stripe_bytes, b.data_offset_bytes, b.member_data_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(set: u8, index: u32, count: u32) -> Label {
        Label {
            set_id: [set; 16],
            member_index: index,
            member_count: count,
            block_size_bytes: 4096,
            stripe_bytes: 128 << 10,
            data_offset_bytes: 4096,
            member_data_bytes: 1 << 20,
        }
    }

    fn listed(states: Vec<LabelState>) -> Vec<Listed> {
        states
            .into_iter()
            .enumerate()
            .map(|(i, state)| Listed { name: format!("m{i}"), capacity_bytes: 2 << 20, state })
            .collect()
    }

    fn set_of(set: u8, count: u32) -> Vec<LabelState> {
        (0..count).map(|i| LabelState::Labelled(label(set, i, count))).collect()
    }

    #[test]
    fn a_complete_set_in_order_opens_and_blank_members_may_be_labelled() {
        assert_eq!(verify(&listed(set_of(1, 3))), Ok(Verdict::Complete(label(1, 0, 3))));
        assert_eq!(verify(&listed(vec![LabelState::Blank, LabelState::Blank])), Ok(Verdict::AllBlank));
    }

    #[test]
    fn swapped_members_are_refused_naming_the_position() {
        let mut states = set_of(1, 2);
        states.swap(0, 1);
        let e = verify(&listed(states)).unwrap_err();
        assert!(matches!(e, SetError::WrongPosition { position: 0, index: 1, .. }), "{e}");
        assert!(e.to_string().contains("different order"), "{e}");
    }

    #[test]
    fn a_missing_member_is_named() {
        let states = set_of(1, 3);
        let e = verify(&listed(vec![states[0].clone(), states[2].clone()])).unwrap_err();
        assert_eq!(e, SetError::Missing { set: format_set_id(&[1; 16]), count: 3, listed: 2, missing: vec![1] });
        let e = verify(&listed(vec![states[0].clone(), LabelState::Blank, states[2].clone()])).unwrap_err();
        assert!(matches!(e, SetError::Blank { position: 1, .. }), "{e}");
        let e = verify(&listed(vec![states[0].clone(), states[1].clone(), states[2].clone(), LabelState::Blank]));
        assert!(matches!(e.unwrap_err(), SetError::CountMismatch { count: 3, listed: 4, .. }));
    }

    #[test]
    fn foreign_and_damaged_members_are_refused() {
        let mut states = set_of(1, 2);
        states[1] = LabelState::Labelled(label(2, 1, 2));
        assert!(matches!(verify(&listed(states)).unwrap_err(), SetError::OtherSet { position: 1, .. }));
        let e = verify(&listed(vec![LabelState::Blank, LabelState::NotALabel])).unwrap_err();
        assert!(matches!(e, SetError::NotAMember { position: 1, .. }), "{e}");
        let e = verify(&listed(vec![LabelState::Damaged("checksum mismatch".into()), LabelState::Blank]));
        assert!(e.unwrap_err().to_string().contains("checksum mismatch"));
    }

    #[test]
    fn disagreeing_geometry_and_a_shrunk_member_are_refused() {
        let mut states = set_of(1, 2);
        let mut odd = label(1, 1, 2);
        odd.stripe_bytes = 256 << 10;
        states[1] = LabelState::Labelled(odd);
        assert!(matches!(verify(&listed(states)).unwrap_err(), SetError::Geometry { position: 1, .. }));
        let mut members = listed(set_of(1, 2));
        members[1].capacity_bytes = 1 << 20;
        assert!(matches!(verify(&members).unwrap_err(), SetError::Shrunk { position: 1, .. }));
    }
}
