//! How the process uses the C allocator.

/// Makes glibc's malloc give every block of 128 KiB or more a mapping of its
/// own, returned to the system when the block is freed. glibc otherwise
/// raises that threshold after the first large block is freed, and from
/// then on Argon2id's 19 MiB of working memory per password check comes from
/// the heap and stays resident after every sign-in (docs/benchmarks.md,
/// "Idle RSS"). Called first thing in `main`, before any thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the process's one libc call; integers only
pub fn return_large_blocks() {
    // SAFETY: mallopt takes two integers and only changes malloc's tuning;
    // no other thread is running yet.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
}

/// Other C libraries return large blocks on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_large_blocks() {}
