//! What a server process holds, read from `/proc` (open descriptors,
//! resident memory), and the resource limits the fault and soak tests run
//! processes under.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// How many file descriptors process `pid` has open (`/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Waits (at most `limit`) until process `pid` has `want` descriptors open;
/// returns the last count seen. Connections a client closed are closed by
/// the server a moment later, so the count is polled, not read once.
pub fn wait_for_fd_count(pid: u32, want: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let now = fd_count(pid);
        if now == want || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The descriptor count of process `pid` once it stops changing (the same
/// for 500 ms, at most 10 s): the baseline a leak check compares with.
pub fn settled_fd_count(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = fd_count(pid);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = fd_count(pid);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Raises this process's soft open-file limit to `want` (or to the hard
/// limit, if lower) and returns the soft limit now in force. Children
/// inherit it: 500 client sockets here and 500 accepted ones in the server
/// need more than the usual default of 1024.
#[allow(unsafe_code)]
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively
    // borrowed `limit` and reads nothing else of ours.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    let target = want.min(limit.rlim_max);
    if limit.rlim_cur < target {
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads the valid `limit` and writes nothing of ours.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    }
    limit.rlim_cur
}

/// Makes `cmd`'s process unable to grow any file beyond `bytes` — a disk
/// that fills up, without mounting anything — with SIGXFSZ ignored, so a
/// write past the limit fails with `EFBIG` instead of killing the process.
#[allow(unsafe_code)]
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: setrlimit(2) and signal(2) are
    // (POSIX.1-2008 lists both), it allocates nothing and takes no lock, and
    // `limit` is a plain value moved into the closure. An ignored signal
    // stays ignored across exec, so the exec'd program keeps it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
