//! The lease and flock exclusion, on a real directory: second holders, takeover, races.

use super::held::encode;
use super::take::take;
use super::*;

fn state(dir: &Path) {
    std::fs::create_dir_all(dir.join(".ferry")).unwrap();
}

#[test]
fn second_locker_fails_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    state(dir.path());
    let held = acquire(dir.path(), None).unwrap();
    let err = acquire(dir.path(), None).err().unwrap().to_string();
    assert!(
        err.contains(&format!("\"pid\":{}", std::process::id())),
        "{err}"
    );
    assert!(acquire(dir.path(), Some((0, 2))).is_err());
    drop(held);
    let a = acquire(dir.path(), Some((0, 2))).unwrap();
    let _b = acquire(dir.path(), Some((1, 2))).unwrap();
    assert!(acquire(dir.path(), Some((0, 2))).is_err());
    assert!(acquire(dir.path(), None).is_err());
    drop(a);
}

/// Without flock (the lock file's flock is held by nobody, as on a node-local FUSE mount
/// seen from another node), the lease alone still excludes a second holder.
#[test]
fn the_lease_alone_excludes_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    state(dir.path());
    let held = take(dir.path(), "dir", Duration::from_secs(60)).unwrap();
    let err = take(dir.path(), "dir", Duration::from_secs(60))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    held.release();
    let again = take(dir.path(), "dir", Duration::from_secs(60)).unwrap();
    assert_eq!(again.lease.lock().unwrap().generation, 2);
}

/// A holder whose heartbeat stopped (paused, or on a node that vanished) is taken over after
/// the timeout, and then learns it lost the lease.
#[test]
fn a_stale_lease_is_taken_over_and_the_old_holder_notices() {
    let dir = tempfile::tempdir().unwrap();
    state(dir.path());
    let old = take(dir.path(), "slice-0-of-2", Duration::from_millis(300)).unwrap();
    assert!(still_held(dir.path()).is_ok());
    assert!(take(dir.path(), "slice-0-of-2", Duration::from_millis(300)).is_err());
    std::thread::sleep(Duration::from_millis(400));
    let new = take(dir.path(), "slice-0-of-2", Duration::from_millis(300)).unwrap();
    assert_eq!(new.lease.lock().unwrap().generation, 2);
    let err = old.check().unwrap_err();
    assert!(err.contains("taken over"), "{err}");
    assert!(matches!(
        still_held(dir.path()),
        Err(Error::LeaseLost { .. })
    ));
    // A renewal by the old holder must not resurrect it.
    old.renew();
    assert!(new.check().is_ok());
    assert!(old.check().is_err());
}

/// A holder that died on this node is noticed at once, without waiting for the timeout.
#[test]
fn a_dead_holder_on_this_node_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    state(dir.path());
    let me = ferry_sharder::host::identity();
    let ms = lease::unix_ms(SystemTime::now());
    let dead = Lease {
        name: "dir".into(),
        generation: 4,
        holder: "x".into(),
        host: me.host,
        pid: std::process::id(),
        node: me.node,
        pid_start: me.pid_start + 1,
        started_ms: ms,
        renewed_ms: ms,
        timeout_ms: 3_600_000,
        released: false,
    };
    std::fs::create_dir_all(lease::lease_dir(dir.path())).unwrap();
    std::fs::write(lease::lease_path(dir.path(), "dir", 4), encode(&dead)).unwrap();
    let l = acquire(dir.path(), None).unwrap();
    assert_eq!(l.leases[0].lease.lock().unwrap().generation, 5);
}

#[test]
fn racing_takers_end_with_exactly_one_holder() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        state(dir.path());
        let barrier = std::sync::Barrier::new(8);
        let won: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (d, b) = (dir.path(), &barrier);
                    s.spawn(move || {
                        b.wait();
                        take(d, "dir", Duration::from_secs(60)).map(|h| {
                            // Keep it held until every racer has tried.
                            std::mem::forget(h);
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().is_ok()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    }
}
