//! `edgeward check`: validates documents as the plugin's `on_configure` does, and lints them.

use super::Failure;
use clap::{Args, ValueEnum};
use edgeward::document::Document;
use edgeward::lint::Warning;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Text output: one line per error on stdout (FILE: JSON.PATH: REASON), one line per warning on stderr
(FILE: JSON.PATH: warning: WHAT (WHY)).

JSON output (--format json): one document on stdout, nothing on stderr:
  {\"ok\": BOOL, \"strict\": BOOL, \"files\": [{\"file\": FILE, \"ok\": BOOL,
    \"errors\": [{\"path\": JSON.PATH, \"reason\": TEXT}],
    \"warnings\": [{\"path\": JSON.PATH, \"what\": TEXT, \"why\": TEXT}]}]}
A file's ok is false when it has errors (with --strict: or warnings); the top ok is the exit status 0.
An error with path \"\" is about the whole file (one that cannot be read, for one).

Secrets written as {\"env\": NAME} are read from this command's environment.

Exit status: 0 every document is valid; 1 a document has errors or cannot be read (with --strict: or has
warnings); 2 usage error.";

/// Validate policy documents: errors on stdout, warnings on stderr
#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct CheckArgs {
    /// Fail (exit 1) on warnings too
    #[arg(long)]
    strict: bool,
    /// How to report: text lines, or one JSON document for CI
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Policy documents (JSON)
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// What `check` found in one file.
struct FileReport {
    file: String,
    /// The file could not be read (then it has no errors or warnings of its own).
    unreadable: Option<String>,
    /// (JSON path, reason); the path is empty for the whole document.
    errors: Vec<(String, String)>,
    warnings: Vec<Warning>,
}

impl FileReport {
    fn ok(&self, strict: bool) -> bool {
        self.unreadable.is_none() && self.errors.is_empty() && (!strict || self.warnings.is_empty())
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn check_file(path: &PathBuf) -> FileReport {
    let mut report = FileReport {
        file: path.display().to_string(),
        unreadable: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.unreadable = Some(format!("cannot read: {e}"));
            return report;
        }
    };
    if let Ok(input) = edgeward::document::parse(&text) {
        report.warnings = edgeward::lint::lint(&input);
    }
    if let Err(errors) = Document::from_json(&text, &env_lookup) {
        report.errors = errors.into_iter().map(|e| (e.path, e.reason)).collect();
    }
    report
}

pub fn check(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let reports: Vec<FileReport> = args.files.iter().map(check_file).collect();
    let ok = reports.iter().all(|r| r.ok(args.strict));
    match args.format {
        Format::Text => {
            for r in &reports {
                let f = &r.file;
                if let Some(why) = &r.unreadable {
                    println!("{f}: {why}");
                }
                for w in &r.warnings {
                    eprintln!("{f}: {}: warning: {} ({})", w.path, w.what, w.why);
                }
                for (path, reason) in &r.errors {
                    let path = if path.is_empty() { "(document)" } else { path };
                    println!("{f}: {path}: {reason}");
                }
            }
        }
        Format::Json => println!("{}", to_json(&reports, args.strict, ok)),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn to_json(reports: &[FileReport], strict: bool, ok: bool) -> Value {
    let files: Vec<Value> = reports
        .iter()
        .map(|r| {
            let unreadable = r.unreadable.iter().map(|why| ("", why.as_str()));
            let errors = r.errors.iter().map(|(p, why)| (p.as_str(), why.as_str()));
            let errors: Vec<Value> = unreadable
                .chain(errors)
                .map(|(path, reason)| json!({"path": path, "reason": reason}))
                .collect();
            let warnings: Vec<Value> = r
                .warnings
                .iter()
                .map(|w| json!({"path": w.path, "what": w.what, "why": w.why}))
                .collect();
            json!({
                "file": r.file,
                "ok": r.ok(strict),
                "errors": errors,
                "warnings": warnings,
            })
        })
        .collect();
    json!({"ok": ok, "strict": strict, "files": files})
}
