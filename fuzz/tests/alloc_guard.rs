//! The allocation guard stops the process at an allocation above the bound and names the
//! input: the test runs itself again as a child that allocates too much.

use std::process::Command;

use cstore_fuzz::alloc_guard::{ALLOCATION_BYTES_MAX, set_input};

const CHILD_ENV: &str = "CSTORE_FUZZ_ALLOC_GUARD_CHILD";

#[test]
fn an_allocation_above_the_bound_aborts_with_the_input() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let input = [0xde, 0xad, 0xbe, 0xef];
        set_input(&input);
        let claimed = std::hint::black_box(ALLOCATION_BYTES_MAX + 1);
        let buffer: Vec<u8> = Vec::with_capacity(claimed);
        panic!("allocated {} bytes unchecked", buffer.capacity());
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new(exe)
        .args([
            "--exact",
            "an_allocation_above_the_bound_aborts_with_the_input",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("the child runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the child must not pass: {stderr}"
    );
    assert!(stderr.contains("==ALLOCATION LIMIT=="), "{stderr}");
    assert!(stderr.contains("input (hex): deadbeef"), "{stderr}");
    assert!(!stderr.contains("unchecked"), "{stderr}");
    // Aborted (SIGABRT), not a panic's exit code.
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(output.status.signal(), Some(6), "{stderr}");
    }
}

#[test]
fn allocations_below_the_bound_pass() {
    let buffer: Vec<u8> = Vec::with_capacity(ALLOCATION_BYTES_MAX);
    assert!(buffer.capacity() >= ALLOCATION_BYTES_MAX);
}
