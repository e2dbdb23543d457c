//! The connection budget: one semaphore permit per range in flight. The controller changes how
//! many permits are usable ([`Limit`]); a range that waits to retry while permits are owed gives
//! its own up ([`Budget::repay`]), so a lower count holds at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// The permits ranges take, and those the controller wants back.
#[derive(Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    debt: Arc<AtomicUsize>,
    max: usize,
}

impl Budget {
    /// `max` permits, all usable until a [`Limit`] says otherwise.
    pub fn new(max: usize) -> Budget {
        let max = max.max(1);
        Budget {
            sem: Arc::new(Semaphore::new(max)),
            debt: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place in the budget; Err once the budget is closed.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.sem)
            .acquire_owned()
            .await
            .map_err(|e| Error::Task {
                task: "connection budget",
                message: e.to_string(),
            })
    }

    /// While permits are owed, gives `permit` up for good and queues for a new one.
    pub async fn repay(&self, permit: &mut Option<OwnedSemaphorePermit>) -> Result<()> {
        if pay_debt(&self.debt) {
            if let Some(p) = permit.take() {
                p.forget();
            }
            *permit = Some(self.acquire().await?);
        }
        Ok(())
    }

    /// The controller's handle, starting at `start` usable permits.
    pub fn limit(&self, start: usize) -> Limit {
        Limit::new(
            Arc::clone(&self.sem),
            Arc::clone(&self.debt),
            self.max,
            start,
        )
    }
}

/// Grows or shrinks the usable permits of `sem` between 1 and `max`.
pub struct Limit {
    sem: Arc<Semaphore>,
    max: usize,
    current: usize,
    /// Permits still to take away: by [`Limit::settle`] as they become free, or by a request
    /// that holds one while it waits to retry ([`Budget::repay`]).
    debt: Arc<AtomicUsize>,
}

impl Limit {
    /// `sem` was created with `max` permits; the usable count becomes `start`.
    pub fn new(sem: Arc<Semaphore>, debt: Arc<AtomicUsize>, max: usize, start: usize) -> Limit {
        let mut l = Limit {
            sem,
            max,
            current: max,
            debt,
        };
        l.set(start);
        l
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn current(&self) -> usize {
        self.current
    }

    pub fn set(&mut self, n: usize) {
        let n = n.clamp(1, self.max);
        if n > self.current {
            let mut grow = n - self.current;
            // Cancel owed permits first; only the rest are new.
            while grow > 0 && pay_debt(&self.debt) {
                grow -= 1;
            }
            self.sem.add_permits(grow);
        } else {
            self.debt.fetch_add(self.current - n, Ordering::SeqCst);
        }
        self.current = n;
        self.settle();
    }

    /// Takes away owed permits that are free now.
    pub fn settle(&mut self) {
        let owed = self.debt.load(Ordering::SeqCst);
        if owed > 0 {
            let taken = self.sem.forget_permits(owed);
            self.debt.fetch_sub(taken, Ordering::SeqCst);
        }
    }
}

/// Takes one unit off the debt, if there is any; the caller then forgets a permit it holds.
fn pay_debt(debt: &AtomicUsize) -> bool {
    debt.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_moves_permits_and_waits_for_busy_ones() {
        let sem = Arc::new(Semaphore::new(8));
        let debt = Arc::new(AtomicUsize::new(0));
        let mut l = Limit::new(Arc::clone(&sem), Arc::clone(&debt), 8, 2);
        assert_eq!(sem.available_permits(), 2);
        l.set(5);
        assert_eq!(sem.available_permits(), 5);
        let held = sem.clone().try_acquire_many_owned(5).unwrap();
        l.set(1);
        assert_eq!(sem.available_permits(), 0);
        // A holder that pays a unit of debt forgets its permit instead of returning it.
        assert!(pay_debt(&debt));
        let mut held = held;
        held.split(1).unwrap().forget();
        drop(held);
        l.settle();
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(debt.load(Ordering::SeqCst), 0);
        l.set(100);
        assert_eq!(l.current(), 8);
        assert_eq!(sem.available_permits(), 8);
    }
}
