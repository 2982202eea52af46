//! An outbox on a network file system (sshfs here, as NFS), whose far side
//! no inotify event reports: only rescans find its files, and `stable_for`
//! on the rescans decides when one is complete. A file moved in whole
//! still waits `stable_for` (nothing says it was a move); one still being
//! written is never sent until it stops changing.

mod common;

use common::sshfs::Mount;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn an_outbox_without_events_sends_only_what_rescans_saw_stable() {
    let f = Fixture::new("");
    let far = f.path("far");
    std::fs::create_dir_all(&far).unwrap();
    std::fs::write(far.join("mounted"), b"").unwrap();
    let mount = Mount::start(f.dir.path(), &far, &f.path("outbox-mount"));
    std::fs::remove_file(far.join("mounted")).unwrap();
    let dest = f.path("server");
    std::fs::create_dir_all(&dest).unwrap();
    f.write_config(&format!(
        "[[send]]\nname = \"nfs\"\nserver = \"local\"\nlocal_dir = \"{}\"\nremote_dir = \"{}\"\nstable_for = \"2s\"\n\
         rescan = \"300ms\"\nafter = {{ delete = true }}\n",
        mount.mnt.display(),
        dest.display()
    ));
    let mut run = f.spawn_run();
    let log = || run.log();
    wait_for_or(
        Duration::from_secs(10),
        "ferry started",
        || log().contains("ferry started"),
        log,
    );

    // Whole at once on the far side, but no event says so.
    std::fs::write(f.path("moved.csv"), b"complete").unwrap();
    let t0 = Instant::now();
    std::fs::rename(f.path("moved.csv"), far.join("moved.csv")).unwrap();
    wait_for(Duration::from_secs(10), "moved.csv on the server", || {
        dest.join("moved.csv").exists()
    });
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "sent after {took:?}, before stable_for; log:\n{}",
        run.log()
    );
    assert_eq!(std::fs::read(dest.join("moved.csv")).unwrap(), b"complete");
    wait_for(
        Duration::from_secs(5),
        "moved.csv deleted from the outbox",
        || !far.join("moved.csv").exists(),
    );

    // Still being written: a change every 0.4 s for 4 s.
    let mut w = std::fs::File::create(far.join("grow.csv")).unwrap();
    for i in 0..10 {
        w.write_all(format!("part {i};").as_bytes()).unwrap();
        w.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            !dest.join("grow.csv").exists(),
            "a file still changing was sent; log:\n{}",
            run.log()
        );
    }
    drop(w);
    wait_for(Duration::from_secs(10), "grow.csv on the server", || {
        dest.join("grow.csv").exists()
    });
    let want: String = (0..10).map(|i| format!("part {i};")).collect();
    assert_eq!(
        std::fs::read_to_string(dest.join("grow.csv")).unwrap(),
        want
    );

    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
}
