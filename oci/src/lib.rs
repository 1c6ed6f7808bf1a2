// SPDX-License-Identifier: Apache-2.0
//! linkguard's registry client.
//!
//! Not implemented yet: referrers push/pull, the tag-schema fallback, auth and OCI layouts arrive with
//! the "Registry distribution" issue. The crate exists now so the workspace layout is the final one.
