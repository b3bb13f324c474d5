//! The requests a queue pair has handed to the kernel, indexed by the
//! `user_data` their SQEs carry. Fixed capacity (the queue depth), allocated
//! once, so the I/O path allocates nothing.

use crate::device::Op;

/// One request the kernel may be working on. Its buffer lives here until the
/// completion for its slot has been reaped: that is what keeps the kernel's
/// asynchronous writes into it sound.
#[derive(Debug)]
pub struct InFlight {
    pub tag: u64,
    pub op: Op,
    /// Bytes already transferred by earlier, short completions.
    pub done_bytes: usize,
}

#[derive(Debug)]
pub struct Slots {
    entries: Vec<Option<InFlight>>,
    free: Vec<u32>,
}

impl Slots {
    pub fn new(capacity: u32) -> Self {
        assert!(capacity > 0);
        let entries = (0..capacity).map(|_| None).collect();
        // Popped from the back: slot 0 first, which keeps tests readable.
        let free = (0..capacity).rev().collect();
        Slots { entries, free }
    }

    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Stores `inflight`, or hands it back when every slot is taken.
    pub fn insert(&mut self, inflight: InFlight) -> Result<u32, InFlight> {
        let Some(index) = self.free.pop() else {
            return Err(inflight);
        };
        let entry = &mut self.entries[index as usize];
        debug_assert!(entry.is_none(), "slot {index} on the free list is taken");
        *entry = Some(inflight);
        Ok(index)
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut InFlight> {
        self.entries.get_mut(index as usize)?.as_mut()
    }

    pub fn remove(&mut self, index: u32) -> Option<InFlight> {
        let inflight = self.entries.get_mut(index as usize)?.take()?;
        self.free.push(index);
        Some(inflight)
    }

    /// Takes every request out (for a queue pair that gives up waiting and
    /// must leak their buffers).
    pub fn drain(&mut self) -> impl Iterator<Item = InFlight> + '_ {
        let free = &mut self.free;
        self.entries.iter_mut().enumerate().filter_map(move |(index, entry)| {
            let inflight = entry.take()?;
            free.push(index as u32);
            Some(inflight)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test's unwrap is its assertion
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_capacity_is_a_hard_limit() {
        let mut slots = Slots::new(2);
        let a = slots.insert(InFlight { tag: 1, op: Op::Flush, done_bytes: 0 }).unwrap();
        let b = slots.insert(InFlight { tag: 2, op: Op::Flush, done_bytes: 0 }).unwrap();
        assert_ne!(a, b);
        assert_eq!(slots.len(), 2);
        let back = slots.insert(InFlight { tag: 3, op: Op::Flush, done_bytes: 0 }).unwrap_err();
        assert_eq!(back.tag, 3);
        assert_eq!(slots.remove(a).unwrap().tag, 1);
        assert!(slots.remove(a).is_none(), "a slot is removed once");
        assert_eq!(slots.insert(InFlight { tag: 4, op: Op::Flush, done_bytes: 0 }).unwrap(), a);
        assert_eq!(slots.drain().count(), 2);
        assert_eq!(slots.len(), 0);
    }
}
