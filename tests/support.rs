// SPDX-License-Identifier: Apache-2.0
//! Shared helpers of the integration tests.
