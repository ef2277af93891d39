//! The `guardduty-operator` binary: the command line of [`guardduty_operator::cli`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use guardduty_operator::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(Cli::parse()).await
}
