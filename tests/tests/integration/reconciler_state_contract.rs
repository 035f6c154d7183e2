//! The contract of the GitHub reconciler's [`ReconcilerState`] port, as one suite run
//! against both adapters: the in-memory state and the DynamoDB adapter on the emulator.
//!
//! Overlapping runs and runs that die are safe only because these answers hold: a cursor
//! moves for one run of those that read it, and an event's redelivery is claimed by one
//! run at a time, asked for again only after a newer failure, and at most so often.

use std::sync::Arc;
use std::time::Duration;

use hookgate_reconciler::dynamodb::DynamoState;
use hookgate_reconciler::hooks::Hook;
use hookgate_reconciler::state::{
    Begin, Cursor, CursorPosition, MemoryState, ReconcilerState, RedeliveryRequest, Ticket, Walk,
};
use hookgate_tests::emulator;
use time::OffsetDateTime;
use tokio::task::JoinSet;

const LEASE: Duration = Duration::from_secs(120);

trait Adapter {
    fn state(&self) -> Arc<dyn ReconcilerState>;

    async fn make_unavailable(&self);
}

#[derive(Debug, Default)]
struct Memory(MemoryState);

impl Adapter for Memory {
    fn state(&self) -> Arc<dyn ReconcilerState> {
        Arc::new(self.0.clone())
    }

    async fn make_unavailable(&self) {
        self.0.set_unavailable(true);
    }
}

#[derive(Debug)]
struct Dynamo {
    client: aws_sdk_dynamodb::Client,
    table_name: String,
    state: DynamoState,
}

impl Dynamo {
    async fn new() -> Self {
        let client = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
        let table_name = emulator::create_reconciler_state_table(&client, "reconciler")
            .await
            .expect("the emulator creates a table");
        let state = DynamoState::connect(client.clone(), table_name.clone())
            .await
            .expect("the adapter connects to a table that exists");
        Self {
            client,
            table_name,
            state,
        }
    }
}

impl Adapter for Dynamo {
    fn state(&self) -> Arc<dyn ReconcilerState> {
        Arc::new(self.state.clone())
    }

    async fn make_unavailable(&self) {
        self.client
            .delete_table()
            .table_name(&self.table_name)
            .send()
            .await
            .expect("the emulator deletes the table");
    }
}

/// Whole milliseconds: what every adapter keeps exactly.
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).expect("a valid time")
}

fn hook() -> Hook {
    "repo:octo-org/agent:42".parse().expect("a hook")
}

fn request(guid: &str, failed_attempt: u64, now: i64) -> RedeliveryRequest<'_> {
    RedeliveryRequest {
        guid,
        failed_attempt,
        now: at(now),
        lease: LEASE,
        max_requests: 2,
        retention: Duration::from_secs(4 * 86_400),
    }
}

async fn go(state: &dyn ReconcilerState, request: RedeliveryRequest<'_>) -> Ticket {
    match state
        .begin_redelivery(request)
        .await
        .expect("the state answers")
    {
        Begin::Go(ticket) => ticket,
        other => panic!("expected to go ahead, got {other:?}"),
    }
}

async fn a_hook_never_read_has_no_cursor(adapter: impl Adapter) {
    assert_eq!(
        adapter
            .state()
            .cursor(&hook())
            .await
            .expect("the state answers"),
        Cursor::default()
    );
}

async fn a_saved_cursor_reads_back_with_its_walk_and_each_save_a_new_version(
    adapter: impl Adapter,
) {
    let state = adapter.state();
    let walking = CursorPosition {
        covered_until: Some(at(0)),
        walk: Some(Walk {
            next_page: "https://api.github.com/repositories/1/hooks/42/deliveries?cursor=v1_9%3D"
                .into(),
            down_to: at(-300),
            started_at: at(60),
        }),
    };
    let read = state.cursor(&hook()).await.expect("the state answers");
    assert!(state
        .save_cursor(&hook(), &read, &walking)
        .await
        .expect("the state answers"));
    let saved = state.cursor(&hook()).await.expect("the state answers");
    assert_eq!(saved.position, walking);

    let caught_up = CursorPosition {
        covered_until: Some(at(60)),
        walk: None,
    };
    assert!(state
        .save_cursor(&hook(), &saved, &caught_up)
        .await
        .expect("the state answers"));
    let again = state.cursor(&hook()).await.expect("the state answers");
    assert_eq!(again.position, caught_up, "the walk is gone once done");
    assert!(again.version > saved.version && saved.version > read.version);
}

async fn a_save_from_a_read_another_run_moved_past_is_refused(adapter: impl Adapter) {
    let state = adapter.state();
    let first = state.cursor(&hook()).await.expect("the state answers");
    let second = state.cursor(&hook()).await.expect("the state answers");
    let position = |seconds| CursorPosition {
        covered_until: Some(at(seconds)),
        walk: None,
    };

    assert!(state
        .save_cursor(&hook(), &first, &position(10))
        .await
        .expect("answers"));
    assert!(!state
        .save_cursor(&hook(), &second, &position(20))
        .await
        .expect("answers"));
    assert_eq!(
        state.cursor(&hook()).await.expect("answers").position,
        position(10)
    );
}

