//! Checks on the CloudFormation template that `serverless package` compiles
//! from serverless.yml (issue #5, deployment half; issue #20 points 3-5; issue #16's
//! stack points: API limits, encrypted topics, table protection, source allowlist).
//!
//! Environment:
//! - `COVID_ETL_TEMPLATE`: path to `.serverless/cloudformation-template-update-stack.json`
//!   (`serverless-state.json` beside it holds the stack tags).
//!   Unset: every test prints why it skips and passes — unless `CI=true`, where a
//!   missing template is a failure (tests/deploy/check.sh sets it).
//! - `COVID_ETL_EXPECT_STAGE` (default `ci`): `prod` expects the schedule enabled,
//!   the 26-hour staleness alarm, the table retained and protected from deletion;
//!   any other stage expects none of these.
//! - `COVID_ETL_EXPECT_SCHEDULE` (default [`SCHEDULE`]): the schedule expression.
//! - `COVID_ETL_EXPECT_ARCH` (optional): `arm64` or `x86_64` for every function.
//! - `COVID_ETL_ARTIFACT_DIR`: the zips the template was packaged from
//!   (`<fn>/<fn>.zip`), to check each function's `CodeSha256` pin; required with `CI=true`.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The state machine's Tasks (`{"Fn::GetAtt": [KEY, "Arn"]}`), from the one list of
/// functions (`src/functions.rs`; `tests/registry.rs` checks it against the sources).
fn step_keys() -> Vec<&'static str> {
    covid_etl::functions::steps().map(|f| f.key).collect()
}

/// Every deployed function's key.
fn all_keys() -> impl Iterator<Item = &'static str> {
    covid_etl::functions::FUNCTIONS.iter().map(|f| f.key)
}

/// The crate under `lambdas/` (and zip `<package>/<package>.zip`) of a function key.
fn package(key: &str) -> &'static str {
    covid_etl::functions::FUNCTIONS
        .iter()
        .find(|f| f.key == key)
        .map(|f| f.package)
        .unwrap_or_else(|| panic!("{key} is not in covid_etl::functions::FUNCTIONS"))
}

/// How many functions the stack deploys.
const FUNCTION_COUNT: usize = covid_etl::functions::FUNCTIONS.len();

/// The daily schedule's target; no state of the ASL.
const STARTER: &str = "StartDaily";

/// The daily run: 20:00 UTC, after both sources' daily update, on the same calendar day
/// in the US (docs/DEPLOY.md, "The schedule").
const SCHEDULE: &str = "cron(0 20 * * ? *)";

/// The functions invoked asynchronously (by EventBridge), and the dead-letter queue that
/// receives both what EventBridge could not deliver and what failed after Lambda's retries.
const ASYNC: &[(&str, &str)] = &[
    (STARTER, "StartDailyDeadLetterQueue"),
    ("Notify", "NotifyDeadLetterQueue"),
];

/// Every environment variable each function gets: only what its binary reads
/// (lambdas/*/src/main.rs).
const ENVIRONMENT: &[(&str, &[&str])] = &[
    (
        "ExtractNyt",
        &["COVID_ETL_SOURCE_ALLOWLIST", "RUST_LOG", "TABLE_NAME"],
    ),
    (
        "ExtractJhu",
        &["COVID_ETL_SOURCE_ALLOWLIST", "RUST_LOG", "TABLE_NAME"],
    ),
    ("Merge", &["RUST_LOG"]),
    ("DiffAndLoad", &["RUST_LOG", "TABLE_NAME"]),
    ("Notify", &["RUST_LOG", "TABLE_NAME", "TOPIC_ARN"]),
    (STARTER, &["RUST_LOG", "STATE_MACHINE_ARN"]),
    (API, &["RUST_LOG", "TABLE_NAME"]),
];

/// What a role's action may act on.
#[derive(Debug, Clone, Copy)]
enum On {
    /// `{"Fn::GetAtt": ["EtlTable", "Arn"]}`
    Table,
    /// `{"Fn::Sub": "${EtlTable.Arn}/index/runs-by-start"}`: the ledger by start time
    RunsIndex,
    /// `{"Ref": "AlertTopic"}`
    Topic,
    /// `{"Ref": <the state machine>}`
    StateMachine,
    /// The executions of this state machine, by its name:
    /// `arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:<name>:*`
    Executions,
    /// `{"Fn::GetAtt": ["MessagesKey", "Arn"]}`: the key of the topics and queues
    Key,
    /// `{"Fn::GetAtt": [<queue>, "Arn"]}`
    Queue(&'static str),
}

/// Every function and what its role may do besides writing its own logs (the IAM table of
/// docs/DEPLOY.md).
const ROLES: &[(&str, &[(&str, On)])] = &[
    ("ExtractNyt", &[("dynamodb:GetItem", On::Table)]),
    ("ExtractJhu", &[("dynamodb:GetItem", On::Table)]),
    ("Merge", &[]),
    (
        "DiffAndLoad",
        &[
            ("dynamodb:Query", On::Table),
            ("dynamodb:BatchWriteItem", On::Table),
            ("dynamodb:UpdateItem", On::Table),
        ],
    ),
    (
        "Notify",
        &[
            ("sns:Publish", On::Topic),
            ("kms:GenerateDataKey", On::Key),
            ("kms:Decrypt", On::Key),
            ("dynamodb:GetItem", On::Table),
            ("dynamodb:PutItem", On::Table),
            ("states:GetExecutionHistory", On::Executions),
            ("sqs:SendMessage", On::Queue("NotifyDeadLetterQueue")),
        ],
    ),
    (
        STARTER,
        &[
            ("states:StartExecution", On::StateMachine),
            ("sqs:SendMessage", On::Queue("StartDailyDeadLetterQueue")),
            ("kms:GenerateDataKey", On::Key),
            ("kms:Decrypt", On::Key),
        ],
    ),
    (
        API,
        &[
            ("dynamodb:Query", On::Table),
            ("dynamodb:Query", On::RunsIndex),
            ("dynamodb:GetItem", On::Table),
        ],
    ),
];

/// The dashboard and its API; no state of the ASL.
const API: &str = "Api";

/// The execution statuses the status-change rule sends to the notify function.
const BAD_ENDINGS: &[&str] = &["ABORTED", "FAILED", "TIMED_OUT"];

const LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

/// What every function needs for X-Ray (these actions take no resource).
const XRAY_ACTIONS: &[&str] = &["xray:PutTelemetryRecords", "xray:PutTraceSegments"];

/// What Step Functions needs for CloudWatch Logs delivery and X-Ray.
const SFN_SERVICE_ACTIONS: &[&str] = &[
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
];

fn template() -> Option<Value> {
    match std::env::var("COVID_ETL_TEMPLATE") {
        Ok(path) if !path.is_empty() => {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read COVID_ETL_TEMPLATE={path}: {e}"));
            Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: bad JSON: {e}")))
        }
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "COVID_ETL_TEMPLATE is not set but CI=true: run tests/deploy/check.sh, \
                     which packages the stack and sets it"
                );
            }
            eprintln!(
                "skipping: COVID_ETL_TEMPLATE is not set (tests/deploy/check.sh packages \
                 the stack and runs these tests)"
            );
            None
        }
    }
}

