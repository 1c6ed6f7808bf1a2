// SPDX-License-Identifier: Apache-2.0
//! Finding the functions the kernel cannot probe inside a refused uprobe.multi link.
//!
//! One link holds every function of a file, and the kernel refuses the whole link when a single offset
//! cannot be probed: `arch_uprobe_analyze_insn` returns ENOTSUPP (524) for a first instruction it can
//! neither single-step nor emulate, and EINVAL comes back for an offset that is not an instruction
//! boundary it accepts (seen here: libcrypto functions starting with `lock addl`, which `resolve` now
//! leaves out up front). Rather than losing the whole file, the refused set is bisected: halves are
//! attached on their own until each refused offset is isolated. The links that attach are kept (closing a
//! uprobe.multi link costs 20-60 ms here, whatever its size), so the file ends up probed by a few links.

use std::path::Path;

use super::backend::{AttachPoint, BpfError, ProbeBackend, Scope};

/// The kernel's ENOTSUPP (not in libc: it is kernel-internal, yet returned by uprobe attach).
const ENOTSUPP: i32 = 524;

/// Most attach attempts one bisection may make; what is left after that is reported unprobeable without
/// isolating each offset (a file where everything fails would otherwise cost 2 attempts per function).
pub const MAX_ATTEMPTS: usize = 256;

/// Whether the kernel refused the link because of some of its offsets (not the file, the process or the
/// permissions): only then does splitting the set help.
pub fn is_point_specific(error: &BpfError) -> bool {
    match error {
        BpfError::AttachFailed {
            errno: Some(errno), ..
        } => *errno == ENOTSUPP || *errno == libc::EINVAL,
        BpfError::OffsetBeyondFile { .. } => true,
        _ => false,
    }
}

/// Splits `points` (whose link was refused with a point-specific error) into links that attached (kept),
/// the points they hold, and the points that were refused, each with the error. Errors that are not
/// point-specific (the process exited...) abort after detaching what was attached.
#[expect(
    clippy::type_complexity,
    reason = "a private result tuple, named by its one caller"
)]
pub fn split_unprobeable<B: ProbeBackend>(
    backend: &mut B,
    target: &Path,
    points: &[AttachPoint],
    scope: Scope,
    refusal: &BpfError,
) -> Result<(Vec<B::Link>, Vec<AttachPoint>, Vec<(AttachPoint, String)>), BpfError> {
    let mut links = Vec::new();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    if points.len() <= 1 {
        bad.extend(points.iter().map(|p| (*p, refusal.to_string())));
        return Ok((links, good, bad));
    }
    let mut pending = Vec::from(halves(points.to_vec(), refusal.to_string()));
    let mut attempts = 0;
    while let Some((chunk, last_error)) = pending.pop() {
        if attempts >= MAX_ATTEMPTS {
            let detail = format!(
                "{last_error} (one of {} functions; not isolated further)",
                chunk.len()
            );
            bad.extend(chunk.into_iter().map(|p| (p, detail.clone())));
            continue;
        }
        attempts += 1;
        match backend.attach(target, &chunk, scope) {
            Ok(link) => {
                links.push(link);
                good.extend(chunk);
            }
            Err(error) if is_point_specific(&error) && chunk.len() == 1 => {
                bad.extend(chunk.into_iter().map(|p| (p, error.to_string())));
            }
            Err(error) if is_point_specific(&error) => {
                pending.extend(halves(chunk, error.to_string()))
            }
            Err(error) => {
                for link in links {
                    let _ = backend.detach(link);
                }
                return Err(error);
            }
        }
    }
    good.sort_by_key(|p| p.offset);
    bad.sort_by_key(|(p, _)| p.offset);
    Ok((links, good, bad))
}

/// The two halves of a refused chunk, each to be attached on its own (the lower half is tried first).
fn halves(mut chunk: Vec<AttachPoint>, error: String) -> [(Vec<AttachPoint>, String); 2] {
    let upper = chunk.split_off(chunk.len() / 2);
    [(upper, error.clone()), (chunk, error)]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::probe::fake::FakeKernel;

    fn points(n: u64) -> Vec<AttachPoint> {
        (0..n)
            .map(|i| AttachPoint {
                offset: 0x1000 + i * 16,
                cookie: i as u32,
            })
            .collect()
    }

    #[test]
    fn the_unprobeable_offsets_are_isolated_and_the_rest_stay_attached() {
        let mut kernel = FakeKernel::new(4096);
        let path = PathBuf::from("/proc/1/root/lib.so");
        let all = points(4000);
        kernel
            .unprobeable
            .extend([all[17].offset, all[3999].offset]);
        let refusal = kernel
            .attach(&path, &all, Scope::OneProcess(1))
            .unwrap_err();
        assert!(is_point_specific(&refusal));
        let (links, good, bad) =
            split_unprobeable(&mut kernel, &path, &all, Scope::OneProcess(1), &refusal).unwrap();
        assert_eq!(
            bad.iter().map(|(p, _)| p.cookie).collect::<Vec<_>>(),
            [17, 3999]
        );
        assert_eq!(good.len(), 3998);
        assert_eq!(
            links.len(),
            kernel.links.len(),
            "the links that attached are kept"
        );
        let armed = kernel.armed(&path, 1);
        assert_eq!(armed.len(), 3998);
        assert!(!armed.contains(&all[17].offset));
        assert!(
            kernel.attaches < 80,
            "bisection, not one attach per function: {}",
            kernel.attaches
        );
    }

    #[test]
    fn a_file_where_everything_fails_is_bounded() {
        let mut kernel = FakeKernel::new(4096);
        let path = PathBuf::from("/proc/1/root/lib.so");
        let all = points(4000);
        kernel.unprobeable.extend(all.iter().map(|p| p.offset));
        let refusal = kernel
            .attach(&path, &all, Scope::OneProcess(1))
            .unwrap_err();
        let (links, good, bad) =
            split_unprobeable(&mut kernel, &path, &all, Scope::OneProcess(1), &refusal).unwrap();
        assert!(good.is_empty() && links.is_empty());
        assert_eq!(bad.len(), 4000);
        assert!(kernel.attaches <= MAX_ATTEMPTS + 1);
    }

    #[test]
    fn errors_that_are_not_about_offsets_abort_and_detach_what_was_attached() {
        let mut kernel = FakeKernel::new(64);
        let path = PathBuf::from("/proc/1/root/lib.so");
        let all = points(8);
        kernel.unprobeable.insert(all[7].offset);
        let refusal = kernel
            .attach(&path, &all, Scope::OneProcess(1))
            .unwrap_err();
        // The lower half attaches (and is kept), then the process goes away.
        kernel.refuse_after = Some((kernel.attaches + 1, path.clone()));
        assert!(
            split_unprobeable(&mut kernel, &path, &all, Scope::OneProcess(1), &refusal).is_err()
        );
        assert_eq!(kernel.detaches, 1, "the kept half was detached");
        assert!(kernel.links.is_empty(), "nothing left attached");
    }
}
