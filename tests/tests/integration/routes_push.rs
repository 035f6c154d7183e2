//! `hookgate routes push FILE --stack NAME` against the emulator: a CloudFormation stack
//! whose outputs and parameters are shaped as the template's (`RoutesLocation`, a versioned
//! routes bucket, `AgentFunctionArns`, `AgentSecretArns`), read by the built binary, which
//! checks the file, checks it against what the stack grants, and publishes it.
//!
//! These tests run what `cargo build --workspace --bins` left in `target/debug`.

use hookgate_tests::emulator;
use hookgate_tests::hookgate_cli::{hookgate, printed, scratch_directory};

/// A stack with the template's routes bucket, output and grants, on the emulator.
async fn stack(functions: &str) -> (String, String) {
    let sdk = emulator::sdk_config().await;
    let client = aws_sdk_cloudformation::Client::new(&sdk);
    let name = emulator::unique_name("hookgate-push");
    // The grants are CommaDelimitedList parameters in the template, which CloudFormation
    // describes as the comma-separated text given; the emulator describes such a list as a
    // Python list instead, so here they are Strings, described the same way CloudFormation
    // describes the template's.
    let template = r#"
Parameters:
  AgentFunctionArns:
    Type: String
    Default: ""
  AgentSecretArns:
    Type: String
    Default: ""
Resources:
  RoutesBucket:
    Type: AWS::S3::Bucket
    Properties:
      VersioningConfiguration:
        Status: Enabled
Outputs:
  RoutesLocation:
    Value: !Sub "s3://${RoutesBucket}/routes.toml"
"#;
    client
        .create_stack()
        .stack_name(&name)
        .template_body(template)
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("AgentFunctionArns")
                .parameter_value(functions)
                .build(),
        )
        .send()
        .await
        .expect("the emulator creates the stack");
    let described = client
        .describe_stacks()
        .stack_name(&name)
        .send()
        .await
        .expect("the emulator describes the stack");
    let location = described.stacks()[0]
        .outputs()
        .iter()
        .find(|output| output.output_key() == Some("RoutesLocation"))
        .and_then(|output| output.output_value())
        .expect("the stack has its output")
        .to_owned();
    (name, location)
}

/// The object's text, or `None` when there is none.
async fn published(location: &str) -> Option<String> {
    let (bucket, key) = hookgate::aws::parse_s3_uri(location).expect("an s3 URI");
    let object = emulator::s3_client()
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    let bytes = object.body.collect().await.expect("the body").into_bytes();
    Some(String::from_utf8(bytes.to_vec()).expect("text"))
}

async fn push(args: &[&str]) -> std::process::Output {
    let env = emulator::function_environment();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["routes", "push"];
    all.extend(args);
    hookgate(&all, &env).await
}

const BILLING: &str = "arn:aws:lambda:us-east-1:123456789012:function:billing";

fn routes_invoking(function: &str) -> String {
    format!(
        "[[route]]\nname = \"invoices\"\nprovider = \"stripe\"\nevents = [\"invoice.*\"]\n\
         actions = [\"billing\"]\n\n[action.billing]\ntype = \"lambda\"\nfunction = \"{function}\"\n"
    )
}

