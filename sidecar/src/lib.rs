// SPDX-License-Identifier: Apache-2.0
//! linkguard: proves, from the running process, which functions of a container actually execute.
//!
//! Data flows one way through the modules, each named after the step it owns:
//!
//! ```text
//! sbom + rootfs + elf + catalog -> generate -> function_map
//! function_map + observation -> verify -> report -> attest (DSSE, Sigstore bundle)
//! ```

pub mod attest;
pub mod catalog;
pub mod chain;
pub mod daemon;
pub mod discover;
pub mod doctor;
pub mod dpkg;
pub mod elf;
pub mod function_map;
pub mod generate;
pub mod inject;
pub mod observation;
pub mod probe;
pub mod report;
pub mod rootfs;
pub mod sbom;
pub mod verify;

/// The version written into maps and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
