// SPDX-License-Identifier: Apache-2.0
//! Starting a command with the probes already attached (`observe -- CMD`).
//!
//! The child is forked and waits on a pipe BEFORE exec, so the parent can attach uprobes scoped to the
//! child's pid while nothing of the command has run; then the parent releases it. This cannot use
//! `std::process::Command::pre_exec`: `spawn` itself waits until the child has exec'd (it reads the exec
//! error pipe), so a child blocked before exec would deadlock it. Between fork and exec the child calls only
//! async-signal-safe functions (read, close, execve, write, _exit) on data prepared before the fork.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Starting or waiting for the command failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("command {program} not found in PATH (or not executable)")]
    NotFound { program: String },
    #[error("command argument {argument:?} contains a NUL byte")]
    NulByte { argument: String },
    #[error("{call} failed while starting {program}: {source}")]
    Sys {
        call: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("executing {program} failed: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Code(i32),
    Signal(i32),
}

impl ChildExit {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ChildExit::Code(code) => code,
            ChildExit::Signal(signal) => 128 + signal,
        }
    }
}

/// A forked child waiting to exec its command.
#[derive(Debug)]
pub struct HeldChild {
    pid: u32,
    program: PathBuf,
    release: OwnedFd,
    exec_error: OwnedFd,
}

/// A running (released) child.
#[derive(Debug)]
pub struct RunningChild {
    pid: u32,
    exit: Option<ChildExit>,
}

/// Finds `program` like execvp(3): a path with a slash is used as is, else the first executable in PATH.
pub fn resolve_program(program: &OsStr) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return is_exec(&path).then_some(path);
    }
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_exec(p))
}

fn cstring(arg: &OsStr) -> Result<CString, LaunchError> {
    CString::new(arg.as_bytes()).map_err(|_| LaunchError::NulByte {
        argument: arg.to_string_lossy().into_owned(),
    })
}