fn expected_stage() -> String {
    std::env::var("COVID_ETL_EXPECT_STAGE").unwrap_or_else(|_| "ci".into())
}

fn asl_file() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("statemachine/etl.asl.json");
    let text = std::fs::read_to_string(&path).expect("read statemachine/etl.asl.json");
    serde_json::from_str(&text).expect("statemachine/etl.asl.json is JSON")
}

fn resources(t: &Value) -> &Map<String, Value> {
    t["Resources"].as_object().expect("template has Resources")
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    resources(t)
        .get(id)
        .unwrap_or_else(|| panic!("template has no resource {id}"))
}

fn of_type<'a>(t: &'a Value, ty: &str) -> Vec<(&'a String, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

fn the_state_machine(t: &Value) -> (&String, &Value) {
    let sms = of_type(t, "AWS::StepFunctions::StateMachine");
    assert_eq!(sms.len(), 1, "exactly one state machine expected");
    sms[0]
}

fn lambda_id(function: &str) -> String {
    format!("{function}LambdaFunction")
}

#[test]
fn every_function_has_its_own_s3_key_and_version_pin() {
    // Serverless v3 keys an uploaded artifact by its file name: seven `bootstrap.zip`
    // would be uploaded to one key and every function would run the last one.
    let Some(t) = template() else { return };
    let artifacts = match std::env::var("COVID_ETL_ARTIFACT_DIR") {
        Ok(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("COVID_ETL_ARTIFACT_DIR is not set but CI=true (tests/deploy/check.sh sets it)")
        }
        _ => None,
    };
    let mut keys = BTreeSet::new();
    for function in all_keys() {
        let id = lambda_id(function);
        let code = &resource(&t, &id)["Properties"]["Code"];
        let key = code["S3Key"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: S3Key"));
        let name = package(function);
        assert!(
            key.ends_with(&format!("/{name}.zip")),
            "{id}: S3Key {key} is not {name}.zip"
        );
        assert!(keys.insert(key.to_owned()), "{id}: S3Key {key} is shared");

        let versions: Vec<_> = of_type(&t, "AWS::Lambda::Version")
            .into_iter()
            .filter(|(_, v)| v["Properties"]["FunctionName"] == json!({"Ref": id}))
            .collect();
        assert_eq!(versions.len(), 1, "{id}: one AWS::Lambda::Version");
        let pinned = versions[0].1["Properties"]["CodeSha256"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: CodeSha256"));
        if let Some(dir) = &artifacts {
            use base64::Engine as _;
            use sha2::Digest as _;
            let zip = dir.join(name).join(format!("{name}.zip"));
            let bytes = std::fs::read(&zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
            let own =
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes));
            assert_eq!(
                pinned,
                own,
                "{id}: CodeSha256 is not the sha256 of {}",
                zip.display()
            );
        } else {
            eprintln!("{id}: CodeSha256 not compared: COVID_ETL_ARTIFACT_DIR is not set");
        }
    }
    assert_eq!(keys.len(), FUNCTION_COUNT);
}

/// A string token standing for an intrinsic, the same on both sides of a comparison.
fn intrinsic_token(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    if let Some(target) = obj.get("Ref").and_then(Value::as_str) {
        return Some(format!("<Ref {target}>"));
    }
    if let Some(args) = obj.get("Fn::GetAtt").and_then(Value::as_array) {
        let parts: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        return Some(format!("<GetAtt {}>", parts.join(".")));
    }
    None
}

/// Numbers compared by value: the framework writes `2.0` as `2`.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().expect("finite number")),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

/// The ASL file with its intrinsics replaced by tokens, the way the plugin
/// resolves them: a function name becomes its Lambda logical id.
fn substitute_asl(v: &Value, t: &Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 && o.contains_key("Fn::GetAtt") => {
            let args = o["Fn::GetAtt"].as_array().expect("GetAtt args");
            let name = args[0].as_str().expect("GetAtt name");
            assert_eq!(
                args[1], "Arn",
                "only Fn::GetAtt [X, Arn] is used in the ASL"
            );
            let id = lambda_id(name);
            assert_eq!(
                resource(t, &id)["Type"],
                "AWS::Lambda::Function",
                "{name} in the ASL must be a function of serverless.yml"
            );
            Value::String(format!("<GetAtt {id}.Arn>"))
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("Ref") => {
            let id = o["Ref"].as_str().expect("Ref target");
            resource(t, id);
            Value::String(format!("<Ref {id}>"))
        }
        Value::Object(o) => {
            assert!(
                !o.keys().any(|k| k.starts_with("Fn::")),
                "unsupported intrinsic in ASL: {v}"
            );
            Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), substitute_asl(v, t)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| substitute_asl(v, t)).collect()),
        other => other.clone(),
    }
}

/// The deployed definition: `Fn::Sub` string with its `${name}` placeholders
/// replaced by the tokens of their values.
fn compiled_definition(t: &Value) -> Value {
    let (_, sm) = the_state_machine(t);
    let def = &sm["Properties"]["DefinitionString"];
    let (text, params) = match def {
        Value::String(s) => (s.clone(), Map::new()),
        Value::Object(o) => match o.get("Fn::Sub") {
            Some(Value::String(s)) => (s.clone(), Map::new()),
            Some(Value::Array(a)) => (
                a[0].as_str().expect("Fn::Sub string").to_owned(),
                a[1].as_object().expect("Fn::Sub map").clone(),
            ),
            _ => panic!("unexpected DefinitionString {def}"),
        },
        _ => panic!("unexpected DefinitionString {def}"),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let name = &rest[start + 2..end];
        let value = params
            .get(name)
            .unwrap_or_else(|| panic!("Fn::Sub placeholder ${{{name}}} has no value"));
        let token = intrinsic_token(value).unwrap_or_else(|| panic!("{name}: {value}"));
        out.push_str(&token);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).expect("resolved definition is JSON")
}

