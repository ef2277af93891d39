//! Running the real binary in tests: a hermetic AWS environment (fake credentials,
//! endpoints given), off the async runtime so in-process emulators keep serving.
#![allow(dead_code)]

use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_guardduty-operator");

/// A hermetic AWS environment for the binary: fake credentials, no profile or
/// instance metadata, endpoints as given (STS with EC2, as both are moto's).
pub fn command(ec2: &str, guardduty: &str, args: &[&str]) -> Command {
    command_with_sts(ec2, ec2, guardduty, args)
}

pub fn command_with_sts(sts: &str, ec2: &str, guardduty: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_ENDPOINT_URL_STS", sts)
        .env("AWS_ENDPOINT_URL_EC2", ec2)
        .env("AWS_ENDPOINT_URL_GUARDDUTY", guardduty)
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs the binary off the async runtime, which keeps serving the in-process
/// GuardDuty emulator meanwhile.
pub async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run the binary"))
        .await
        .expect("the blocking task finishes")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn status(output: &Output) -> i32 {
    output
        .status
        .code()
        .expect("the command exits with a status")
}
