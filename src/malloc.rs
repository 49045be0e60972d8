//! What the daemon tells glibc's malloc, so that its memory follows what it holds: one
//! arena, and free pages given back. Nothing elsewhere (musl, other systems).
//!
//! Under a long flood, glibc's arenas (one per thread allocating at once, up to 8 per core)
//! and the free pages inside its heap held the daemon at 75 MB where it keeps 40 (the
//! yardstick's soak, docs/PERF.md). jemalloc and mimalloc were measured too: both held more.

use std::time::Duration;

/// How often free memory goes back to the system.
pub const GIVE_BACK_EVERY: Duration = Duration::from_secs(10);

/// One malloc arena for the whole process, unless `MALLOC_ARENA_MAX` says otherwise (glibc
/// reads it itself). Call before any other thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: mallopt only sets one of malloc's tunables.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Gives malloc's free pages back to the system, inside its heap as well as at its top
/// (glibc by itself returns only the top).
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only returns free memory; it takes malloc's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`give_back`] every [`GIVE_BACK_EVERY`] until shutdown.
pub async fn give_back_until(shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(GIVE_BACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let t = crate::clock::Stopwatch::start();
                give_back();
                tracing::debug!(took_ms = t.elapsed_secs() * 1e3, "free memory given back");
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
