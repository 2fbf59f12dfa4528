//! The binary's [`Progress`]: the library's events as lines on stderr, or a progress bar while
//! a search runs on a terminal; `--quiet` keeps only what must be seen (loads, connections,
//! benchmark runs, warnings).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use promptevo::progress::{Event, Progress};

/// Shows events on stderr.
pub struct StderrProgress {
    quiet: bool,
    /// The bar of the search running now, when stderr is a terminal.
    bar: Mutex<Option<ProgressBar>>,
}

impl StderrProgress {
    /// Shows every event, or with `quiet` only those [`Event::always_shown`].
    pub fn new(quiet: bool) -> Arc<Self> {
        Arc::new(Self {
            quiet,
            bar: Mutex::new(None),
        })
    }
}

/// A bar for about `evaluations` example evaluations.
fn search_bar(evaluations: u64) -> ProgressBar {
    let bar = ProgressBar::new(evaluations);
    let style = ProgressStyle::with_template(
        "gen {prefix} [{bar:30}] {pos}/{len} evaluations, {per_sec}, best dev {msg}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix("0");
    bar
}

impl Progress for StderrProgress {
    fn event(&self, event: &Event<'_>) {
        if self.quiet && !event.always_shown() {
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match (event, bar.as_ref()) {
            (
                Event::SearchStarted {
                    expected_evaluations,
                    ..
                },
                _,
            ) => {
                eprintln!("{event}");
                if std::io::stderr().is_terminal() {
                    *bar = Some(search_bar(*expected_evaluations));
                }
            }
            (Event::Evaluated { examples, best, .. }, Some(b)) => {
                b.inc(*examples as u64);
                b.set_message(format!("{best:.3}"));
            }
            (Event::Evaluated { complete, .. }, None) => {
                if *complete {
                    eprintln!("{event}");
                }
            }
            (Event::Replayed { examples, .. }, Some(b)) => b.inc(*examples as u64),
            (Event::Replayed { .. }, None) => {}
            (Event::GenerationDone { generation, .. }, Some(b)) => {
                b.set_prefix((generation + 1).to_string())
            }
            (Event::SearchDone { .. }, _) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                eprintln!("{event}");
            }
            (_, Some(b)) => b.suspend(|| eprintln!("{event}")),
            (_, None) => eprintln!("{event}"),
        }
    }
}

impl Drop for StderrProgress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            b.finish_and_clear();
        }
    }
}
