//! Going to the background only once the mount is live, and the signal
//! thread that unmounts on SIGTERM/SIGINT/SIGHUP.
//!
//! [`background`] must run before the process starts any thread (fork
//! copies only the calling thread). The parent then waits on a pipe for one
//! status byte from the child: `0` = the FUSE mount is live (the parent
//! exits 0, so `rump_x ... /mnt && ls /mnt` works), `1` followed by a
//! message = the mount failed (the parent prints it and exits 1). A child
//! that dies without a word makes the parent exit 1 as well.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The child's end of the status pipe (or nothing in the foreground).
#[derive(Debug)]
pub struct Status {
    pipe: Option<File>,
}

impl Status {
    /// A foreground server: nobody waits for a status.
    pub fn foreground() -> Status {
        Status { pipe: None }
    }

    /// The mount is live: tell the parent, then detach from the terminal
    /// (stdin, stdout and stderr to /dev/null; run in the foreground with
    /// `-f` to keep the log).
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[0]);
            drop(p);
            redirect_to_null();
        }
    }

    /// The mount failed: hand the parent the message (in the foreground,
    /// print it).
    pub fn fail(&mut self, msg: &str) {
        match self.pipe.take() {
            Some(mut p) => {
                let mut b = vec![1u8];
                b.extend_from_slice(msg.as_bytes());
                let _ = p.write_all(&b);
            }
            None => eprintln!("{msg}"),
        }
    }
}

fn redirect_to_null() {
    // SAFETY: plain descriptor calls on a path we own; dup2 onto 0/1/2.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// Fork. In the parent, wait for the child's status and exit (never
/// returns). In the child, start a new session and return the status pipe.
///
/// Must be called while the process has a single thread.
pub fn background(prog: &str) -> io::Result<Status> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here only.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the caller guarantees a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(r);
        // SAFETY: no preconditions.
        unsafe { libc::setsid() };
        return Ok(Status {
            pipe: Some(File::from(w)),
        });
    }
    drop(w);
    let mut f = File::from(r);
    let mut buf = Vec::new();
    let mut first = [0u8; 1];
    let n = loop {
        match f.read(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break 0,
        }
    };
    if n == 1 && first[0] == 0 {
        std::process::exit(0);
    }
    if n == 1 {
        let _ = f.read_to_end(&mut buf);
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if n == 1 {
        eprintln!("{}", String::from_utf8_lossy(&buf));
    } else {
        let how = if libc::WIFSIGNALED(st) {
            format!("killed by signal {}", libc::WTERMSIG(st))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(st))
        };
        eprintln!("{prog}: the server ended before the mount was live ({how})");
    }
    std::process::exit(1);
}

/// The signals that end a server.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Block the stop signals in the calling thread, so every thread started
/// afterwards inherits the mask and only [`signal_thread`] receives them.
/// Call before starting any thread.
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: set is initialised.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Start the thread that waits for SIGTERM/SIGINT/SIGHUP and calls
/// `on_signal` for each (the server unmounts there; `run` then returns).
pub fn signal_thread(on_signal: impl Fn(i32) + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let set = stop_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: set is initialised; sig receives the signal number.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                on_signal(sig);
            }
        })?;
    Ok(())
}