/// Task state name -> (resource, TimeoutSeconds), through Parallel branches. Every Task
/// must set its own TimeoutSeconds (the ASL default is 60 s, too easy to overlook).
fn task_states(states: &Value, out: &mut Vec<(String, Value, u64)>) {
    for (name, state) in states.as_object().expect("States") {
        if state["Type"] == "Task" {
            let timeout = state["TimeoutSeconds"]
                .as_u64()
                .unwrap_or_else(|| panic!("Task {name} has no TimeoutSeconds"));
            assert!(timeout > 0, "Task {name}: TimeoutSeconds {timeout}");
            out.push((name.clone(), state["Resource"].clone(), timeout));
        }
        if let Some(branches) = state["Branches"].as_array() {
            for b in branches {
                task_states(&b["States"], out);
            }
        }
    }
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

/// Every Allow statement of a role's inline policies: (action, resources).
fn role_statements(role: &Value) -> Vec<(String, Vec<Value>)> {
    assert!(
        role["Properties"]["ManagedPolicyArns"].is_null(),
        "roles carry no managed policies"
    );
    let mut out = vec![];
    for policy in as_list(&role["Properties"]["Policies"]) {
        for st in as_list(&policy["PolicyDocument"]["Statement"]) {
            assert_eq!(st["Effect"], "Allow", "only Allow statements: {st}");
            let resources = as_list(&st["Resource"]);
            for action in as_list(&st["Action"]) {
                let action = action.as_str().expect("action string").to_owned();
                assert!(!action.contains('*'), "wildcard action {action}");
                out.push((action, resources.clone()));
            }
        }
    }
    out
}

/// Whether a template condition holds with the template's parameter defaults (the values a
/// deploy of this package uses): `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`,
/// and `Ref` to a parameter.
fn condition_holds(t: &Value, name: &str) -> bool {
    fn value(t: &Value, v: &Value) -> Value {
        if let Some(p) = v.get("Ref").and_then(Value::as_str) {
            let param = &t["Parameters"][p];
            assert!(param.is_object(), "Ref {p} in a condition: not a parameter");
            return param["Default"].clone();
        }
        v.clone()
    }
    fn eval(t: &Value, c: &Value) -> bool {
        let o = c.as_object().expect("condition object");
        assert_eq!(o.len(), 1, "condition {c}");
        let (f, args) = o.iter().next().unwrap();
        match f.as_str() {
            "Fn::Equals" => value(t, &args[0]) == value(t, &args[1]),
            "Fn::Not" => !eval(t, &args[0]),
            "Fn::And" => args.as_array().unwrap().iter().all(|a| eval(t, a)),
            "Fn::Or" => args.as_array().unwrap().iter().any(|a| eval(t, a)),
            "Condition" => condition_holds(t, args.as_str().expect("condition name")),
            other => panic!("unsupported condition function {other}"),
        }
    }
    let c = &t["Conditions"][name];
    assert!(c.is_object(), "condition {name} is defined");
    eval(t, c)
}

/// Whether a resource is created on a deploy of this package: unconditional, or its
/// condition holds.
fn is_created(t: &Value, r: &Value) -> bool {
    match r["Condition"].as_str() {
        None => true,
        Some(c) => condition_holds(t, c),
    }
}

fn state_machine_name(t: &Value) -> String {
    let (_, sm) = the_state_machine(t);
    sm["Properties"]["StateMachineName"]
        .as_str()
        .expect("state machine has a fixed StateMachineName")
        .to_owned()
}

fn role_of_function<'a>(t: &'a Value, function: &str) -> (&'a str, &'a Value) {
    let f = resource(t, &lambda_id(function));
    let role_id = f["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{function}: Role must be Fn::GetAtt of a role in the stack"));
    (role_id, resource(t, role_id))
}

#[test]
fn state_machine_definition_is_the_asl_file() {
    let Some(t) = template() else { return };
    let compiled = compiled_definition(&t);
    let expected = substitute_asl(&asl_file(), &t);
    assert_eq!(
        normalize(&compiled),
        normalize(&expected),
        "deployed definition differs from statemachine/etl.asl.json"
    );
}

#[test]
fn deployed_definition_has_a_machine_timeout_and_a_timeout_on_every_task() {
    let Some(t) = template() else { return };
    let compiled = compiled_definition(&t);
    let machine = compiled["TimeoutSeconds"]
        .as_u64()
        .expect("the state machine has TimeoutSeconds");
    assert!(machine > 0);
    let mut tasks = vec![];
    task_states(&compiled["States"], &mut tasks); // panics on a Task without one
    assert!(!tasks.is_empty());
    for (state, _, timeout) in &tasks {
        assert!(
            *timeout < machine,
            "Task {state}: {timeout}s must be below the machine's {machine}s"
        );
    }
    // The no-new-data path notifies through a Task of its own, with its own timeout.
    assert!(
        tasks.iter().any(|(s, _, _)| s == "NotifyNoNewData"),
        "NotifyNoNewData Task: {:?}",
        tasks.iter().map(|(s, _, _)| s).collect::<Vec<_>>()
    );
}

#[test]
fn every_asl_function_is_a_lambda_that_ends_before_its_task() {
    let Some(t) = template() else { return };
    let expect_arch = std::env::var("COVID_ETL_EXPECT_ARCH").ok();
    let mut tasks = vec![];
    task_states(&asl_file()["States"], &mut tasks);
    let mut archs = BTreeSet::new();
    for function in all_keys() {
        let f = &resource(&t, &lambda_id(function))["Properties"];
        assert_eq!(f["Runtime"], "provided.al2023", "{function}");
        assert_eq!(f["Handler"], "bootstrap", "{function}");
        assert_eq!(f["MemorySize"], 256, "{function}");
        let arch = f["Architectures"].as_array().expect("Architectures");
        assert_eq!(arch.len(), 1, "{function}");
        let arch = arch[0].as_str().unwrap().to_owned();
        assert!(arch == "arm64" || arch == "x86_64", "{function}: {arch}");
        if let Some(want) = &expect_arch {
            assert_eq!(&arch, want, "{function}");
        }
        archs.insert(arch);
        assert_eq!(
            f["TracingConfig"],
            json!({"Mode": "Active"}),
            "{function}: X-Ray"
        );
        if function == STARTER || function == API {
            continue; // no Task calls these: see their own tests
        }

        let timeout = f["Timeout"].as_u64().expect("Timeout");
        let getatt = json!({"Fn::GetAtt": [function, "Arn"]});
        let calls: Vec<_> = tasks.iter().filter(|(_, r, _)| *r == getatt).collect();
        assert!(
            !calls.is_empty(),
            "{function} is not used by any Task state"
        );
        for (state, _, task_timeout) in calls {
            assert!(
                timeout < *task_timeout,
                "{function}: Lambda timeout {timeout}s must be below Task {state} TimeoutSeconds {task_timeout}s"
            );
        }
    }
    assert_eq!(
        archs.len(),
        1,
        "all functions share one architecture: {archs:?}"
    );
}

