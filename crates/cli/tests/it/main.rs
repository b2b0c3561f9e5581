//! The `verity` binary end to end, as one test binary (one link of node, ledger, zk and the
//! engines instead of one per file).

mod chat;
mod cli;
mod common;
mod network;
mod qemu;
mod zk;
