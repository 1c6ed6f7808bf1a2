// SPDX-License-Identifier: Apache-2.0
//! linkguard: proves, from the running process, which functions of a container actually execute.
//!
//! Data flows one way through the modules, each named after the step it owns:
//! [`function_map`] (generate / read) -> observations -> verify -> report -> attest (sign).

pub mod function_map;
pub mod observation;

/// The version written into maps and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
