// SPDX-License-Identifier: Apache-2.0
//! Makes the capabilities the kernel granted at exec effective, for the commands that probe.
//!
//! The container image runs linkguard as uid 65532, and its binary carries the file capabilities
//! `cap_bpf,cap_perfmon,cap_sys_ptrace=p`: permitted, without the effective bit (see the Dockerfile). At
//! exec the kernel puts those of them that are in the bounding set into the permitted set
//! (`pP' = fP & X`, capabilities(7)); the effective set stays empty until the program raises them, which
//! [`raise_permitted`] does. Without the effective bit the kernel also does not refuse the exec when the
//! bounding set lacks one of them (it would for a "capability-dumb" `=ep` binary), so every other command
//! of the image runs in a container without the capabilities, and `doctor` says what is missing.

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets as two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets the effective capabilities to the permitted ones. Nothing changes when they are equal (root,
/// or no file capabilities); a failure is logged and left to the probes to report.
pub fn raise_permitted() {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a version 3 header reads the calling thread's sets into two CapData.
    let got = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if got != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "capget failed");
        return;
    }
    if data.iter().all(|d| d.effective == d.permitted) {
        return;
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: capset(2) with a version 3 header reads two CapData; effective ⊆ permitted is allowed.
    let set = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if set != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot make the permitted capabilities effective"
        );
    } else {
        tracing::debug!(
            permitted = format!(
                "{:#x}",
                (u64::from(data[1].permitted) << 32) | u64::from(data[0].permitted)
            ),
            "permitted capabilities made effective"
        );
    }
}
