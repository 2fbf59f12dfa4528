//! `json`: the answer holds a JSON object (the first `{...}` block that parses) equal to the
//! target object, or agreeing with it on the listed `fields`.

use serde_json::{Map, Value};

use super::common::{best_over, each, Answer, BadTarget, Metric, MetricError, Params, Scored};
use super::exact::normalise_exact;

/// JSON object match. With `fields`, score = fitness = the fraction of those fields equal to
/// the target's; without, score = 1 when the objects are equal, fitness = the fraction of the
/// target's fields matched.
#[derive(Debug)]
struct Json {
    fields: Option<Vec<String>>,
}

/// The `json` metric: `fields` (optional list of top-level keys compared; default: the whole
/// object). Each target of the data must be a JSON object (holding every field).
pub fn new(p: &mut Params<'_>) -> Result<Box<dyn Metric>, MetricError> {
    let fields = p.strings("fields")?;
    if fields.as_ref().is_some_and(Vec::is_empty) {
        return Err(p.bad(
            "fields",
            "is empty: list the keys to compare, e.g. [\"larger\", \"smaller\"], or remove it",
        ));
    }
    Ok(Box::new(Json { fields }))
}

/// The first JSON object in `text`: parsed from each `{` in turn, trailing text ignored.
pub(crate) fn first_object(text: &str) -> Option<Map<String, Value>> {
    text.match_indices('{').find_map(|(i, _)| {
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(Value::Object(map))) => Some(map),
            _ => None,
        }
    })
}

/// Whether two field values agree: strings as `exact` compares them, others exactly.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => {
            normalise_exact(x) == normalise_exact(y)
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

impl Json {
    fn compare(&self, output: Option<&Map<String, Value>>, target: &str) -> Scored {
        let (Some(output), Ok(Value::Object(target))) =
            (output, serde_json::from_str::<Value>(target))
        else {
            return Scored::plain(0.0);
        };
        let keys: Vec<&String> = match &self.fields {
            Some(fields) => fields.iter().collect(),
            None => target.keys().collect(),
        };
        let matched = keys
            .iter()
            .filter(|k| same(output.get(k.as_str()), target.get(k.as_str())))
            .count();
        let fraction = if keys.is_empty() {
            1.0
        } else {
            matched as f64 / keys.len() as f64
        };
        match &self.fields {
            Some(_) => Scored::plain(fraction),
            None => Scored {
                score: f64::from(
                    output.len() == target.len()
                        && target.iter().all(|(k, v)| same(output.get(k), Some(v))),
                ),
                fitness: fraction,
            },
        }
    }
}

impl Metric for Json {
    fn score(&self, answers: &[Answer<'_>]) -> Result<Vec<Scored>, MetricError> {
        each(answers, |output, targets| {
            let parsed = first_object(output);
            best_over(targets, |t| self.compare(parsed.as_ref(), t))
        })
    }

    fn check_target(&self, target: &str) -> Result<(), BadTarget> {
        let fix = "fix the data or the task's `metric`";
        match serde_json::from_str::<Value>(target) {
            Ok(Value::Object(map)) => match self
                .fields
                .iter()
                .flatten()
                .find(|f| !map.contains_key(f.as_str()))
            {
                Some(f) => Err(BadTarget(format!(
                    "target {target:?} has no field {f:?} of `[metric] fields`; {fix}"
                ))),
                None => Ok(()),
            },
            Ok(_) => Err(BadTarget(format!(
                "target {target:?} is JSON but not an object, and the metric is \"json\"; {fix}"
            ))),
            Err(e) => Err(BadTarget(format!(
                "target {target:?} is not JSON ({e}), and the metric is \"json\"; {fix}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::metric::tests_support::{error, metric, score, t};

    const TARGET: &str = r#"{"larger": "whale", "smaller": "mouse"}"#;

    #[test]
    fn fields_give_the_fraction_that_agree() {
        let m = metric("json", "fields = ['larger', 'smaller']");
        let s = |o: &str| score(m.as_ref(), o, &t(&[TARGET]));
        assert_eq!(
            s(r#"{"larger": "Whale", "smaller": "mouse"}"#),
            Scored::plain(1.0)
        );
        assert_eq!(
            s(r#"Sure: {"smaller": "mouse", "larger": "ant"} done"#),
            Scored::plain(0.5)
        );
        assert_eq!(s("whale"), Scored::plain(0.0));
        assert_eq!(s(r#"{"larger": "whale""#), Scored::plain(0.0));
        // The first block that parses counts.
        assert_eq!(
            s(r#"{oops} {"larger": "whale", "smaller": "mouse"}"#).score,
            1.0
        );
    }

    #[test]
    fn without_fields_the_whole_object_must_match() {
        let m = metric("json", "");
        let s = |o: &str| score(m.as_ref(), o, &t(&[TARGET]));
        assert_eq!(s(TARGET), Scored::plain(1.0));
        let extra = s(r#"{"larger": "whale", "smaller": "mouse", "note": 1}"#);
        assert_eq!((extra.score, extra.fitness), (0.0, 1.0));
        let half = s(r#"{"larger": "whale"}"#);
        assert_eq!((half.score, half.fitness), (0.0, 0.5));
    }

    #[test]
    fn targets_must_be_objects_holding_the_fields() {
        let m = metric("json", "fields = ['larger']");
        assert!(m.check_target(TARGET).is_ok());
        assert!(m.check_target("whale").unwrap_err().0.contains("not JSON"));
        assert!(m
            .check_target("[1]")
            .unwrap_err()
            .0
            .contains("not an object"));
        assert!(m.check_target("{}").unwrap_err().0.contains("larger"));
        let e = error("json", "fields = []");
        assert!(e.contains("fields"), "{e}");
    }
}
