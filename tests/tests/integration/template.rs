//! Checks on `template.yaml` that cfn-lint and `sam validate --lint` do not
//! make: that the template and the functions' code agree (binaries, routes,
//! environment variables, metric names), that the processor consumes the queue
//! the way its handler answers, and that each function has only the permissions
//! it needs.

use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

/// Every provider has one receiver, `receiver-<provider>`, and one route,
/// `/webhooks/<provider>`.
/// Every provider's name, from the provider table.
const PROVIDERS: [&str; hookgate::provider::Provider::COUNT] = {
    let all = hookgate::provider::Provider::ALL;
    let mut names = [""; hookgate::provider::Provider::COUNT];
    let mut index = 0;
    while index < names.len() {
        names[index] = all[index].as_str();
        index += 1;
    }
    names
};

/// Where every function's telemetry reads its settings (the namespace of its metrics); the
/// variables Lambda itself sets (`AWS_LAMBDA_LOG_LEVEL`, …) are in `logs.rs`.
const TELEMETRY_CONFIG: &str = "shared/src/telemetry/mod.rs";

/// What every receiver reads from its environment.
const COMMON_ENV: [&str; 10] = [
    "QUEUE_URL",
    "BODY_BUCKET",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_ARN",
    "SECRET_REFRESH_SECS",
    "SIGNATURE_TOLERANCE_SECS",
    "MAX_BODY_BYTES",
    "ALLOWED_SOURCE_CIDRS",
    "METRICS_NAMESPACE",
    // Read by the schemes that sign the URL (Square, HubSpot, Twilio); set for every
    // receiver so that the block stays one for all.
    "WEBHOOK_URL",
];

/// What `receiver-generic` reads on top of `COMMON_ENV`.
const GENERIC_ENV: [&str; 8] = [
    "SIGNATURE_HEADER",
    "SIGNATURE_ENCODING",
    "SIGNATURE_PREFIX",
    "TIMESTAMP_HEADER",
    "SIGNED_CONTENT",
    "ID_HEADER",
    "EVENT_TYPE_HEADER",
    "EVENT_TYPE_FIELD",
];

/// The default of the parameter behind each environment variable that comes
/// from a parameter.
const ENV_DEFAULTS: [(&str, &str); 13] = [
    // Declared empty only so `sam local invoke --env-vars` may set it; deployed receivers
    // read their secret from WEBHOOK_SECRET_ARN.
    ("WEBHOOK_SECRET", ""),
    ("SECRET_REFRESH_SECS", "300"),
    ("SIGNATURE_TOLERANCE_SECS", "300"),
    ("MAX_BODY_BYTES", "4706304"),
    ("ALLOWED_SOURCE_CIDRS", ""),
    ("SIGNATURE_HEADER", "X-Signature"),
    ("SIGNATURE_ENCODING", "hex"),
    ("SIGNATURE_PREFIX", ""),
    ("TIMESTAMP_HEADER", ""),
    ("SIGNED_CONTENT", "{body}"),
    ("ID_HEADER", ""),
    ("EVENT_TYPE_HEADER", ""),
    ("EVENT_TYPE_FIELD", ""),
];

/// The receivers may do exactly this to the queue. `GetQueueAttributes` is
/// their warm-up call at init.
const QUEUE_ACTIONS: [&str; 2] = ["sqs:SendMessage", "sqs:GetQueueAttributes"];

/// The processor's binary, `functions/processor`.
const PROCESSOR: &str = "processor";

/// Where the processor reads its environment: every variable it reads is a
/// quoted name in this file's code.
const PROCESSOR_CONFIG: &str = "shared/src/processor/config.rs";

/// Variables the processor reads that the template leaves unset on purpose:
/// the routes are compiled in (`ROUTES_FILE` is for local runs), and the lease
/// is derived from the longest action timeout.
const PROCESSOR_ENV_UNSET: [&str; 2] = ["ROUTES_FILE", "LEASE_SECS"];

/// The processor's settings that come from parameters, and the defaults
/// `ProcessorConfig` documents.
const PROCESSOR_ENV_DEFAULTS: [(&str, &str); 3] = [
    ("IDEMPOTENCY_TTL_DAYS", "16"),
    ("BACKOFF_BASE_SECS", "10"),
    ("BACKOFF_CAP_SECS", "900"),
];

// ---------------------------------------------------------------------------
// Reading the template

#[derive(Debug)]
struct Template {
    root: Value,
}

#[derive(Debug)]
struct Receiver<'a> {
    id: String,
    provider: String,
    binary: String,
    resource: &'a Value,
}

impl Template {
    fn load() -> Self {
        let text =
            fs::read_to_string(TEMPLATE).unwrap_or_else(|e| panic!("cannot read {TEMPLATE}: {e}"));
        let root = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{TEMPLATE} is not valid YAML: {e}"));
        Template { root }
    }

    fn resources(&self) -> &Mapping {
        self.root["Resources"]
            .as_mapping()
            .expect("the template has a Resources mapping")
    }

    fn resource(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("no resource {id}"))
    }

    fn resources_of_type(&self, ty: &str) -> Vec<(String, &Value)> {
        self.resources()
            .iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(ty))
            .map(|(id, r)| (id.as_str().expect("logical ids are strings").to_owned(), r))
            .collect()
    }

    fn parameter(&self, name: &str) -> &Value {
        self.root["Parameters"]
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// Functions whose binary is a receiver, in template order.
    fn receivers(&self) -> Vec<Receiver<'_>> {
        self.resources_of_type("AWS::Serverless::Function")
            .into_iter()
            .filter_map(|(id, resource)| {
                let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str()?;
                let provider = binary.strip_prefix("receiver-")?;
                Some(Receiver {
                    id,
                    provider: provider.to_owned(),
                    binary: binary.to_owned(),
                    resource,
                })
            })
            .collect()
    }

    /// Every function: `(logical id, binary, resource)`, in template order.
    fn functions(&self) -> Vec<(String, String, &Value)> {
        self.resources_of_type("AWS::Serverless::Function")
            .into_iter()
            .map(|(id, resource)| {
                let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{id}: no Metadata.BuildProperties.Binary"))
                    .to_owned();
                (id, binary, resource)
            })
            .collect()
    }

    /// The processor function: `(logical id, resource)`.
    fn processor(&self) -> (String, &Value) {
        let mut processors: Vec<(String, &Value)> = self
            .functions()
            .into_iter()
            .filter(|(_, binary, _)| binary == PROCESSOR)
            .map(|(id, _, resource)| (id, resource))
            .collect();
        assert_eq!(processors.len(), 1, "one function builds the processor");
        processors.remove(0)
    }

    /// The log group a function writes to: the one its `LoggingConfig.LogGroup`
    /// names, else the one named `/aws/lambda/${Function}`.
    fn log_group(&self, id: &str, function: &Value) -> Option<&Value> {
        if let Some(group) = ref_target(&function["Properties"]["LoggingConfig"]["LogGroup"]) {
            return Some(self.resource(group));
        }
        let wanted = format!("/aws/lambda/${{{id}}}");
        self.resources_of_type("AWS::Logs::LogGroup")
            .into_iter()
            .find(|(_, g)| sub_text(&g["Properties"]["LogGroupName"]) == Some(wanted.as_str()))
            .map(|(_, group)| group)
    }

    /// A function property as SAM sees it: the function's own value, else the
    /// one from `Globals.Function`.
    fn function_property<'a>(&'a self, function: &'a Value, key: &str) -> &'a Value {
        match function["Properties"].get(key) {
            Some(value) => value,
            None => &self.root["Globals"]["Function"][key],
        }
    }

    /// A function's environment variables, global ones merged with its own.
    fn environment(&self, function: &Value) -> BTreeMap<String, Value> {
        let mut env = BTreeMap::new();
        for source in [
            &self.root["Globals"]["Function"]["Environment"]["Variables"],
            &function["Properties"]["Environment"]["Variables"],
        ] {
            if let Some(vars) = source.as_mapping() {
                for (name, value) in vars {
                    let name = name.as_str().expect("variable names are strings");
                    env.insert(name.to_owned(), value.clone());
                }
            }
        }
        env
    }

    /// The GitHub reconciler function: `(logical id, resource)`.
    fn reconciler(&self) -> (String, &Value) {
        self.functions()
            .into_iter()
            .find(|(_, binary, _)| binary == "reconciler-github")
            .map(|(id, _, function)| (id, function))
            .expect("a reconciler-github function")
    }

    /// The idempotency table: the processor's `TABLE_NAME`.
    fn idempotency_table(&self) -> (String, &Value) {
        let (_, processor) = self.processor();
        let id = ref_target(&self.environment(processor)["TABLE_NAME"])
            .expect("the processor's TABLE_NAME is a Ref to the table")
            .to_owned();
        let table = self.resource(&id);
        (id, table)
    }

    /// The queue's logical id: the processor's `QUEUE_URL`.
    fn queue_id(&self) -> String {
        let (_, processor) = self.processor();
        ref_target(&self.environment(processor)["QUEUE_URL"])
            .expect("the processor's QUEUE_URL is a Ref to the queue")
            .to_owned()
    }

    fn alarms(&self) -> Vec<(String, &Value)> {
        self.resources_of_type("AWS::CloudWatch::Alarm")
    }

    fn outputs(&self) -> &Mapping {
        self.root["Outputs"]
            .as_mapping()
            .expect("the template has an Outputs mapping")
    }
}

// CloudFormation intrinsics come in two spellings: the short tag (`!Ref X`,
// which serde_yaml gives as `Value::Tagged`) and the long mapping
// (`{Ref: X}`, `{"Fn::GetAtt": [A, B]}`). These accept both.

fn intrinsic<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let short = name.strip_prefix("Fn::").unwrap_or(name);
    match value {
        Value::Tagged(tagged) if tagged.tag == short => Some(&tagged.value),
        Value::Mapping(map) if map.len() == 1 => map.get(name),
        _ => None,
    }
}

fn ref_target(value: &Value) -> Option<&str> {
    intrinsic(value, "Ref")?.as_str()
}

fn get_att(value: &Value) -> Option<(String, String)> {
    match intrinsic(value, "Fn::GetAtt")? {
        Value::String(s) => {
            let (resource, attribute) = s.split_once('.')?;
            Some((resource.to_owned(), attribute.to_owned()))
        }
        Value::Sequence(parts) if parts.len() == 2 => {
            Some((parts[0].as_str()?.to_owned(), parts[1].as_str()?.to_owned()))
        }
        _ => None,
    }
}

fn sub_text(value: &Value) -> Option<&str> {
    match intrinsic(value, "Fn::Sub")? {
        Value::String(s) => Some(s),
        Value::Sequence(parts) => parts.first()?.as_str(),
        _ => None,
    }
}

/// A scalar as text, the way CloudFormation passes it on.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str()?.parse().ok())
}

/// A value that is a literal number or a `Ref` to a parameter: the number, or
/// the parameter's default.
fn number_or_default(template: &Template, value: &Value) -> Option<i64> {
    match ref_target(value) {
        Some(param) => integer(&template.parameter(param)["Default"]),
        None => integer(value),
    }
}

fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The quoted entries of `members = [...]` in the workspace manifest.
fn workspace_members() -> BTreeSet<String> {
    let path = repo_root().join("Cargo.toml");
    let manifest =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = manifest
        .lines()
        .position(|line| line.trim_start().starts_with("members"))
        .expect("the workspace manifest lists members");
    let mut block = String::new();
    for line in manifest.lines().skip(start) {
        let line = line.split('#').next().unwrap_or_default();
        block.push_str(line);
        if line.contains(']') {
            break;
        }
    }
    // A member ending in `/*` is every directory there with a manifest, as cargo reads it.
    block
        .split('"')
        .skip(1)
        .step_by(2)
        .flat_map(|member| match member.strip_suffix("/*") {
            Some(parent) => fs::read_dir(repo_root().join(parent))
                .unwrap_or_else(|e| panic!("cannot list {parent}: {e}"))
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.path().join("Cargo.toml").is_file())
                .map(|entry| format!("{parent}/{}", entry.file_name().to_string_lossy()))
                .collect::<Vec<_>>(),
            None => vec![member.trim_end_matches('/').to_owned()],
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Functions

#[test]
fn there_is_exactly_one_receiver_per_provider() {
    let template = Template::load();
    let mut providers: Vec<String> = template
        .receivers()
        .into_iter()
        .map(|r| r.provider)
        .collect();
    providers.sort();
    let mut expected: Vec<String> = PROVIDERS.iter().map(|p| p.to_string()).collect();
    expected.sort();
    assert_eq!(providers, expected);
}

#[test]
fn every_function_uses_provided_al2023_on_arm64_with_cargo_lambda() {
    let template = Template::load();
    for (id, _, function) in template.functions() {
        let property = |key| template.function_property(function, key);
        let id = &id;

        assert_eq!(
            property("Runtime").as_str(),
            Some("provided.al2023"),
            "{id}: Runtime"
        );
        let architectures: Vec<_> = one_or_many(property("Architectures"))
            .into_iter()
            .map(|a| a.as_str())
            .collect();
        assert_eq!(architectures, [Some("arm64")], "{id}: Architectures");
        assert_eq!(
            property("Handler").as_str(),
            Some("bootstrap"),
            "{id}: Handler"
        );
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            function["Properties"]["CodeUri"].as_str(),
            Some(format!("functions/{binary}").as_str()),
            "{id}: CodeUri is the function's own crate, built alone with its own features"
        );
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{id}: Metadata.BuildMethod"
        );
    }
    for receiver in template.receivers() {
        assert_eq!(receiver.binary, format!("receiver-{}", receiver.provider));
    }
}

#[test]
fn the_binary_named_in_build_properties_is_a_workspace_member() {
    let template = Template::load();
    let members = workspace_members();
    for (id, binary, _) in template.functions() {
        let member = format!("functions/{binary}");
        assert!(
            members.contains(&member),
            "{id}: {member} is not in the workspace members {members:?}"
        );
        // The crate may not exist yet; when it does, its package is the binary.
        let manifest = repo_root().join(&member).join("Cargo.toml");
        if let Ok(text) = fs::read_to_string(&manifest) {
            let wanted = format!("name = \"{binary}\"");
            assert!(
                text.lines().any(|line| line.trim() == wanted),
                "{} does not declare {wanted}",
                manifest.display()
            );
        }
    }
}

#[test]
fn every_receiver_has_an_any_route_under_webhooks() {
    let template = Template::load();
    for receiver in template.receivers() {
        let id = &receiver.id;
        let events = receiver.resource["Properties"]["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{id} has no Events"));
        assert_eq!(events.len(), 1, "{id}: one route per receiver");
        let (_, event) = events.iter().next().expect("one event");
        assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{id}: event type");

        let properties = &event["Properties"];
        let api = ref_target(&properties["ApiId"])
            .unwrap_or_else(|| panic!("{id}: ApiId is not a Ref to the HTTP API"));
        assert_eq!(
            template.resource(api)["Type"].as_str(),
            Some("AWS::Serverless::HttpApi"),
            "{id}: ApiId"
        );
        assert_eq!(
            properties["Method"].as_str(),
            Some("ANY"),
            "{id}: the receiver answers 405 itself, so the route takes every method"
        );
        assert_eq!(
            properties["Path"].as_str(),
            Some(format!("/webhooks/{}", receiver.provider).as_str()),
            "{id}: Path"
        );
        assert_eq!(
            properties["PayloadFormatVersion"].as_str(),
            Some("2.0"),
            "{id}: PayloadFormatVersion must be the string \"2.0\""
        );
    }
}

#[test]
fn every_receiver_can_send_only_to_the_queue_and_read_only_its_own_secret() {
    let template = Template::load();
    let mut secrets_seen = BTreeSet::new();
    for receiver in template.receivers() {
        let id = &receiver.id;
        let properties = &receiver.resource["Properties"];
        assert!(
            properties.get("Role").is_none(),
            "{id}: a custom Role would bypass the Policies checked here"
        );

        let env = template.environment(receiver.resource);
        let secret = env
            .get("WEBHOOK_SECRET_ARN")
            .and_then(ref_target)
            .unwrap_or_else(|| panic!("{id}: WEBHOOK_SECRET_ARN is not a Ref to a secret"));
        let queue = env
            .get("QUEUE_URL")
            .and_then(ref_target)
            .unwrap_or_else(|| panic!("{id}: QUEUE_URL is not a Ref to a queue"));
        assert_eq!(
            template.resource(secret)["Type"].as_str(),
            Some("AWS::SecretsManager::Secret"),
            "{id}: WEBHOOK_SECRET_ARN"
        );
        assert!(
            secrets_seen.insert(secret.to_owned()),
            "{id}: {secret} is shared with another receiver"
        );

        let mut reads_secret = false;
        let mut queue_actions = BTreeSet::new();
        let mut body_grants = BTreeSet::new();
        let policies = properties["Policies"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{id}: Policies must be a list"));
        for policy in policies {
            if let Some(arguments) = policy.get("AWSSecretsManagerGetSecretValuePolicy") {
                assert_eq!(
                    ref_target(&arguments["SecretArn"]),
                    Some(secret),
                    "{id}: may read only its own secret"
                );
                reads_secret = true;
            } else if let Some(statements) = policy.get("Statement") {
                for statement in one_or_many(statements) {
                    assert_eq!(
                        statement["Effect"].as_str(),
                        Some("Allow"),
                        "{id}: {statement:?}"
                    );
                    let resources = one_or_many(&statement["Resource"]);
                    assert_eq!(
                        resources.len(),
                        1,
                        "{id}: one resource per statement: {statement:?}"
                    );
                    let actions: Vec<&str> = one_or_many(&statement["Action"])
                        .into_iter()
                        .map(|action| action.as_str().unwrap_or_default())
                        .collect();
                    let resource = resource_name(resources[0]);
                    if resource != format!("{queue}.Arn") {
                        assert!(
                            BODY_BUCKET_GRANTS.contains(&(resource.as_str(), &actions[..])),
                            "{id}: inline statements may only name the queue and the body \
                             bucket's bodies: {statement:?}"
                        );
                        body_grants.insert(resource);
                        continue;
                    }
                    for action in actions {
                        assert!(
                            QUEUE_ACTIONS.contains(&action),
                            "{id}: {action:?} is more than the queue needs"
                        );
                        queue_actions.insert(action.to_owned());
                    }
                }
            } else {
                panic!("{id}: unexpected policy {policy:?}");
            }
        }
        assert!(reads_secret, "{id}: cannot read its secret");
        let expected: BTreeSet<String> = QUEUE_ACTIONS.iter().map(|a| a.to_string()).collect();
        assert_eq!(queue_actions, expected, "{id}: queue permissions");
        assert_eq!(
            body_grants.len(),
            BODY_BUCKET_GRANTS.len(),
            "{id}: stores large bodies and warms the bucket at init"
        );
    }
}

/// What a receiver may do with the body bucket: store bodies under `bodies/`, and
/// `HeadBucket` (`s3:ListBucket`) at init to check and warm the connection.
const BODY_BUCKET_GRANTS: [(&str, &[&str]); 2] = [
    ("${BodyBucket.Arn}/bodies/*", &["s3:PutObject"]),
    ("BodyBucket.Arn", &["s3:ListBucket"]),
];

/// Checks that the bucket `id` is retained, encrypted, private and reachable over TLS only.
fn assert_private_encrypted_tls_only_and_retained(template: &Template, id: &str) {
    let bucket = template.resource(id);
    for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
        assert_eq!(bucket[policy].as_str(), Some("Retain"), "{policy}");
    }
    let properties = &bucket["Properties"];
    assert_eq!(
        properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            .as_str(),
        Some("AES256")
    );
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            properties["PublicAccessBlockConfiguration"][setting].as_bool(),
            Some(true),
            "{setting}"
        );
    }
    let policies: Vec<_> = template
        .resources_of_type("AWS::S3::BucketPolicy")
        .into_iter()
        .filter(|(_, policy)| ref_target(&policy["Properties"]["Bucket"]) == Some(id))
        .collect();
    assert_eq!(policies.len(), 1, "{id}: one bucket policy");
    let statement = &policies[0].1["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"].as_str(), Some("Deny"), "{id}");
    assert_eq!(
        statement["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
        Some("false"),
        "{id}"
    );
}

#[test]
fn the_committed_template_is_what_its_source_and_the_provider_table_make() {
    use hookgate_tests::template_source::{generate, OUTPUT, SOURCE};
    let source = fs::read_to_string(repo_root().join(SOURCE)).expect("the template's source");
    let committed = fs::read_to_string(repo_root().join(OUTPUT)).expect("the template");

    let generated = generate(&source).expect("the source generates");

    assert!(
        generated == committed,
        "{OUTPUT} is not what {SOURCE} and the provider table make: run scripts/template"
    );
    // Every provider has its receiver, secret, alarms and outputs.
    let template = Template::load();
    for provider in hookgate::provider::Provider::ALL {
        let title = provider.title();
        for id in [
            format!("{title}Receiver"),
            format!("{title}ReceiverLogGroup"),
            format!("{title}Secret"),
            format!("{title}ReceiverErrorsAlarm"),
            format!("{title}RejectedAlarm"),
        ] {
            template.resource(&id);
        }
        for output in [format!("{title}WebhookUrl"), format!("{title}SecretArn")] {
            assert!(
                template.root["Outputs"].get(output.as_str()).is_some(),
                "no output {output}"
            );
        }
    }
}

#[test]
fn every_provider_in_the_table_has_a_receiver_crate_and_every_receiver_crate_a_provider() {
    let mut crates: Vec<String> = fs::read_dir(repo_root().join("functions"))
        .expect("functions/ lists")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix("receiver-").map(str::to_owned))
        .collect();
    crates.sort();
    let mut providers: Vec<String> = PROVIDERS.iter().map(|name| (*name).to_owned()).collect();
    providers.sort();

    assert_eq!(crates, providers);
}

