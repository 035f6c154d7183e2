//! A deployed stack, as the commands that work on AWS see it: its outputs (queue URLs, the
//! table, the buckets, where the routes are) and its parameters (what the processor is
//! granted), read with one `DescribeStacks` call, and the SDK configuration the standard
//! AWS options (`--profile`, `--region`, or the usual variables) ask for.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_cloudformation::error::DisplayErrorContext;

/// How long one call to AWS may take from the command line.
const CALL_TIMEOUTS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(20));

/// Where on AWS a command works.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsOptions {
    /// The deployed stack (the name given to `sam deploy`); its outputs name the queues,
    /// the table and the buckets.
    #[arg(long, global = true, value_name = "NAME", env = "HOOKGATE_STACK")]
    pub stack: Option<String>,

    /// The AWS profile to use (otherwise AWS_PROFILE, or the default credentials).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// The AWS region (otherwise AWS_REGION, or the profile's).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
}

impl AwsOptions {
    /// The SDK configuration: the standard chain (which also reads AWS_ENDPOINT_URL), with
    /// `--profile` and `--region` over it, and a timeout on every call.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = hookgate::aws::sdk_loader(CALL_TIMEOUTS, crate::trust());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        loader.load().await
    }
}

/// A stack could not be read, or lacks what the command needs.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot read the stack {stack}: {reason}")]
    Unreadable { stack: String, reason: String },
    #[error("the stack {stack} does not exist (in this account and region)")]
    NotFound { stack: String },
    #[error(
        "the stack {stack} has no output {output}: it does not receive from that provider \
         (EnabledProviders), or it was deployed from an older template.yaml"
    )]
    MissingOutput { stack: String, output: String },
}

/// A stack's outputs and parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stack {
    pub name: String,
    pub outputs: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
}

impl Stack {
    /// Reads the stack `name` with one `DescribeStacks` call.
    pub async fn describe(config: &SdkConfig, name: &str) -> Result<Self, StackError> {
        let client = aws_sdk_cloudformation::Client::new(config);
        let described = client
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|error| {
                let text = DisplayErrorContext(&error).to_string();
                // CloudFormation answers a stack it does not have with a ValidationError.
                if text.contains("does not exist") {
                    StackError::NotFound {
                        stack: name.to_owned(),
                    }
                } else {
                    StackError::Unreadable {
                        stack: name.to_owned(),
                        reason: text,
                    }
                }
            })?;
        let stack = described
            .stacks()
            .first()
            .ok_or_else(|| StackError::NotFound {
                stack: name.to_owned(),
            })?;
        Ok(Self {
            name: name.to_owned(),
            outputs: stack
                .outputs()
                .iter()
                .filter_map(|output| {
                    Some((
                        output.output_key()?.to_owned(),
                        output.output_value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
            parameters: stack
                .parameters()
                .iter()
                .filter_map(|parameter| {
                    Some((
                        parameter.parameter_key()?.to_owned(),
                        parameter.parameter_value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
        })
    }

    /// The value of the output `name`.
    pub fn output(&self, name: &str) -> Result<&str, StackError> {
        self.outputs
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| StackError::MissingOutput {
                stack: self.name.clone(),
                output: name.to_owned(),
            })
    }

    /// The bucket the stack archives events in (its `ArchiveLocation` output), or `None`
    /// when its archive is off (`ArchiveDays` 0, or a stack from before the archive).
    pub fn archive_bucket(&self) -> Result<Option<String>, StackError> {
        let Some(location) = self.outputs.get("ArchiveLocation") else {
            return Ok(None);
        };
        location
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(bucket, _)| Some(bucket.to_owned()))
            .ok_or_else(|| StackError::Unreadable {
                stack: self.name.clone(),
                reason: format!(
                    "its ArchiveLocation output `{location}` is not s3://BUCKET/archive/"
                ),
            })
    }

    /// The parameter `name` as a comma-separated list, without empty items.
    pub fn list_parameter(&self, name: &str) -> Vec<String> {
        self.parameters
            .get(name)
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        Stack {
            name: "hookgate".to_owned(),
            outputs: [("QueueUrl".to_owned(), "https://sqs/q".to_owned())].into(),
            parameters: [("AgentSecretArns".to_owned(), " a, ,b ".to_owned())].into(),
        }
    }

    #[test]
    fn an_output_the_stack_lacks_names_the_output_and_what_to_do() {
        let error = stack().output("RoutesLocation").unwrap_err().to_string();
        assert_eq!(
            error,
            "the stack hookgate has no output RoutesLocation: it does not receive from that \
             provider (EnabledProviders), or it was deployed from an older template.yaml"
        );
        assert_eq!(stack().output("QueueUrl").unwrap(), "https://sqs/q");
    }

    #[test]
    fn the_archive_bucket_is_read_from_the_archive_location_when_the_archive_is_on() {
        assert_eq!(stack().archive_bucket().unwrap(), None);
        let mut on = stack();
        on.outputs.insert(
            "ArchiveLocation".to_owned(),
            "s3://hookgate-bodybucket-1x2y/archive/".to_owned(),
        );
        assert_eq!(
            on.archive_bucket().unwrap().as_deref(),
            Some("hookgate-bodybucket-1x2y")
        );
        on.outputs
            .insert("ArchiveLocation".to_owned(), "nonsense".to_owned());
        assert!(on.archive_bucket().is_err());
    }

    #[test]
    fn a_list_parameter_is_split_on_commas_without_blanks() {
        assert_eq!(stack().list_parameter("AgentSecretArns"), ["a", "b"]);
        assert!(stack().list_parameter("AgentFunctionArns").is_empty());
    }
}
