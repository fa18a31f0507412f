//! Loading a definition: serde model, per-type field whitelist, and load-time validation.
//!
//! Every field we do not implement is refused here, naming the state and the field, so a
//! definition can never run locally with part of it silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::choice::{Condition, RawRule};
use super::path::{Path, Template};
use super::retry::{Catcher, RawCatcher, RawRetrier, Retrier, matches, validate_error_lists};

/// Why a definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("definition is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("state machine definition: {0}")]
    Machine(String),
    #[error("state {state:?}, field {field:?}: {message}")]
    Field {
        state: String,
        field: String,
        message: String,
    },
}

fn field_error(state: &str, field: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError::Field {
        state: state.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Lets `Option<Option<T>>` tell an absent field (`None`) from an explicit `null` (`Some(None)`),
/// which ASL gives different meanings for InputPath, OutputPath and ResultPath.
pub(crate) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawMachine {
    start_at: String,
    states: Map<String, Value>,
    timeout_seconds: Option<u64>,
    #[serde(rename = "Comment")]
    _comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawBranch {
    start_at: String,
    states: Map<String, Value>,
    #[serde(rename = "Comment")]
    _comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawState {
    #[serde(rename = "Type")]
    _type: String,
    #[serde(rename = "Comment")]
    _comment: Option<String>,
    next: Option<String>,
    end: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    input_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    output_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    result_path: Option<Option<String>>,
    parameters: Option<Value>,
    result_selector: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    retry: Option<Vec<RawRetrier>>,
    catch: Option<Vec<RawCatcher>>,
    timeout_seconds: Option<u64>,
    resource: Option<Value>,
    branches: Option<Vec<RawBranch>>,
    choices: Option<Vec<RawRule>>,
    default: Option<String>,
    error: Option<String>,
    cause: Option<String>,
    error_path: Option<String>,
    cause_path: Option<String>,
}

/// The fields each state type may carry; everything else is refused by name.
fn allowed_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Task" => &[
            "Type",
            "Comment",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "Resource",
        ],
        "Parallel" => &[
            "Type",
            "Comment",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultSelector",
            "ResultPath",
            "Retry",
            "Catch",
            "Branches",
        ],
        "Pass" => &[
            "Type",
            "Comment",
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Parameters",
            "ResultPath",
            "Result",
        ],
        "Choice" => &[
            "Type",
            "Comment",
            "InputPath",
            "OutputPath",
            "Choices",
            "Default",
        ],
        "Succeed" => &["Type", "Comment", "InputPath", "OutputPath"],
        "Fail" => &[
            "Type",
            "Comment",
            "Error",
            "Cause",
            "ErrorPath",
            "CausePath",
        ],
        _ => return None,
    })
}

/// InputPath/OutputPath: a path, or `null` meaning "use `{}`".
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selector {
    Path(Path),
    Empty,
}

/// Fail's Error/Cause come either literally or from a path into the state input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Text {
    Literal(String),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Task {
        resource: Value,
        timeout: Option<Duration>,
    },
    Parallel {
        branches: Vec<Graph>,
    },
    Pass {
        result: Option<Value>,
    },
    Choice {
        rules: Vec<(Condition, String)>,
        default: Option<String>,
    },
    Succeed,
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
}

impl Kind {
    /// The ASL `Type`, used to name history events (`{Type}StateEntered`).
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Task { .. } => "Task",
            Self::Parallel { .. } => "Parallel",
            Self::Pass { .. } => "Pass",
            Self::Choice { .. } => "Choice",
            Self::Succeed => "Succeed",
            Self::Fail { .. } => "Fail",
        }
    }
}

/// One validated state. `result_path` is `None` for `"ResultPath": null`; `next` is `None`
/// for terminal states.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct State {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) next: Option<String>,
    pub(crate) input_path: Selector,
    pub(crate) output_path: Selector,
    pub(crate) parameters: Option<Template>,
    pub(crate) result_selector: Option<Template>,
    pub(crate) result_path: Option<Path>,
    pub(crate) retry: Vec<Retrier>,
    pub(crate) catch: Vec<Catcher>,
}

/// A set of states with an entry point: the machine itself or one Parallel branch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    pub(crate) start_at: String,
    pub(crate) states: HashMap<String, State>,
}

/// A parsed and validated state machine definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    pub(crate) graph: Graph,
    pub(crate) timeout: Option<Duration>,
    /// Every state name (names are unique machine-wide) → the top-level state containing it.
    pub(crate) top_level_of: BTreeMap<String, String>,
}