#[test]
fn function_roles_are_least_privilege() {
    let Some(t) = template() else { return };
    assert!(
        !resources(&t).contains_key("IamRoleLambdaExecution"),
        "no shared framework role: every function has its own"
    );
    let (sm_id, _) = the_state_machine(&t);
    let resource_of = |on: On| match on {
        On::Table => json!({"Fn::GetAtt": ["EtlTable", "Arn"]}),
        On::RunsIndex => json!({"Fn::Sub": "${EtlTable.Arn}/index/runs-by-start"}),
        On::Topic => json!({"Ref": "AlertTopic"}),
        On::StateMachine => json!({"Ref": sm_id}),
        On::Executions => json!({"Fn::Sub": format!(
            "arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:{}:*",
            state_machine_name(&t)
        )}),
        On::Key => json!({"Fn::GetAtt": ["MessagesKey", "Arn"]}),
        On::Queue(id) => json!({"Fn::GetAtt": [id, "Arn"]}),
    };
    let mut seen_roles = BTreeSet::new();
    for (function, allowed) in ROLES {
        let (role_id, role) = role_of_function(&t, function);
        assert!(seen_roles.insert(role_id.to_owned()), "{role_id} is shared");
        let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"];
        assert_eq!(
            as_list(trust),
            vec![
                json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})
            ],
            "{role_id}: trust"
        );
        let own_logs = json!({"Fn::GetAtt": [format!("{function}LogGroup"), "Arn"]});
        let mut actions = BTreeSet::new();
        let mut xray = BTreeSet::new();
        for (action, res) in role_statements(role) {
            if LOG_ACTIONS.contains(&action.as_str()) {
                assert_eq!(
                    res,
                    vec![own_logs.clone()],
                    "{role_id}: {action} on its own log group only"
                );
                continue;
            }
            if XRAY_ACTIONS.contains(&action.as_str()) {
                assert_eq!(res, vec![json!("*")], "{role_id}: {action}");
                xray.insert(action);
                continue;
            }
            // An action allowed on several resources is one statement listing them in order.
            let want: Vec<Value> = allowed
                .iter()
                .filter(|(a, _)| *a == action)
                .map(|(_, on)| resource_of(*on))
                .collect();
            assert!(!want.is_empty(), "{role_id}: unexpected action {action}");
            assert_eq!(res, want, "{role_id}: {action}");
            assert!(actions.insert(action.clone()), "{role_id}: {action} twice");
        }
        let allowed: BTreeSet<String> = allowed.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(actions, allowed, "{role_id}: actions beyond logs and X-Ray");
        assert_eq!(
            xray.len(),
            XRAY_ACTIONS.len(),
            "{role_id}: the X-Ray actions its tracing needs"
        );
    }
}