#[tokio::test]
async fn a_valid_file_is_published_where_the_stack_says_its_processor_reads_routes() {
    let (stack, location) = stack(BILLING).await;
    let directory = scratch_directory("routes-push");
    let file = directory.join("routes.toml");
    std::fs::write(&file, routes_invoking("billing")).unwrap();

    let pushed = push(&[file.to_str().unwrap(), "--stack", &stack, "--json"]).await;

    assert!(pushed.status.success(), "{}", printed(&pushed));
    let said: serde_json::Value = serde_json::from_slice(&pushed.stdout).expect("JSON");
    assert_eq!(said["published"]["location"], location.as_str());
    assert!(said["published"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(said["actions"][0]["function"], "billing");
    assert_eq!(
        published(&location).await.as_deref(),
        Some(routes_invoking("billing").as_str())
    );
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_nothing_is_published() {
    let (stack, location) = stack(BILLING).await;
    let directory = scratch_directory("routes-push-invalid");
    let file = directory.join("routes.toml");
    std::fs::write(&file, "[[route]]\nname = \"x\"\nprovider = \"github\"\nevents = [\"*\"]\nactions = [\"nobody\"]\n").unwrap();

    let pushed = push(&[file.to_str().unwrap(), "--stack", &stack]).await;

    assert!(!pushed.status.success(), "{}", printed(&pushed));
    let error = String::from_utf8_lossy(&pushed.stderr);
    assert!(error.contains("no [action.nobody] is defined"), "{error}");
    assert_eq!(published(&location).await, None);
}

#[tokio::test]
async fn a_file_naming_a_function_the_stack_does_not_grant_is_refused_unless_forced() {
    let (stack, location) = stack(BILLING).await;
    let directory = scratch_directory("routes-push-grants");
    let file = directory.join("routes.toml");
    std::fs::write(&file, routes_invoking("invoicing")).unwrap();

    let refused = push(&[file.to_str().unwrap(), "--stack", &stack]).await;
    assert!(!refused.status.success(), "{}", printed(&refused));
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("invokes invoicing, which AgentFunctionArns does not list")
            && error.contains("--force"),
        "{error}"
    );
    assert_eq!(published(&location).await, None);

    let forced = push(&[file.to_str().unwrap(), "--stack", &stack, "--force"]).await;
    assert!(forced.status.success(), "{}", printed(&forced));
    assert!(String::from_utf8_lossy(&forced.stderr)
        .contains("warning: action `billing` invokes invoicing"));
    assert_eq!(
        published(&location).await.as_deref(),
        Some(routes_invoking("invoicing").as_str())
    );
}

#[tokio::test]
async fn a_stack_that_does_not_exist_is_named_in_the_error() {
    let directory = scratch_directory("routes-push-missing");
    let file = directory.join("routes.toml");
    std::fs::write(&file, routes_invoking("billing")).unwrap();

    let pushed = push(&[file.to_str().unwrap(), "--stack", "hookgate-never-deployed"]).await;

    assert!(!pushed.status.success(), "{}", printed(&pushed));
    assert_eq!(
        String::from_utf8_lossy(&pushed.stderr).trim(),
        "hookgate: the stack hookgate-never-deployed does not exist (in this account and region)"
    );
}

#[tokio::test]
async fn push_without_a_stack_or_an_object_says_what_it_needs() {
    let directory = scratch_directory("routes-push-nowhere");
    let file = directory.join("routes.toml");
    std::fs::write(&file, routes_invoking("billing")).unwrap();

    let pushed = push(&[file.to_str().unwrap()]).await;

    assert!(!pushed.status.success(), "{}", printed(&pushed));
    assert!(String::from_utf8_lossy(&pushed.stderr).contains("push needs --stack NAME"));
}

#[tokio::test]
async fn push_to_an_object_publishes_there_without_a_stack() {
    let s3 = emulator::s3_client().await;
    let bucket = emulator::create_versioned_bucket(&s3, "own-routes")
        .await
        .expect("a versioned bucket");
    let location = format!("s3://{bucket}/hookgate/routes.toml");
    let directory = scratch_directory("routes-push-to");
    let file = directory.join("routes.toml");
    std::fs::write(&file, routes_invoking("billing")).unwrap();

    let pushed = push(&[file.to_str().unwrap(), "--to", &location]).await;

    assert!(pushed.status.success(), "{}", printed(&pushed));
    assert_eq!(
        published(&location).await.as_deref(),
        Some(routes_invoking("billing").as_str())
    );
    let refused = push(&[
        file.to_str().unwrap(),
        "--to",
        "https://example.com/routes.toml",
    ])
    .await;
    assert!(!refused.status.success(), "{}", printed(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not an S3 object's URI"),
        "{}",
        printed(&refused)
    );
}

#[tokio::test]
async fn a_stack_serving_only_its_bundled_routes_is_named_with_what_to_change() {
    let client = aws_sdk_cloudformation::Client::new(&emulator::sdk_config().await);
    let name = emulator::unique_name("hookgate-bundled");
    client
        .create_stack()
        .stack_name(&name)
        .template_body(
            "Resources:\n  Placeholder:\n    Type: AWS::SQS::Queue\nOutputs:\n  RoutesLocation:\n    Value: bundled\n",
        )
        .send()
        .await
        .expect("the emulator creates the stack");
    let directory = scratch_directory("routes-push-bundled");
    let file = directory.join("routes.toml");
    std::fs::write(&file, routes_invoking("billing")).unwrap();

    let pushed = push(&[file.to_str().unwrap(), "--stack", &name]).await;

    assert!(!pushed.status.success(), "{}", printed(&pushed));
    let error = String::from_utf8_lossy(&pushed.stderr);
    assert!(
        error.contains("serves only the routes built into its processor")
            && error.contains("RoutesSource empty"),
        "{error}"
    );
}