impl StateMachine {
    /// Parses and validates an ASL definition.
    pub fn from_json(text: &str) -> Result<Self, DefinitionError> {
        let raw: RawMachine = serde_json::from_str(text)?;
        if raw.timeout_seconds == Some(0) {
            return Err(DefinitionError::Machine(
                "TimeoutSeconds must be positive".into(),
            ));
        }
        let mut top_level_of = BTreeMap::new();
        let graph = compile_graph(&raw.start_at, &raw.states, None, &mut top_level_of)?;
        Ok(Self {
            graph,
            timeout: raw.timeout_seconds.map(Duration::from_secs),
            top_level_of,
        })
    }

    /// All state names, including those inside Parallel branches, in sorted order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.top_level_of.keys().map(String::as_str)
    }

    /// The machine's `StartAt` state.
    pub fn start_at(&self) -> &str {
        &self.graph.start_at
    }

    /// The top-level state that contains `state` (itself when it is top-level).
    pub fn top_level_state_of(&self, state: &str) -> Option<&str> {
        self.top_level_of.get(state).map(String::as_str)
    }

    /// How many attempts `state` gets for `error`: the first, and the retries of the first
    /// retrier that matches it, as a run picks it; 1 for an error no retrier matches (or a
    /// state the machine does not have).
    pub fn attempts(&self, state: &str, error: &str) -> u32 {
        self.graph
            .find(state)
            .and_then(|s| s.retry.iter().find(|r| matches(&r.error_equals, error)))
            .map_or(1, |r| 1 + r.max_attempts())
    }
}

impl Graph {
    /// The state named `name`, in this graph or in a Parallel branch of it.
    fn find(&self, name: &str) -> Option<&State> {
        self.states.get(name).or_else(|| {
            self.states.values().find_map(|s| match &s.kind {
                Kind::Parallel { branches } => branches.iter().find_map(|b| b.find(name)),
                _ => None,
            })
        })
    }
}

/// `top` is the enclosing top-level state for branch graphs, `None` for the machine itself.
fn compile_graph(
    start_at: &str,
    raw_states: &Map<String, Value>,
    top: Option<&str>,
    top_level_of: &mut BTreeMap<String, String>,
) -> Result<Graph, DefinitionError> {
    let mut states = HashMap::new();
    for (name, raw) in raw_states {
        let owner = top.unwrap_or(name).to_owned();
        if top_level_of.insert(name.clone(), owner.clone()).is_some() {
            return Err(field_error(
                name,
                "Type",
                "state names must be unique across the whole state machine",
            ));
        }
        states.insert(
            name.clone(),
            compile_state(name, raw, &owner, top_level_of)?,
        );
    }
    let graph = Graph {
        start_at: start_at.to_owned(),
        states,
    };
    let missing = |target: &str| !graph.states.contains_key(target);
    if missing(start_at) {
        let scope = top.map_or("the state machine".to_owned(), |t| {
            format!("a branch of {t:?}")
        });
        return Err(DefinitionError::Machine(format!(
            "StartAt {start_at:?} is not a state of {scope}"
        )));
    }
    for state in graph.states.values() {
        let mut targets: Vec<(&str, &str)> = state
            .catch
            .iter()
            .map(|c| ("Catch", c.next.as_str()))
            .collect();
        targets.extend(state.next.as_deref().map(|n| ("Next", n)));
        if let Kind::Choice { rules, default } = &state.kind {
            targets.extend(rules.iter().map(|(_, n)| ("Choices", n.as_str())));
            targets.extend(default.as_deref().map(|n| ("Default", n)));
        }
        if let Some((field, target)) = targets.into_iter().find(|(_, t)| missing(t)) {
            return Err(field_error(
                &state.name,
                field,
                format!("target {target:?} is not a state in the same scope"),
            ));
        }
    }
    Ok(graph)
}

