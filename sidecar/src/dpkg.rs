// SPDX-License-Identifier: Apache-2.0
//! The dpkg database of a Debian-family root filesystem: which installed package owns which file, and the
//! package's purl. Read from var/lib/dpkg/status (the installed packages) and var/lib/dpkg/info/*.list (their
//! files), as `dpkg -S` does, but through [`RootFs`] so paths resolve inside the image.
//!
//! A full root has ~100,000 list entries; canonicalizing each through the root would take seconds. Entries are
//! indexed by file name, and only the directory of an entry whose file name matches a query is canonicalized,
//! once, lazily (usrmerge: a .list says /lib/x86_64-linux-gnu/libssl.so.3, the file is
//! /usr/lib/x86_64-linux-gnu/libssl.so.3).

use std::collections::HashMap;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::rootfs::{RootFs, RootFsError};

const STATUS: &str = "/var/lib/dpkg/status";
const INFO_DIR: &str = "/var/lib/dpkg/info";

/// Reading a dpkg database failed.
#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    #[error("cannot read dpkg database file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot resolve {path} in the root filesystem: {source}")]
    Resolve {
        path: String,
        #[source]
        source: RootFsError,
    },
    #[error("dpkg status file {path}, line {line}: {problem}")]
    Parse {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// An installed Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The source package, when it differs from the binary package's name (the status file's `Source:`).
    pub source: Option<String>,
    /// `pkg:deb/<ID>/<name>@<version>?arch=<arch>[&distro=<ID>-<VERSION_ID>]`, see [`deb_purl`].
    pub purl: String,
}

/// ID and VERSION_ID of the root's os-release(5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
}

impl OsRelease {
    /// Reads /etc/os-release, else /usr/lib/os-release, of the root (both may be missing: all fields None).
    pub fn load(root: &RootFs) -> Self {
        for path in ["/etc/os-release", "/usr/lib/os-release"] {
            let Ok(canonical) = root.canonicalize(path) else {
                continue;
            };
            if let Ok(bytes) = fs::read(root.host_path(&canonical)) {
                return Self::parse(&String::from_utf8_lossy(&bytes));
            }
        }
        Self::default()
    }

    /// Parses os-release(5): shell-like `KEY=value` lines, values optionally quoted.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.trim();
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = unquote(value.trim());
            let value = (!value.is_empty()).then_some(value);
            match key.trim() {
                "ID" => out.id = value.map(|v| v.to_ascii_lowercase()),
                "VERSION_ID" => out.version_id = value,
                _ => {}
            }
        }
        out
    }

    /// The purl namespace: ID, "debian" when unknown.
    pub fn purl_namespace(&self) -> &str {
        self.id.as_deref().unwrap_or("debian")
    }

    /// The `distro` qualifier as syft and trivy write it (`debian-12`, `ubuntu-22.04`), when VERSION_ID is known.
    pub fn distro_qualifier(&self) -> Option<String> {
        Some(format!(
            "{}-{}",
            self.purl_namespace(),
            self.version_id.as_deref()?
        ))
    }
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        let inner = &value[1..value.len() - 1];
        if bytes[0] == b'"' {
            // Inside double quotes, os-release allows \" \\ \$ \` escapes.
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            return out;
        }
        return inner.to_owned();
    }
    value.to_owned()
}

/// The purl of a Debian package, as packageurl-python (the purl reference implementation) writes it:
/// `pkg:deb/<namespace>/<name>@<version>?arch=<arch>[&distro=<distro>]`, name and version percent-encoded per the
/// purl specification ("Character encoding": everything but ASCII alphanumerics, `.-_~` and `:` - so
/// `7.88.1-10+deb12u5` becomes `7.88.1-10%2Bdeb12u5` and an epoch's `1:` stays `1:`), qualifiers sorted by key.
pub fn deb_purl(
    namespace: &str,
    name: &str,
    version: &str,
    arch: &str,
    distro: Option<&str>,
) -> String {
    let mut purl = format!(
        "pkg:deb/{}/{}@{}?arch={}",
        percent_encode(namespace),
        percent_encode(name),
        percent_encode(version),
        percent_encode(arch)
    );
    if let Some(distro) = distro {
        purl.push_str("&distro=");
        purl.push_str(&percent_encode(distro));
    }
    purl
}

/// Percent-encodes a purl component: ASCII alphanumerics, `.-_~` and `:` stay, every other byte becomes %XX.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// FNV-1a: the index hashes ~100,000 short file names per load, where SipHash's DoS resistance buys
/// nothing (the keys come from the image being analysed, and a collision flood only slows that analysis).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

fn fnv(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv::default();
    hasher.write(bytes);
    hasher.finish()
}

