//! Command-line parsing (clap) and the subcommands.

mod check;
mod eval;
mod jwks;
mod sign;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::process::ExitCode;

const EXIT_STATUS: &str = "\
Exit status:
  0  success: check: every document is valid; eval: evaluated, whatever the decision; sign, jwks:
     printed
  1  check: a document has errors or cannot be read (with --strict: or has warnings)
  2  usage error (unknown or missing option, bad value); eval, sign, jwks: a document with errors, a
     request, key or key set that cannot be read or used";

/// Check policy documents, evaluate a request as the edgeward plugin would, sign requests (RFC 9421),
/// and print the JWK Set of ed25519 keys.
#[derive(Parser)]
#[command(
    name = "edgeward",
    version,
    arg_required_else_help = true,
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Check(check::CheckArgs),
    Eval(eval::EvalArgs),
    Sign(sign::SignArgs),
    Jwks(jwks::JwksArgs),
}

/// Why a subcommand stopped (exit 2): a usage error clap did not catch, or input it cannot use.
pub enum Failure {
    Usage(clap::Error),
    Input(String),
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::Input(msg)
    }
}

impl From<&str> for Failure {
    fn from(msg: &str) -> Failure {
        Failure::Input(msg.to_string())
    }
}

/// A usage error of subcommand `sub`, reported as clap reports its own (with that subcommand's usage).
pub fn usage_error(sub: &str, kind: ErrorKind, msg: impl fmt::Display) -> Failure {
    let mut cmd = Cli::command();
    cmd.build();
    Failure::Usage(match cmd.find_subcommand_mut(sub) {
        Some(s) => s.error(kind, msg),
        None => cmd.error(kind, msg),
    })
}

pub fn main() -> ExitCode {
    // Help and --version exit 0 here, usage errors exit 2.
    let cli = Cli::try_parse().unwrap_or_else(|e| with_usage(e).exit());
    let result = match cli.command {
        Command::Check(args) => check::check(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Sign(args) => sign::sign(&args),
        Command::Jwks(args) => jwks::jwks(&args),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            // Nothing more to say if stderr is gone.
            let _ = e.print();
            ExitCode::from(2)
        }
        Err(Failure::Input(msg)) => {
            eprintln!("edgeward: {msg}");
            ExitCode::from(2)
        }
    }
}

/// clap leaves the usage out of errors about a value (`--scheme ftp`, `--request` without one); every usage
/// error shows it here, the named subcommand's.
fn with_usage(mut e: clap::Error) -> clap::Error {
    if !e.use_stderr() || e.get(ContextKind::Usage).is_some() {
        return e;
    }
    let mut cmd = Cli::command();
    cmd.build();
    let sub = std::env::args_os().nth(1);
    let usage = match sub.and_then(|s| cmd.find_subcommand_mut(s)) {
        Some(s) => s.render_usage(),
        None => cmd.render_usage(),
    };
    e.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    e
}

/// `--scheme`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    Http,
    Https,
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    }
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
