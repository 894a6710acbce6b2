//! `edgeward`: validate policy documents, evaluate a request offline exactly as the plugin would, and
//! sign requests (RFC 9421). Runs the same core as the plugin.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("edgeward: {msg}");
            ExitCode::from(2)
        }
    }
}
