//! Process hardening done once at start, before any secret is in memory.
//!
//! The SDK is known to abort the process on some inputs (PROTOCOL.md lists
//! two), and an abort with core dumps on writes everything in memory to disk:
//! every corp secret, every private key, decrypted message keys and
//! plaintexts. So the process turns core dumps off for itself instead of
//! relying on each host's settings (the packaging files set `LimitCORE=0` and
//! the like as a second line).

/// Marks the process not dumpable (no core file, no ptrace by other
/// processes of the same user) and sets the core size limit to 0. Failures
/// are reported on stderr and do not stop the service: an archive that runs
/// without this is still better than one that does not run.
pub fn no_core_dumps() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integer arguments only and
    // changes a flag of the calling process.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        eprintln!("wework-archive: prctl(PR_SET_DUMPABLE, 0) failed: {}", std::io::Error::last_os_error());
    }
    let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    if rc != 0 {
        eprintln!("wework-archive: setrlimit(RLIMIT_CORE, 0) failed: {}", std::io::Error::last_os_error());
    }
}

/// Whether the process is currently dumpable (for `status` and the tests).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}
