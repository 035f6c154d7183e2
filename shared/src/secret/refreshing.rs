//! A value read from a secret store and kept fresh in the background, so that no request
//! ever waits for the store.
//!
//! The value is read once when the source is loaded (at init, where a failure should stop
//! the function). After that, a read that finds the value past [`REFRESH_AHEAD`] of its
//! refresh interval starts one refresh in a background task and is answered at once with
//! the value held. In Lambda that task runs while invocations run (the environment is
//! frozen between them), which is exactly when a value is needed; a refresh that did not
//! finish before a freeze finishes after the thaw.
//!
//! When refreshes fail, the value held keeps serving: a secret store outage must not turn
//! into refused webhooks. A failed refresh is tried again after [`RETRY_AFTER_FAILURE`]
//! (or the refresh interval, if shorter), and once refreshes have failed for
//! [`MAX_STALENESS`] (or the interval, if longer), reads fail: a secret that stays
//! unreadable may have been revoked on purpose. A value merely not refreshed for a while
//! (a container left idle) keeps serving while its refresh runs.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::warn;

use super::{KeyRing, SecretError, SecretSource};

/// How far into its refresh interval a value is refreshed: ahead of its expiry, so that
/// under steady traffic the new value is in hand before the old one is due.
pub const REFRESH_AHEAD: f64 = 0.75;

/// How long a value held keeps serving while every refresh fails.
pub const MAX_STALENESS: Duration = Duration::from_secs(3_600);

/// How soon a failed refresh is tried again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Reads the value from its store.
#[async_trait]
pub trait Fetch: Send + Sync + fmt::Debug + 'static {
    type Value: Send + Sync + 'static;

    async fn fetch(&self) -> Result<Self::Value, SecretError>;

    /// What is read, for logs (a secret's name or ARN, never its value).
    fn origin(&self) -> &str;
}

/// A value of `F`'s store, refreshed in the background. Cheap to clone.
pub struct Refreshing<F: Fetch> {
    shared: Arc<Shared<F>>,
}

/// Shows where the value comes from, never the value: it may be a secret.
impl<F: Fetch> fmt::Debug for Refreshing<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refreshing")
            .field("origin", &self.shared.fetch.origin())
            .field("refresh", &self.shared.refresh)
            .finish_non_exhaustive()
    }
}

impl<F: Fetch> Clone for Refreshing<F> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<F: Fetch> {
    fetch: F,
    refresh: Duration,
    state: Mutex<State<F::Value>>,
}

struct State<V> {
    value: Arc<V>,
    fetched_at: Instant,
    /// A refresh task is running.
    refreshing: bool,
    /// No refresh starts before then (set after a failure).
    not_before: Instant,
    /// When refreshes began failing, if the last one failed.
    failing_since: Option<Instant>,
    last_error: Option<SecretError>,
}

impl<F: Fetch> Refreshing<F> {
    /// Reads the value once; a failure here is the caller's to report (it fails the init).
    pub async fn load(fetch: F, refresh: Duration) -> Result<Self, SecretError> {
        let value = fetch.fetch().await?;
        let now = Instant::now();
        Ok(Self {
            shared: Arc::new(Shared {
                fetch,
                refresh,
                state: Mutex::new(State {
                    value: Arc::new(value),
                    fetched_at: now,
                    refreshing: false,
                    not_before: now,
                    failing_since: None,
                    last_error: None,
                }),
            }),
        })
    }

    /// The value held, at once. Starts a background refresh when one is due.
    pub fn get(&self) -> Result<Arc<F::Value>, SecretError> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let age = now.duration_since(state.fetched_at);
        if age >= self.shared.refresh.mul_f64(REFRESH_AHEAD)
            && !state.refreshing
            && now >= state.not_before
        {
            state.refreshing = true;
            tokio::spawn(refresh(Arc::clone(&self.shared)));
        }
        let failing_for = state.failing_since.map(|since| now.duration_since(since));
        if failing_for.is_some_and(|failing| failing > MAX_STALENESS.max(self.shared.refresh)) {
            return Err(state.last_error.clone().unwrap_or_else(|| {
                SecretError::Unavailable(format!(
                    "{} could not be read for {} s",
                    self.shared.fetch.origin(),
                    failing_for.unwrap_or_default().as_secs()
                ))
            }));
        }
        Ok(Arc::clone(&state.value))
    }
}

