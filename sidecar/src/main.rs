// SPDX-License-Identifier: Apache-2.0
//! The linkguard command line.

fn main() {
    println!("linkguard {}", linkguard::VERSION);
}
