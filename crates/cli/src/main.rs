//! `verity`: run a node or a local devnet, publish and fetch models, request inferences and
//! verify receipts offline. Each command lives in its own file under `commands/`.

mod client;
mod commands;
mod devnet;
mod fetch;
mod registry;

use clap::{Parser, Subcommand};
use commands::{
    chat, infer, ledger, model, node, prove, receipt, run, status, verify, verify_inclusion,
    verify_proof, Ctx,
};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "verity",
    version,
    about = "Verity: hosted, verified AI inference"
)]
struct Cli {
    /// Node API to talk to.
    #[arg(
        long,
        global = true,
        env = "VERITY_NODE",
        default_value = "http://127.0.0.1:7070"
    )]
    node: String,
    /// Client key file (created on first use); signs requests and publications.
    #[arg(long, global = true, env = "VERITY_KEY")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Devnet(commands::devnet::DevnetArgs),
    Node(node::NodeArgs),
    #[command(subcommand)]
    Model(model::ModelCommand),
    Infer(infer::InferArgs),
    Chat(chat::ChatArgs),
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    Receipt(receipt::ReceiptArgs),
    /// Show the node's health: key, version, model and receipt counts.
    Status,
    Run(run::RunArgs),
    Prove(prove::ProveArgs),
    VerifyProof(verify_proof::VerifyProofArgs),
    VerifyInclusion(verify_inclusion::VerifyInclusionArgs),
    Verify(verify::VerifyArgs),
}

fn main() {
    let cli = Cli::parse();
    let ctx = Ctx::new(cli.node, cli.key);
    let result = match cli.command {
        Command::Devnet(c) => c.execute(&ctx),
        Command::Node(c) => c.execute(),
        Command::Model(c) => c.execute(&ctx),
        Command::Infer(c) => c.execute(&ctx),
        Command::Chat(c) => c.execute(&ctx),
        Command::Ledger(c) => c.execute(&ctx),
        Command::Receipt(c) => c.execute(&ctx),
        Command::Status => status::execute(&ctx),
        Command::Run(c) => c.execute(),
        Command::Prove(c) => c.execute(),
        Command::VerifyProof(c) => c.execute(),
        Command::VerifyInclusion(c) => c.execute(),
        Command::Verify(c) => c.execute(&ctx),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command's arguments are consistent: no name clashes between a subcommand's
    /// arguments and the global ones (`ledger account KEY` once clashed with `--key`).
    #[test]
    fn command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
