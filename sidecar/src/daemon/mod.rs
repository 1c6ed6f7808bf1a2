// SPDX-License-Identifier: Apache-2.0
//! The sidecar daemon (`linkguard sidecar`): configuration, the observe/verify/sign/push loop, the spool
//! that keeps signed reports until the registry takes them, and the HTTP endpoints (health, metrics,
//! latest report).

pub mod config;
pub mod http;
pub mod metrics;
pub mod run;
pub mod spool;
