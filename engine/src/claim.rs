//! Out-of-line values written for a write that has not committed yet, and
//! who gives their pages back when it never does.
//!
//! An extent's pages are allocated before its device write and stay
//! "unattached" until the put naming it is applied (keel-tree, extent.rs).
//! If the future that wrote it is dropped (its caller stopped waiting, a
//! connection closed) nobody would apply or forget it, and the pages would
//! stay allocated until the next open. Two rules close that:
//!
//! * the device write runs in a task of its own, left to finish when its
//!   waiter is dropped ([`Detaching`]): cancelling a write in flight and
//!   reusing its pages could let the old DMA land on a new owner's data;
//! * its result is a [`Claim`], which gives the extent back when dropped
//!   unless the commit that names it took it.

use std::rc::Rc;

use keel_tree::ExtentRef;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::record::Op;
use crate::shard::{self, Shard};

/// An extent written for a write and not yet recorded anywhere that will
/// give it back: given back when dropped, so a result nobody takes leaks no
/// space.
pub(crate) struct Claim {
    engine: Engine,
    shard: u32,
    extent: ExtentRef,
    taken: bool,
}

impl Claim {
    pub(crate) fn new(engine: Engine, shard: u32, extent: ExtentRef) -> Self {
        Claim { engine, shard, extent, taken: false }
    }

    /// Moves the extent into `extents` (a transaction's, which gives it back
    /// if the transaction does not commit) and returns it.
    pub(crate) fn take(mut self, extents: &mut Vec<(u32, ExtentRef)>) -> ExtentRef {
        self.taken = true;
        extents.push((self.shard, self.extent));
        self.extent
    }

    /// The extent is named by a committed record: nothing to give back.
    pub(crate) fn committed(mut self) {
        self.taken = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.taken || !keel_reactor::on_reactor() {
            return;
        }
        // On the shard's own reactor the pages go back at once (an error path
        // reports no space only while it really is in use); elsewhere, by a
        // message to that reactor.
        if let Some(shard) = shard::local(self.engine.shared.uid, self.shard) {
            shard.tree.forget_extent(self.extent);
            return;
        }
        let engine = self.engine.clone();
        let extents = vec![(self.shard, self.extent)];
        keel_reactor::spawn(async move { forget_extents(&engine, extents).await }).detach();
    }
}

/// Gives back extents written for writes that did not commit.
pub(crate) async fn forget_extents(engine: &Engine, extents: Vec<(u32, ExtentRef)>) {
    for (s, e) in extents {
        let _ = engine.on_shard(s, move |shard| async move { shard.tree.forget_extent(e) }).await;
    }
}

/// Tasks writing extents; those still running when this is dropped are left
/// to finish rather than cancelled, and their [`Claim`]s, never taken, give
/// the extents back.
pub(crate) struct Detaching<T>(pub(crate) Vec<Option<keel_reactor::JoinHandle<T>>>);

impl<T> Drop for Detaching<T> {
    fn drop(&mut self) {
        self.0.iter_mut().filter_map(Option::take).for_each(keel_reactor::JoinHandle::detach);
    }
}

/// [`Engine::externalize`] of one op on `shard` (whose reactor this runs
/// on), its device write in a task of its own: the op as it will be
/// committed, with a claim on its extent when its value went out of line.
pub(crate) async fn externalize_claimed(
    engine: Engine,
    shard: Rc<Shard>,
    op: Op,
) -> Result<(Op, Option<Claim>), EngineError> {
    if !engine.goes_out_of_line(&op) {
        // No device write: nothing to leak, no task needed.
        return Ok((engine.externalize(&shard, op).await?, None));
    }
    let task = keel_reactor::spawn(async move {
        let op = engine.externalize(&shard, op).await?;
        let claim = op.extent().map(|e| Claim::new(engine, shard.id, e));
        Ok((op, claim))
    });
    let mut tasks = Detaching(vec![Some(task)]);
    let Some(handle) = tasks.0[0].as_mut() else { unreachable!("the task was just put there") };
    let result = handle.await;
    tasks.0[0] = None;
    result
}
