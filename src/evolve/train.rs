//! The train pool operators read: the train examples demonstrations are drawn from (a genome
//! keeps them as ids into this pool), each with its demonstration as the task renders it, and
//! the input-output pairs instruction induction and OPRO show the model. Read-only during a
//! search; dev, validation and test examples are never in it.

/// One train example of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainExample {
    /// The example's input.
    pub input: String,
    /// Its gold answer (the label, for classification).
    pub target: String,
    /// The example as a demonstration in a prompt, rendered by the task: completion text
    /// ("Review: a gem\nSentiment: positive"), or for a chat task a `User:`/`Assistant:` block
    /// that scoring turns into a user and an assistant turn.
    pub demonstration: String,
}

/// The train examples a search may show the model, in the train split's order; an example's
/// id is its index here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrainPool {
    examples: Vec<TrainExample>,
    pairs: usize,
}

/// A pool with no example (for searches without demonstrations).
pub(crate) static EMPTY: TrainPool = TrainPool {
    examples: Vec::new(),
    pairs: 0,
};

impl TrainPool {
    /// A pool of these examples, of which the first `pairs` are the input-output pairs shown
    /// for instruction induction.
    pub fn new(examples: Vec<TrainExample>, pairs: usize) -> Self {
        let pairs = pairs.min(examples.len());
        Self { examples, pairs }
    }

    /// A pool from (input, target, demonstration) triples, all of them shown as pairs (tests).
    #[cfg(test)]
    pub(crate) fn from_triples(triples: &[(&str, &str, &str)]) -> Self {
        let examples: Vec<TrainExample> = triples
            .iter()
            .map(|(i, t, d)| TrainExample {
                input: i.to_string(),
                target: t.to_string(),
                demonstration: d.to_string(),
            })
            .collect();
        let n = examples.len();
        Self::new(examples, n)
    }

    /// Examples in the pool.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether the pool has no example.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The example with this id (None past the end).
    pub fn get(&self, id: usize) -> Option<&TrainExample> {
        self.examples.get(id)
    }

    /// The examples, in id order.
    pub fn examples(&self) -> &[TrainExample] {
        &self.examples
    }

    /// The gold answer of example `id` (None past the end).
    pub fn label(&self, id: usize) -> Option<&str> {
        self.get(id).map(|e| e.target.as_str())
    }

    /// The input-output pairs shown for instruction induction (the first examples).
    pub fn pairs(&self) -> &[TrainExample] {
        &self.examples[..self.pairs]
    }

    /// The demonstrations of these example ids, in order (ids past the end are skipped).
    pub fn demonstrations<'p>(&'p self, ids: &'p [usize]) -> impl Iterator<Item = &'p str> + 'p {
        ids.iter()
            .filter_map(|&id| self.get(id).map(|e| e.demonstration.as_str()))
    }
}