#[test]
fn the_body_bucket_is_private_encrypted_tls_only_retained_and_expires_with_the_records() {
    let template = Template::load();
    assert_private_encrypted_tls_only_and_retained(&template, "BodyBucket");
    let properties = &template.resource("BodyBucket")["Properties"];
    let rules = one_or_many(&properties["LifecycleConfiguration"]["Rules"]);
    assert_eq!(rules.len(), 2, "the bodies' rule and the archive's");
    assert_eq!(rules[0]["Prefix"].as_str(), Some("bodies/"));
    let retention = ref_target(&rules[0]["ExpirationInDays"]).expect("a parameter");
    // S3 counts from the upload; a message lives at most the queue's retention, then the
    // dead-letter queue's, and a redrive may start on its last day.
    let days = |queue: &str| {
        integer(&template.resource(queue)["Properties"]["MessageRetentionPeriod"])
            .expect("a retention")
            .unsigned_abs()
            .div_ceil(86_400)
    };
    let least = integer(&template.parameter(retention)["MinValue"]).expect("a least retention");
    assert!(
        least.unsigned_abs() > days("Queue") + days("DeadLetterQueue"),
        "{retention}'s MinValue ({least}) must outlive every message that refers to a body"
    );
    let default = |parameter: &str| integer(&template.parameter(parameter)["Default"]);
    assert!(
        default(retention) >= default("IdempotencyTtlDays"),
        "by default a body is kept at least as long as its event's record"
    );
    assert!(
        default(retention) >= default("ArchiveDays"),
        "by default a body is kept at least as long as the archive that refers to it"
    );
}

#[test]
fn the_archive_expires_after_archive_days_and_zero_days_turns_it_off() {
    let template = Template::load();
    let properties = &template.resource("BodyBucket")["Properties"];
    let rules = one_or_many(&properties["LifecycleConfiguration"]["Rules"]);
    let conditional = intrinsic(rules[1], "Fn::If")
        .and_then(Value::as_sequence)
        .expect("the archive's rule is there only when the archive is on");
    assert_eq!(conditional[0].as_str(), Some("ArchiveOn"));
    let rule = &conditional[1];
    assert_eq!(rule["Prefix"].as_str(), Some("archive/"));
    assert_eq!(ref_target(&rule["ExpirationInDays"]), Some("ArchiveDays"));
    assert_eq!(rule["Status"].as_str(), Some("Enabled"));
    let on = intrinsic(&template.root["Conditions"]["ArchiveOn"], "Fn::Not")
        .and_then(Value::as_sequence)
        .and_then(|negated| intrinsic(&negated[0], "Fn::Equals"))
        .and_then(Value::as_sequence)
        .expect("ArchiveOn is ArchiveDays not being 0");
    assert_eq!(ref_target(&on[0]), Some("ArchiveDays"));
    assert_eq!(integer(&on[1]), Some(0));
    assert_eq!(
        integer(&template.parameter("ArchiveDays")["MinValue"]),
        Some(0)
    );
    // The processor archives in the body bucket only when the archive is on, and is told
    // both retentions, so that it refuses bodies kept shorter than the archive.
    let variables = &template.resource("Processor")["Properties"]["Environment"]["Variables"];
    let bucket = intrinsic(&variables["ARCHIVE_BUCKET"], "Fn::If")
        .and_then(Value::as_sequence)
        .expect("a bucket only when the archive is on");
    assert_eq!(bucket[0].as_str(), Some("ArchiveOn"));
    assert_eq!(ref_target(&bucket[1]), Some("BodyBucket"));
    assert_eq!(bucket[2].as_str(), Some(""));
    assert_eq!(ref_target(&variables["ARCHIVE_DAYS"]), Some("ArchiveDays"));
    assert_eq!(
        ref_target(&variables["BODY_RETENTION_DAYS"]),
        Some("BodyRetentionDays")
    );
}

#[test]
fn the_routes_bucket_is_private_encrypted_tls_only_retained_and_keeps_earlier_versions() {
    let template = Template::load();
    assert_private_encrypted_tls_only_and_retained(&template, "RoutesBucket");
    let properties = &template.resource("RoutesBucket")["Properties"];
    assert_eq!(
        properties["VersioningConfiguration"]["Status"].as_str(),
        Some("Enabled"),
        "a processor starting on a bad upload reads the versions before it"
    );
    let rules = one_or_many(&properties["LifecycleConfiguration"]["Rules"]);
    assert_eq!(rules.len(), 1);
    let kept = &rules[0]["NoncurrentVersionExpiration"];
    assert!(
        integer(&kept["NewerNoncurrentVersions"]).expect("a count")
            >= hookgate::processor::EARLIER_VERSIONS_TRIED as i64,
        "the versions a starting processor tries are never expired"
    );
    assert!(
        rules[0].get("ExpirationInDays").is_none(),
        "the newest routes never expire"
    );
}

#[test]
fn the_processor_reads_routes_from_the_stack_bucket_by_default_and_from_what_routes_source_names() {
    let template = Template::load();
    let (_, processor) = template.processor();
    let variables = &processor["Properties"]["Environment"]["Variables"];
    let source = intrinsic(&variables["ROUTES_SOURCE"], "Fn::If")
        .and_then(Value::as_sequence)
        .expect("ROUTES_SOURCE depends on RoutesSource");
    assert_eq!(source[0].as_str(), Some("RoutesBundled"));
    assert_eq!(source[1].as_str(), Some(""), "bundled: no source");
    let otherwise = intrinsic(&source[2], "Fn::If")
        .and_then(Value::as_sequence)
        .expect("the stack's bucket or the parameter");
    assert_eq!(otherwise[0].as_str(), Some("RoutesInStack"));
    assert_eq!(
        sub_text(&otherwise[1]),
        Some("s3://${RoutesBucket}/routes.toml")
    );
    assert_eq!(ref_target(&otherwise[2]), Some("RoutesSource"));
    assert_eq!(
        ref_target(&variables["ROUTES_REFRESH_SECS"]),
        Some("RoutesRefreshSeconds")
    );
    let parameter = template.parameter("RoutesSource");
    assert_eq!(parameter["Default"].as_str(), Some(""));
    assert_eq!(
        integer(&template.parameter("RoutesRefreshSeconds")["Default"]),
        Some(hookgate::processor::DEFAULT_ROUTES_REFRESH.as_secs() as i64)
    );

    let alarm = template.resource("InvalidRoutesAlarm");
    assert_eq!(alarm["Condition"].as_str(), Some("RoutesRead"));
    assert_eq!(
        alarm["Properties"]["MetricName"].as_str(),
        Some("InvalidRoutes")
    );
}

#[test]
fn the_processor_warms_as_many_connections_as_its_batches_claim_events() {
    let template = Template::load();
    let (_, processor) = template.processor();
    let batch_size =
        integer(&processor["Properties"]["Events"]["Envelopes"]["Properties"]["BatchSize"]);
    assert_eq!(
        integer(&processor["Properties"]["Environment"]["Variables"]["BATCH_SIZE"]),
        batch_size
    );
    assert_eq!(
        batch_size,
        Some(hookgate::processor::DEFAULT_BATCH_SIZE as i64),
        "the processor's default is the template's batch size"
    );
}

#[test]
fn both_queues_take_messages_of_a_mebibyte() {
    let template = Template::load();
    for id in ["Queue", "DeadLetterQueue"] {
        assert_eq!(
            integer(&template.resource(id)["Properties"]["MaximumMessageSize"]),
            Some(i64::try_from(hookgate::queue::SQS_MAX_MESSAGE_BYTES).unwrap()),
            "{id}"
        );
    }
    let max_body = template.parameter("MaxBodyBytes");
    let largest = i64::try_from(hookgate::receiver::MAX_REQUEST_BODY_BYTES).unwrap();
    assert_eq!(integer(&max_body["MaxValue"]), Some(largest));
}

#[test]
fn every_environment_variable_the_receivers_read_is_set() {
    let template = Template::load();
    for receiver in template.receivers() {
        let id = &receiver.id;
        let env = template.environment(receiver.resource);
        let mut expected: BTreeSet<&str> = COMMON_ENV.into_iter().collect();
        if receiver.provider == "generic" {
            expected.extend(GENERIC_ENV);
        }
        let actual: BTreeSet<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(actual, expected, "{id}: environment variables");

        for (name, value) in &env {
            if let Some(target) = ref_target(value) {
                let known = template.root["Parameters"].get(target).is_some()
                    || template.resources().get(target).is_some();
                assert!(
                    known,
                    "{id}: {name} refers to {target}, which does not exist"
                );
            } else {
                // A value may also be chosen by a condition of the template's, between
                // literals and Subs (WEBHOOK_URL behind the custom domain).
                let choices = match intrinsic(value, "Fn::If") {
                    Some(Value::Sequence(parts)) if parts.len() == 3 => {
                        let condition = parts[0].as_str().unwrap_or_default();
                        assert!(
                            template.root["Conditions"].get(condition).is_some(),
                            "{id}: {name} depends on {condition}, which does not exist"
                        );
                        parts[1..].iter().collect()
                    }
                    _ => vec![value],
                };
                for choice in choices {
                    assert!(
                        scalar_text(choice).is_some() || sub_text(choice).is_some(),
                        "{id}: {name} is neither a literal, a Ref, a Sub nor an If of them: {value:?}"
                    );
                }
            }
        }
        assert_eq!(
            env.get("WEBHOOK_SECRET_ARN").and_then(ref_target),
            Some(format!("{}Secret", capitalised(&receiver.provider)).as_str()),
            "{id}: WEBHOOK_SECRET_ARN"
        );
    }
}

#[test]
fn every_receiver_setting_defaults_to_the_documented_value() {
    let template = Template::load();
    let defaults: BTreeMap<&str, &str> = ENV_DEFAULTS.into_iter().collect();
    for receiver in template.receivers() {
        let id = &receiver.id;
        for (name, value) in template.environment(receiver.resource) {
            let Some(expected) = defaults.get(name.as_str()) else {
                continue;
            };
            let actual = match ref_target(&value) {
                Some(param) => scalar_text(&template.parameter(param)["Default"]),
                None => scalar_text(&value),
            };
            assert_eq!(
                actual.as_deref(),
                Some(*expected),
                "{id}: default of {name}"
            );
        }
        if receiver.provider == "generic" {
            let env = template.environment(receiver.resource);
            let param = env
                .get("SIGNATURE_ENCODING")
                .and_then(ref_target)
                .expect("SIGNATURE_ENCODING comes from a parameter");
            let allowed: BTreeSet<String> =
                one_or_many(&template.parameter(param)["AllowedValues"])
                    .into_iter()
                    .filter_map(scalar_text)
                    .collect();
            let expected: BTreeSet<String> = ["hex", "base64"].map(String::from).into();
            assert_eq!(allowed, expected, "{param}: AllowedValues");
        }
    }
}

