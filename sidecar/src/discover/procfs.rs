// SPDX-License-Identifier: Apache-2.0
//! The few /proc files discovery reads, parsed by hand (proc(5)): `stat` (parent, start time), `status`
//! (`NSpid`), the `exe` link, `cgroup` and `maps`. Parsers take the file's text so they are unit-tested on
//! captured contents; the readers name the pid in every error.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Identity of a file as the kernel sees it: uprobes attach to an inode, so two paths are the same probe
/// target exactly when they reach the same (device, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// `st_dev` in the userspace encoding (`makedev(major, minor)`).
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// stat(2) of `path`, following links (`/proc/<pid>/exe`, `/proc/<pid>/root/...` magic links included).
    pub fn of_path(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// `/proc/<pid>/stat` fields discovery needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped), `X`...
    pub state: char,
    pub ppid: u32,
    /// Field 22, in clock ticks since boot: with the pid it identifies a process across pid reuse.
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces and parentheses, so fields
/// are counted from the LAST `)` (proc(5)).
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... starttime(22) -> indexes 0, 1, ..., 19.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The innermost pid of the `NSpid:` line of `/proc/<pid>/status`: the pid as the process's own pid
/// namespace sees it (what the app logs and what a user inside the container types).
pub fn parse_ns_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last()?.parse().ok())
}

/// One file-backed line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub file: FileId,
    /// The path as the mapping process sees it (relative to its root), without the ` (deleted)` suffix.
    pub path: String,
    /// The file was unlinked or replaced after it was mapped: the path now names another file (or none).
    pub deleted: bool,
    pub executable: bool,
}

impl Mapping {
    /// `/proc/<pid>/map_files/<start>-<end>`: opens exactly the mapped inode, whatever the path now names.
    pub fn map_files_path(&self, proc_root: &Path, pid: u32) -> PathBuf {
        proc_root
            .join(pid.to_string())
            .join("map_files")
            .join(format!("{:x}-{:x}", self.start, self.end))
    }
}

/// Parses `/proc/<pid>/maps`, keeping mappings backed by a file (absolute path, inode != 0).
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<Mapping> {
    // address perms offset dev inode [path]; the path may contain spaces, so split the first five only.
    let mut parts = line.splitn(6, ' ');
    let (range, perms, offset, dev, inode) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let path = parts.next()?.trim_start();
    let ino: u64 = inode.parse().ok()?;
    if ino == 0 || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        file: FileId {
            dev: libc::makedev(
                u32::from_str_radix(major, 16).ok()?,
                u32::from_str_radix(minor, 16).ok()?,
            ),
            ino,
        },
        path: path.to_owned(),
        deleted,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
    })
}

/// The text of the `exe` link: the main executable's path inside the process's root, and whether it was
/// deleted (replaced) since the exec.
pub fn parse_exe_link(link: &Path) -> (String, bool) {
    let text = link.to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(p) => (p.to_owned(), true),
        None => (text.into_owned(), false),
    }
}

/// Reads the /proc files of one pid. `root` is normally `/proc`.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
        }
    }
}

impl Stat {
    /// The process has exited (a zombie waiting to be reaped, or being torn down): it has no memory to
    /// probe any more.
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The proc mount (`/proc`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `/proc/<pid>/<name>`.
    pub fn path(&self, pid: u32, name: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(name)
    }

    /// `/proc/<pid>/root/<path inside the process's root>`: the file the process sees at `path`, from this
    /// process's mount namespace. Never the host path: the same path here is another inode (PLATFORM.md).
    pub fn in_root(&self, pid: u32, path: &str) -> PathBuf {
        self.path(pid, "root").join(path.trim_start_matches('/'))
    }

    /// Thread-group leaders currently in /proc (threads are under /proc/<pid>/task and not listed).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    pub fn stat(&self, pid: u32) -> io::Result<Stat> {
        let text = std::fs::read_to_string(self.path(pid, "stat"))?;
        parse_stat(&text).ok_or_else(|| malformed(pid, "stat"))
    }

    pub fn ns_pid(&self, pid: u32) -> io::Result<u32> {
        let text = std::fs::read_to_string(self.path(pid, "status"))?;
        parse_ns_pid(&text).ok_or_else(|| malformed(pid, "status (NSpid)"))
    }