#[test]
fn state_machine_role_invokes_the_five_functions_and_publishes_alerts() {
    let Some(t) = template() else { return };
    let (_, sm) = the_state_machine(&t);
    let role_id = sm["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        .as_str()
        .expect("state machine role in the stack");
    let role = resource(&t, role_id);
    let mut invoke = BTreeSet::new();
    let mut other = BTreeSet::new();
    for (action, res) in role_statements(role) {
        match action.as_str() {
            "lambda:InvokeFunction" => {
                for r in res {
                    // The function, or its versions/aliases via Fn::Sub "${functionArn}:*".
                    let target = r["Fn::GetAtt"].clone();
                    let target = if target.is_null() {
                        r["Fn::Sub"][1]["functionArn"]["Fn::GetAtt"].clone()
                    } else {
                        target
                    };
                    assert_eq!(target[1], "Arn", "{r}");
                    invoke.insert(target[0].as_str().expect("function id").to_owned());
                }
            }
            "sns:Publish" => {
                assert_eq!(
                    res,
                    vec![json!({"Ref": "AlertTopic"})],
                    "sns:Publish on the topic only"
                );
                other.insert(action);
            }
            // The failure branch's direct publish to the encrypted topic.
            "kms:GenerateDataKey" | "kms:Decrypt" => {
                assert_eq!(
                    res,
                    vec![json!({"Fn::GetAtt": ["MessagesKey", "Arn"]})],
                    "{action} on the topic's key only"
                );
                other.insert(action);
            }
            a if SFN_SERVICE_ACTIONS.contains(&a) => {
                assert_eq!(res, vec![json!("*")], "{a}");
                other.insert(action);
            }
            a => panic!("state machine role: unexpected action {a}"),
        }
    }
    let want_invoke: BTreeSet<String> = step_keys().iter().map(|f| lambda_id(f)).collect();
    assert_eq!(invoke, want_invoke);
    for needed in ["sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"] {
        assert!(
            other.contains(needed),
            "state machine may publish to the encrypted topic: {needed}"
        );
    }
    assert_eq!(
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"],
        json!([{
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        }]),
        "{role_id}: trusted by Step Functions of this account only"
    );
}

#[test]
fn logging_and_tracing_are_on() {
    let Some(t) = template() else { return };
    let (_, sm) = the_state_machine(&t);
    let p = &sm["Properties"];
    let logging = &p["LoggingConfiguration"];
    let level = logging["Level"].as_str().unwrap_or("OFF");
    assert!(level == "ERROR" || level == "ALL", "log level {level}");
    assert_eq!(logging["IncludeExecutionData"], true);
    let dest = &logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"];
    let group = dest[0].as_str().expect("log group in the stack");
    assert_eq!(resource(&t, group)["Type"], "AWS::Logs::LogGroup");
    assert_eq!(p["TracingConfiguration"]["Enabled"], true);
}

/// The `AWS::Lambda::Permission`s that let EventBridge invoke `function` from `rule_id`.
fn events_may_invoke(t: &Value, function: &str, rule_id: &str) -> usize {
    let getatt = json!({"Fn::GetAtt": [lambda_id(function), "Arn"]});
    let reference = json!({"Ref": lambda_id(function)});
    of_type(t, "AWS::Lambda::Permission")
        .into_iter()
        .filter(|(_, p)| {
            let p = &p["Properties"];
            (p["FunctionName"] == getatt || p["FunctionName"] == reference)
                && p["SourceArn"] == json!({"Fn::GetAtt": [rule_id, "Arn"]})
        })
        .inspect(|(id, p)| {
            let p = &p["Properties"];
            assert_eq!(p["Action"], "lambda:InvokeFunction", "{id}");
            assert_eq!(p["Principal"], "events.amazonaws.com", "{id}");
        })
        .count()
}

#[test]
fn daily_schedule_invokes_the_starter_not_the_state_machine() {
    let Some(t) = template() else { return };
    let (sm_id, _) = the_state_machine(&t);
    let schedule = std::env::var("COVID_ETL_EXPECT_SCHEDULE").unwrap_or_else(|_| SCHEDULE.into());
    let rules = of_type(&t, "AWS::Events::Rule");
    for (id, r) in &rules {
        for tg in as_list(&r["Properties"]["Targets"]) {
            assert_ne!(
                tg["Arn"],
                json!({"Ref": sm_id}),
                "{id}: nothing starts the state machine but StartDaily (it names the execution)"
            );
        }
    }
    let schedules: Vec<_> = rules
        .into_iter()
        .filter(|(_, r)| !r["Properties"]["ScheduleExpression"].is_null())
        .collect();
    assert_eq!(schedules.len(), 1, "one schedule rule");
    let (rule_id, rule) = schedules[0];
    let p = &rule["Properties"];
    assert_eq!(p["ScheduleExpression"], schedule.as_str(), "{rule_id}");
    let want_state = if expected_stage() == "prod" {
        "ENABLED"
    } else {
        "DISABLED"
    };
    assert_eq!(
        resolve(&t, &p["State"]),
        want_state,
        "{rule_id} on stage {}",
        expected_stage()
    );
    let targets = as_list(&p["Targets"]);
    assert_eq!(targets.len(), 1, "{rule_id}: one target");
    let target = &targets[0];
    assert_eq!(
        target["Arn"],
        json!({"Fn::GetAtt": [lambda_id(STARTER), "Arn"]}),
        "{rule_id} invokes {STARTER}"
    );
    // The starter names the execution after the event's `time`: it must get the event.
    for key in ["Input", "InputPath", "InputTransformer"] {
        assert!(
            target[key].is_null(),
            "{rule_id}: {key} would hide the event"
        );
    }
    assert!(
        target["RoleArn"].is_null(),
        "{rule_id}: Lambda targets use a permission"
    );
    assert_eq!(events_may_invoke(&t, STARTER, rule_id), 1, "{rule_id}");
    undelivered_events_reach(&t, rule_id, target, "StartDailyDeadLetterQueue");
}

/// A rule target retries for at most an hour and then sends the event to `queue`, which
/// accepts it from this rule only.
fn undelivered_events_reach(t: &Value, rule_id: &str, target: &Value, queue: &str) {
    assert_eq!(
        target["RetryPolicy"],
        json!({"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600}),
        "{rule_id}: retry policy"
    );
    let queue_arn = json!({"Fn::GetAtt": [queue, "Arn"]});
    assert_eq!(
        target["DeadLetterConfig"]["Arn"], queue_arn,
        "{rule_id}: dead-letter queue"
    );
    let allowed: Vec<_> = of_type(t, "AWS::SQS::QueuePolicy")
        .into_iter()
        .flat_map(|(_, p)| as_list(&p["Properties"]["PolicyDocument"]["Statement"]))
        .filter(|st| st["Resource"] == queue_arn)
        .map(|mut st| {
            st.as_object_mut().expect("statement").remove("Sid"); // a label only
            st
        })
        .collect();
    assert_eq!(
        allowed,
        vec![json!({
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}
        })],
        "{queue} accepts EventBridge's undelivered events from {rule_id} only"
    );
}

/// A template value with `Fn::If` resolved by the conditions' values at the parameters'
/// defaults.
fn resolve(t: &Value, v: &Value) -> Value {
    match v.get("Fn::If").and_then(Value::as_array) {
        Some(args) => {
            let cond = args[0].as_str().expect("Fn::If condition name");
            resolve(t, &args[if condition_holds(t, cond) { 1 } else { 2 }])
        }
        None => v.clone(),
    }
}

#[test]
fn start_daily_starts_this_state_machine() {
    let Some(t) = template() else { return };
    let (sm_id, _) = the_state_machine(&t);
    let f = &resource(&t, &lambda_id(STARTER))["Properties"];
    assert_eq!(
        f["Environment"]["Variables"]["STATE_MACHINE_ARN"],
        json!({"Ref": sm_id})
    );
    let timeout = f["Timeout"].as_u64().expect("Timeout");
    assert!(
        timeout <= 60,
        "a StartExecution call needs seconds, not {timeout}s"
    );
    // Its role (least privilege, also checked with the others) starts this machine only.
    let (role_id, role) = role_of_function(&t, STARTER);
    let starts: Vec<_> = role_statements(role)
        .into_iter()
        .filter(|(a, _)| a.starts_with("states:"))
        .collect();
    assert_eq!(
        starts,
        vec![(
            "states:StartExecution".to_owned(),
            vec![json!({"Ref": sm_id})]
        )],
        "{role_id}"
    );
}

#[test]
fn executions_that_end_badly_reach_the_notify_function() {
    let Some(t) = template() else { return };
    let (sm_id, _) = the_state_machine(&t);
    let rules: Vec<_> = of_type(&t, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| {
            r["Properties"]["EventPattern"]["detail-type"]
                == json!(["Step Functions Execution Status Change"])
        })
        .collect();
    assert_eq!(rules.len(), 1, "one status-change rule");
    let (rule_id, rule) = rules[0];
    assert!(is_created(&t, rule), "{rule_id} exists on every stage");
    let p = &rule["Properties"];
    assert_eq!(p["State"], "ENABLED", "{rule_id}");
    let pattern = &p["EventPattern"];
    assert_eq!(pattern["source"], json!(["aws.states"]), "{rule_id}");
    let detail = pattern["detail"].as_object().expect("detail filter");
    assert_eq!(
        detail.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["stateMachineArn", "status"]),
        "{rule_id}: filters on status and state machine only"
    );
    let statuses: Vec<&str> = detail["status"]
        .as_array()
        .expect("status list")
        .iter()
        .map(|s| s.as_str().expect("status string"))
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, BAD_ENDINGS, "{rule_id}: exactly these statuses");
    assert_eq!(
        detail["stateMachineArn"],
        json!([{"Ref": sm_id}]),
        "{rule_id}: this state machine only"
    );
    let targets = as_list(&p["Targets"]);
    assert_eq!(targets.len(), 1, "{rule_id}: one target");
    let target = &targets[0];
    assert_eq!(
        target["Arn"],
        json!({"Fn::GetAtt": [lambda_id("Notify"), "Arn"]}),
        "{rule_id} targets Notify"
    );
    for key in ["Input", "InputPath", "InputTransformer"] {
        assert!(
            target[key].is_null(),
            "{rule_id}: Notify reads the event itself, not {key}"
        );
    }
    assert_eq!(events_may_invoke(&t, "Notify", rule_id), 1, "{rule_id}");
    undelivered_events_reach(&t, rule_id, target, "NotifyDeadLetterQueue");
}

#[test]
fn table_is_on_demand_with_point_in_time_recovery() {
    let Some(t) = template() else { return };
    let tables = of_type(&t, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let (id, table) = tables[0];
    assert_eq!(id, "EtlTable");
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    // The keys and index the store reads by (src/store/dynamodb.rs, `create_table`).
    assert_eq!(
        p["KeySchema"],
        json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    );
    assert_eq!(
        p["AttributeDefinitions"],
        json!([
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "startedAt", "AttributeType": "S"}
        ])
    );
    assert_eq!(
        p["LocalSecondaryIndexes"],
        json!([{
            "IndexName": covid_etl::store::dynamodb::RUNS_BY_START,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "startedAt", "KeyType": "RANGE"}
            ],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["record"]}
        }])
    );
    let policy = if expected_stage() == "prod" {
        "Retain"
    } else {
        "Delete"
    };
    assert_eq!(table["DeletionPolicy"], policy);
    assert_eq!(table["UpdateReplacePolicy"], policy);
    assert_eq!(
        p["DeletionProtectionEnabled"],
        expected_stage() == "prod",
        "deletion protection on prod only"
    );
}

