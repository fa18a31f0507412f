//! Choice rules: the subset of comparison operators our definition needs, plus And/Or/Not.
//!
//! AWS semantics kept here: a comparison against a value of the wrong type is simply false,
//! but a `Variable` (or `…Path` operand) that selects nothing is a `States.Runtime` error,
//! except under `IsPresent`, whose whole purpose is to test for that.

use serde::Deserialize;
use serde_json::{Number, Value};

use super::path::{Path, select};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawRule {
    variable: Option<String>,
    string_equals: Option<String>,
    string_equals_path: Option<String>,
    numeric_equals: Option<Number>,
    numeric_greater_than: Option<Number>,
    numeric_less_than: Option<Number>,
    boolean_equals: Option<bool>,
    is_present: Option<bool>,
    is_null: Option<bool>,
    and: Option<Vec<RawRule>>,
    or: Option<Vec<RawRule>>,
    not: Option<Box<RawRule>>,
    pub(crate) next: Option<String>,
    #[serde(rename = "Comment")]
    _comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Test { variable: Path, op: Op },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    StringEquals(String),
    StringEqualsPath(Path),
    NumericEquals(f64),
    NumericGreaterThan(f64),
    NumericLessThan(f64),
    BooleanEquals(bool),
    IsPresent(bool),
    IsNull(bool),
}

impl Condition {
    /// Compiles one rule; `top_level` rules must have `Next`, nested ones must not.
    pub(crate) fn compile(raw: &RawRule, top_level: bool) -> Result<Self, String> {
        if top_level != raw.next.is_some() {
            return Err(match top_level {
                true => "every Choices rule needs Next".into(),
                false => "Next is only allowed on top-level Choices rules".into(),
            });
        }
        let nested = |rules: &[RawRule]| {
            if rules.is_empty() {
                return Err("And/Or need at least one rule".to_string());
            }
            rules
                .iter()
                .map(|r| Self::compile(r, false))
                .collect::<Result<Vec<_>, _>>()
        };
        let num = |n: &Number| {
            n.as_f64()
                .ok_or_else(|| format!("{n} is not a usable number"))
        };
        let mut ops = Vec::new();
        if let Some(v) = &raw.string_equals {
            ops.push(Op::StringEquals(v.clone()));
        }
        if let Some(p) = &raw.string_equals_path {
            ops.push(Op::StringEqualsPath(Path::parse(p)?));
        }
        if let Some(n) = &raw.numeric_equals {
            ops.push(Op::NumericEquals(num(n)?));
        }
        if let Some(n) = &raw.numeric_greater_than {
            ops.push(Op::NumericGreaterThan(num(n)?));
        }
        if let Some(n) = &raw.numeric_less_than {
            ops.push(Op::NumericLessThan(num(n)?));
        }
        ops.extend(raw.boolean_equals.map(Op::BooleanEquals));
        ops.extend(raw.is_present.map(Op::IsPresent));
        ops.extend(raw.is_null.map(Op::IsNull));
        let mut forms = Vec::new();
        if let Some(rules) = &raw.and {
            forms.push(Self::And(nested(rules)?));
        }
        if let Some(rules) = &raw.or {
            forms.push(Self::Or(nested(rules)?));
        }
        if let Some(rule) = &raw.not {
            forms.push(Self::Not(Box::new(Self::compile(rule, false)?)));
        }
        match (raw.variable.as_deref(), ops.len(), forms.len()) {
            (Some(variable), 1, 0) => Ok(Self::Test { variable: Path::parse(variable)?, op: ops.remove(0) }),
            (None, 0, 1) => Ok(forms.remove(0)),
            _ => Err("a Choices rule needs either Variable with exactly one comparison operator, or exactly one of And/Or/Not".into()),
        }
    }

