//! The connection budget: one semaphore permit per range in flight. The controller changes how
//! many permits are usable ([`Limit`]). A range that waits to retry gives its permit up while
//! it sleeps ([`Budget::sleep_without_slot`]), so a storm of 503s cannot park every connection
//! in backoff, and a lower count holds at once; a run of good answers after failures wakes the
//! sleepers early ([`Budget::answered_well`]), so a fetch is back at speed soon after a storm.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// The permits ranges take, and those the controller wants back.
#[derive(Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    debt: Arc<AtomicUsize>,
    max: usize,
    /// The count the controller allows now (`max` without a controller).
    usable: Arc<AtomicUsize>,
    health: Arc<Health>,
}

/// Good answers in a row, after a failure, that mean the server has recovered.
const RECOVERED_AFTER: usize = 3;

/// What the ranges' answers say about the server.
#[derive(Default)]
struct Health {
    failing: AtomicBool,
    good_streak: AtomicUsize,
    recovered: Notify,
}

impl Budget {
    /// `max` permits, all usable until a [`Limit`] says otherwise.
    pub fn new(max: usize) -> Budget {
        let max = max.max(1);
        Budget {
            sem: Arc::new(Semaphore::new(max)),
            debt: Arc::new(AtomicUsize::new(0)),
            max,
            usable: Arc::new(AtomicUsize::new(max)),
            health: Arc::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// How many connections the controller allows now.
    pub fn usable(&self) -> usize {
        self.usable.load(Ordering::SeqCst)
    }

    /// Permits free right now (all usable ones, while no range holds any).
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.sem.available_permits()
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

    /// Sleeps `delay` before a retry without holding a place: `permit` is given back first (owed
    /// permits are then taken by the controller as it settles) and a new one is queued for
    /// after. Returns true when woken early because the server recovered.
    pub async fn sleep_without_slot(
        &self,
        permit: &mut Option<OwnedSemaphorePermit>,
        delay: Duration,
    ) -> Result<bool> {
        drop(permit.take());
        let recovered = self.health.recovered.notified();
        tokio::pin!(recovered);
        recovered.as_mut().enable();
        let woken = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = recovered => true,
        };
        *permit = Some(self.acquire().await?);
        Ok(woken)
    }

    /// A range failed in a way worth retrying.
    pub fn answered_badly(&self) {
        self.health.good_streak.store(0, Ordering::SeqCst);
        self.health.failing.store(true, Ordering::SeqCst);
    }

    /// A range finished, or moved a good amount: after failures, a few of these in a row wake
    /// every range sleeping in backoff.
    pub fn answered_well(&self) {
        let h = &self.health;
        let streak = h.good_streak.fetch_add(1, Ordering::SeqCst) + 1;
        if streak >= RECOVERED_AFTER && h.failing.swap(false, Ordering::SeqCst) {
            tracing::debug!("the server answers again: waking ranges in backoff");
            h.recovered.notify_waiters();
        }
    }

    /// The controller's handle, starting at `start` usable permits.
    pub fn limit(&self, start: usize) -> Limit {
        let mut l = Limit::new(
            Arc::clone(&self.sem),
            Arc::clone(&self.debt),
            self.max,
            start,
        );
        l.usable = Arc::clone(&self.usable);
        l.usable.store(l.current, Ordering::SeqCst);
        l
    }
}

/// Grows or shrinks the usable permits of `sem` between 1 and `max`.
pub struct Limit {
    sem: Arc<Semaphore>,
    max: usize,
    current: usize,
    /// Permits still to take away: by [`Limit::settle`] as they become free, or by a request
    /// that held one (a range giving it up while it sleeps in backoff).
    debt: Arc<AtomicUsize>,
    /// `current`, for the scheduler to read.
    usable: Arc<AtomicUsize>,
}

impl Limit {
    /// `sem` was created with `max` permits; the usable count becomes `start`.
    pub fn new(sem: Arc<Semaphore>, debt: Arc<AtomicUsize>, max: usize, start: usize) -> Limit {
        let mut l = Limit {
            sem,
            max,
            current: max,
            debt,
            usable: Arc::new(AtomicUsize::new(max)),
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
        self.usable.store(n, Ordering::SeqCst);
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

    #[tokio::test]
    async fn a_sleeping_range_holds_no_slot_and_wakes_when_the_server_recovers() {
        let budget = Budget::new(1);
        let mut permit = Some(budget.acquire().await.unwrap());
        let b = budget.clone();
        let sleeper = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let woken = b
                .sleep_without_slot(&mut permit, Duration::from_secs(30))
                .await
                .unwrap();
            (woken, started.elapsed(), permit.is_some())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The one place is free while the first range sleeps.
        let other = tokio::time::timeout(Duration::from_millis(500), budget.acquire())
            .await
            .expect("the sleeping range kept its slot")
            .unwrap();
        budget.answered_badly();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..RECOVERED_AFTER {
            budget.answered_well();
        }
        drop(other);
        let (woken, slept, has_permit) = sleeper.await.unwrap();
        assert!(woken && has_permit);
        assert!(slept < Duration::from_secs(3), "slept {slept:?}");
        // Without a failure first, good answers wake nobody: a plain sleep runs its course.
        let mut permit = Some(budget.acquire().await.unwrap());
        let b = budget.clone();
        let sleeper = tokio::spawn(async move {
            b.sleep_without_slot(&mut permit, Duration::from_millis(300))
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..10 {
            budget.answered_well();
        }
        assert!(!sleeper.await.unwrap().unwrap());
    }

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