/// What an alarm watches: (namespace, metric, the resource its one dimension names).
fn watched(id: &str, alarm: &Value) -> (String, String, String) {
    let p = &alarm["Properties"];
    let dims = as_list(&p["Dimensions"]);
    let target = |d: &Value| match &d["Value"] {
        Value::String(s) => s.clone(),
        v => intrinsic_token(v).unwrap_or_else(|| panic!("{id}: dimension {v}")),
    };
    let subject = match p["Namespace"].as_str() {
        // An HTTP API's metrics are per API and stage.
        Some("AWS/ApiGateway") => {
            assert_eq!(dims.len(), 2, "{id}: ApiId and Stage");
            assert_eq!(
                dims[1],
                json!({"Name": "Stage", "Value": "$default"}),
                "{id}"
            );
            target(&dims[0])
        }
        _ => {
            assert_eq!(dims.len(), 1, "{id}: one dimension");
            target(&dims[0])
        }
    };
    (
        p["Namespace"].as_str().expect("Namespace").to_owned(),
        p["MetricName"].as_str().expect("MetricName").to_owned(),
        subject,
    )
}

#[test]
fn alarms_go_to_the_operations_topic_and_cover_the_asynchronous_paths() {
    let Some(t) = template() else { return };
    let (sm_id, _) = the_state_machine(&t);
    let mut created = BTreeSet::new();
    for (id, alarm) in of_type(&t, "AWS::CloudWatch::Alarm") {
        let p = &alarm["Properties"];
        // Operators hear of a failure from the alarm; the pipeline's subscribers from its
        // own failure message on AlertTopic: once to each audience.
        assert_eq!(p["AlarmActions"], json!([{"Ref": "OpsTopic"}]), "{id}");
        assert_eq!(p["OKActions"], json!([{"Ref": "OpsTopic"}]), "{id}");
        let w = watched(id, alarm);
        if is_created(&t, alarm) {
            assert!(created.insert(w.clone()), "{id}: a second alarm on {w:?}");
        }
    }
    let sm = format!("<Ref {sm_id}>");
    let mut want: BTreeSet<(String, String, String)> = [
        ("AWS/States", "ExecutionsFailed", sm.as_str()),
        ("AWS/States", "ExecutionsTimedOut", &sm),
        ("AWS/States", "ExecutionsAborted", &sm),
        ("AWS/ApiGateway", "5xx", "<Ref HttpApi>"),
    ]
    .iter()
    .map(|(n, m, s)| (n.to_string(), m.to_string(), s.to_string()))
    .collect();
    for (function, queue) in ASYNC {
        for metric in ["Errors", "Throttles"] {
            want.insert((
                "AWS/Lambda".into(),
                metric.into(),
                format!("<Ref {}>", lambda_id(function)),
            ));
        }
        want.insert((
            "AWS/SQS".into(),
            "ApproximateNumberOfMessagesVisible".into(),
            format!("<GetAtt {queue}.QueueName>"),
        ));
    }
    if expected_stage() == "prod" {
        want.insert((
            "AWS/States".into(),
            "ExecutionsSucceeded".into(),
            sm.clone(),
        ));
    }
    assert_eq!(
        created,
        want,
        "alarms created on stage {}",
        expected_stage()
    );
}

#[test]
fn asynchronous_failures_end_in_a_dead_letter_queue() {
    let Some(t) = template() else { return };
    for (function, queue) in ASYNC {
        let configs: Vec<_> = of_type(&t, "AWS::Lambda::EventInvokeConfig")
            .into_iter()
            .filter(|(_, c)| c["Properties"]["FunctionName"] == json!({"Ref": lambda_id(function)}))
            .collect();
        assert_eq!(configs.len(), 1, "{function}: one EventInvokeConfig");
        let (id, c) = configs[0];
        let p = &c["Properties"];
        assert_eq!(
            p["DestinationConfig"]["OnFailure"]["Destination"],
            json!({"Fn::GetAtt": [queue, "Arn"]}),
            "{id}: on failure, to {queue}"
        );
        assert_eq!(p["MaximumRetryAttempts"], 2, "{id}");
        assert_eq!(p["MaximumEventAgeInSeconds"], 3600, "{id}");
        let q = &resource(&t, queue)["Properties"];
        assert_eq!(
            q["KmsMasterKeyId"],
            json!({"Ref": "MessagesKey"}),
            "{queue}"
        );
        assert_eq!(q["MessageRetentionPeriod"], 1_209_600, "{queue}: 14 days");
    }
}

#[test]
fn topics_are_encrypted_with_a_key_cloudwatch_may_use() {
    let Some(t) = template() else { return };
    for topic in ["AlertTopic", "OpsTopic"] {
        let r = resource(&t, topic);
        assert_eq!(r["Type"], "AWS::SNS::Topic");
        assert_eq!(
            r["Properties"]["KmsMasterKeyId"],
            json!({"Ref": "MessagesKey"}),
            "{topic}"
        );
    }
    let key = &resource(&t, "MessagesKey")["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let statements = as_list(&key["KeyPolicy"]["Statement"]);
    let by_service = |service: &str| {
        statements
            .iter()
            .find(|s| s["Principal"]["Service"] == service)
            .unwrap_or_else(|| panic!("the key policy lets {service} use the key"))
            .clone()
    };
    for service in ["cloudwatch.amazonaws.com", "events.amazonaws.com"] {
        let st = by_service(service);
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(
            st["Action"],
            json!(["kms:Decrypt", "kms:GenerateDataKey*"]),
            "{service}: use, not administer"
        );
    }
    // Nothing else but the account (whose IAM policies grant the publishers' use).
    for st in &statements {
        let p = &st["Principal"];
        assert!(
            p["Service"].is_string()
                || p["AWS"]
                    == json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}),
            "key policy principal {p}"
        );
    }
    // Alarms publish to the operations topic only.
    let policies: Vec<_> = of_type(&t, "AWS::SNS::TopicPolicy");
    assert_eq!(policies.len(), 1);
    let p = &policies[0].1["Properties"];
    assert_eq!(p["Topics"], json!([{"Ref": "OpsTopic"}]));
    let st = &as_list(&p["PolicyDocument"]["Statement"])[0];
    assert_eq!(
        st["Principal"],
        json!({"Service": "cloudwatch.amazonaws.com"})
    );
    assert_eq!(st["Resource"], json!({"Ref": "OpsTopic"}));
}

