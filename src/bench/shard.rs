//! Splitting a benchmark across machines: `--shard K/N` takes every N-th run of the grid.

use std::fmt;

use crate::error::{Error, Result};

/// One machine's share of a benchmark: run `i` of the grid (in run order: seed, task, arm)
/// belongs to shard `i % count + 1`. The split depends on the benchmark file alone, so every
/// machine computes the same one and the shards' runs are disjoint and cover the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, 1-based (`K` of `K/N`).
    pub index: usize,
    /// How many shards the benchmark is split into (`N` of `K/N`).
    pub count: usize,
}

impl Shard {
    /// Parses `K/N` (1 <= K <= N); the error names `--shard` and gives an example.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--shard `{text}`: {why}; give K/N with 1 <= K <= N, e.g. --shard 1/4 for the first of four"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(|| bad("there is no `/`"))?;
        let k: usize = k
            .trim()
            .parse()
            .map_err(|_| bad("K is not a whole number"))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if n == 0 {
            return Err(bad("N must be at least 1"));
        }
        if k == 0 || k > n {
            return Err(bad("K must be between 1 and N"));
        }
        Ok(Self { index: k, count: n })
    }

    /// Whether run `run_index` (0-based, in run order) is this shard's.
    pub(crate) fn owns(&self, run_index: usize) -> bool {
        run_index % self.count + 1 == self.index
    }

    /// Folder name of this shard's own tables inside the benchmark's output folder
    /// (`shards/<K>-of-<N>`).
    pub(crate) fn folder_name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_every_run() {
        for n in 1..=5 {
            let shards: Vec<Shard> = (1..=n)
                .map(|k| Shard::parse(&format!("{k}/{n}")).unwrap())
                .collect();
            for run in 0..23 {
                let owners = shards.iter().filter(|s| s.owns(run)).count();
                assert_eq!(owners, 1, "run {run} of {n} shards");
            }
        }
        let s = Shard::parse(" 2 / 3 ").unwrap();
        assert_eq!((s.index, s.count, s.to_string()), (2, 3, "2/3".to_string()));
        assert!(s.owns(1) && s.owns(4) && !s.owns(0) && !s.owns(2));
    }

    #[test]
    fn bad_shards_are_one_line_naming_the_flag() {
        for bad in ["0/2", "3/2", "1/0", "2", "a/b", "1/x", "-1/2", ""] {
            let err = Shard::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("--shard `"), "{err}");
            assert!(err.contains("e.g. --shard 1/4"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