async fn an_events_first_request_goes_ahead_and_is_in_flight_until_its_lease_ends(
    adapter: impl Adapter,
) {
    let state = adapter.state();
    let first = go(state.as_ref(), request("g-lease", 0, 10)).await;
    assert_eq!(first.requests, 0);

    assert_eq!(
        state
            .begin_redelivery(request("g-lease", 0, 10 + 119))
            .await
            .expect("answers"),
        Begin::InFlight
    );
    let taken_over = go(state.as_ref(), request("g-lease", 0, 10 + 120)).await;
    assert_ne!(taken_over.holder, first.holder);
}

async fn a_requested_event_goes_again_only_after_a_newer_failure_and_at_most_so_often(
    adapter: impl Adapter,
) {
    let state = adapter.state();
    let ticket = go(state.as_ref(), request("g-again", 100, 10)).await;
    state.finish_redelivery(&ticket).await.expect("answers");

    for (attempt, why) in [
        (100, "its newest failure is the attempt asked for"),
        (99, "an older attempt, listed late"),
    ] {
        assert_eq!(
            state
                .begin_redelivery(request("g-again", attempt, 30))
                .await
                .expect("answers"),
            Begin::AlreadyRequested,
            "{why}"
        );
    }
    let again = go(state.as_ref(), request("g-again", 101, 30)).await;
    assert_eq!(again.requests, 1);
    state.finish_redelivery(&again).await.expect("answers");

    assert_eq!(
        state
            .begin_redelivery(request("g-again", 102, 60))
            .await
            .expect("answers"),
        Begin::Exhausted { requests: 2 }
    );
}

async fn an_abandoned_claim_goes_ahead_at_once_and_only_its_holder_writes(adapter: impl Adapter) {
    let state = adapter.state();
    let ticket = go(state.as_ref(), request("g-abandoned", 0, 10)).await;
    let stranger = Ticket {
        holder: "someone else".into(),
        ..ticket.clone()
    };
    state.finish_redelivery(&stranger).await.expect("answers");
    state.abandon_redelivery(&stranger).await.expect("answers");
    assert_eq!(
        state
            .begin_redelivery(request("g-abandoned", 0, 12))
            .await
            .expect("answers"),
        Begin::InFlight,
        "a stranger's writes change nothing"
    );

    state.abandon_redelivery(&ticket).await.expect("answers");

    let next = go(state.as_ref(), request("g-abandoned", 0, 13)).await;
    assert_eq!(next.requests, 0, "nothing was asked for");
}

async fn fifty_concurrent_claims_on_one_event_go_ahead_once(adapter: impl Adapter) {
    let guid = emulator::unique_name("g-race");
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let state = adapter.state();
        let guid = guid.clone();
        tasks.spawn(async move {
            state
                .begin_redelivery(request(&guid, 0, 10))
                .await
                .expect("the state answers")
        });
    }
    let mut went = 0;
    while let Some(begin) = tasks.join_next().await {
        match begin.expect("the task finishes") {
            Begin::Go(_) => went += 1,
            Begin::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(went, 1);
}

async fn an_unavailable_state_answers_with_an_error(adapter: impl Adapter) {
    let state = adapter.state();
    adapter.make_unavailable().await;

    assert!(state.cursor(&hook()).await.is_err());
    assert!(state
        .begin_redelivery(request("g-down", 0, 10))
        .await
        .is_err());
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;

            #[tokio::test]
            async fn a_hook_never_read_has_no_cursor() {
                super::a_hook_never_read_has_no_cursor($make).await;
            }

            #[tokio::test]
            async fn a_saved_cursor_reads_back_with_its_walk_and_each_save_a_new_version() {
                super::a_saved_cursor_reads_back_with_its_walk_and_each_save_a_new_version($make)
                    .await;
            }

            #[tokio::test]
            async fn a_save_from_a_read_another_run_moved_past_is_refused() {
                super::a_save_from_a_read_another_run_moved_past_is_refused($make).await;
            }

            #[tokio::test]
            async fn an_events_first_request_goes_ahead_and_is_in_flight_until_its_lease_ends() {
                super::an_events_first_request_goes_ahead_and_is_in_flight_until_its_lease_ends(
                    $make,
                )
                .await;
            }

            #[tokio::test]
            async fn a_requested_event_goes_again_only_after_a_newer_failure_and_at_most_so_often()
            {
                super::a_requested_event_goes_again_only_after_a_newer_failure_and_at_most_so_often(
                                                                                            $make,
                                                                                        )
                                                                                        .await;
            }

            #[tokio::test]
            async fn an_abandoned_claim_goes_ahead_at_once_and_only_its_holder_writes() {
                super::an_abandoned_claim_goes_ahead_at_once_and_only_its_holder_writes($make)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fifty_concurrent_claims_on_one_event_go_ahead_once() {
                super::fifty_concurrent_claims_on_one_event_go_ahead_once($make).await;
            }

            #[tokio::test]
            async fn an_unavailable_state_answers_with_an_error() {
                super::an_unavailable_state_answers_with_an_error($make).await;
            }
        }
    };
}

contract!(memory_state, Memory::default());
contract!(dynamo_state, Dynamo::new().await);