#[test]
fn email_subscriptions_are_optional_and_dry_runs_reach_no_subscriber() {
    let Some(t) = template() else { return };
    for (id, topic) in [
        ("AlertEmailSubscription", "AlertTopic"),
        ("OpsEmailSubscription", "OpsTopic"),
    ] {
        let sub = resource(&t, id);
        assert_eq!(sub["Type"], "AWS::SNS::Subscription");
        let cond = sub["Condition"]
            .as_str()
            .expect("subscription is conditional");
        assert!(!condition_holds(&t, cond), "{id}: none without an address");
        assert_eq!(sub["Properties"]["Protocol"], "email");
        assert_eq!(sub["Properties"]["TopicArn"], json!({"Ref": topic}));
    }
    // The notifier marks a dry run with the attribute dryRun (src/steps.rs compose); a
    // message without it (every other run, the state machine's direct fallback) passes.
    let p = &resource(&t, "AlertEmailSubscription")["Properties"];
    assert_eq!(p["FilterPolicyScope"], "MessageAttributes");
    assert_eq!(p["FilterPolicy"], json!({"dryRun": [{"exists": false}]}));
}

#[test]
fn no_success_in_26_hours_alarms_where_the_schedule_runs() {
    let Some(t) = template() else { return };
    let alarms: Vec<_> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["MetricName"] == "ExecutionsSucceeded")
        .collect();
    assert_eq!(alarms.len(), 1, "one staleness alarm in the template");
    let (id, alarm) = alarms[0];
    // Conditional on the schedule, through a template parameter (like the email
    // subscription): created on prod, absent from a ci deploy.
    let cond = alarm["Condition"]
        .as_str()
        .unwrap_or_else(|| panic!("{id} must be conditional on the schedule"));
    let prod = expected_stage() == "prod";
    assert_eq!(
        condition_holds(&t, cond),
        prod,
        "{id} (condition {cond}) on stage {}",
        expected_stage()
    );
    let p = &alarm["Properties"];
    assert_eq!(p["Namespace"], "AWS/States", "{id}");
    assert_eq!(p["Statistic"], "Sum", "{id}");
    assert_eq!(p["Period"], 3600, "{id}");
    assert_eq!(p["EvaluationPeriods"], 26, "{id}: 26 hours");
    assert_eq!(
        p["DatapointsToAlarm"], 26,
        "{id}: every hour without a success"
    );
    assert_eq!(p["Threshold"].as_f64(), Some(1.0), "{id}");
    assert_eq!(p["ComparisonOperator"], "LessThanThreshold", "{id}");
    assert_eq!(
        p["TreatMissingData"], "breaching",
        "{id}: no executions is stale"
    );
    // PutMetricAlarm's limit for periods of an hour or more: 7 days in all.
    let range = p["Period"].as_u64().unwrap() * p["EvaluationPeriods"].as_u64().unwrap();
    assert!(range <= 7 * 86_400, "{id}: evaluation range {range}s");
}

#[test]
fn nothing_account_specific_is_hard_coded() {
    let Some(t) = template() else { return };
    fn walk(v: &Value, path: &str) {
        match v {
            Value::String(s) => {
                // An account id inside an ARN: ":" + 12 digits + ":".
                let b = s.as_bytes();
                for i in 0..b.len() {
                    if b[i] == b':'
                        && i + 13 < b.len()
                        && b[i + 1..i + 13].iter().all(u8::is_ascii_digit)
                        && b[i + 13] == b':'
                    {
                        panic!("{path}: account id in {s}");
                    }
                }
            }
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| walk(v, &format!("{path}[{i}]"))),
            Value::Object(o) => o.iter().for_each(|(k, v)| walk(v, &format!("{path}.{k}"))),
            _ => {}
        }
    }
    walk(&t["Resources"], "Resources");
}

#[test]
fn the_dashboard_is_served_by_the_api_function_on_the_default_stage() {
    let Some(t) = template() else { return };
    let apis = of_type(&t, "AWS::ApiGatewayV2::Api");
    assert_eq!(apis.len(), 1, "one HTTP API");
    assert_eq!(apis[0].1["Properties"]["ProtocolType"], "HTTP");
    let stages = of_type(&t, "AWS::ApiGatewayV2::Stage");
    assert_eq!(stages.len(), 1);
    assert_eq!(stages[0].1["Properties"]["StageName"], "$default");
    let routes = of_type(&t, "AWS::ApiGatewayV2::Route");
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].1["Properties"]["RouteKey"], "$default");
    let integrations = of_type(&t, "AWS::ApiGatewayV2::Integration");
    assert_eq!(integrations.len(), 1);
    assert_eq!(
        integrations[0].1["Properties"]["IntegrationUri"],
        json!({"Fn::GetAtt": [lambda_id(API), "Arn"]})
    );
}

#[test]
fn the_api_is_throttled_logged_capped_and_states_its_cors_policy() {
    let Some(t) = template() else { return };
    let (_, stage) = of_type(&t, "AWS::ApiGatewayV2::Stage")[0];
    let p = &stage["Properties"];
    let route = &p["DefaultRouteSettings"];
    let rate = route["ThrottlingRateLimit"]
        .as_f64()
        .expect("stage rate limit");
    let burst = route["ThrottlingBurstLimit"]
        .as_u64()
        .expect("stage burst limit");
    assert!(rate > 0.0 && rate <= 100.0, "rate limit {rate}/s");
    assert!(burst as f64 >= rate && burst <= 200, "burst {burst}");
    // Access logs, to a log group of the stack.
    let logs = &p["AccessLogSettings"];
    let group = logs["DestinationArn"]["Fn::GetAtt"][0]
        .as_str()
        .expect("access logs to a log group of the stack");
    assert_eq!(resource(&t, group)["Type"], "AWS::Logs::LogGroup");
    let format = logs["Format"].as_str().expect("access log format");
    for field in [
        "$context.requestId",
        "$context.status",
        "$context.identity.sourceIp",
    ] {
        assert!(format.contains(field), "access log format lacks {field}");
    }
    // CORS: explicit, read-only, no credentials.
    let (_, api) = of_type(&t, "AWS::ApiGatewayV2::Api")[0];
    let cors = &api["Properties"]["CorsConfiguration"];
    assert_eq!(cors["AllowMethods"], json!(["GET"]), "CORS: GET only");
    assert!(
        cors["AllowCredentials"].is_null() || cors["AllowCredentials"] == false,
        "CORS: no credentials"
    );
    assert!(cors["AllowOrigins"].is_array(), "CORS: origins stated");
    // The function's concurrency is reserved, and so capped.
    let f = &resource(&t, &lambda_id(API))["Properties"];
    let reserved = f["ReservedConcurrentExecutions"]
        .as_u64()
        .expect("reserved concurrency");
    assert!(
        (1..=10).contains(&reserved),
        "reserved concurrency {reserved}"
    );
    // Public by default; a JWT authorizer only when the issuer parameter is set.
    let routes = of_type(&t, "AWS::ApiGatewayV2::Route");
    let r = &routes[0].1["Properties"];
    assert_eq!(
        resolve(&t, &r["AuthorizationType"]),
        "NONE",
        "public by default"
    );
    let private = json!({"Fn::If": ["ApiIsPrivate", "JWT", "NONE"]});
    assert_eq!(r["AuthorizationType"], private);
    let authorizer = resource(&t, "HttpApiJwtAuthorizer");
    assert_eq!(authorizer["Condition"], "ApiIsPrivate");
    assert_eq!(authorizer["Properties"]["AuthorizerType"], "JWT");
    assert_eq!(
        r["AuthorizerId"],
        json!({"Fn::If": ["ApiIsPrivate", {"Ref": "HttpApiJwtAuthorizer"}, {"Ref": "AWS::NoValue"}]})
    );
}

