// SPDX-License-Identifier: Apache-2.0
//! linkguard's eBPF side.
//!
//! Not implemented yet: the uprobe.multi programs, their loader and the counter API arrive with the
//! "Kernel probing" issue. The crate exists now so the workspace layout is the final one.
