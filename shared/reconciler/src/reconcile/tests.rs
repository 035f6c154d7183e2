//! The reconciler's decisions, against a scripted GitHub, the in-memory state and the
//! in-memory idempotency store.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use hookgate::claims::{ClaimRequest, MemoryStore};

use super::*;
use crate::state::MemoryState;

/// GitHub's deliveries API, played from memory: each hook's attempts newest first,
/// `page_size` to a page, pages addressed `page:{offset}`.
#[derive(Debug)]
struct FakeGithub {
    inner: Mutex<Fake>,
}

#[derive(Debug, Default)]
struct Fake {
    attempts: BTreeMap<String, Vec<DeliveryAttempt>>,
    page_size: usize,
    /// Errors to answer before anything else, in order, each with the call it answers (and
    /// the page, for a list of one page only).
    failures: VecDeque<(&'static str, Option<String>, GithubError)>,
    lists: Vec<(String, Option<String>)>,
    redelivered: Vec<(String, u64)>,
}

impl FakeGithub {
    fn new(page_size: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Fake {
                page_size,
                ..Fake::default()
            }),
        })
    }

    /// A new attempt on `hook`, the newest so far.
    fn attempt(
        &self,
        hook: &Hook,
        id: u64,
        guid: &str,
        delivered_at: OffsetDateTime,
        status_code: u16,
    ) {
        let mut fake = self.inner.lock().unwrap();
        let list = fake.attempts.entry(hook.to_string()).or_default();
        list.insert(
            0,
            DeliveryAttempt {
                id,
                guid: guid.to_owned(),
                delivered_at,
                redelivery: false,
                status: if (200..300).contains(&status_code) {
                    "OK".into()
                } else {
                    format!("Invalid HTTP Response: {status_code}")
                },
                status_code,
                event: "push".into(),
            },
        );
    }

    fn fail_next(&self, call: &'static str, error: GithubError) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .push_back((call, None, error));
    }

    fn fail_page(&self, page: &str, error: GithubError) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .push_back(("list", Some(page.to_owned()), error));
    }

    fn redelivered(&self) -> Vec<u64> {
        self.inner
            .lock()
            .unwrap()
            .redelivered
            .iter()
            .map(|(_, id)| *id)
            .collect()
    }

    fn lists(&self) -> Vec<Option<String>> {
        self.inner
            .lock()
            .unwrap()
            .lists
            .iter()
            .map(|(_, page)| page.clone())
            .collect()
    }

    fn scripted_failure(&self, call: &'static str, page: Option<&str>) -> Option<GithubError> {
        let mut fake = self.inner.lock().unwrap();
        let applies = fake
            .failures
            .front()
            .is_some_and(|(for_call, for_page, _)| {
                *for_call == call && (for_page.is_none() || for_page.as_deref() == page)
            });
        if applies {
            return fake.failures.pop_front().map(|(_, _, error)| error);
        }
        None
    }
}

#[async_trait]
impl GithubDeliveries for FakeGithub {
    async fn list(&self, hook: &Hook, page: Option<&str>) -> Result<DeliveryPage, GithubError> {
        tokio::task::yield_now().await;
        self.inner
            .lock()
            .unwrap()
            .lists
            .push((hook.to_string(), page.map(str::to_owned)));
        if let Some(error) = self.scripted_failure("list", page) {
            return Err(error);
        }
        let fake = self.inner.lock().unwrap();
        let offset: usize = page
            .and_then(|page| page.strip_prefix("page:"))
            .map_or(0, |offset| offset.parse().unwrap());
        let all = fake
            .attempts
            .get(&hook.to_string())
            .cloned()
            .unwrap_or_default();
        let end = (offset + fake.page_size).min(all.len());
        Ok(DeliveryPage {
            attempts: all[offset.min(end)..end].to_vec(),
            next: (end < all.len()).then(|| format!("page:{end}")),
            requests_left: Some(5_000),
        })
    }

    async fn redeliver(&self, hook: &Hook, delivery_id: u64) -> Result<(), GithubError> {
        tokio::task::yield_now().await;
        if let Some(error) = self.scripted_failure("redeliver", None) {
            return Err(error);
        }
        self.inner
            .lock()
            .unwrap()
            .redelivered
            .push((hook.to_string(), delivery_id));
        Ok(())
    }
}

/// Now, in the tests: whole seconds, so instants compare plainly.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn minutes_ago(minutes: i64) -> OffsetDateTime {
    now() - time::Duration::minutes(minutes)
}

