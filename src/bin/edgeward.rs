//! `edgeward`: validate policy documents, evaluate a request offline exactly as the plugin would, and
//! sign requests (RFC 9421). Runs the same core as the plugin.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

/// The command is native only (its argument parser is not built for wasm32); the plugin is the library.
#[cfg(target_arch = "wasm32")]
fn main() -> std::process::ExitCode {
    eprintln!("edgeward: the command runs natively; the plugin is the library's .wasm");
    std::process::ExitCode::from(2)
}