#[test]
fn every_function_logs_to_a_log_group_with_retention() {
    let template = Template::load();
    for (id, _, function) in template.functions() {
        let group = template
            .log_group(&id, function)
            .unwrap_or_else(|| panic!("{id}: no log group of its own"));
        assert_eq!(
            group["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{id}: LoggingConfig.LogGroup"
        );
        let retention = number_or_default(&template, &group["Properties"]["RetentionInDays"]);
        assert!(
            retention.is_some_and(|days| days > 0),
            "{id}: log retention {retention:?}"
        );
    }
}

#[test]
fn every_function_writes_json_lines_at_the_level_the_log_level_parameter_sets() {
    let template = Template::load();
    let logging = &template.root["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(logging["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(
        ref_target(&logging["ApplicationLogLevel"]),
        Some("LogLevel")
    );
    for (id, _, function) in template.functions() {
        let own = &function["Properties"]["LoggingConfig"];
        for setting in ["LogFormat", "ApplicationLogLevel"] {
            assert!(
                own.get(setting).is_none(),
                "{id}: {setting} is the global one (SAM merges LoggingConfig)"
            );
        }
    }
    let level = template.parameter("LogLevel");
    assert_eq!(level["Default"].as_str(), Some("INFO"));
    let allowed: Vec<&str> = one_or_many(&level["AllowedValues"])
        .into_iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        allowed,
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
        "Lambda's application log levels"
    );
}

#[test]
fn every_stateful_resource_says_what_happens_to_it_and_the_data_outlives_the_stack() {
    let template = Template::load();
    let stateful = [
        "AWS::Logs::LogGroup",
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
    ];
    for kind in stateful {
        for (id, resource) in template.resources_of_type(kind) {
            for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
                assert!(
                    resource[policy].as_str().is_some(),
                    "{id}: {policy} is explicit"
                );
            }
            let kept = resource["DeletionPolicy"].as_str() == Some("Retain")
                && resource["UpdateReplacePolicy"].as_str() == Some("Retain");
            let data = matches!(
                kind,
                "AWS::DynamoDB::Table" | "AWS::S3::Bucket" | "AWS::SecretsManager::Secret"
            ) || id == "DeadLetterQueue";
            assert_eq!(kept, data, "{id}: retained exactly when it holds data");
            if kept {
                // A retained resource with a fixed name would stop the stack from being
                // created again under the same name.
                for name in ["QueueName", "TableName", "BucketName", "Name"] {
                    assert!(
                        resource["Properties"].get(name).is_none(),
                        "{id}: retained, so unnamed"
                    );
                }
            }
        }
    }
}

/// A condition's or a value's result for the given parameter values (others at their
/// defaults): the intrinsics the template's conditions use.
fn evaluate(template: &Template, value: &Value, parameters: &BTreeMap<&str, &str>) -> Value {
    let parameter = |name: &str| -> String {
        parameters
            .get(name)
            .map(|v| (*v).to_owned())
            .unwrap_or_else(|| {
                scalar_text(&template.parameter(name)["Default"]).unwrap_or_default()
            })
    };
    let eval = |value: &Value| evaluate(template, value, parameters);
    let args = |name: &str| intrinsic(value, name).and_then(Value::as_sequence).cloned();
    if let Value::String(text) = value {
        return Value::String(text.clone());
    }
    if let Some(target) = ref_target(value) {
        return Value::String(parameter(target));
    }
    if let Some(name) = intrinsic(value, "Condition").and_then(Value::as_str) {
        return eval(&template.root["Conditions"][name]);
    }
    if let Some(text) = sub_text(value) {
        let mut text = text.to_owned();
        for name in parameters
            .keys()
            .chain(["EnabledProviders", "GithubHooks"].iter())
        {
            text = text.replace(&format!("${{{name}}}"), &parameter(name));
        }
        return Value::String(text);
    }
    let truth = |value: &Value| eval(value).as_bool().expect("a condition");
    if let Some(items) = args("Fn::Or") {
        return Value::Bool(items.iter().any(truth));
    }
    if let Some(items) = args("Fn::And") {
        return Value::Bool(items.iter().all(truth));
    }
    if let Some(items) = args("Fn::Not") {
        return Value::Bool(!truth(&items[0]));
    }
    if let Some(items) = args("Fn::Equals") {
        return Value::Bool(eval(&items[0]) == eval(&items[1]));
    }
    if let Some(items) = args("Fn::Split") {
        let separator = eval(&items[0]);
        let text = eval(&items[1]);
        return Value::Sequence(
            text.as_str()
                .unwrap_or_default()
                .split(separator.as_str().unwrap_or_default())
                .map(|part| Value::String(part.to_owned()))
                .collect(),
        );
    }
    if let Some(items) = args("Fn::Select") {
        let index = integer(&items[0]).expect("an index") as usize;
        return eval(&items[1]).as_sequence().expect("a list")[index].clone();
    }
    panic!("an intrinsic the conditions do not use: {value:?}")
}

#[test]
fn enabled_providers_keeps_exactly_the_providers_it_names_and_all_by_default() {
    let template = Template::load();
    assert_eq!(
        template.parameter("EnabledProviders")["Default"].as_str(),
        Some("all")
    );
    let enabled = |value: &str| -> Vec<&str> {
        let parameters: BTreeMap<&str, &str> = [("EnabledProviders", value)].into();
        PROVIDERS
            .into_iter()
            .filter(|provider| {
                let condition = format!("{}Enabled", capitalised(provider));
                evaluate(
                    &template,
                    &template.root["Conditions"][condition.as_str()],
                    &parameters,
                )
                .as_bool()
                .expect("a condition")
            })
            .collect()
    };
    assert_eq!(enabled("all"), PROVIDERS);
    assert_eq!(enabled("github"), ["github"]);
    assert_eq!(enabled("slack,github"), ["github", "slack"]);
    assert_eq!(enabled("standard,generic"), ["standard", "generic"]);

    for provider in PROVIDERS {
        let condition = format!("{}Enabled", capitalised(provider));
        let prefix = capitalised(provider);
        let of_provider: Vec<String> = template
            .resources()
            .keys()
            .filter_map(|id| id.as_str())
            .filter(|id| id.starts_with(prefix.as_str()))
            .filter(|id| {
                !["GithubReconciler", "GithubToken", "GithubRedeliveries"]
                    .iter()
                    .any(|reconciler| id.starts_with(reconciler))
            })
            .map(str::to_owned)
            .collect();
        assert!(of_provider.len() >= 5, "{provider}: {of_provider:?}");
        for id in of_provider {
            assert_eq!(
                template.resource(&id)["Condition"].as_str(),
                Some(condition.as_str()),
                "{id} exists only with {provider} enabled"
            );
        }
    }
    // The reconciler watches GitHub hooks only for a stack that receives from GitHub.
    let parameters: BTreeMap<&str, &str> = [
        ("EnabledProviders", "stripe"),
        ("GithubHooks", "repo:o/r:1"),
    ]
    .into();
    assert_eq!(
        evaluate(
            &template,
            &template.root["Conditions"]["HasGithubHooks"],
            &parameters
        ),
        Value::Bool(false)
    );
}

#[test]
fn a_custom_domain_maps_the_api_with_its_certificate_and_optionally_its_dns_record() {
    let template = Template::load();
    for parameter in ["DomainName", "CertificateArn", "HostedZoneId"] {
        assert_eq!(template.parameter(parameter)["Default"].as_str(), Some(""));
    }
    let domain = template.resource("ApiDomain");
    assert_eq!(domain["Condition"].as_str(), Some("HasCustomDomain"));
    let configuration = &one_or_many(&domain["Properties"]["DomainNameConfigurations"])[0];
    assert_eq!(
        ref_target(&configuration["CertificateArn"]),
        Some("CertificateArn")
    );
    assert_eq!(configuration["SecurityPolicy"].as_str(), Some("TLS_1_2"));
    let mapping = template.resource("ApiDomainMapping");
    assert_eq!(ref_target(&mapping["Properties"]["ApiId"]), Some("HttpApi"));
    assert_eq!(mapping["Properties"]["Stage"].as_str(), Some("$default"));
    let record = template.resource("ApiDomainRecord");
    assert_eq!(record["Condition"].as_str(), Some("ManagesDnsRecord"));
    let rule = &template.root["Rules"]["CustomDomainNeedsCertificate"];
    assert!(rule["Assertions"]
        .as_sequence()
        .is_some_and(|a| !a.is_empty()));
    let with_domain: BTreeMap<&str, &str> = [("DomainName", "hooks.example.com")].into();
    assert_eq!(
        evaluate(
            &template,
            &template.root["Conditions"]["ManagesDnsRecord"],
            &with_domain
        ),
        Value::Bool(false),
        "no record without a hosted zone"
    );
}

#[test]
fn every_function_is_traced_by_x_ray_unless_tracing_is_turned_off() {
    let template = Template::load();
    assert_eq!(
        ref_target(&template.root["Globals"]["Function"]["Tracing"]),
        Some("Tracing")
    );
    let tracing = template.parameter("Tracing");
    assert_eq!(tracing["Default"].as_str(), Some("Active"));
    for (id, _, function) in template.functions() {
        assert!(
            function["Properties"].get("Tracing").is_none(),
            "{id}: traced as every function is"
        );
    }
}

// ---------------------------------------------------------------------------
// Queue and secrets