#[test]
fn each_function_gets_only_the_environment_it_reads() {
    let Some(t) = template() else { return };
    assert_eq!(
        ENVIRONMENT.len(),
        FUNCTION_COUNT,
        "every function is listed"
    );
    for (function, names) in ENVIRONMENT {
        let env = &resource(&t, &lambda_id(function))["Properties"]["Environment"]["Variables"];
        let got: BTreeSet<&str> = env
            .as_object()
            .unwrap_or_else(|| panic!("{function}: environment"))
            .keys()
            .map(String::as_str)
            .collect();
        let want: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(got, want, "{function}: environment");
        let expect = |name: &str, value: Value| {
            if want.contains(name) {
                assert_eq!(env[name], value, "{function}: {name}");
            }
        };
        expect("TABLE_NAME", json!({"Ref": "EtlTable"}));
        expect("TOPIC_ARN", json!({"Ref": "AlertTopic"}));
        assert!(env["RUST_LOG"].is_string(), "{function}: RUST_LOG");
    }
}

#[test]
fn extract_functions_may_download_from_https_origins_only() {
    let Some(t) = template() else { return };
    for function in ["ExtractNyt", "ExtractJhu"] {
        let env = &resource(&t, &lambda_id(function))["Properties"]["Environment"]["Variables"];
        let list = env["COVID_ETL_SOURCE_ALLOWLIST"]
            .as_str()
            .unwrap_or_else(|| panic!("{function}: COVID_ETL_SOURCE_ALLOWLIST"));
        let origins: Vec<&str> = list.split(',').map(str::trim).collect();
        assert!(
            !origins.is_empty() && origins.iter().all(|o| !o.is_empty()),
            "{list}"
        );
        for origin in &origins {
            // An origin: scheme and host, nothing after.
            let host = origin.strip_prefix("https://").unwrap_or_else(|| {
                panic!(
                    "{function}: {origin} is not https (stage {})",
                    expected_stage()
                )
            });
            assert!(
                !host.is_empty() && !host.contains('/') && !host.contains('@'),
                "{function}: {origin} is not an origin"
            );
        }
        if expected_stage() == "prod" {
            assert_eq!(
                origins,
                ["https://raw.githubusercontent.com"],
                "{function}: prod downloads from the real sources' origin only"
            );
        }
    }
}

#[test]
fn every_log_group_has_a_retention() {
    let Some(t) = template() else { return };
    let groups = of_type(&t, "AWS::Logs::LogGroup");
    // Seven functions, the state machine, the API's access logs.
    assert_eq!(groups.len(), FUNCTION_COUNT + 2, "log groups");
    for (id, g) in groups {
        let days = g["Properties"]["RetentionInDays"]
            .as_u64()
            .unwrap_or_else(|| panic!("{id}: no RetentionInDays (kept forever)"));
        assert!((1..=365).contains(&days), "{id}: {days} days");
    }
}

#[test]
fn the_stack_is_tagged() {
    let Some(t) = template() else { return };
    let path = PathBuf::from(std::env::var("COVID_ETL_TEMPLATE").expect("template path"));
    let state = path.with_file_name("serverless-state.json");
    let text = std::fs::read_to_string(&state)
        .unwrap_or_else(|e| panic!("{} (written by serverless package): {e}", state.display()));
    let state: Value = serde_json::from_str(&text).expect("serverless-state.json");
    let tags = &state["service"]["provider"]["stackTags"];
    assert_eq!(tags["project"], "covid-etl", "stack tags: {tags}");
    assert_eq!(
        tags["stage"],
        expected_stage().as_str(),
        "stack tags: {tags}"
    );
    // The functions carry them too (Lambda's own tags, for cost reports by function).
    for function in all_keys() {
        let f_tags = &resource(&t, &lambda_id(function))["Properties"]["Tags"];
        assert!(
            as_list(f_tags)
                .iter()
                .any(|tag| tag == &json!({"Key": "project", "Value": "covid-etl"})),
            "{function}: tags {f_tags}"
        );
    }
}

#[test]
fn the_deploy_docs_name_every_function_alarm_queue_and_output() {
    let Some(t) = template() else { return };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/DEPLOY.md");
    let docs = std::fs::read_to_string(&path).expect("read docs/DEPLOY.md");
    let prefix = format!("covid-etl-{}-", expected_stage());
    let mut names: Vec<String> = all_keys().map(|f| format!("-{}", package(f))).collect();
    for (id, r) in resources(&t) {
        let p = &r["Properties"];
        let name = match r["Type"].as_str() {
            Some("AWS::CloudWatch::Alarm") => &p["AlarmName"],
            Some("AWS::SQS::Queue") => &p["QueueName"],
            Some("AWS::SNS::Topic") => &p["TopicName"],
            Some("AWS::Events::Rule") => &p["Name"],
            _ => continue,
        };
        // The plugin's three execution alarms have generated names.
        if let Some(name) = name.as_str() {
            let suffix = name
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{id}: {name} does not start with {prefix}"));
            names.push(format!("-{suffix}"));
        }
    }
    // The outputs an operator uses (the framework adds one per function version besides).
    for output in [
        "DashboardUrl",
        "EtlStateMachineArn",
        "TableName",
        "AlertTopicArn",
        "OpsTopicArn",
    ] {
        assert!(t["Outputs"][output].is_object(), "output {output}");
        names.push(output.to_owned());
    }
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !docs.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/DEPLOY.md does not name {missing:?}"
    );
    let count = format!("{} lambda functions", number_word(FUNCTION_COUNT));
    assert!(
        docs.to_lowercase().contains(&count),
        "docs/DEPLOY.md says \"{count}\""
    );
}

fn number_word(n: usize) -> &'static str {
    [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ][n]
}