fn hook() -> Hook {
    "repo:octo-org/agent:42".parse().unwrap()
}

struct Fixture {
    github: Arc<FakeGithub>,
    state: MemoryState,
    received: MemoryStore,
    clock: Arc<Mutex<OffsetDateTime>>,
}

impl Fixture {
    fn new(page_size: usize) -> Self {
        Self {
            github: FakeGithub::new(page_size),
            state: MemoryState::new(),
            received: MemoryStore::new(),
            clock: Arc::new(Mutex::new(now())),
        }
    }

    fn reconciler(&self, settings: Settings) -> Reconciler {
        self.reconciler_for(vec![hook()], settings)
    }

    fn reconciler_for(&self, hooks: Vec<Hook>, settings: Settings) -> Reconciler {
        let clock = Arc::clone(&self.clock);
        Reconciler::new(
            hooks,
            self.github.clone(),
            Arc::new(self.state.clone()),
            Arc::new(self.received.clone()),
            settings,
        )
        .with_metrics(Metrics::in_memory())
        .with_clock(Arc::new(move || *clock.lock().unwrap()))
    }

    async fn run(&self) -> RunReport {
        self.reconciler(Settings::default()).run(None).await
    }

    fn advance(&self, minutes: i64) {
        *self.clock.lock().unwrap() += time::Duration::minutes(minutes);
    }

    /// One attempt for each of the events `g-{id}`, `ids` in order, the first `oldest`
    /// minutes ago and each a minute after the one before, all answered `status_code`.
    fn events(
        &self,
        hook: &Hook,
        ids: std::ops::RangeInclusive<u64>,
        oldest: i64,
        status_code: u16,
    ) {
        let first = *ids.start();
        for id in ids {
            let age = oldest - i64::try_from(id - first).unwrap();
            self.github
                .attempt(hook, id, &format!("g-{id}"), minutes_ago(age), status_code);
        }
    }

    /// hookgate claimed the event keyed by `guid`: it has its record.
    async fn receive(&self, guid: &str) {
        let key = IdempotencyKey::from_stable_id(Provider::Github, guid).unwrap();
        self.received
            .claim(ClaimRequest {
                key: &key,
                payload_hash: "h",
                now: now(),
                lease: Duration::from_secs(60),
                retention: Duration::from_secs(16 * 86_400),
                archive: None,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn every_failed_event_hookgate_never_received_is_redelivered_from_its_newest_failed_attempt()
{
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-ok", minutes_ago(50), 202);
    fixture
        .github
        .attempt(&hook(), 2, "g-down", minutes_ago(40), 503);
    fixture
        .github
        .attempt(&hook(), 3, "g-timeout", minutes_ago(30), 0);
    fixture
        .github
        .attempt(&hook(), 4, "g-down", minutes_ago(20), 503);

    let report = fixture.run().await;

    let mut redelivered = fixture.github.redelivered();
    redelivered.sort();
    assert_eq!(
        redelivered,
        [3, 4],
        "g-down from its newer attempt, g-timeout"
    );
    let hook_report = &report.hooks[0];
    assert_eq!(
        (
            hook_report.seen,
            hook_report.failed,
            hook_report.redelivered
        ),
        (4, 2, 2)
    );
    assert_eq!(hook_report.cursor, "caught_up");
}

#[tokio::test]
async fn an_event_whose_later_attempt_succeeded_is_not_redelivered() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(30), 503);
    fixture
        .github
        .attempt(&hook(), 2, "g-1", minutes_ago(20), 202);

    fixture.run().await;

    assert!(fixture.github.redelivered().is_empty());
}

#[tokio::test]
async fn an_event_hookgate_received_all_the_same_is_not_redelivered() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-late", minutes_ago(30), 0);
    fixture.receive("g-late").await;

    let report = fixture.run().await;

    assert!(fixture.github.redelivered().is_empty());
    assert_eq!(report.hooks[0].already_received, 1);
}

#[tokio::test]
async fn a_second_run_reads_only_what_is_new() {
    let fixture = Fixture::new(2);
    fixture.events(&hook(), 1..=6, 60, 202);
    fixture.run().await;
    assert_eq!(
        fixture.github.lists().len(),
        3,
        "the first run reads the window"
    );

    fixture.advance(5);
    fixture
        .github
        .attempt(&hook(), 7, "g-7", now() + time::Duration::minutes(4), 503);
    fixture.run().await;

    let lists = fixture.github.lists();
    assert_eq!(lists.len(), 4, "{lists:?}");
    assert_eq!(lists[3], None, "one page, the newest, and no further");
    assert_eq!(fixture.github.redelivered(), [7]);
}

#[tokio::test]
async fn a_run_out_of_pages_saves_its_walk_and_the_next_run_finishes_it() {
    let fixture = Fixture::new(10);
    fixture.events(&hook(), 1..=25, 100, 500);
    let settings = Settings {
        max_pages: 2,
        ..Settings::default()
    };

    let first = fixture.reconciler(settings.clone()).run(None).await;
    let second = fixture.reconciler(settings.clone()).run(None).await;
    let third = fixture.reconciler(settings).run(None).await;

    assert_eq!(first.hooks[0].cursor, "walk_saved");
    assert_eq!(first.hooks[0].redelivered, 20);
    assert_eq!(second.hooks[0].cursor, "caught_up");
    assert_eq!(second.hooks[0].redelivered, 5);
    let mut redelivered = fixture.github.redelivered();
    redelivered.sort();
    assert_eq!(redelivered, (1..=25).collect::<Vec<_>>(), "each once");
    assert_eq!(third.hooks[0].redelivered, 0);
}

#[tokio::test]
async fn a_rate_limit_stops_the_run_and_leaves_the_cursor_for_the_next() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(30), 503);
    fixture
        .github
        .attempt(&hook(), 2, "g-2", minutes_ago(20), 503);
    let until = now() + time::Duration::minutes(7);
    fixture
        .github
        .fail_next("redeliver", GithubError::RateLimited { until });

    let limited = fixture.run().await;

    assert_eq!(limited.rate_limited_until, Some(until));
    assert_eq!(limited.hooks[0].cursor, "left");
    assert!(fixture.github.redelivered().is_empty());

    let next = fixture.run().await;
    let mut redelivered = fixture.github.redelivered();
    redelivered.sort();
    assert_eq!(redelivered, [1, 2], "the claim given up, the next run asks");
    assert_eq!(next.hooks[0].cursor, "caught_up");
}

