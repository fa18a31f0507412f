//! The one list of the deployment's Lambda functions. Each is named the same way in four
//! places — the ASL's `{"Fn::GetAtt": [KEY, "Arn"]}`, the `functions:` key of
//! `serverless.yml`, the crate `lambdas/<package>` and its zip `<package>/<package>.zip` —
//! and `tests/registry.rs` checks every one of them against this list, so adding a function
//! is: a crate under `lambdas/`, a line here, a key in `serverless.yml` (and a Task in the
//! definition, for a step).

/// A Task of the state machine: what the local engine runs in-process and a Lambda runs on
/// AWS, with the same [`crate::steps`] function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    ExtractNyt,
    ExtractJhu,
    Merge,
    DiffAndLoad,
    Notify,
}

/// One deployed Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// The `functions:` key of `serverless.yml`; for a step, also its `Fn::GetAtt` name.
    pub key: &'static str,
    /// The crate under `lambdas/` (its binary and zip have the same name).
    pub package: &'static str,
    /// The Task it serves; `None` for the daily starter and the read API.
    pub step: Option<Step>,
}

pub const FUNCTIONS: [Function; 7] = [
    step("ExtractNyt", "extract-nyt", Step::ExtractNyt),
    step("ExtractJhu", "extract-jhu", Step::ExtractJhu),
    step("Merge", "merge", Step::Merge),
    step("DiffAndLoad", "diff-and-load", Step::DiffAndLoad),
    step("Notify", "notify", Step::Notify),
    // The schedule's target (EventBridge → StartExecution), and the API behind API Gateway.
    other("StartDaily", "start-daily"),
    other("Api", "api"),
];

const fn step(key: &'static str, package: &'static str, step: Step) -> Function {
    Function {
        key,
        package,
        step: Some(step),
    }
}

const fn other(key: &'static str, package: &'static str) -> Function {
    Function {
        key,
        package,
        step: None,
    }
}

impl Step {
    /// The step a definition's `Fn::GetAtt` name refers to.
    pub fn from_key(key: &str) -> Option<Self> {
        FUNCTIONS.iter().find(|f| f.key == key).and_then(|f| f.step)
    }

    pub fn key(self) -> &'static str {
        FUNCTIONS
            .iter()
            .find(|f| f.step == Some(self))
            .map(|f| f.key)
            .expect("every step is in FUNCTIONS")
    }
}

/// The functions that are Tasks of the state machine.
pub fn steps() -> impl Iterator<Item = &'static Function> {
    FUNCTIONS.iter().filter(|f| f.step.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_packages_are_unique_and_every_step_is_listed_once() {
        let mut keys: Vec<_> = FUNCTIONS.iter().map(|f| f.key).collect();
        let mut packages: Vec<_> = FUNCTIONS.iter().map(|f| f.package).collect();
        keys.sort();
        keys.dedup();
        packages.sort();
        packages.dedup();
        assert_eq!(
            (keys.len(), packages.len()),
            (FUNCTIONS.len(), FUNCTIONS.len())
        );
        for s in [
            Step::ExtractNyt,
            Step::ExtractJhu,
            Step::Merge,
            Step::DiffAndLoad,
            Step::Notify,
        ] {
            assert_eq!(Step::from_key(s.key()), Some(s));
        }
        assert_eq!(Step::from_key("StartDaily"), None);
    }
}