impl<F: Fetch> Shared<F> {
    fn lock(&self) -> MutexGuard<'_, State<F::Value>> {
        // Only plain assignments happen under the lock; a poisoned one is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One refresh: the new value replaces the old, or the failure is logged and remembered.
async fn refresh<F: Fetch>(shared: Arc<Shared<F>>) {
    let fetched = shared.fetch.fetch().await;
    let now = Instant::now();
    let mut state = shared.lock();
    state.refreshing = false;
    match fetched {
        Ok(value) => {
            state.value = Arc::new(value);
            state.fetched_at = now;
            state.failing_since = None;
            state.last_error = None;
        }
        Err(error) => {
            state.not_before = now + RETRY_AFTER_FAILURE.min(shared.refresh);
            state.failing_since.get_or_insert(now);
            warn!(origin = shared.fetch.origin(), %error, held_for_secs = now.duration_since(state.fetched_at).as_secs(), "refreshing a secret failed; the value held keeps serving");
            state.last_error = Some(error);
        }
    }
}

#[async_trait]
impl<F: Fetch<Value = KeyRing>> SecretSource for Refreshing<F> {
    async fn key_ring(&self) -> Result<Arc<KeyRing>, SecretError> {
        self.get()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;

    const REFRESH: Duration = Duration::from_secs(100);

    /// Answers each fetch with the next value of a script, holding each answer until
    /// released when `gated`.
    #[derive(Debug)]
    struct Scripted {
        answers: Mutex<Vec<Result<u32, SecretError>>>,
        calls: AtomicUsize,
        gate: Option<Arc<Notify>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<u32, SecretError>>, gate: Option<Arc<Notify>>) -> Self {
            Self {
                answers: Mutex::new(answers.into_iter().rev().collect()),
                calls: AtomicUsize::new(0),
                gate,
            }
        }
    }

    #[async_trait]
    impl Fetch for Scripted {
        type Value = u32;

        async fn fetch(&self) -> Result<u32, SecretError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                gate.notified().await;
            }
            self.answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or_else(|| Err(SecretError::Unavailable("script exhausted".into())))
        }

        fn origin(&self) -> &str {
            "the scripted secret"
        }
    }

    fn down() -> Result<u32, SecretError> {
        Err(SecretError::Unavailable("the store is down".into()))
    }

    /// Lets spawned tasks run to their next await.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn loaded(
        answers: Vec<Result<u32, SecretError>>,
        gate: Option<Arc<Notify>>,
    ) -> Refreshing<Scripted> {
        Refreshing::load(Scripted::new(answers, gate), REFRESH)
            .await
            .expect("the first read succeeds")
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_is_not_read_again_before_its_refresh_is_due() {
        let source = loaded(vec![Ok(1), Ok(2)], None).await;

        tokio::time::advance(REFRESH.mul_f64(REFRESH_AHEAD) - Duration::from_secs(1)).await;
        assert_eq!(*source.get().unwrap(), 1);
        settle().await;

        assert_eq!(source.shared.fetch.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_never_waits_for_the_refresh_it_starts() {
        let gate = Arc::new(Notify::new());
        // A permit for the first read, at load.
        gate.notify_one();
        let source = loaded(vec![Ok(1), Ok(2)], Some(Arc::clone(&gate))).await;
        tokio::time::advance(REFRESH.mul_f64(REFRESH_AHEAD)).await;

        // The refresh is due and held at the gate: reads are answered with the old value,
        // and only one refresh runs however many reads there are.
        for _ in 0..5 {
            assert_eq!(*source.get().unwrap(), 1);
            settle().await;
        }
        assert_eq!(source.shared.fetch.calls.load(Ordering::SeqCst), 2);

        gate.notify_one();
        settle().await;
        assert_eq!(*source.get().unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_value_and_is_tried_again_later() {
        let source = loaded(vec![Ok(1), down(), Ok(3)], None).await;
        tokio::time::advance(REFRESH).await;

        assert_eq!(*source.get().unwrap(), 1);
        settle().await;
        assert_eq!(*source.get().unwrap(), 1, "the failure leaves the value");
        assert_eq!(source.shared.fetch.calls.load(Ordering::SeqCst), 2);

        tokio::time::advance(RETRY_AFTER_FAILURE).await;
        source.get().unwrap();
        settle().await;
        assert_eq!(*source.get().unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_left_idle_for_hours_still_serves_at_once_while_it_is_refreshed() {
        let source = loaded(vec![Ok(1), Ok(2)], None).await;
        tokio::time::advance(Duration::from_secs(3 * 3_600)).await;

        assert_eq!(*source.get().unwrap(), 1, "served at once, not refused");
        settle().await;
        assert_eq!(*source.get().unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_that_could_not_be_refreshed_for_an_hour_stops_serving() {
        let source = loaded(vec![Ok(1)], None).await;
        // The first refresh is due three quarters into the interval; from then on every
        // refresh fails, and an hour of failures later the value stops serving.
        let failing_from = REFRESH.mul_f64(REFRESH_AHEAD);
        let mut elapsed = Duration::ZERO;
        while elapsed <= failing_from + MAX_STALENESS + RETRY_AFTER_FAILURE {
            assert!(source.get().is_ok(), "still serving at {elapsed:?}");
            settle().await;
            tokio::time::advance(RETRY_AFTER_FAILURE).await;
            elapsed += RETRY_AFTER_FAILURE;
        }
        let _ = source.get();
        settle().await;

        let error = source.get().unwrap_err();
        assert!(error.to_string().contains("script exhausted"), "{error}");
    }
}