#[tokio::test(start_paused = true)]
async fn a_page_github_fails_to_list_is_tried_again() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(30), 503);
    fixture
        .github
        .fail_next("list", GithubError::Unavailable("502 Bad Gateway".into()));

    let report = fixture.run().await;

    assert_eq!(fixture.github.lists().len(), 2);
    assert_eq!(fixture.github.redelivered(), [1]);
    assert_eq!(report.hooks[0].cursor, "caught_up");
}

#[tokio::test(start_paused = true)]
async fn a_page_github_keeps_failing_leaves_the_cursor_and_what_was_read_is_acted_on() {
    let fixture = Fixture::new(1);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(40), 503);
    fixture
        .github
        .attempt(&hook(), 2, "g-2", minutes_ago(30), 503);
    // The first page lists; the second fails every try.
    for _ in 0..PAGE_TRIES {
        fixture
            .github
            .fail_page("page:1", GithubError::Unavailable("503".into()));
    }

    let report = fixture.run().await;

    assert_eq!(report.hooks[0].cursor, "left");
    assert!(!report.hooks[0].errors.is_empty());
    assert_eq!(fixture.github.redelivered(), [2], "the page that was read");
}

#[tokio::test]
async fn a_redelivery_that_fails_again_is_asked_for_again_up_to_the_most_allowed() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(60), 503);
    let mut asked = Vec::new();
    for round in 0..5_u64 {
        fixture.run().await;
        asked = fixture.github.redelivered();
        // GitHub redelivers; hookgate is still down.
        fixture.advance(5);
        let at = now() + time::Duration::minutes(5 * round as i64 + 1);
        fixture.github.attempt(&hook(), 10 + round, "g-1", at, 503);
    }
    assert_eq!(
        asked,
        [1, 10, 11],
        "three requests, then it waits for a person"
    );
    let report = fixture.run().await;
    assert_eq!(report.hooks[0].exhausted, 1);
}