/// Indices are u32 to halve the index's size; a database with more than 4 billion entries does not exist.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One .list entry: its file name is `texts[text][start..start + len]`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    text: u32,
    start: u32,
    len: u32,
    dir: u32,
    package: u32,
    /// Previous entry with the same file-name hash (u32::MAX: none).
    prev: u32,
}

/// File name -> .list entries, without an allocation per entry (a full root has ~100,000): the names stay
/// in the .list texts, which are kept, and entries with the same name hash form a chain in one Vec.
#[derive(Debug, Default)]
struct FileIndex {
    texts: Vec<String>,
    entries: Vec<Entry>,
    /// FNV hash of a file name -> its newest entry.
    heads: FastMap<u64, u32>,
}

impl FileIndex {
    fn push(&mut self, name: &str, text: u32, start: u32, dir: u32, package: u32) {
        let id = to_u32(self.entries.len());
        let head = self.heads.entry(fnv(name.as_bytes())).or_insert(u32::MAX);
        self.entries.push(Entry {
            text,
            start,
            len: to_u32(name.len()),
            dir,
            package,
            prev: *head,
        });
        *head = id;
    }

    fn name(&self, entry: &Entry) -> &str {
        let start = entry.start as usize;
        self.texts[entry.text as usize]
            .get(start..start + entry.len as usize)
            .unwrap_or("")
    }

    /// Entries whose file name is `name`, newest first.
    fn entries_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let mut next = self
            .heads
            .get(&fnv(name.as_bytes()))
            .copied()
            .unwrap_or(u32::MAX);
        std::iter::from_fn(move || {
            while next != u32::MAX {
                let entry = &self.entries[next as usize];
                next = entry.prev;
                if self.name(entry) == name {
                    return Some(entry);
                }
            }
            None
        })
    }
}

/// The dpkg database of one root.
pub struct DpkgDb {
    root: RootFs,
    os_release: OsRelease,
    packages: Vec<DebPackage>,
    /// Directory parts of the list entries, interned.
    dirs: Vec<String>,
    /// Canonical in-root form of each of `dirs`, computed on first use (None: does not resolve).
    canonical_dirs: Vec<OnceLock<Option<String>>>,
    /// File name -> list entries.
    files: FileIndex,
    /// Installed packages whose info/*.list is missing (they own no files as far as we can tell).
    missing_lists: Vec<String>,
}

impl std::fmt::Debug for DpkgDb {
    // The index has ~100,000 entries on a full root: a summary, not a dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpkgDb")
            .field("root", &self.root.root())
            .field("os_release", &self.os_release)
            .field("packages", &self.packages.len())
            .field("file_entries", &self.file_entries())
            .field("packages_without_file_list", &self.missing_lists.len())
            .finish()
    }
}

impl DpkgDb {
    /// Loads var/lib/dpkg/status and var/lib/dpkg/info/*.list of the root. `Ok(None)` when the root has no dpkg
    /// database (not a Debian-family root). An installed package without a .list file owns nothing (images
    /// sometimes ship a trimmed database); a malformed status file is an error.
    pub fn load(root: &RootFs) -> Result<Option<Self>, DpkgError> {
        let status_path = match root.canonicalize(STATUS) {
            Ok(path) => path,
            Err(RootFsError::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(DpkgError::Resolve {
                    path: STATUS.to_owned(),
                    source,
                });
            }
        };
        let status_host = root.host_path(&status_path);
        let status = fs::read(&status_host).map_err(|source| DpkgError::Read {
            path: status_host.clone(),
            source,
        })?;
        let entries = parse_status(&String::from_utf8_lossy(&status), &status_host)?;
        let os_release = OsRelease::load(root);
        let distro = os_release.distro_qualifier();
        let packages: Vec<DebPackage> = entries
            .into_iter()
            .map(|e| DebPackage {
                purl: deb_purl(
                    os_release.purl_namespace(),
                    &e.name,
                    &e.version,
                    &e.architecture,
                    distro.as_deref(),
                ),
                name: e.name,
                version: e.version,
                architecture: e.architecture,
                source: e.source,
            })
            .collect();

        let mut db = DpkgDb {
            root: root.clone(),
            os_release,
            packages,
            dirs: Vec::new(),
            canonical_dirs: Vec::new(),
            files: FileIndex::default(),
            missing_lists: Vec::new(),
        };
        let info_dir = ListDir::open(root)?;
        let mut dir_ids: FastMap<String, u32> = FastMap::default();
        for index in 0..db.packages.len() {
            let text = match &info_dir {
                Some(info) => db.read_list(info, index)?,
                None => None,
            };
            let Some(text) = text else {
                db.missing_lists.push(db.packages[index].name.clone());
                continue;
            };
            db.index_list(text, index, &mut dir_ids);
        }
        db.canonical_dirs = (0..db.dirs.len()).map(|_| OnceLock::new()).collect();
        if !db.missing_lists.is_empty() {
            tracing::debug!(
                packages = db.missing_lists.len(),
                "installed packages without an info/*.list file own no files"
            );
        }
        Ok(Some(db))
    }

