//! The least a Lambda function in Rust can be: tokio's default runtime, `lambda_runtime`'s
//! loop, and a handler answering a constant. What is left of a function's cost when it does
//! no work: the floor under every other binary the bench runs.

#![forbid(unsafe_code)]

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({ "statusCode": 200 }))
    }))
    .await
}