fn pipe(program: &str) -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array on success; both are owned here from then on.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if ret != 0 {
        return Err(LaunchError::Sys {
            call: "pipe2",
            program: program.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the fds were just created by pipe2 and are not owned by anything else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child that will exec `program args...` (environment inherited) once released.
pub fn spawn_held(program: &OsStr, args: &[OsString]) -> Result<HeldChild, LaunchError> {
    let name = program.to_string_lossy().into_owned();
    let path = resolve_program(program).ok_or_else(|| LaunchError::NotFound {
        program: name.clone(),
    })?;
    let c_path = cstring(path.as_os_str())?;
    let c_args: Vec<CString> = std::iter::once(cstring(program))
        .chain(args.iter().map(|a| cstring(a)))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let (release_r, release_w) = pipe(&name)?;
    let (error_r, error_w) = pipe(&name)?;

    // SAFETY: fork(2) duplicates the process; the child branch below only calls async-signal-safe
    // functions on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Sys {
            call: "fork",
            program: name,
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only (see above); never returns.
        unsafe {
            child_after_fork(
                release_r.as_raw_fd(),
                release_w.as_raw_fd(),
                error_r.as_raw_fd(),
                error_w.as_raw_fd(),
                &c_path,
                &argv,
            )
        }
    }
    drop(release_r);
    drop(error_w);
    Ok(HeldChild {
        pid: pid as u32,
        program: path,
        release: release_w,
        exec_error: error_r,
    })
}

/// The child: wait for the release byte, exec, or report errno and exit 127.
///
/// # Safety
/// Must only run in the child right after fork(); `argv` must be NULL-terminated pointers into live CStrings.
unsafe fn child_after_fork(
    release_r: i32,
    release_w: i32,
    error_r: i32,
    error_w: i32,
    path: &CString,
    argv: &[*const libc::c_char],
) -> ! {
    // SAFETY: plain syscalls on fds this process owns; the buffers are valid for their lengths.
    unsafe {
        libc::close(release_w);
        libc::close(error_r);
        let mut byte = 0u8;
        loop {
            let n = libc::read(release_r, (&raw mut byte).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // The parent went away without releasing us: do not run the command unobserved.
            libc::_exit(126);
        }
        libc::execv(path.as_ptr(), argv.as_ptr());
        let errno = *libc::__errno_location();
        libc::write(
            error_w,
            (&raw const errno).cast(),
            std::mem::size_of::<i32>(),
        );
        libc::_exit(127)
    }
}

impl HeldChild {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The resolved executable path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Lets the child exec; returns once the exec succeeded (or with its error).
    pub fn release(self) -> Result<RunningChild, LaunchError> {
        let program = self.program.display().to_string();
        let byte = 1u8;
        // SAFETY: writes one byte from a valid buffer to a pipe fd we own.
        let n = unsafe { libc::write(self.release.as_raw_fd(), (&raw const byte).cast(), 1) };
        if n != 1 {
            return Err(LaunchError::Sys {
                call: "write",
                program,
                source: std::io::Error::last_os_error(),
            });
        }
        // The error pipe closes on a successful exec (O_CLOEXEC) or carries the exec errno.
        let mut errno = 0i32;
        let n = loop {
            // SAFETY: reads at most 4 bytes into a live i32 from a pipe fd we own.
            let n = unsafe { libc::read(self.exec_error.as_raw_fd(), (&raw mut errno).cast(), 4) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        let mut running = RunningChild {
            pid: self.pid,
            exit: None,
        };
        if n == 4 {
            let _ = running.wait();
            return Err(LaunchError::Exec {
                program,
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
        Ok(running)
    }
}

impl RunningChild {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reaps the child if it has exited (non-blocking).
    pub fn try_wait(&mut self) -> Option<ChildExit> {
        self.reap(libc::WNOHANG)
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> Option<ChildExit> {
        self.reap(0)
    }

    fn reap(&mut self, flags: i32) -> Option<ChildExit> {
        if self.exit.is_some() {
            return self.exit;
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid status pointer.
            let ret = unsafe { libc::waitpid(self.pid as i32, &mut status, flags) };
            if ret < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            }
            if ret != self.pid as i32 {
                return None;
            }
            break;
        }
        self.exit = Some(if libc::WIFSIGNALED(status) {
            ChildExit::Signal(libc::WTERMSIG(status))
        } else {
            ChildExit::Code(libc::WEXITSTATUS(status))
        });
        self.exit
    }

    /// Sends `signal` to the child (if it has not been reaped).
    pub fn signal(&self, signal: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own unreaped child: the pid cannot have been reused.
            unsafe { libc::kill(self.pid as i32, signal) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_does_not_run_before_release_and_reports_its_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let script = format!("touch {}; exit 3", marker.display());
        let held = spawn_held(OsStr::new("sh"), &["-c".into(), script.into()]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!marker.exists(), "the command ran before it was released");
        let mut running = held.release().unwrap();
        assert_eq!(running.wait(), Some(ChildExit::Code(3)));
        assert!(marker.exists());
    }

    #[test]
    fn exec_failure_and_missing_programs_are_errors() {
        assert!(matches!(
            spawn_held(OsStr::new("no-such-program-lg"), &[]),
            Err(LaunchError::NotFound { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad");
        // Written by a child process: a write fd held here could be inherited by a child that another
        // test forks meanwhile, and exec would then fail with ETXTBSY instead of ENOEXEC.
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '\\177ELF not really' > \"$1\" && chmod 755 \"$1\"",
                "sh",
            ])
            .arg(&bad)
            .status()
            .unwrap();
        assert!(status.success());
        let held = spawn_held(bad.as_os_str(), &[]).unwrap();
        let err = held.release().unwrap_err();
        assert!(err.to_string().contains("Exec format error"), "{err}");
    }

    #[test]
    fn a_child_never_released_exits_without_running_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let held = spawn_held(OsStr::new("touch"), &[marker.clone().into_os_string()]).unwrap();
        let pid = held.pid() as i32;
        drop(held);
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(libc::WEXITSTATUS(status), 126);
        assert!(!marker.exists());
    }
}
