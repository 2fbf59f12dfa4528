//! What the library reports while it works, and who hears it. The library sends each
//! [`Event`] to the [`Progress`] it was given and never writes to stderr itself; the binary
//! decides how to show them (lines on stderr, a progress bar on a terminal) and what `--quiet`
//! hides. A leaf: it imports nothing of the crate.

use std::fmt::{self, Display};
use std::path::Path;

/// Something worth telling while a command runs.
pub enum Event<'a> {
    /// A model file was loaded.
    ModelLoaded {
        /// The model's name (its file name).
        name: &'a str,
        /// Seconds the load took.
        seconds: f64,
    },
    /// The scoring server was connected.
    ScoringServer {
        /// Its base URL.
        url: &'a str,
        /// The model it serves.
        model: &'a str,
        /// Requests kept in flight.
        concurrency: usize,
        /// How it is asked for scores.
        method: &'a str,
    },
    /// The server that model-driven operators write through was connected.
    WritingServer {
        /// Its base URL.
        url: &'a str,
        /// The model it serves.
        model: &'a str,
    },
    /// A search begins.
    SearchStarted {
        /// The task's name.
        task: &'a str,
        /// The strategy's name.
        strategy: &'a str,
        /// Initial prompts.
        initial_prompts: usize,
        /// Prompts per generation.
        population: usize,
        /// Dev examples per candidate.
        dev: usize,
        /// The budget in example evaluations, when there is one.
        budget: Option<u64>,
        /// The run folder.
        folder: &'a Path,
        /// About how many example evaluations the search will make (a progress bar's length).
        expected_evaluations: u64,
    },
    /// A candidate was scored on some examples of a pool.
    Evaluated {
        /// The candidate's id.
        id: u64,
        /// Its generation.
        generation: usize,
        /// The operator that made it.
        operator: &'a str,
        /// The pool (dev, validation, train).
        pool: &'a dyn Display,
        /// Its mean metric on what it was scored on so far.
        accuracy: f64,
        /// Its mean fitness on that.
        fitness: f64,
        /// Examples it was scored on so far.
        n: usize,
        /// Examples scored this time.
        examples: usize,
        /// Whether this completes its scoring on the pool (a line-by-line log shows only these).
        complete: bool,
        /// Example forward passes the scorer has made so far.
        passes: u64,
        /// Seconds since the search began.
        seconds: f64,
        /// The best dev fitness so far.
        best: f64,
    },
    /// A logged evaluation of an interrupted run was replayed instead of scored again.
    Replayed {
        /// Examples it covered.
        examples: usize,
        /// The best dev fitness so far.
        best: f64,
    },
    /// A generation ended (reported when its population is not empty).
    GenerationDone {
        /// The generation.
        generation: usize,
        /// Its best member: (dev fitness, id, accuracy).
        best: (f64, u64, f64),
        /// Seconds since the search began.
        seconds: f64,
    },
    /// The search stopped; the initial and best prompts are scored on test next.
    SearchDone {
        /// Seconds the search took.
        seconds: f64,
        /// Why it stopped.
        stop: &'a dyn Display,
        /// Test examples scored next.
        test_examples: usize,
    },
    /// A peer's driver starts (a benchmark's peer arm).
    PeerStarted {
        /// The peer's name.
        peer: &'a str,
        /// The task's name.
        task: &'a str,
        /// The run's seed.
        seed: u64,
        /// The driver script.
        driver: &'a Path,
    },
    /// One run of a benchmark finished, was found finished, or could not run: its line.
    BenchRun(&'a str),
    /// Something that must be seen even with `--quiet`.
    Warning(&'a str),
}

impl Event<'_> {
    /// Whether `--quiet` still shows it: loads, connections, benchmark runs and warnings are
    /// always shown; the search's own progress is not.
    pub fn always_shown(&self) -> bool {
        matches!(
            self,
            Event::ModelLoaded { .. }
                | Event::ScoringServer { .. }
                | Event::WritingServer { .. }
                | Event::BenchRun(_)
                | Event::Warning(_)
        )
    }
}

impl Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ModelLoaded { name, seconds } => write!(f, "loaded {name} in {seconds:.2} s"),
            Event::ScoringServer {
                url,
                model,
                concurrency,
                method,
            } => write!(
                f,
                "scoring through {url} ({model}), {concurrency} requests in flight; method {method}"
            ),
            Event::WritingServer { url, model } => {
                write!(f, "model-driven operators write through {url} ({model})")
            }
            Event::SearchStarted {
                task,
                strategy,
                initial_prompts,
                population,
                dev,
                budget,
                folder,
                ..
            } => write!(
                f,
                "optimising {task} with {strategy} ({initial_prompts} initial prompts, population {population}, {dev} dev examples{}) -> {}",
                budget
                    .map(|m| format!(", budget {m} example evaluations"))
                    .unwrap_or_default(),
                folder.display()
            ),
            Event::Evaluated {
                id,
                generation,
                operator,
                pool,
                accuracy,
                fitness,
                n,
                passes,
                seconds,
                ..
            } => write!(
                f,
                "  #{id:<4} gen {generation} {operator:<12} {pool} {:>5.1}% (fitness {fitness:.3}, n {n})  [{passes} passes, {:.1} ex/s]",
                100.0 * accuracy,
                *passes as f64 / seconds.max(1e-9)
            ),
            Event::GenerationDone {
                generation,
                best,
                seconds,
            } => write!(
                f,
                "generation {generation} done: best dev fitness {:.3} (#{}, accuracy {:.1}%), {seconds:.0} s elapsed",
                best.0,
                best.1,
                100.0 * best.2
            ),
            Event::SearchDone {
                seconds,
                stop,
                test_examples,
            } => write!(
                f,
                "search done in {seconds:.1} s ({stop}); scoring the initial and best prompts on {test_examples} test examples"
            ),
            Event::PeerStarted {
                peer,
                task,
                seed,
                driver,
            } => write!(
                f,
                "peer {peer} on {task} (seed {seed}): running {}",
                driver.display()
            ),
            Event::Replayed { examples, .. } => {
                write!(f, "  replayed a logged evaluation of {examples} examples")
            }
            Event::BenchRun(line) => f.write_str(line),
            Event::Warning(text) => write!(f, "warning: {text}"),
        }
    }
}

/// Who hears the library's events (`Send + Sync`: it may be shared between threads).
pub trait Progress: Send + Sync {
    /// Takes one event.
    fn event(&self, event: &Event<'_>);
}

/// Hears nothing (library use and tests that want silence).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _event: &Event<'_>) {}
}
