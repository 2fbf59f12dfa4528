//! The one registry of operators: each operator's name (configs, `--operators`, lineage,
//! reports, `--help`) and how to make it, the accepted aliases, and weighted sets built from
//! names. Adding an operator is one file in this folder plus one entry here.

use super::crossover::{OnePointCrossover, SentenceCrossover, UniformCrossover};
use super::edit::{Delete, Insert, Paraphrase, Swap};
use super::genes::{ConstraintGene, DemoAdd, DemoDrop, DemoOrder, DemoSet, DemoSwap, PersonaGene};
use super::model::{EvoDe, EvoGa};
use super::operator::{Operator, WeightedOperator};
use super::promptbreeder::{FirstOrder, Hypermutation, Lamarckian, LineageBased, ZeroOrder};
use crate::evolve::error::EvolveError;

/// One registered operator: its name (configs, `--operators`, lineage, reports) and how to make
/// it.
struct Entry {
    name: &'static str,
    make: fn() -> Box<dyn Operator>,
}

/// The one registry of operators, in the order `--help` and error messages list them (each
/// operator's `name()` must be its entry's name; a test checks it).
const REGISTRY: [Entry; 21] = [
    Entry {
        name: "delete",
        make: || Box::new(Delete),
    },
    Entry {
        name: "swap",
        make: || Box::new(Swap),
    },
    Entry {
        name: "insert",
        make: || Box::new(Insert),
    },
    Entry {
        name: "paraphrase",
        make: || Box::new(Paraphrase),
    },
    Entry {
        name: "one-point",
        make: || Box::new(OnePointCrossover),
    },
    Entry {
        name: "uniform",
        make: || Box::new(UniformCrossover),
    },
    Entry {
        name: "sentence",
        make: || Box::new(SentenceCrossover),
    },
    Entry {
        name: "persona",
        make: || Box::new(PersonaGene),
    },
    Entry {
        name: "constraint",
        make: || Box::new(ConstraintGene),
    },
    Entry {
        name: "demo-add",
        make: || Box::new(DemoAdd),
    },
    Entry {
        name: "demo-drop",
        make: || Box::new(DemoDrop),
    },
    Entry {
        name: "demo-swap",
        make: || Box::new(DemoSwap),
    },
    Entry {
        name: "demo-set",
        make: || Box::new(DemoSet),
    },
    Entry {
        name: "demo-order",
        make: || Box::new(DemoOrder),
    },
    Entry {
        name: "evo-ga",
        make: || Box::new(EvoGa),
    },
    Entry {
        name: "evo-de",
        make: || Box::new(EvoDe),
    },
    Entry {
        name: "pb-first-order",
        make: || Box::new(FirstOrder),
    },
    Entry {
        name: "pb-zero-order",
        make: || Box::new(ZeroOrder),
    },
    Entry {
        name: "pb-hypermutation",
        make: || Box::new(Hypermutation),
    },
    Entry {
        name: "pb-lineage",
        make: || Box::new(LineageBased),
    },
    Entry {
        name: "pb-lamarckian",
        make: || Box::new(Lamarckian),
    },
];

/// Aliases kept for configs written before the operator library grew: (alias, operator).
/// Accepted, not advertised.
const ALIASES: [(&str, &str); 2] = [("crossover", "one-point"), ("add", "insert")];

/// The operators' names, in registry order (what `--help` and error messages list).
pub const OPERATORS: [&str; REGISTRY.len()] = {
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    names
};

/// Every operator name accepted by [`operator_by_name`]: [`OPERATORS`], then the aliases.
pub const OPERATOR_NAMES: [&str; REGISTRY.len() + ALIASES.len()] = {
    let mut names = [""; REGISTRY.len() + ALIASES.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    let mut j = 0;
    while j < ALIASES.len() {
        names[i + j] = ALIASES[j].0;
        j += 1;
    }
    names
};

/// The operator with this name, or None for an unknown name (see [`OPERATOR_NAMES`]).
pub fn operator_by_name(name: &str) -> Option<Box<dyn Operator>> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical);
    REGISTRY.iter().find(|e| e.name == name).map(|e| (e.make)())
}

/// Builds weighted operators from `(name, weight)` defaults overridden by `overrides`; an unknown
/// name in either is an error naming the valid ones.
pub(crate) fn weighted_operators(
    defaults: &[(&str, f64)],
    overrides: &std::collections::BTreeMap<String, f64>,
) -> Result<Vec<WeightedOperator>, EvolveError> {
    let unknown = |name: &str| {
        EvolveError::Operators(format!(
            "unknown operator `{name}`; use one of {}",
            OPERATORS.join(", ")
        ))
    };
    let mut list: Vec<(String, f64)> = defaults.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    for (name, &w) in overrides {
        let canonical = operator_by_name(name).ok_or_else(|| unknown(name))?.name();
        match list.iter_mut().find(|(n, _)| n == canonical) {
            Some(entry) => entry.1 = w,
            None => list.push((canonical.to_string(), w)),
        }
    }
    list.into_iter()
        .map(|(name, w)| {
            if !(w.is_finite() && w >= 0.0) {
                return Err(EvolveError::Operators(format!(
                    "operator `{name}` has weight {w}; weights must be finite numbers >= 0 (0 disables it)"
                )));
            }
            let op = operator_by_name(&name).ok_or_else(|| unknown(&name))?;
            Ok(WeightedOperator::new(op, w))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_names_round_trip() {
        for name in OPERATOR_NAMES {
            let op = operator_by_name(name).unwrap_or_else(|| panic!("{name}"));
            if OPERATORS.contains(&name) {
                assert_eq!(op.name(), name);
            }
        }
        assert_eq!(operator_by_name("crossover").unwrap().name(), "one-point");
        assert_eq!(operator_by_name("add").unwrap().name(), "insert");
        assert!(operator_by_name("mutate").is_none());
    }

    #[test]
    fn the_readme_names_every_registered_operator() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let table = readme
            .split("| family | operators |")
            .nth(1)
            .expect("README.md has the operator table");
        let table = table.split("\n\n").next().unwrap_or_default();
        for name in OPERATORS {
            assert!(
                table.contains(&format!("`{name}`")),
                "README.md's operator table lacks `{name}`"
            );
        }
    }

    #[test]
    fn overrides_replace_defaults_and_unknown_names_fail() {
        let mut o = std::collections::BTreeMap::new();
        o.insert("swap".to_string(), 0.0);
        o.insert("crossover".to_string(), 2.0);
        let ops = weighted_operators(&[("delete", 1.0), ("swap", 1.0)], &o).unwrap();
        let got: Vec<(&str, f64)> = ops.iter().map(|w| (w.operator.name(), w.weight)).collect();
        assert_eq!(got, [("delete", 1.0), ("swap", 0.0), ("one-point", 2.0)]);
        o.insert("mutate".to_string(), 1.0);
        let err = weighted_operators(&[], &o).unwrap_err().to_string();
        assert!(err.contains("unknown operator `mutate`"), "{err}");
        // Every operator is advertised, the newest included; aliases are not.
        assert!(
            err.contains("demo-order") && err.contains("pb-lamarckian"),
            "{err}"
        );
        assert!(!err.contains("crossover,"), "{err}");
        let mut bad = std::collections::BTreeMap::new();
        bad.insert("swap".to_string(), -1.0);
        assert!(weighted_operators(&[], &bad).is_err());
    }
}