    /// Adds one package's .list entries to the file-name index.
    fn index_list(&mut self, text: String, index: usize, dir_ids: &mut FastMap<String, u32>) {
        let package = to_u32(index);
        let text_id = to_u32(self.files.texts.len());
        // Entries are grouped by directory, so the previous line's directory is usually this one's.
        let mut last: Option<(&str, u32)> = None;
        let mut offset = 0usize;
        for raw in text.split_inclusive('\n') {
            let line_start = offset;
            offset += raw.len();
            let line = raw.trim_end_matches(['\n', '\r']);
            let Some((dir, file)) = line.rsplit_once('/') else {
                continue;
            };
            if file.is_empty() || file == "." {
                continue;
            }
            let dir = if dir.is_empty() { "/" } else { dir };
            let dir_id = match last {
                Some((last_dir, id)) if last_dir == dir => id,
                _ => match dir_ids.get(dir) {
                    Some(&id) => id,
                    None => {
                        let id = to_u32(self.dirs.len());
                        self.dirs.push(dir.to_owned());
                        dir_ids.insert(dir.to_owned(), id);
                        id
                    }
                },
            };
            last = Some((dir, dir_id));
            let start = line_start + line.len() - file.len();
            self.files
                .push(file, text_id, to_u32(start), dir_id, package);
        }
        self.files.texts.push(text);
    }

    /// info/<name>:<arch>.list (Multi-Arch: same packages) or info/<name>.list; None when neither exists.
    fn read_list(&self, info: &ListDir, index: usize) -> Result<Option<String>, DpkgError> {
        let package = &self.packages[index];
        for file in [
            format!("{}:{}.list", package.name, package.architecture),
            format!("{}.list", package.name),
        ] {
            let Some(&is_symlink) = info.names.get(&file) else {
                continue;
            };
            let in_root = format!("{}/{file}", info.canonical);
            let path = if is_symlink {
                // A link in the info directory must not lead out of the root either.
                let canonical =
                    self.root
                        .canonicalize(&in_root)
                        .map_err(|source| DpkgError::Resolve {
                            path: in_root,
                            source,
                        })?;
                self.root.host_path(&canonical)
            } else {
                self.root.host_path(&in_root)
            };
            let bytes = fs::read(&path).map_err(|source| DpkgError::Read { path, source })?;
            return Ok(Some(String::from_utf8(bytes).unwrap_or_else(|e| {
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            })));
        }
        Ok(None)
    }

    /// The installed package that owns a file, by canonical in-root path. List entries are matched through
    /// the root (an entry /lib/x86_64-linux-gnu/libssl.so.3 owns /usr/lib/x86_64-linux-gnu/libssl.so.3 when
    /// /lib -> usr/lib). When several packages list the file, the first in the status file wins.
    pub fn owner(&self, canonical_path: &str) -> Option<&DebPackage> {
        let (dir, file) = canonical_path.rsplit_once('/')?;
        let dir = if dir.is_empty() { "/" } else { dir };
        // The chain runs newest first: the last match is the first package in status-file order.
        let mut owner = None;
        for entry in self.files.entries_named(file) {
            if self.dir_matches(entry.dir, dir) {
                owner = Some(entry.package);
            }
        }
        owner.map(|package| &self.packages[package as usize])
    }

    fn dir_matches(&self, dir_id: u32, canonical_dir: &str) -> bool {
        let raw = &self.dirs[dir_id as usize];
        // A path equal to a canonical path is itself canonical: no need to resolve it.
        if raw == canonical_dir {
            return true;
        }
        let resolved =
            self.canonical_dirs[dir_id as usize].get_or_init(|| self.root.canonicalize(raw).ok());
        resolved.as_deref() == Some(canonical_dir)
    }

    /// The installed packages, in status-file order.
    pub fn packages(&self) -> &[DebPackage] {
        &self.packages
    }

    /// An installed package by name (and architecture, when given).
    pub fn package(&self, name: &str, architecture: Option<&str>) -> Option<&DebPackage> {
        self.packages
            .iter()
            .find(|p| p.name == name && architecture.is_none_or(|a| a == p.architecture))
    }