    /// Evaluates the rule; an `Err` is the cause of a `States.Runtime` failure.
    pub(crate) fn eval(&self, input: &Value, context: &Value) -> Result<bool, String> {
        Ok(match self {
            Self::And(rules) => {
                for rule in rules {
                    if !rule.eval(input, context)? {
                        return Ok(false);
                    }
                }
                true
            }
            Self::Or(rules) => {
                for rule in rules {
                    if rule.eval(input, context)? {
                        return Ok(true);
                    }
                }
                false
            }
            Self::Not(rule) => !rule.eval(input, context)?,
            Self::Test {
                variable,
                op: Op::IsPresent(expected),
            } => variable.select(input, context).is_some() == *expected,
            Self::Test { variable, op } => {
                let value = select(variable, input, context)?;
                match op {
                    Op::StringEquals(s) => value.as_str() == Some(s.as_str()),
                    Op::StringEqualsPath(p) => {
                        let other = select(p, input, context)?;
                        value.is_string() && value == other
                    }
                    Op::NumericEquals(n) => value.as_f64() == Some(*n),
                    Op::NumericGreaterThan(n) => value.as_f64().is_some_and(|v| v > *n),
                    Op::NumericLessThan(n) => value.as_f64().is_some_and(|v| v < *n),
                    Op::BooleanEquals(b) => value.as_bool() == Some(*b),
                    Op::IsNull(expected) => value.is_null() == *expected,
                    Op::IsPresent(_) => unreachable!("handled above"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Result<Condition, String> {
        Condition::compile(&serde_json::from_value(v).unwrap(), false)
    }

    #[test]
    fn operators() {
        let input = json!({"s": "ok", "t": "ok", "n": 5, "b": true, "z": null, "d": "5"});
        let cases = [
            (json!({"Variable": "$.s", "StringEquals": "ok"}), Ok(true)),
            (json!({"Variable": "$.n", "StringEquals": "5"}), Ok(false)),
            (
                json!({"Variable": "$.s", "StringEqualsPath": "$.t"}),
                Ok(true),
            ),
            (
                json!({"Variable": "$.s", "StringEqualsPath": "$.missing"}),
                Err(()),
            ),
            (json!({"Variable": "$.n", "NumericEquals": 5}), Ok(true)),
            (json!({"Variable": "$.d", "NumericEquals": 5}), Ok(false)),
            (
                json!({"Variable": "$.n", "NumericGreaterThan": 4.5}),
                Ok(true),
            ),
            (json!({"Variable": "$.n", "NumericLessThan": 5}), Ok(false)),
            (json!({"Variable": "$.b", "BooleanEquals": true}), Ok(true)),
            (
                json!({"Variable": "$.missing", "IsPresent": false}),
                Ok(true),
            ),
            (json!({"Variable": "$.s", "IsPresent": true}), Ok(true)),
            (json!({"Variable": "$.z", "IsNull": true}), Ok(true)),
            (json!({"Variable": "$.s", "IsNull": true}), Ok(false)),
            (
                json!({"Variable": "$.missing", "StringEquals": "x"}),
                Err(()),
            ),
            (
                json!({"And": [{"Variable": "$.b", "BooleanEquals": true}, {"Variable": "$.n", "NumericGreaterThan": 1}]}),
                Ok(true),
            ),
            (
                json!({"Or": [{"Variable": "$.b", "BooleanEquals": false}, {"Variable": "$.s", "StringEquals": "no"}]}),
                Ok(false),
            ),
            (
                json!({"Not": {"Variable": "$.s", "StringEquals": "no"}}),
                Ok(true),
            ),
        ];
        for (raw, expected) in cases {
            let got = rule(raw.clone())
                .unwrap()
                .eval(&input, &json!({}))
                .map_err(|_| ());
            assert_eq!(got, expected, "{raw}");
        }
    }

    #[test]
    fn malformed_rules_are_refused() {
        for raw in [
            json!({"Variable": "$.s"}),
            json!({"Variable": "$.s", "StringEquals": "a", "IsNull": true}),
            json!({"StringEquals": "a"}),
            json!({"And": []}),
            json!({"Not": {"Variable": "$.s", "StringEquals": "a", "Next": "X"}}),
        ] {
            assert!(rule(raw.clone()).is_err(), "{raw}");
        }
        assert!(
            serde_json::from_value::<RawRule>(json!({"Variable": "$.s", "StringMatches": "a*"}))
                .is_err()
        );
        let top: RawRule =
            serde_json::from_value(json!({"Variable": "$.s", "StringEquals": "a"})).unwrap();
        assert!(
            Condition::compile(&top, true).is_err(),
            "top-level rule without Next"
        );
    }
}
