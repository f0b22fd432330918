//! Threads for background work that must not slow the foreground: a checkpoint's image and
//! file, the removal of files a checkpoint freed. They run at a lower priority (nice 10), so
//! on a busy machine the scheduler gives the commit thread and the HTTP workers the CPU first
//! and the background work takes longer instead of slowing every write.

use std::thread::JoinHandle;

use tracing::warn;

/// The nice value of background threads.
const BACKGROUND_NICE: i32 = 10;

/// Starts `work` on a thread named `name` at the background priority.
pub fn spawn<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_this_threads_priority();
            work()
        })
}

/// Best effort: nothing changes where the call fails.
fn lower_this_threads_priority() {
    // On Linux a thread id names that one thread to setpriority.
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), BACKGROUND_NICE) {
        warn!(error = %e, "cannot lower a background thread's priority");
    }
}
