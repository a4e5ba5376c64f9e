//! Clock and thread calls.

use rumpuser::{clock_monotonic, clock_realtime, thread_create, Error};

#[test]
fn clocks() {
    let (s, ns) = clock_realtime();
    assert!(s > 1_600_000_000 && ns < 1_000_000_000);
    let a = clock_monotonic();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = clock_monotonic();
    assert!(b > a && a.1 < 1_000_000_000);
}

#[test]
fn threads_run_are_named_and_report_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = thread_create("rumpuser-test", move || {
        tx.send(std::thread::current().name().map(str::to_string))
            .unwrap();
    })
    .unwrap();
    t.join().unwrap();
    assert_eq!(rx.recv().unwrap().as_deref(), Some("rumpuser-test"));
    let p = thread_create("panicker", || panic!("expected test panic")).unwrap();
    assert_eq!(p.join(), Err(Error::EIO));
}
