//! The `promptevo` binary: parses the command line and reports errors; the work is in the library.

use std::process::ExitCode;

mod cli;
mod stderr_progress;

/// The system allocator, with the per-thread budgets that bound untrusted chat templates.
#[global_allocator]
static ALLOC: promptevo::limits::BudgetedAlloc = promptevo::limits::BudgetedAlloc;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            // A closed stdout (e.g. piped into `head`) is not an error.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            // One line, whatever the causes hold (a message may quote a file's own text).
            let text = format!("{err:#}");
            let text: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("promptevo: error: {}", text.join("; "));
            ExitCode::from(2)
        }
    }
}