fn compile_state(
    name: &str,
    value: &Value,
    owner: &str,
    top_level_of: &mut BTreeMap<String, String>,
) -> Result<State, DefinitionError> {
    let err = |field: &str, message: String| field_error(name, field, message);
    let object = value
        .as_object()
        .ok_or_else(|| err("Type", "a state must be a JSON object".into()))?;
    let type_name = object
        .get("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("Type", "missing or not a string".into()))?;
    let allowed = allowed_fields(type_name).ok_or_else(|| {
        err("Type", format!("state type {type_name:?} is not supported (Task, Parallel, Pass, Choice, Succeed, Fail)"))
    })?;
    if let Some(field) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(
            field,
            format!(
                "not supported in a {type_name} state (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    let raw: RawState =
        serde_json::from_value(value.clone()).map_err(|e| err("Type", e.to_string()))?;

    let path = |field: &str, text: &str| Path::parse(text).map_err(|m| err(field, m));
    let selector = |field: &str, v: &Option<Option<String>>| -> Result<Selector, DefinitionError> {
        Ok(match v {
            None => Selector::Path(path(field, "$")?),
            Some(None) => Selector::Empty,
            Some(Some(text)) => Selector::Path(path(field, text)?),
        })
    };
    let result_path = |field: &str, v: &Option<Option<String>>| match v {
        None => Ok(Some(path(field, "$")?)),
        Some(None) => Ok(None),
        Some(Some(text)) => match path(field, text)? {
            p if p.is_context() => Err(err(
                field,
                "ResultPath cannot write into the context object".into(),
            )),
            p => Ok(Some(p)),
        },
    };
    let template = |field: &str, v: &Option<Value>| {
        v.as_ref()
            .map(|v| Template::compile(v).map_err(|m| err(field, m)))
            .transpose()
    };

    let terminal = matches!(type_name, "Choice" | "Succeed" | "Fail");
    let next = match (&raw.next, raw.end) {
        _ if terminal => None,
        (Some(next), None | Some(false)) => Some(next.clone()),
        (None, Some(true)) => None,
        (Some(_), Some(true)) => {
            return Err(err("End", "a state cannot have both Next and End".into()));
        }
        (None, _) => return Err(err("Next", "the state needs Next or \"End\": true".into())),
    };

    let retry = raw
        .retry
        .unwrap_or_default()
        .into_iter()
        .map(Retrier::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| err("Retry", m))?;
    validate_error_lists(retry.iter().map(|r| r.error_equals.as_slice()))
        .map_err(|m| err("Retry", m))?;
    let catch = raw
        .catch
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            Ok(Catcher {
                result_path: result_path("Catch", &c.result_path)?,
                error_equals: c.error_equals,
                next: c.next,
            })
        })
        .collect::<Result<Vec<_>, DefinitionError>>()?;
    validate_error_lists(catch.iter().map(|c| c.error_equals.as_slice()))
        .map_err(|m| err("Catch", m))?;

    let kind = match type_name {
        "Task" => {
            let resource = raw
                .resource
                .ok_or_else(|| err("Resource", "a Task needs a Resource".into()))?;
            if raw.timeout_seconds == Some(0) {
                return Err(err("TimeoutSeconds", "must be positive".into()));
            }
            Kind::Task {
                resource,
                timeout: raw.timeout_seconds.map(Duration::from_secs),
            }
        }
        "Parallel" => {
            let raw_branches = raw
                .branches
                .ok_or_else(|| err("Branches", "a Parallel state needs Branches".into()))?;
            if raw_branches.is_empty() {
                return Err(err("Branches", "at least one branch is needed".into()));
            }
            let branches = raw_branches
                .iter()
                .map(|b| compile_graph(&b.start_at, &b.states, Some(owner), top_level_of))
                .collect::<Result<_, _>>()?;
            Kind::Parallel { branches }
        }
        "Pass" => Kind::Pass { result: raw.result },
        "Choice" => {
            let raw_rules = raw
                .choices
                .ok_or_else(|| err("Choices", "a Choice state needs Choices".into()))?;
            if raw_rules.is_empty() {
                return Err(err("Choices", "at least one rule is needed".into()));
            }
            let rules = raw_rules
                .iter()
                .map(|r| {
                    Ok((
                        Condition::compile(r, true)?,
                        r.next.clone().unwrap_or_default(),
                    ))
                })
                .collect::<Result<_, String>>()
                .map_err(|m| err("Choices", m))?;
            Kind::Choice {
                rules,
                default: raw.default,
            }
        }
        "Succeed" => Kind::Succeed,
        _ => {
            let text = |field: &str,
                        literal: Option<String>,
                        path_field: &str,
                        from: Option<String>| match (literal, from) {
                (Some(_), Some(_)) => Err(err(
                    field,
                    format!("{field} and {path_field} are mutually exclusive"),
                )),
                (Some(l), None) => Ok(Some(Text::Literal(l))),
                (None, Some(p)) => Ok(Some(Text::Path(path(path_field, &p)?))),
                (None, None) => Ok(None),
            };
            Kind::Fail {
                error: text("Error", raw.error, "ErrorPath", raw.error_path)?,
                cause: text("Cause", raw.cause, "CausePath", raw.cause_path)?,
            }
        }
    };

    Ok(State {
        name: name.to_owned(),
        kind,
        next,
        input_path: selector("InputPath", &raw.input_path)?,
        output_path: selector("OutputPath", &raw.output_path)?,
        parameters: template("Parameters", &raw.parameters)?,
        result_selector: template("ResultSelector", &raw.result_selector)?,
        result_path: result_path("ResultPath", &raw.result_path)?,
        retry,
        catch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(states: Value) -> Result<StateMachine, DefinitionError> {
        StateMachine::from_json(&json!({"StartAt": "A", "States": states}).to_string())
    }

    fn task(extra: Value) -> Value {
        let mut t =
            json!({"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": true});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    }

    #[test]
    fn refusals_name_state_and_field() {
        let cases = [
            (
                json!({"A": task(json!({"HeartbeatSeconds": 5}))}),
                "\"A\", field \"HeartbeatSeconds\"",
            ),
            (
                json!({"A": {"Type": "Wait", "Seconds": 1, "End": true}}),
                "\"Wait\" is not supported",
            ),
            (
                json!({"A": {"Type": "Pass", "Retry": [], "End": true}}),
                "field \"Retry\"",
            ),
            (
                json!({"A": task(json!({"End": null, "Next": "Nowhere"}))}),
                "field \"Next\"",
            ),
            (
                json!({"A": task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}))}),
                "field \"Retry\"",
            ),
            (
                json!({"A": task(json!({"Catch": [{"ErrorEquals": ["X", "States.ALL"], "Next": "A"}]}))}),
                "field \"Catch\"",
            ),
            (
                json!({"A": task(json!({"Catch": [{"ErrorEquals": ["X"], "Next": "B"}]}))}),
                "target \"B\"",
            ),
            (
                json!({"A": task(json!({"Retry": [{"ErrorEquals": ["X"], "Jitter": "FULL"}]}))}),
                "unknown field `Jitter`",
            ),
            (
                json!({"A": task(json!({"Parameters": {"x.$": "States.UUID()"}}))}),
                "field \"Parameters\"",
            ),
            (
                json!({"A": task(json!({"ResultPath": "$$.State"}))}),
                "field \"ResultPath\"",
            ),
            (
                json!({"A": task(json!({"InputPath": "$.a[*]"}))}),
                "field \"InputPath\"",
            ),
            (
                json!({"A": {"Type": "Task", "Resource": "x"}}),
                "needs Next or",
            ),
            (
                json!({"A": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}),
                "mutually exclusive",
            ),
            (
                json!({"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "Z"}]}}),
                "target \"Z\"",
            ),
            (
                json!({"A": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}]}}),
                "unique",
            ),
            (
                json!({"A": {"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "A"}}}], "End": true}}),
                "target \"A\"",
            ),
            (json!({"B": {"Type": "Succeed"}}), "StartAt \"A\""),
        ];
        for (states, needle) in cases {
            let message = load(states.clone())
                .expect_err(&states.to_string())
                .to_string();
            assert!(
                message.contains(needle),
                "{message:?} should contain {needle:?}"
            );
        }
        let top = StateMachine::from_json(
            r#"{"StartAt":"A","Version":"1.0","States":{"A":{"Type":"Succeed"}}}"#,
        );
        assert!(
            top.unwrap_err()
                .to_string()
                .contains("unknown field `Version`")
        );
    }

    #[test]
    fn accepts_the_supported_shapes() {
        let machine = load(json!({
            "A": task(json!({
                "End": null, "Next": "P", "Resource": {"Fn::GetAtt": ["ExtractNyt", "Arn"]}, "TimeoutSeconds": 30,
                "InputPath": null, "ResultPath": null, "OutputPath": "$", "ResultSelector": {"x.$": "$.y"},
                "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "JitterStrategy": "FULL", "MaxDelaySeconds": 10},
                          {"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F", "ResultPath": "$.error"}]
            })),
            "P": {"Type": "Parallel", "Next": "C", "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Result": null, "End": true}}}]},
            "C": {"Type": "Choice", "Choices": [{"Not": {"Variable": "$.x", "IsPresent": true}, "Next": "S"}], "Default": "F"},
            "S": {"Type": "Succeed", "Comment": "done"},
            "F": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
        }))
        .unwrap();
        assert_eq!(
            machine.state_names().collect::<Vec<_>>(),
            ["A", "B1", "C", "F", "P", "S"]
        );
        assert_eq!(machine.top_level_state_of("B1"), Some("P"));
        let a = &machine.graph.states["A"];
        assert_eq!(
            (a.input_path.clone(), a.result_path.clone()),
            (Selector::Empty, None)
        );
        let Kind::Parallel { branches } = &machine.graph.states["P"].kind else {
            panic!("P is a Parallel")
        };
        assert_eq!(
            branches[0].states["B1"].kind,
            Kind::Pass {
                result: Some(Value::Null)
            }
        );
    }
}