#[tokio::test]
async fn a_run_that_died_mid_redelivery_is_taken_over_once_its_lease_ends() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(30), 503);
    // A run took the claim and died before asking GitHub.
    let claimed = fixture
        .state
        .begin_redelivery(RedeliveryRequest {
            guid: "g-1",
            failed_attempt: 1,
            now: now(),
            lease: Settings::default().lease,
            max_requests: 3,
            retention: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    assert!(matches!(claimed, Begin::Go(_)));

    let during = fixture.run().await;
    assert_eq!(during.hooks[0].already_requested, 1);
    assert!(fixture.github.redelivered().is_empty());

    fixture.advance(3);
    fixture.run().await;
    assert_eq!(fixture.github.redelivered(), [1]);
}

#[tokio::test]
async fn attempts_too_old_for_github_to_redeliver_are_left_alone() {
    let fixture = Fixture::new(100);
    let window = Settings::default().window;
    fixture.github.attempt(
        &hook(),
        1,
        "g-old",
        now() - window + time::Duration::minutes(5),
        503,
    );
    fixture
        .github
        .attempt(&hook(), 2, "g-new", minutes_ago(5), 503);

    fixture.run().await;

    assert_eq!(fixture.github.redelivered(), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_runs_ask_for_each_event_once() {
    let fixture = Fixture::new(5);
    fixture.events(&hook(), 1..=40, 100, 503);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let reconciler = Arc::new(fixture.reconciler(Settings::default()));
            tokio::spawn(async move { reconciler.run(None).await })
        })
        .collect();

    for run in runs {
        run.await.unwrap();
    }

    let mut redelivered = fixture.github.redelivered();
    redelivered.sort();
    assert_eq!(redelivered, (1..=40).collect::<Vec<_>>());
}

#[test]
fn the_events_to_redeliver_are_those_without_a_success_oldest_first() {
    let attempt = |id, guid: &str, minutes, status_code| DeliveryAttempt {
        id,
        guid: guid.into(),
        delivered_at: minutes_ago(minutes),
        redelivery: false,
        status: String::new(),
        status_code,
        event: "push".into(),
    };
    let attempts = [
        // Within the same second, listed in either order, the attempt GitHub made last is
        // the newest.
        attempt(6, "d", 5, 0),
        attempt(7, "d", 5, 502),
        attempt(5, "b", 10, 500),
        attempt(4, "a", 20, 0),
        attempt(3, "c", 25, 200),
        attempt(2, "a", 30, 503),
        attempt(1, "c", 40, 503),
    ];
    let events: Vec<(&str, u64)> = events_to_redeliver(&attempts)
        .into_iter()
        .map(|(guid, attempt)| (guid, attempt.id))
        .collect();
    assert_eq!(events, [("a", 4), ("b", 5), ("d", 7)]);
}

#[tokio::test]
async fn a_redelivery_github_refuses_for_that_delivery_is_given_up_and_the_cursor_moves_on() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-gone", minutes_ago(30), 503);
    fixture.github.fail_next(
        "redeliver",
        GithubError::Refused {
            status: 422,
            message: "Validation Failed".into(),
        },
    );

    let refused = fixture.run().await;

    assert_eq!(refused.hooks[0].exhausted, 1);
    assert_eq!(refused.hooks[0].cursor, "caught_up");
    assert!(fixture.github.redelivered().is_empty());
    let again = fixture
        .state
        .begin_redelivery(RedeliveryRequest {
            guid: "g-gone",
            failed_attempt: 1,
            now: now(),
            lease: Settings::default().lease,
            max_requests: 3,
            retention: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    assert_eq!(again, Begin::AlreadyRequested, "the refusal is recorded");
}

#[tokio::test]
async fn a_refusal_about_the_token_or_hook_ends_the_hooks_run_and_holds_the_cursor_until_fixed() {
    for (status, message) in [
        (403, "Resource not accessible by personal access token"),
        (401, "Bad credentials"),
        (404, "Not Found"),
    ] {
        let fixture = Fixture::new(100);
        fixture.events(&hook(), 1..=2, 30, 503);
        fixture.github.fail_next(
            "redeliver",
            GithubError::Refused {
                status,
                message: message.into(),
            },
        );

        let refused = fixture.run().await;

        assert_eq!(refused.hooks[0].cursor, "left", "{status}");
        assert!(
            refused.hooks[0].errors[0].contains(&status.to_string()),
            "{refused:?}"
        );
        assert!(
            fixture.github.redelivered().is_empty(),
            "{status}: the second event was not asked for with the same token"
        );
        let fixed = fixture.run().await;
        assert_eq!(fixture.github.redelivered(), [1, 2], "{status}");
        assert_eq!(fixed.hooks[0].cursor, "caught_up", "{status}");
    }
}

#[tokio::test]
async fn a_redelivery_github_refuses_counts_against_the_runs_allowance() {
    let fixture = Fixture::new(100);
    fixture.events(&hook(), 1..=3, 30, 503);
    for _ in 0..3 {
        fixture.github.fail_next(
            "redeliver",
            GithubError::Refused {
                status: 422,
                message: "Validation Failed".into(),
            },
        );
    }
    let settings = Settings {
        max_redeliveries: 2,
        ..Settings::default()
    };

    let report = fixture.reconciler(settings).run(None).await;

    assert_eq!(
        report.hooks[0].exhausted, 2,
        "two requests, then the allowance is spent"
    );
    assert_eq!(report.hooks[0].cursor, "left");
}

#[tokio::test]
async fn a_page_github_refuses_in_the_middle_of_a_reading_holds_the_cursor() {
    let fixture = Fixture::new(10);
    fixture.events(&hook(), 1..=25, 100, 500);
    fixture.github.fail_page(
        "page:10",
        GithubError::Refused {
            status: 422,
            message: "Validation Failed".into(),
        },
    );

    let report = fixture.run().await;

    assert_eq!(report.hooks[0].cursor, "left", "{report:?}");
    assert_eq!(report.hooks[0].redelivered, 10, "the page read is acted on");
}

#[tokio::test]
async fn a_saved_walk_whose_page_github_refuses_is_dropped_and_reading_starts_again_from_the_newest(
) {
    let fixture = Fixture::new(10);
    fixture.events(&hook(), 1..=25, 100, 500);
    let settings = Settings {
        max_pages: 2,
        ..Settings::default()
    };
    let first = fixture.reconciler(settings.clone()).run(None).await;
    assert_eq!(first.hooks[0].cursor, "walk_saved");
    fixture.github.fail_page(
        "page:20",
        GithubError::Refused {
            status: 422,
            message: "the cursor is no longer valid".into(),
        },
    );

    let dropped = fixture.reconciler(settings.clone()).run(None).await;

    assert_eq!(dropped.hooks[0].cursor, "walk_dropped");
    let mut cursors = Vec::new();
    for _ in 0..3 {
        let run = fixture.reconciler(settings.clone()).run(None).await;
        cursors.push(run.hooks[0].cursor);
        if run.hooks[0].cursor == "caught_up" {
            break;
        }
    }
    assert_eq!(cursors, ["walk_saved", "caught_up"]);
    assert_eq!(
        fixture.github.lists()[3],
        None,
        "the run after the drop reads from the newest page"
    );
    let mut redelivered = fixture.github.redelivered();
    redelivered.sort();
    assert_eq!(redelivered, (1..=25).collect::<Vec<_>>(), "each once");
}

#[tokio::test]
async fn a_run_with_more_to_ask_for_than_it_may_asks_for_the_oldest_first() {
    let fixture = Fixture::new(100);
    fixture.events(&hook(), 1..=5, 60, 503);
    let settings = Settings {
        max_redeliveries: 2,
        ..Settings::default()
    };

    let report = fixture.reconciler(settings).run(None).await;

    assert_eq!(fixture.github.redelivered(), [1, 2]);
    assert_eq!(
        report.hooks[0].cursor, "left",
        "the rest wait for the next run"
    );
}

#[tokio::test]
async fn one_hooks_backlog_leaves_the_other_hooks_their_share_of_a_run() {
    let fixture = Fixture::new(100);
    let other: Hook = "org:octo-org:7".parse().unwrap();
    fixture.events(&hook(), 1..=10, 60, 503);
    for id in 101..=102 {
        fixture
            .github
            .attempt(&other, id, &format!("g-{id}"), minutes_ago(30), 503);
    }
    let settings = Settings {
        max_redeliveries: 4,
        ..Settings::default()
    };

    let report = fixture
        .reconciler_for(vec![hook(), other], settings)
        .run(None)
        .await;

    let redelivered: Vec<usize> = report.hooks.iter().map(|hook| hook.redelivered).collect();
    assert_eq!(redelivered, [2, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_page_github_fails_to_list_is_not_tried_again_once_the_deadline_is_near() {
    let fixture = Fixture::new(100);
    fixture
        .github
        .attempt(&hook(), 1, "g-1", minutes_ago(30), 503);
    for _ in 0..PAGE_TRIES {
        fixture
            .github
            .fail_next("list", GithubError::Unavailable("502 Bad Gateway".into()));
    }
    let deadline = Instant::now() + DEADLINE_MARGIN + Duration::from_millis(500);

    let report = fixture
        .reconciler(Settings::default())
        .run(Some(deadline))
        .await;

    assert_eq!(
        fixture.github.lists().len(),
        2,
        "one retry fits before the margin, a second would not"
    );
    assert_eq!(report.hooks[0].cursor, "left");
    assert!(report.hooks[0].errors[0].contains("deadline"), "{report:?}");
}