    /// `(path, deleted)` of the main executable; an error for kernel threads (no exe).
    pub fn exe(&self, pid: u32) -> io::Result<(String, bool)> {
        Ok(parse_exe_link(&std::fs::read_link(self.path(pid, "exe"))?))
    }

    /// Identity of the running executable (stat through the `exe` magic link: works after the file was
    /// replaced on disk).
    pub fn exe_id(&self, pid: u32) -> io::Result<FileId> {
        FileId::of_path(&self.path(pid, "exe"))
    }

    pub fn cgroup(&self, pid: u32) -> io::Result<String> {
        std::fs::read_to_string(self.path(pid, "cgroup"))
    }

    pub fn maps(&self, pid: u32) -> io::Result<Vec<Mapping>> {
        Ok(parse_maps(&std::fs::read_to_string(
            self.path(pid, "maps"),
        )?))
    }
}

fn malformed(pid: u32, file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/proc/{pid}/{file} has an unexpected format"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let text = "4242 (we(ird) name) S 17 4242 4242 0 -1 4194560 109 0 0 0 0 0 0 0 20 0 1 0 987654 2555904 \
                    200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                state: 'S',
                ppid: 17,
                start_time: 987654
            })
        );
        assert!(!parse_stat(text).unwrap().exited());
        assert!(
            parse_stat(&text.replacen(") S ", ") Z ", 1))
                .unwrap()
                .exited()
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn ns_pid_is_the_innermost_namespace() {
        let status = "Name:\tapp\nTgid:\t31337\nNSpid:\t31337\t7\nPPid:\t1\n";
        assert_eq!(parse_ns_pid(status), Some(7));
        assert_eq!(parse_ns_pid("NSpid:\t12\n"), Some(12));
        assert_eq!(parse_ns_pid("Name:\tx\n"), None);
    }

    #[test]
    fn maps_keep_file_backed_lines_with_deleted_flag_and_spaces() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /usr/bin/app
55d0c0a01000-55d0c0a02000 r-xp 00001000 fd:01 1234 /usr/bin/app
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
7f0000001000-7f0000002000 r-xp 00002000 08:02 99 /opt/my lib/libx.so (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3, "{maps:?}");
        assert_eq!(maps[0].path, "/usr/bin/app");
        assert!(!maps[0].executable);
        assert!(maps[1].executable);
        assert_eq!(maps[1].offset, 0x1000);
        assert_eq!(
            maps[1].file,
            FileId {
                dev: libc::makedev(0xfd, 1),
                ino: 1234
            }
        );
        assert_eq!(maps[2].path, "/opt/my lib/libx.so");
        assert!(maps[2].deleted);
        assert_eq!(
            maps[2].map_files_path(Path::new("/proc"), 9),
            PathBuf::from("/proc/9/map_files/7f0000001000-7f0000002000")
        );
    }

    #[test]
    fn exe_link_strips_deleted() {
        assert_eq!(
            parse_exe_link(Path::new("/app/server (deleted)")),
            ("/app/server".to_owned(), true)
        );
        assert_eq!(
            parse_exe_link(Path::new("/app/server")),
            ("/app/server".to_owned(), false)
        );
    }

    #[test]
    fn own_process_is_readable() {
        let proc = ProcFs::default();
        let me = std::process::id();
        assert!(proc.pids().unwrap().contains(&me));
        assert!(proc.stat(me).unwrap().start_time > 0);
        assert_eq!(
            proc.ns_pid(me).unwrap(),
            me,
            "/proc belongs to our own pid namespace"
        );
        let (exe, deleted) = proc.exe(me).unwrap();
        assert!(!deleted);
        assert_eq!(
            FileId::of_path(Path::new(&exe)).unwrap(),
            proc.exe_id(me).unwrap()
        );
        let maps = proc.maps(me).unwrap();
        assert!(
            maps.iter().any(|m| m.path == exe && m.executable),
            "own exe is mapped executable"
        );
        assert_eq!(
            proc.in_root(me, "/usr/lib/x"),
            PathBuf::from(format!("/proc/{me}/root/usr/lib/x"))
        );
    }
}