    /// The root's os-release identity used for purls.
    pub fn os_release(&self) -> &OsRelease {
        &self.os_release
    }

    /// Installed packages that have no info/*.list file.
    pub fn packages_without_file_list(&self) -> &[String] {
        &self.missing_lists
    }

    /// Number of indexed list entries.
    pub fn file_entries(&self) -> usize {
        self.files.entries.len()
    }
}

/// The info directory: its canonical in-root path and the names in it (one read_dir instead of a failed
/// lookup per package without a Multi-Arch qualified list).
struct ListDir {
    canonical: String,
    /// .list file name -> whether it is a symlink (from the directory entry's type: no extra syscall).
    names: HashMap<String, bool>,
}

impl ListDir {
    fn open(root: &RootFs) -> Result<Option<Self>, DpkgError> {
        let canonical = match root.canonicalize(INFO_DIR) {
            Ok(dir) => dir,
            Err(RootFsError::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(DpkgError::Resolve {
                    path: INFO_DIR.to_owned(),
                    source,
                });
            }
        };
        let host = root.host_path(&canonical);
        let entries = fs::read_dir(&host).map_err(|source| DpkgError::Read {
            path: host.clone(),
            source,
        })?;
        let mut names = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| DpkgError::Read {
                path: host.clone(),
                source,
            })?;
            if let Ok(name) = entry.file_name().into_string()
                && name.ends_with(".list")
            {
                let is_symlink = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
                names.insert(name, is_symlink);
            }
        }
        Ok(Some(ListDir { canonical, names }))
    }
}

/// One installed package from the status file.
#[derive(Debug)]
struct StatusEntry {
    name: String,
    version: String,
    architecture: String,
    source: Option<String>,
}

/// Parses the deb822 status file and keeps installed packages: `Status: <want> ok installed` (held and
/// to-be-removed packages are installed too; half-installed, config-files and not-installed ones are not).
fn parse_status(text: &str, path: &std::path::Path) -> Result<Vec<StatusEntry>, DpkgError> {
    #[derive(Default)]
    struct Stanza<'a> {
        start: usize,
        package: Option<&'a str>,
        status: Option<&'a str>,
        version: Option<&'a str>,
        architecture: Option<&'a str>,
        source: Option<&'a str>,
    }
    let error = |line: usize, problem: String| DpkgError::Parse {
        path: path.to_owned(),
        line,
        problem,
    };
    let finish = |stanza: Stanza<'_>, out: &mut Vec<StatusEntry>| -> Result<(), DpkgError> {
        let name = stanza
            .package
            .ok_or_else(|| error(stanza.start, "stanza has no Package field".to_owned()))?;
        let mut status = stanza.status.unwrap_or("").split_whitespace();
        let (_want, flag, state) = (status.next(), status.next(), status.next());
        if flag != Some("ok") || state != Some("installed") {
            return Ok(());
        }
        let missing = |field: &str| {
            error(
                stanza.start,
                format!("installed package {name} has no {field} field"),
            )
        };
        let version = stanza.version.ok_or_else(|| missing("Version"))?;
        let architecture = stanza.architecture.ok_or_else(|| missing("Architecture"))?;
        // "Source: glibc (2.36-9)" names the source package and, when it differs, its version.
        let source = stanza
            .source
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| *s != name)
            .map(str::to_owned);
        out.push(StatusEntry {
            name: name.to_owned(),
            version: version.to_owned(),
            architecture: architecture.to_owned(),
            source,
        });
        Ok(())
    };

    let mut out = Vec::new();
    let mut stanza: Option<Stanza<'_>> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            if let Some(done) = stanza.take() {
                finish(done, &mut out)?;
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation of a multi-line field (Description, Conffiles): not needed.
            if stanza.is_none() {
                return Err(error(
                    number,
                    "continuation line outside of a stanza".to_owned(),
                ));
            }
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(error(
                number,
                format!("expected `Field: value`, found {line:?}"),
            ));
        };
        let current = stanza.get_or_insert_with(|| Stanza {
            start: number,
            ..Stanza::default()
        });
        let value = Some(value.trim());
        // deb822 field names are case-insensitive.
        let field = field.trim();
        if field.eq_ignore_ascii_case("Package") {
            current.package = value;
        } else if field.eq_ignore_ascii_case("Status") {
            current.status = value;
        } else if field.eq_ignore_ascii_case("Version") {
            current.version = value;
        } else if field.eq_ignore_ascii_case("Architecture") {
            current.architecture = value;
        } else if field.eq_ignore_ascii_case("Source") {
            current.source = value;
        }
    }
    // The last stanza may end without a trailing newline or blank line.
    if let Some(done) = stanza.take() {
        finish(done, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