#[test]
fn the_queue_is_encrypted_and_has_a_dead_letter_queue() {
    let template = Template::load();
    let queue_id = template.queue_id();
    let queue_id = queue_id.as_str();
    let queue = &template.resource(queue_id)["Properties"];
    assert_eq!(
        template.resource(queue_id)["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );
    assert_eq!(
        queue["SqsManagedSseEnabled"].as_bool(),
        Some(true),
        "queue encryption"
    );
    assert_eq!(
        integer(&queue["MessageRetentionPeriod"]),
        Some(4 * 24 * 3600),
        "queue retention"
    );

    let redrive = &queue["RedrivePolicy"];
    let (dlq_id, attribute) = get_att(&redrive["deadLetterTargetArn"])
        .expect("RedrivePolicy names the dead-letter queue by GetAtt");
    assert_eq!(attribute, "Arn");
    assert_eq!(
        number_or_default(&template, &redrive["maxReceiveCount"]),
        Some(5),
        "maxReceiveCount (default)"
    );

    let dlq_resource = template.resource(&dlq_id);
    let dlq = &dlq_resource["Properties"];
    assert_eq!(dlq_resource["Type"].as_str(), Some("AWS::SQS::Queue"));
    assert_eq!(
        dlq["SqsManagedSseEnabled"].as_bool(),
        Some(true),
        "dead-letter queue encryption"
    );
    assert_eq!(
        integer(&dlq["MessageRetentionPeriod"]),
        Some(14 * 24 * 3600),
        "dead-letter retention"
    );
    assert!(
        dlq.get("RedrivePolicy").is_none(),
        "the dead-letter queue redrives nowhere"
    );

    // Only the envelope queue may use the dead-letter queue.
    let allow = &dlq["RedriveAllowPolicy"];
    assert_eq!(allow["redrivePermission"].as_str(), Some("byQueue"));
    let queue_name = sub_text(&queue["QueueName"])
        .expect("the queue has a QueueName, so that RedriveAllowPolicy can name it");
    let sources: Vec<&str> = one_or_many(&allow["sourceQueueArns"])
        .into_iter()
        .filter_map(sub_text)
        .collect();
    assert_eq!(sources.len(), 1, "one source queue: {sources:?}");
    assert!(
        sources[0].ends_with(&format!(":{queue_name}")),
        "RedriveAllowPolicy names {} but the queue is {queue_name}",
        sources[0]
    );
}

#[test]
fn the_queue_visibility_timeout_is_at_least_six_times_every_function_timeout() {
    let template = Template::load();
    let queue_id = template.queue_id();
    let visibility = &template.resource(&queue_id)["Properties"]["VisibilityTimeout"];
    let visibility = visibility.as_i64().unwrap_or_else(|| {
        panic!("VisibilityTimeout must be a literal number, not {visibility:?}")
    });
    assert_eq!(visibility, 360);
    let functions = template.resources_of_type("AWS::Serverless::Function");
    let (processor, _) = template.processor();
    assert!(
        functions.iter().any(|(id, _)| *id == processor),
        "the processor is among the functions checked"
    );
    // Every function that uses the queue (the reconciler does not).
    for (id, function) in functions
        .into_iter()
        .filter(|(_, function)| template.environment(function).contains_key("QUEUE_URL"))
    {
        let timeout = number_or_default(&template, template.function_property(function, "Timeout"))
            .unwrap_or(3);
        assert!(
            visibility >= 6 * timeout,
            "{id}: Timeout {timeout} s needs a queue VisibilityTimeout of at least {} s",
            6 * timeout
        );
    }
}

#[test]
fn every_secret_is_generated_with_32_characters_and_no_punctuation() {
    let template = Template::load();
    let secrets = template.resources_of_type("AWS::SecretsManager::Secret");
    assert_eq!(
        secrets.len(),
        PROVIDERS.len() + 1,
        "one secret per provider, and the GitHub reconciler's token"
    );
    for (id, secret) in secrets {
        let properties = &secret["Properties"];
        let generate = &properties["GenerateSecretString"];
        assert_eq!(
            integer(&generate["PasswordLength"]),
            Some(32),
            "{id}: PasswordLength"
        );
        assert_eq!(
            generate["ExcludePunctuation"].as_bool(),
            Some(true),
            "{id}: ExcludePunctuation"
        );
        assert!(
            properties.get("SecretString").is_none(),
            "{id}: a literal SecretString would put the secret in the template"
        );
        let description = scalar_text(&properties["Description"])
            .or_else(|| sub_text(&properties["Description"]).map(str::to_owned))
            .unwrap_or_default();
        // Signing secrets rotate as a current and a previous secret; the reconciler's token
        // is replaced whole.
        let format = if id == "GithubTokenSecret" {
            description.contains("{\"token\"")
        } else {
            description.contains("\"current\"") && description.contains("\"previous\"")
        };
        assert!(
            format,
            "{id}: the Description explains the format: {description:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// API, alarms, outputs

#[test]
fn the_api_logs_access_and_throttles_by_default() {
    let template = Template::load();
    let apis = template.resources_of_type("AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1, "one HTTP API");
    let (id, api) = &apis[0];
    let properties = &api["Properties"];

    let (group, attribute) = get_att(&properties["AccessLogSettings"]["DestinationArn"])
        .unwrap_or_else(|| panic!("{id}: access logs go to a log group of this stack"));
    assert_eq!(attribute, "Arn");
    let group = &template.resource(&group)["Properties"];
    assert!(
        number_or_default(&template, &group["RetentionInDays"]).is_some(),
        "{id}: access log retention"
    );
    let format = properties["AccessLogSettings"]["Format"]
        .as_str()
        .unwrap_or_default();
    assert!(
        format.contains("$context.requestId"),
        "{id}: access log format {format:?}"
    );

    let throttling = &properties["DefaultRouteSettings"];
    for key in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        let limit = number_or_default(&template, &throttling[key]);
        assert!(
            limit.is_some_and(|n| n > 0),
            "{id}: DefaultRouteSettings.{key} is {limit:?}"
        );
    }
}

#[test]
fn every_function_has_an_errors_alarm() {
    let template = Template::load();
    let alarms = template.alarms();
    for (id, _, _) in template.functions() {
        let id = &id;
        let found = alarms.iter().any(|(_, alarm)| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some("AWS/Lambda")
                && p["MetricName"].as_str() == Some("Errors")
                && one_or_many(&p["Dimensions"]).into_iter().any(|d| {
                    d["Name"].as_str() == Some("FunctionName")
                        && ref_target(&d["Value"]) == Some(id)
                })
        });
        assert!(found, "{id}: no alarm on its Lambda Errors");
    }
}

#[test]
fn every_provider_has_an_alarm_on_rejected_deliveries() {
    let template = Template::load();
    let alarms = template.alarms();
    for provider in PROVIDERS {
        let found = alarms.iter().find(|(_, alarm)| {
            let p = &alarm["Properties"];
            let dimensions = one_or_many(&p["Dimensions"]);
            is_stack_namespace(&p["Namespace"])
                && p["MetricName"].as_str() == Some("Rejected")
                && dimension_pairs(&dimensions)
                    == [
                        ("Service", format!("receiver-{provider}")),
                        ("Provider", provider.to_owned()),
                    ]
        });
        let (id, alarm) =
            found.unwrap_or_else(|| panic!("{provider}: no alarm on hookgate/Rejected"));
        let p = &alarm["Properties"];
        assert_eq!(p["Statistic"].as_str(), Some("Sum"), "{id}");
        assert_eq!(
            integer(&p["Period"]),
            Some(300),
            "{id}: summed over 5 minutes"
        );
        assert_eq!(
            number_or_default(&template, &p["Threshold"]),
            Some(50),
            "{id}: default threshold"
        );
    }
}

#[test]
fn the_dead_letter_queue_and_the_queue_backlog_have_alarms() {
    let template = Template::load();
    let queue = &template.resource("Queue")["Properties"];
    let (dlq, _) =
        get_att(&queue["RedrivePolicy"]["deadLetterTargetArn"]).expect("the queue has a DLQ");
    let alarm_on = |queue_id: &str, metric: &str| {
        template.alarms().into_iter().find(|(_, alarm)| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some("AWS/SQS")
                && p["MetricName"].as_str() == Some(metric)
                && one_or_many(&p["Dimensions"]).into_iter().any(|d| {
                    d["Name"].as_str() == Some("QueueName")
                        && get_att(&d["Value"])
                            == Some((queue_id.to_owned(), "QueueName".to_owned()))
                })
        })
    };

    let (id, alarm) =
        alarm_on(&dlq, "ApproximateNumberOfMessagesVisible").expect("an alarm on the DLQ depth");
    let p = &alarm["Properties"];
    assert_eq!(integer(&p["Threshold"]), Some(0), "{id}");
    assert_eq!(
        p["ComparisonOperator"].as_str(),
        Some("GreaterThanThreshold"),
        "{id}"
    );

    let (id, alarm) = alarm_on("Queue", "ApproximateAgeOfOldestMessage")
        .expect("an alarm on the queue's oldest message");
    let p = &alarm["Properties"];
    assert_eq!(
        number_or_default(&template, &p["Threshold"]),
        Some(15 * 60),
        "{id}: QueueAgeAlarmSeconds, 15 minutes by default"
    );
    assert_eq!(
        p["ComparisonOperator"].as_str(),
        Some("GreaterThanThreshold"),
        "{id}"
    );
}

#[test]
fn every_alarm_notifies_the_stacks_topic_or_the_one_given_and_an_email_can_be_subscribed() {
    let template = Template::load();
    assert_eq!(
        template.parameter("AlarmTopicArn")["Default"].as_str(),
        Some(""),
        "the stack makes its own topic unless given one"
    );
    let topic = template.resource("AlarmTopic");
    assert_eq!(topic["Type"].as_str(), Some("AWS::SNS::Topic"));
    assert_eq!(topic["Condition"].as_str(), Some("CreateAlarmTopic"));
    let subscription = template.resource("AlarmEmailSubscription");
    assert_eq!(
        subscription["Condition"].as_str(),
        Some("SubscribeAlarmEmail")
    );
    assert_eq!(
        subscription["Properties"]["Protocol"].as_str(),
        Some("email")
    );
    assert_eq!(
        ref_target(&subscription["Properties"]["Endpoint"]),
        Some("AlarmEmail")
    );
    assert_eq!(
        template.parameter("AlarmEmail")["Default"].as_str(),
        Some("")
    );

    let alarms = template.alarms();
    assert!(alarms.len() >= 20, "{} alarms", alarms.len());
    for (id, alarm) in alarms {
        for key in ["AlarmActions", "OKActions"] {
            let actions = one_or_many(&alarm["Properties"][key]);
            assert_eq!(actions.len(), 1, "{id}: {key} names one topic");
            let branches = intrinsic(actions[0], "Fn::If")
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{id}: {key} is the stack's topic or the given one"));
            assert_eq!(branches[0].as_str(), Some("CreateAlarmTopic"), "{id}");
            assert_eq!(ref_target(&branches[1]), Some("AlarmTopic"), "{id}");
            assert_eq!(ref_target(&branches[2]), Some("AlarmTopicArn"), "{id}");
        }
    }
    let output = &template.outputs()["AlarmTopicArn"]["Value"];
    assert!(
        intrinsic(output, "Fn::If").is_some(),
        "the topic alarms notify is an output"
    );
}

#[test]
fn throttles_api_errors_429s_and_deliveries_not_taken_each_raise_an_alarm() {
    let template = Template::load();
    // Metric math over the processor and the reconciler (only when it exists); each
    // receiver has an alarm of its own, since an alarm on metric math takes at most ten
    // metrics, fewer than there are providers.
    let throttles = &template.resource("FunctionThrottlesAlarm")["Properties"];
    let mut functions: Vec<String> = Vec::new();
    for metric in one_or_many(&throttles["Metrics"]) {
        let metric = intrinsic(metric, "Fn::If")
            .and_then(Value::as_sequence)
            .map_or(metric, |branches| &branches[1]);
        if let Some(stat) = metric.get("MetricStat") {
            assert_eq!(stat["Metric"]["MetricName"].as_str(), Some("Throttles"));
            let dimension = &one_or_many(&stat["Metric"]["Dimensions"])[0];
            functions.push(
                ref_target(&dimension["Value"])
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    for (id, _, _) in template.functions() {
        let own = template
            .resources()
            .get(format!("{id}ThrottlesAlarm").as_str())
            .map(|alarm| &alarm["Properties"]);
        match own {
            Some(alarm) => {
                assert_eq!(alarm["MetricName"].as_str(), Some("Throttles"), "{id}");
                assert_eq!(
                    ref_target(&one_or_many(&alarm["Dimensions"])[0]["Value"]),
                    Some(id.as_str())
                );
                assert_eq!(
                    ref_target(&alarm["Threshold"]),
                    Some("FunctionThrottlesAlarmThreshold")
                );
                assert!(!functions.contains(&id), "{id} is counted twice");
            }
            None => assert!(functions.contains(&id), "{id}'s throttles are counted"),
        }
    }
    assert!(
        one_or_many(&throttles["Metrics"]).len() <= 10,
        "an alarm on metric math takes at most ten metrics"
    );
    assert_eq!(
        ref_target(&throttles["Threshold"]),
        Some("FunctionThrottlesAlarmThreshold")
    );

    for provider in PROVIDERS {
        let title = format!("{}{}", provider[..1].to_uppercase(), &provider[1..]);
        let unavailable = &template.resource(&format!("{title}UnavailableAlarm"));
        assert_eq!(
            unavailable["Condition"].as_str(),
            Some(format!("{title}Enabled").as_str())
        );
        let unavailable = &unavailable["Properties"];
        assert_eq!(unavailable["MetricName"].as_str(), Some("Unavailable"));
        assert!(is_stack_namespace(&unavailable["Namespace"]));
        let dimensions = dimension_pairs(&one_or_many(&unavailable["Dimensions"]));
        assert_eq!(
            dimensions,
            [
                ("Service", format!("receiver-{provider}")),
                ("Provider", provider.to_owned())
            ]
        );
    }

    let api = &template.resource("ApiServerErrorsAlarm")["Properties"];
    assert_eq!(api["Namespace"].as_str(), Some("AWS/ApiGateway"));
    assert_eq!(api["MetricName"].as_str(), Some("5xx"));
    assert_eq!(
        ref_target(&one_or_many(&api["Dimensions"])[0]["Value"]),
        Some("HttpApi")
    );

    // 429s: counted from the access log, whose format writes the status as text.
    let filter = &template.resource("ApiThrottledMetricFilter")["Properties"];
    assert_eq!(
        ref_target(&filter["LogGroupName"]),
        Some("ApiAccessLogGroup")
    );
    assert_eq!(
        filter["FilterPattern"].as_str(),
        Some(r#"{ $.status = "429" }"#)
    );
    let format = template.resource("HttpApi")["Properties"]["AccessLogSettings"]["Format"]
        .as_str()
        .unwrap_or_default();
    assert!(format.contains(r#""status":"$context.status""#), "{format}");
    let transformation = &one_or_many(&filter["MetricTransformations"])[0];
    let throttled = &template.resource("ApiThrottledAlarm")["Properties"];
    assert_eq!(
        throttled["MetricName"].as_str(),
        transformation["MetricName"].as_str()
    );
    assert!(is_stack_namespace(&throttled["Namespace"]));
    assert!(is_stack_namespace(&transformation["MetricNamespace"]));
}

#[test]
fn the_dashboard_is_valid_json_and_shows_only_metrics_that_exist() {
    let template = Template::load();
    let body = &template.resource("Dashboard")["Properties"]["DashboardBody"];
    check_dashboard(&template, &joined(body, false));
    check_dashboard(&template, &joined(body, true));
}

/// The text a `!Join ["", [...]]` of strings, `!Sub`s and `!If`s makes, with every
/// condition true or every one false.
fn joined(value: &Value, conditions: bool) -> String {
    if let Some(text) = value.as_str() {
        return text.to_owned();
    }
    if let Some(text) = sub_text(value) {
        return text.to_owned();
    }
    if let Some(branches) = intrinsic(value, "Fn::If").and_then(Value::as_sequence) {
        return joined(&branches[if conditions { 1 } else { 2 }], conditions);
    }
    let parts = intrinsic(value, "Fn::Join")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("a string, Sub, If or Join: {value:?}"));
    assert_eq!(parts[0].as_str(), Some(""), "joined without a separator");
    one_or_many(&parts[1])
        .into_iter()
        .map(|part| joined(part, conditions))
        .collect()
}

/// Checks a dashboard body, once `!Sub` has replaced its placeholders.
fn check_dashboard(template: &Template, body: &str) {
    // What !Sub replaces, with values of the right shape.
    let mut substituted = body.to_owned();
    for (placeholder, value) in [
        ("${AWS::StackName}", "hookgate"),
        ("${AWS::Region}", "us-east-1"),
        ("${Queue.QueueName}", "hookgate-envelopes"),
        ("${DeadLetterQueue.QueueName}", "hookgate-envelopes-dlq"),
        ("${HttpApi}", "a1b2c3"),
    ] {
        substituted = substituted.replace(placeholder, value);
    }
    for function in template.functions().into_iter().map(|(id, _, _)| id) {
        substituted = substituted.replace(&format!("${{{function}}}"), "hookgate-function");
    }
    assert!(
        !substituted.contains("${"),
        "every placeholder is one the stack has"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&substituted)
        .unwrap_or_else(|error| panic!("the dashboard body is JSON: {error}\n{substituted}"));
    let widgets = dashboard["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 8);
    let sources = rust_sources(&repo_root().join("shared"));
    let filters: Vec<String> = template
        .resources_of_type("AWS::Logs::MetricFilter")
        .into_iter()
        .flat_map(|(_, filter)| {
            one_or_many(&filter["Properties"]["MetricTransformations"])
                .into_iter()
                .filter_map(|t| t["MetricName"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    for widget in widgets {
        let title = widget["properties"]["title"].as_str().expect("a title");
        for metric in widget["properties"]["metrics"].as_array().expect("metrics") {
            let metric = metric.as_array().expect("a metric row");
            let names: Vec<String> = match metric[0].get("expression").and_then(|e| e.as_str()) {
                Some(expression) => {
                    assert!(
                        expression.starts_with("SEARCH('{hookgate/hookgate,Service"),
                        "{title}: searches the stack's namespace by Service: {expression}"
                    );
                    expression
                        .split('"')
                        .skip(1)
                        .step_by(2)
                        .filter(|name| name.chars().next().is_some_and(char::is_uppercase))
                        .filter(|name| *name != "processor")
                        .map(str::to_owned)
                        .collect()
                }
                None if metric[0] == "hookgate/hookgate" => {
                    vec![metric[1].as_str().unwrap_or_default().to_owned()]
                }
                None => continue,
            };
            for name in names {
                let quoted = format!("\"{name}\"");
                assert!(
                    sources.iter().any(|code| code.contains(&quoted)) || filters.contains(&name),
                    "{title}: nothing emits {name}"
                );
            }
        }
    }
}

#[test]
fn every_provider_has_a_webhook_url_output() {
    let template = Template::load();
    let outputs = template.outputs();
    for provider in PROVIDERS {
        let name = format!("{}WebhookUrl", capitalised(provider));
        let output = outputs
            .get(name.as_str())
            .unwrap_or_else(|| panic!("no output {name}"));
        assert_eq!(
            output["Condition"].as_str(),
            Some(format!("{}Enabled", capitalised(provider)).as_str()),
            "{name}: only for an enabled provider"
        );
        let parts = intrinsic(&output["Value"], "Fn::Sub")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{name} is a !Sub with a variable"));
        assert_eq!(
            parts[0].as_str(),
            Some(format!("${{Base}}/webhooks/{provider}").as_str()),
            "{name}"
        );
        let base = intrinsic(&parts[1]["Base"], "Fn::If")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{name}: the base depends on the custom domain"));
        assert_eq!(base[0].as_str(), Some("HasCustomDomain"));
        assert_eq!(sub_text(&base[1]), Some("https://${DomainName}"));
        assert_eq!(
            sub_text(&base[2]),
            Some("https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}")
        );
    }
}

#[test]
fn the_outputs_name_the_queues_and_every_secret() {
    let template = Template::load();
    let values: Vec<&Value> = template.outputs().values().map(|o| &o["Value"]).collect();
    let has_ref = |id: &str| values.iter().any(|v| ref_target(v) == Some(id));
    let has_arn = |id: &str| {
        values
            .iter()
            .any(|v| get_att(v) == Some((id.to_owned(), "Arn".to_owned())))
    };

    let queue = &template.resource("Queue")["Properties"];
    let (dlq, _) =
        get_att(&queue["RedrivePolicy"]["deadLetterTargetArn"]).expect("the queue has a DLQ");
    for id in ["Queue", dlq.as_str()] {
        assert!(has_ref(id), "no output with the URL of {id}");
        assert!(has_arn(id), "no output with the ARN of {id}");
    }
    for (id, _) in template.resources_of_type("AWS::SecretsManager::Secret") {
        assert!(has_ref(&id), "no output with the ARN of {id}");
    }
}

// ---------------------------------------------------------------------------
// The processor

/// The processor's role and its inline statements, each with the condition it
/// depends on, if any.
struct RoleStatements<'a> {
    statements: Vec<(Option<String>, &'a Value)>,
}

fn processor_role(template: &Template) -> (String, &Value) {
    let (id, function) = template.processor();
    let (role, attribute) = get_att(&function["Properties"]["Role"])
        .unwrap_or_else(|| panic!("{id}: Role is a GetAtt of a role of this stack"));
    assert_eq!(attribute, "Arn", "{id}: Role");
    let resource = template.resource(&role);
    assert_eq!(
        resource["Type"].as_str(),
        Some("AWS::IAM::Role"),
        "{id}: Role"
    );
    (role, resource)
}

fn role_statements(role: &Value) -> RoleStatements<'_> {
    let mut statements = Vec::new();
    for policy in one_or_many(&role["Properties"]["Policies"]) {
        let (condition, policy) = match intrinsic(policy, "Fn::If") {
            Some(branches) => {
                let branches = branches.as_sequence().expect("Fn::If takes a list");
                assert_eq!(branches.len(), 3, "Fn::If takes three arguments");
                assert_eq!(
                    ref_target(&branches[2]),
                    Some("AWS::NoValue"),
                    "a conditional policy is otherwise absent: {policy:?}"
                );
                (branches[0].as_str().map(str::to_owned), &branches[1])
            }
            None => (None, policy),
        };
        let document = &policy["PolicyDocument"];
        assert_eq!(
            document["Version"].as_str(),
            Some("2012-10-17"),
            "{policy:?}"
        );
        for statement in one_or_many(&document["Statement"]) {
            statements.push((condition.clone(), statement));
        }
    }
    RoleStatements { statements }
}

/// A statement's resource as text: `Queue.Arn` for a GetAtt, `Ref X` for a Ref, `If C: A |
/// B` for a choice.
fn resource_name(value: &Value) -> String {
    if let Some(branches) = intrinsic(value, "Fn::If").and_then(Value::as_sequence) {
        return format!(
            "If {}: {} | {}",
            branches[0].as_str().unwrap_or_default(),
            resource_name(&branches[1]),
            resource_name(&branches[2])
        );
    }
    if let Some((resource, attribute)) = get_att(value) {
        return format!("{resource}.{attribute}");
    }
    if let Some(text) = sub_text(value) {
        return text.to_owned();
    }
    if let Some(target) = ref_target(value) {
        return format!("Ref {target}");
    }
    if value.as_str() == Some("*") {
        return "*".to_owned();
    }
    panic!("a resource must name something of this stack or a parameter, not {value:?}")
}

/// The quoted upper-case names in the code (not the tests) of a source file:
/// the environment variables it reads.
fn quoted_variable_names(path: &str) -> BTreeSet<String> {
    let path = repo_root().join(path);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 2
                && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file under `dir`, read.
fn rust_sources(dir: &Path) -> Vec<String> {
    let mut sources = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return sources;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            sources.extend(fs::read_to_string(&path).ok());
        }
    }
    sources
}

#[test]
fn the_processor_is_built_from_its_binary_with_a_60_second_timeout_and_its_own_role() {
    let template = Template::load();
    let (id, function) = template.processor();
    let members = workspace_members();
    assert!(
        members.contains("functions/processor"),
        "{id}: functions/processor is not in the workspace members {members:?}"
    );
    assert_eq!(
        function["Properties"]["Timeout"].as_i64(),
        Some(60),
        "{id}: Timeout must be a literal 60, which the queue's VisibilityTimeout is six times"
    );
    assert!(
        function["Properties"].get("Policies").is_none(),
        "{id}: with a Role of its own, SAM would ignore Policies"
    );
    processor_role(&template);
}

#[test]
fn the_processor_consumes_the_queue_in_batches_reporting_item_failures() {
    let template = Template::load();
    let (id, function) = template.processor();
    let events = function["Properties"]["Events"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{id} has no Events"));
    assert_eq!(events.len(), 1, "{id}: one event source");
    let (_, event) = events.iter().next().expect("one event");
    assert_eq!(event["Type"].as_str(), Some("SQS"), "{id}: event type");
    let properties = &event["Properties"];
    assert_eq!(
        get_att(&properties["Queue"]),
        Some(("Queue".to_owned(), "Arn".to_owned())),
        "{id}: consumes the envelope queue"
    );
    assert_eq!(
        integer(&properties["BatchSize"]),
        Some(10),
        "{id}: BatchSize"
    );
    assert_eq!(
        integer(&properties["MaximumBatchingWindowInSeconds"]),
        Some(1),
        "{id}: MaximumBatchingWindowInSeconds"
    );
    let response_types: Vec<_> = one_or_many(&properties["FunctionResponseTypes"])
        .into_iter()
        .map(Value::as_str)
        .collect();
    assert_eq!(
        response_types,
        [Some("ReportBatchItemFailures")],
        "{id}: the handler answers with batchItemFailures, which SQS ignores without this"
    );
    let concurrency = &properties["ScalingConfig"]["MaximumConcurrency"];
    let param = ref_target(concurrency)
        .unwrap_or_else(|| panic!("{id}: MaximumConcurrency comes from a parameter"));
    let param = template.parameter(param);
    assert_eq!(
        integer(&param["Default"]),
        Some(10),
        "{id}: MaximumConcurrency"
    );
    assert_eq!(
        integer(&param["MinValue"]),
        Some(2),
        "{id}: SQS accepts no MaximumConcurrency under 2"
    );
}

#[test]
fn every_environment_variable_the_processor_reads_is_set_and_no_other() {
    let template = Template::load();
    let (id, function) = template.processor();
    let read = quoted_variable_names(PROCESSOR_CONFIG);
    for name in ["TABLE_NAME", "QUEUE_URL", "DLQ_URL"] {
        assert!(
            read.contains(name),
            "{PROCESSOR_CONFIG} no longer reads {name}"
        );
    }
    let expected: BTreeSet<String> = read
        .into_iter()
        .filter(|name| !PROCESSOR_ENV_UNSET.contains(&name.as_str()))
        .chain(quoted_variable_names(TELEMETRY_CONFIG))
        .collect();
    let env = template.environment(function);
    let actual: BTreeSet<String> = env.keys().cloned().collect();
    assert_eq!(actual, expected, "{id}: environment variables");

    let table = env
        .get("TABLE_NAME")
        .and_then(ref_target)
        .unwrap_or_else(|| panic!("{id}: TABLE_NAME is not a Ref"));
    assert_eq!(
        template.resource(table)["Type"].as_str(),
        Some("AWS::DynamoDB::Table"),
        "{id}: TABLE_NAME"
    );
    assert_eq!(
        env.get("QUEUE_URL").and_then(ref_target),
        Some("Queue"),
        "{id}: QUEUE_URL is the queue it consumes"
    );
    let queue = &template.resource("Queue")["Properties"];
    let (dlq, _) =
        get_att(&queue["RedrivePolicy"]["deadLetterTargetArn"]).expect("the queue has a DLQ");
    assert_eq!(
        env.get("DLQ_URL").and_then(ref_target),
        Some(dlq.as_str()),
        "{id}: DLQ_URL is the queue's dead-letter queue"
    );

    for (name, default) in PROCESSOR_ENV_DEFAULTS {
        let param = env
            .get(name)
            .and_then(ref_target)
            .unwrap_or_else(|| panic!("{id}: {name} does not come from a parameter"));
        assert_eq!(
            scalar_text(&template.parameter(param)["Default"]).as_deref(),
            Some(default),
            "{id}: default of {name} ({param})"
        );
    }
    // ProcessorConfig refuses a retention over 365 days, and the processor one shorter than
    // the dead-letter queue's retention plus the longest retry delay.
    let ttl = template.parameter(
        env.get("IDEMPOTENCY_TTL_DAYS")
            .and_then(ref_target)
            .expect("a parameter"),
    );
    let dlq_retention =
        integer(&template.resource("DeadLetterQueue")["Properties"]["MessageRetentionPeriod"])
            .expect("the dead-letter queue's retention is set");
    let least = integer(&ttl["MinValue"]).expect("a least retention");
    let day = Duration::from_secs(86_400);
    assert!(
        hookgate::processor::check_redrive_retention(
            day * u32::try_from(least).unwrap(),
            Duration::from_secs(u64::try_from(dlq_retention).unwrap())
        )
        .is_ok(),
        "{id}: the least IdempotencyTtlDays ({least}) must cover a redrive"
    );
    assert!(
        hookgate::processor::check_redrive_retention(
            day * u32::try_from(least - 1).unwrap(),
            Duration::from_secs(u64::try_from(dlq_retention).unwrap())
        )
        .is_err(),
        "{id}: MinValue is the least the processor accepts, no more"
    );
    assert_eq!(integer(&ttl["MaxValue"]), Some(365));
}

#[test]
fn the_idempotency_table_is_on_demand_with_ttl_point_in_time_recovery_and_encryption() {
    let template = Template::load();
    let (id, table) = template.idempotency_table();
    for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
        assert_eq!(
            table[policy].as_str(),
            Some("Retain"),
            "{id}: {policy}: the records are what stops a replay from acting twice"
        );
    }
    let p = &table["Properties"];
    assert!(
        p.get("TableName").is_none(),
        "{id}: a named table could not be replaced"
    );
    assert_eq!(p["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{id}");
    let keys = one_or_many(&p["KeySchema"]);
    assert_eq!(keys.len(), 1, "{id}: a partition key only");
    assert_eq!(keys[0]["AttributeName"].as_str(), Some("idempotency_key"));
    assert_eq!(keys[0]["KeyType"].as_str(), Some("HASH"));
    let attributes = one_or_many(&p["AttributeDefinitions"]);
    assert_eq!(
        attributes.len(),
        1,
        "{id}: only key attributes are declared"
    );
    assert_eq!(
        attributes[0]["AttributeName"].as_str(),
        Some("idempotency_key")
    );
    assert_eq!(attributes[0]["AttributeType"].as_str(), Some("S"));
    let ttl = &p["TimeToLiveSpecification"];
    assert_eq!(
        ttl["AttributeName"].as_str(),
        Some("expires_at"),
        "{id}: TTL"
    );
    assert_eq!(ttl["Enabled"].as_bool(), Some(true), "{id}: TTL");
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true),
        "{id}: point-in-time recovery"
    );
    assert_eq!(
        p["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true),
        "{id}: encryption"
    );

    // The adapter writes the same attribute names.
    let adapter = repo_root().join("shared/src/aws/dynamodb.rs");
    if let Ok(code) = fs::read_to_string(&adapter) {
        for name in ["\"idempotency_key\"", "\"expires_at\""] {
            assert!(
                code.contains(name),
                "{} does not use {name}",
                adapter.display()
            );
        }
    }
}

#[test]
fn the_processor_has_only_the_permissions_it_needs() {
    let template = Template::load();
    let (role_id, role) = processor_role(&template);
    let properties = &role["Properties"];

    let principals: Vec<_> = one_or_many(&properties["AssumeRolePolicyDocument"]["Statement"])
        .into_iter()
        .map(|s| {
            (
                s["Principal"]["Service"].as_str(),
                s["Action"].as_str(),
                s["Effect"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        principals,
        [(
            Some("lambda.amazonaws.com"),
            Some("sts:AssumeRole"),
            Some("Allow")
        )],
        "{role_id}: only Lambda assumes it"
    );
    let managed: Vec<&str> = one_or_many(&properties["ManagedPolicyArns"])
        .into_iter()
        .filter_map(sub_text)
        .collect();
    assert_eq!(
        managed,
        ["arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
        "{role_id}: logs only; AWSLambdaSQSQueueExecutionRole would open every queue"
    );

    let mut granted: BTreeMap<String, (Option<String>, BTreeSet<String>)> = BTreeMap::new();
    for (condition, statement) in role_statements(role).statements {
        assert_eq!(
            statement["Effect"].as_str(),
            Some("Allow"),
            "{role_id}: {statement:?}"
        );
        let resources = one_or_many(&statement["Resource"]);
        assert_eq!(
            resources.len(),
            1,
            "{role_id}: one resource per statement: {statement:?}"
        );
        let resource = resource_name(resources[0]);
        let entry = granted
            .entry(resource.clone())
            .or_insert_with(|| (condition.clone(), BTreeSet::new()));
        assert_eq!(entry.0, condition, "{role_id}: {resource}");
        for action in one_or_many(&statement["Action"]) {
            let action = action.as_str().unwrap_or_default();
            assert!(!action.contains('*'), "{role_id}: {action}");
            entry.1.insert(action.to_owned());
        }
    }

    let queue = &template.resource("Queue")["Properties"];
    let (dlq, _) =
        get_att(&queue["RedrivePolicy"]["deadLetterTargetArn"]).expect("the queue has a DLQ");
    let (table, _) = template.idempotency_table();
    let set =
        |actions: &[&str]| -> BTreeSet<String> { actions.iter().map(|a| a.to_string()).collect() };
    let expected: BTreeMap<String, (Option<String>, BTreeSet<String>)> = [
        (
            "Queue.Arn".to_owned(),
            (
                None,
                // The event source mapping polls and deletes with the function's
                // role; ChangeMessageVisibility is the retry backoff.
                set(&[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ]),
            ),
        ),
        (
            format!("{dlq}.Arn"),
            (None, set(&["sqs:SendMessage", "sqs:GetQueueAttributes"])),
        ),
        (
            format!("{table}.Arn"),
            (
                None,
                set(&[
                    "dynamodb:DescribeTable",
                    "dynamodb:GetItem",
                    "dynamodb:UpdateItem",
                ]),
            ),
        ),
        (
            "${BodyBucket.Arn}/bodies/*".to_owned(),
            (None, set(&["s3:GetObject"])),
        ),
        ("BodyBucket.Arn".to_owned(), (None, set(&["s3:ListBucket"]))),
        // The archive: one object per batch, written only.
        (
            "${BodyBucket.Arn}/archive/*".to_owned(),
            (Some("ArchiveOn".to_owned()), set(&["s3:PutObject"])),
        ),
        // The routes object, its versions, and the listing that tells a missing object
        // from a forbidden one: in the stack's bucket, or in the one RoutesSource names.
        (
            "If RoutesInStack: ${RoutesBucket.Arn}/routes.toml | arn:${AWS::Partition}:s3:::${Object}"
                .to_owned(),
            (
                Some("RoutesRead".to_owned()),
                set(&["s3:GetObject", "s3:GetObjectVersion"]),
            ),
        ),
        (
            "If RoutesInStack: RoutesBucket.Arn | arn:${AWS::Partition}:s3:::${Bucket}".to_owned(),
            (
                Some("RoutesRead".to_owned()),
                set(&["s3:ListBucket", "s3:ListBucketVersions"]),
            ),
        ),
        // X-Ray has no resources to name; only with active tracing.
        (
            "*".to_owned(),
            (
                Some("TracingActive".to_owned()),
                set(&["xray:PutTraceSegments", "xray:PutTelemetryRecords"]),
            ),
        ),
        (
            "Ref AgentFunctionArns".to_owned(),
            (
                Some("HasAgentFunctions".to_owned()),
                set(&["lambda:InvokeFunction"]),
            ),
        ),
        (
            "Ref AgentSecretArns".to_owned(),
            (
                Some("HasAgentSecrets".to_owned()),
                set(&["secretsmanager:GetSecretValue"]),
            ),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(granted, expected, "{role_id}: permissions");

    // The table permissions are exactly the calls the DynamoDB adapter makes.
    let adapter = repo_root().join("shared/src/aws/dynamodb.rs");
    if let Ok(code) = fs::read_to_string(&adapter) {
        let calls = [
            ("describe_table", "dynamodb:DescribeTable"),
            ("update_item", "dynamodb:UpdateItem"),
            ("put_item", "dynamodb:PutItem"),
            ("get_item", "dynamodb:GetItem"),
            ("delete_item", "dynamodb:DeleteItem"),
            ("query", "dynamodb:Query"),
            ("scan", "dynamodb:Scan"),
            ("transact_write_items", "dynamodb:TransactWriteItems"),
            ("batch_write_item", "dynamodb:BatchWriteItem"),
            ("batch_get_item", "dynamodb:BatchGetItem"),
        ];
        // GetItem: the processor's warm-up at init (and `is_recorded`, the GitHub
        // reconciler's, whose own role grants it).
        let used: BTreeSet<String> = calls
            .iter()
            .filter(|(method, _)| code.contains(&format!(".{method}()")))
            .map(|(_, action)| action.to_string())
            .collect();
        assert_eq!(
            used,
            expected[&format!("{table}.Arn")].1,
            "{}: the calls it makes and the table permissions differ",
            adapter.display()
        );
    }
}

#[test]
fn the_agent_permissions_exist_only_when_their_arns_are_given() {
    let template = Template::load();
    for (param, condition) in [
        ("AgentFunctionArns", "HasAgentFunctions"),
        ("AgentSecretArns", "HasAgentSecrets"),
    ] {
        let parameter = template.parameter(param);
        assert_eq!(
            parameter["Type"].as_str(),
            Some("CommaDelimitedList"),
            "{param}"
        );
        assert_eq!(
            parameter["Default"].as_str(),
            Some(""),
            "{param}: nothing by default"
        );
        // HasX: !Not [!Equals [!Join ["", !Ref X], ""]]
        let definition = &template.root["Conditions"][condition];
        let equals = intrinsic(definition, "Fn::Not")
            .and_then(|not| one_or_many(not).first().copied())
            .and_then(|inner| intrinsic(inner, "Fn::Equals"))
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{condition} is not !Not [!Equals [...]]"));
        assert_eq!(equals.len(), 2, "{condition}");
        let join = intrinsic(&equals[0], "Fn::Join")
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{condition}: compares a !Join"));
        assert_eq!(join[0].as_str(), Some(""), "{condition}");
        assert_eq!(ref_target(&join[1]), Some(param), "{condition}");
        assert_eq!(equals[1].as_str(), Some(""), "{condition}");
    }
}

#[test]
fn the_processor_has_alarms_on_dead_letters_and_processing_errors() {
    let template = Template::load();
    let alarms = template.alarms();
    let alarm_on = |metric: &str| {
        alarms
            .iter()
            .find(|(_, alarm)| {
                let p = &alarm["Properties"];
                is_stack_namespace(&p["Namespace"]) && p["MetricName"].as_str() == Some(metric)
            })
            .unwrap_or_else(|| panic!("no alarm on hookgate/{metric}"))
    };
    for (metric, period) in [("DeadLettered", 60), ("ProcessingErrors", 300)] {
        let (id, alarm) = alarm_on(metric);
        let p = &alarm["Properties"];
        assert_eq!(
            dimension_pairs(&one_or_many(&p["Dimensions"])),
            [("Service", "processor".to_owned())],
            "{id}: the processor counts {metric} in all, as its Service"
        );
        assert_eq!(p["Statistic"].as_str(), Some("Sum"), "{id}");
        assert_eq!(integer(&p["Period"]), Some(period), "{id}: Period");
        assert_eq!(integer(&p["Threshold"]), Some(0), "{id}: Threshold");
        assert_eq!(
            p["ComparisonOperator"].as_str(),
            Some("GreaterThanThreshold"),
            "{id}"
        );
    }
}

#[test]
fn every_custom_metric_an_alarm_watches_is_one_the_code_emits() {
    let template = Template::load();
    let sources = rust_sources(&repo_root().join("shared"));
    let functions: BTreeSet<String> = workspace_members()
        .into_iter()
        .filter(|member| member.starts_with("functions/"))
        .map(|member| member.trim_start_matches("functions/").to_owned())
        .collect();
    let mut custom = 0;
    for (id, alarm) in template.alarms() {
        let p = &alarm["Properties"];
        if p["Namespace"].as_str() == Some("hookgate") {
            panic!("{id}: the functions write to hookgate/<stack>, not hookgate");
        }
        if !is_stack_namespace(&p["Namespace"]) {
            continue;
        }
        custom += 1;
        let metric = p["MetricName"].as_str().unwrap_or_default();
        let from_a_log_filter = template
            .resources_of_type("AWS::Logs::MetricFilter")
            .into_iter()
            .any(|(_, filter)| {
                one_or_many(&filter["Properties"]["MetricTransformations"])
                    .into_iter()
                    .any(|t| t["MetricName"].as_str() == Some(metric))
            });
        if from_a_log_filter {
            continue;
        }
        let dimensions = dimension_pairs(&one_or_many(&p["Dimensions"]));
        assert!(
            dimensions
                .first()
                .is_some_and(|(name, function)| *name == "Service" && functions.contains(function)),
            "{id}: the first dimension names the function that emits it: {dimensions:?}"
        );
        let quoted = format!("\"{metric}\"");
        assert!(
            sources.iter().any(|code| code.contains(&quoted)),
            "{id}: no code under shared/ emits {metric}"
        );
    }
    assert!(
        custom >= 10,
        "{custom} alarms on the functions' own metrics"
    );
    assert_eq!(
        sub_text(
            &template.root["Globals"]["Function"]["Environment"]["Variables"]["METRICS_NAMESPACE"]
        ),
        Some("hookgate/${AWS::StackName}"),
        "the functions write where the alarms read"
    );
}

/// Whether an alarm's namespace is the stack's own, `hookgate/<stack>`.
fn is_stack_namespace(value: &Value) -> bool {
    sub_text(value) == Some("hookgate/${AWS::StackName}")
}

/// An alarm's dimensions as (name, value) pairs, in order.
fn dimension_pairs(dimensions: &[&Value]) -> Vec<(&'static str, String)> {
    dimensions
        .iter()
        .map(|dimension| {
            let name = match dimension["Name"].as_str() {
                Some("Service") => "Service",
                Some("Provider") => "Provider",
                Some("Hook") => "Hook",
                other => panic!("an unexpected dimension {other:?}"),
            };
            (
                name,
                dimension["Value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_outputs_name_the_table_and_the_processor() {
    let template = Template::load();
    let values: Vec<&Value> = template.outputs().values().map(|o| &o["Value"]).collect();
    let (table, _) = template.idempotency_table();
    let (processor, _) = template.processor();
    assert!(
        values.iter().any(|v| ref_target(v) == Some(table.as_str())),
        "no output with the name of {table}"
    );
    assert!(
        values
            .iter()
            .any(|v| get_att(v) == Some((table.clone(), "Arn".to_owned()))),
        "no output with the ARN of {table}"
    );
    assert!(
        values
            .iter()
            .any(|v| ref_target(v) == Some(processor.as_str())),
        "no output with the name of {processor}"
    );
}

// ---------------------------------------------------------------------------
// The GitHub reconciler

/// What the reconciler's config reads that the template leaves unset on purpose: the token
/// itself (local runs), and settings whose defaults are the advised ones.
const RECONCILER_ENV_UNSET: [&str; 3] = [
    "GITHUB_TOKEN",
    "GITHUB_MAX_REDELIVERIES",
    "SECRET_REFRESH_SECS",
];

#[test]
fn the_github_reconciler_runs_every_five_minutes_only_when_hooks_are_named() {
    let template = Template::load();
    let (id, function) = template.reconciler();
    for resource in [
        id.as_str(),
        "GithubTokenSecret",
        "ReconcilerStateTable",
        "GithubReconcilerLogGroup",
        "GithubReconcilerErrorsAlarm",
        "GithubReconcilerProblemsAlarm",
        "GithubRedeliveriesExhaustedAlarm",
    ] {
        assert_eq!(
            template.resource(resource)["Condition"].as_str(),
            Some("HasGithubHooks"),
            "{resource} exists only with hooks to watch"
        );
    }
    assert_eq!(
        template.parameter("GithubHooks")["Default"].as_str(),
        Some(""),
        "no reconciler unless asked for"
    );

    let schedule = &function["Properties"]["Events"]["Schedule"];
    assert_eq!(schedule["Type"].as_str(), Some("ScheduleV2"));
    assert_eq!(
        ref_target(&schedule["Properties"]["ScheduleExpression"]),
        Some("GithubReconcileSchedule")
    );
    assert_eq!(
        template.parameter("GithubReconcileSchedule")["Default"].as_str(),
        Some("rate(5 minutes)")
    );

    // Its environment is exactly what its config reads, less what is left unset.
    let config = quoted_variable_names("shared/reconciler/src/config.rs");
    let env = template.environment(function);
    let set: BTreeSet<String> = env.keys().cloned().collect();
    let expected: BTreeSet<String> = config
        .into_iter()
        .filter(|name| !RECONCILER_ENV_UNSET.contains(&name.as_str()))
        .chain(quoted_variable_names(TELEMETRY_CONFIG))
        .collect();
    assert_eq!(set, expected, "{id}: environment variables");
    assert_eq!(
        ref_target(&env["TABLE_NAME"]),
        Some(template.idempotency_table().0.as_str()),
        "{id}: reads the idempotency table"
    );
}

#[test]
fn the_github_reconciler_may_only_read_records_and_its_token_and_keep_its_own_state() {
    let template = Template::load();
    let (id, function) = template.reconciler();
    let (table, _) = template.idempotency_table();
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut reads_token = false;
    for policy in one_or_many(&function["Properties"]["Policies"]) {
        if let Some(arguments) = policy.get("AWSSecretsManagerGetSecretValuePolicy") {
            assert_eq!(
                ref_target(&arguments["SecretArn"]),
                Some("GithubTokenSecret")
            );
            reads_token = true;
            continue;
        }
        for statement in one_or_many(&policy["Statement"]) {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{id}");
            for resource in one_or_many(&statement["Resource"]) {
                let actions = granted.entry(resource_name(resource)).or_default();
                for action in one_or_many(&statement["Action"]) {
                    actions.insert(action.as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    assert!(reads_token, "{id}: reads its token");
    let set = |actions: &[&str]| {
        actions
            .iter()
            .map(|a| a.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        granted,
        BTreeMap::from([
            (
                format!("{table}.Arn"),
                set(&["dynamodb:DescribeTable", "dynamodb:GetItem"])
            ),
            (
                "ReconcilerStateTable.Arn".to_owned(),
                set(&[
                    "dynamodb:DescribeTable",
                    "dynamodb:GetItem",
                    "dynamodb:UpdateItem"
                ])
            ),
        ]),
        "{id}: permissions"
    );
}
