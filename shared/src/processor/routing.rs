//! The routes a processor acts on, and how they change while it runs.
//!
//! A routes table and the actions set up for it (HTTP client, signing secrets, Lambda
//! client) change together, as one [`RoutingTable`]. A processor built from a file keeps its
//! table for life. One reading a [`RoutesSource`] checks the source when a batch starts and
//! the last check is older than the refresh interval: a new version is checked exactly as
//! `hookgate routes check` checks a file, against the lease, and by setting up its actions;
//! only then does it replace the table, between batches. A version that fails any check is
//! refused with an error log and an `InvalidRoutes` metric (on every check while it is the
//! newest, so an alarm stays raised until it is fixed), and the last valid table keeps
//! serving.
//!
//! The check runs on the batch's path rather than in the background: a Lambda container is
//! frozen between invocations, so a background task would wake with the batch anyway and the
//! batch would run on routes of before the freeze. The check is one conditional read (an
//! unchanged object answers 304 with no body) once per interval, and is bounded by
//! [`CHECK_TIMEOUT`]; nobody waits on the processor's answer but the queue.
//!
//! A processor that starts while the newest version is invalid takes the newest valid one
//! before it, so a bad upload never stops new containers; with no valid version at all it
//! refuses to start, and the events wait in the queue.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::actions::{ActionInvoker, ActionSetupError};
use crate::routes::RouteTable;
use crate::routes_source::{Fetched, RoutesSource, RoutesSourceError, RoutesVersion};
use crate::secret::SecretError;
use crate::telemetry::Metrics;

/// How long one check of the source may take before the batch goes on with the routes it
/// has.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How many versions before an invalid newest one a starting processor tries.
pub const EARLIER_VERSIONS_TRIED: usize = 10;

/// The routes in force and the actions set up for them.
#[derive(Debug)]
pub struct RoutingTable {
    pub routes: RouteTable,
    pub actions: Arc<dyn ActionInvoker>,
    /// The source's name for the version, when the routes came from a source.
    pub version: Option<String>,
}

/// Sets up the actions a routes table names (reads their secrets, builds their clients).
#[async_trait]
pub trait ActionsFactory: Send + Sync {
    async fn actions_for(
        &self,
        routes: &RouteTable,
    ) -> Result<Arc<dyn ActionInvoker>, ActionSetupError>;
}

/// Why a version of the routes was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutesRefused {
    #[error("{0}")]
    Invalid(#[from] crate::routes::RoutesError),
    #[error(
        "an action's timeout ({timeout} s) does not fit this processor's lease ({lease} s); \
         raise LEASE_SECS or shorten the timeout"
    )]
    LeaseTooShort { timeout: u64, lease: u64 },
    #[error("{0}")]
    Actions(#[from] ActionSetupError),
}

impl RoutesRefused {
    /// Whether the version itself may be fine, and only reading a secret it names failed
    /// for now: it is tried again rather than refused.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RoutesRefused::Actions(ActionSetupError::Secret {
                source: SecretError::Unavailable(_),
                ..
            })
        )
    }
}

/// A processor could not find routes to start with.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error(transparent)]
    Source(#[from] RoutesSourceError),
    #[error("the routes in {location} ({version}) are refused: {reason}; and none of the {tried} version(s) before it is valid")]
    NoValidVersion {
        location: String,
        version: String,
        reason: RoutesRefused,
        tried: usize,
    },
    #[error("the bundled routes are refused: {0}")]
    Bundled(RoutesRefused),
    #[error("the routes in {location} ({version}) cannot be set up for now: {reason}")]
    NotYet {
        location: String,
        version: String,
        reason: RoutesRefused,
    },
}

/// The routes a processor acts on: fixed, or refreshed from a source.
pub struct Routing {
    current: RwLock<Arc<RoutingTable>>,
    live: Option<LiveSource>,
}

struct LiveSource {
    source: Arc<dyn RoutesSource>,
    actions: Arc<dyn ActionsFactory>,
    refresh: Duration,
    lease: Duration,
    metrics: Metrics,
    checks: Mutex<Checks>,
}

/// What the last check found; held across a check so that one runs at a time.
struct Checks {
    last: Instant,
    /// The newest version seen, valid or refused: the next read is conditional on it.
    seen: Option<String>,
    /// Why the newest version seen was refused, while it is the newest.
    refused: Option<String>,
}

impl Routing {
    /// Routes that never change.
    pub fn fixed(routes: RouteTable, actions: Arc<dyn ActionInvoker>) -> Self {
        Self {
            current: RwLock::new(Arc::new(RoutingTable {
                routes,
                actions,
                version: None,
            })),
            live: None,
        }
    }

    /// Routes read from `source` and checked again every `refresh`. The first table is the
    /// newest valid version in the source, or `bundled` while the source has none.
    pub async fn from_source(
        source: Arc<dyn RoutesSource>,
        bundled: RouteTable,
        actions: Arc<dyn ActionsFactory>,
        refresh: Duration,
        lease: Duration,
        metrics: Metrics,
    ) -> Result<Self, RoutingError> {
        let live = LiveSource {
            source,
            actions,
            refresh,
            lease,
            metrics,
            checks: Mutex::new(Checks {
                last: Instant::now(),
                seen: None,
                refused: None,
            }),
        };
        let first = live.first_table(bundled).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(first)),
            live: Some(live),
        })
    }

    /// The table in force, once the source has been checked if a check is due.
    pub async fn current(&self) -> Arc<RoutingTable> {
        if let Some(live) = &self.live {
            if let Some(newer) = live.check_if_due().await {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(newer);
            }
        }
        self.now()
    }

    /// The table in force, without checking the source.
    pub fn now(&self) -> Arc<RoutingTable> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Where the routes come from, for logs: a source's location, or `None` when fixed.
    pub fn source(&self) -> Option<String> {
        self.live.as_ref().map(|live| live.source.location())
    }
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.now();
        f.debug_struct("Routing")
            .field("routes", &table.routes.route_count())
            .field("version", &table.version)
            .field("source", &self.source())
            .finish()
    }
}

impl LiveSource {
    async fn first_table(&self, bundled: RouteTable) -> Result<RoutingTable, RoutingError> {
        let location = self.source.location();
        let mut checks = self.checks.lock().await;
        checks.last = Instant::now();
        let newest = match self.source.newest(None).await? {
            Fetched::Newer(newest) => newest,
            Fetched::Absent | Fetched::Unchanged => {
                info!(routes = %location, "no routes were published there yet: the bundled routes serve until some are");
                return self
                    .table(bundled, None)
                    .await
                    .map_err(RoutingError::Bundled);
            }
        };
        checks.seen = Some(newest.version.clone());
        let reason = match self.accept(&newest).await {
            Ok(table) => {
                info!(routes = %location, version = %newest.version, routes_count = table.routes.route_count(), "routes read");
                return Ok(table);
            }
            // Serving an older version because a secret could not be read this once would
            // act on routes nobody meant any more: the start fails, and is tried again.
            Err(reason) if reason.is_transient() => {
                return Err(RoutingError::NotYet {
                    location,
                    version: newest.version,
                    reason,
                })
            }
            Err(reason) => reason,
        };
        self.refused(&location, &newest.version, &reason);
        checks.refused = Some(reason.to_string());
        let earlier = self.source.earlier(EARLIER_VERSIONS_TRIED).await?;
        for version in &earlier {
            match self.accept(version).await {
                Ok(table) => {
                    warn!(routes = %location, version = %version.version, refused_version = %newest.version, "the newest routes are refused: serving the newest valid version before them");
                    return Ok(table);
                }
                Err(reason) => {
                    warn!(routes = %location, version = %version.version, %reason, "an earlier version of the routes is refused too");
                }
            }
        }
        Err(RoutingError::NoValidVersion {
            location,
            version: newest.version,
            reason,
            tried: earlier.len(),
        })
    }

    /// Checks the source if the last check is older than the refresh interval; a newer
    /// valid table when it found one.
    async fn check_if_due(&self) -> Option<RoutingTable> {
        // A check in progress is waited for: the batch then runs on what it found.
        let mut checks = self.checks.lock().await;
        if checks.last.elapsed() < self.refresh {
            return None;
        }
        checks.last = Instant::now();
        let location = self.source.location();
        let fetched = match tokio::time::timeout(
            CHECK_TIMEOUT,
            self.source.newest(checks.seen.as_deref()),
        )
        .await
        {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(error)) => {
                warn!(routes = %location, %error, "cannot read the routes: the routes in force stay");
                self.count("RoutesUnreadable");
                return None;
            }
            Err(_) => {
                warn!(routes = %location, timeout_ms = CHECK_TIMEOUT.as_millis() as u64, "reading the routes timed out: the routes in force stay");
                self.count("RoutesUnreadable");
                return None;
            }
        };
        match fetched {
            Fetched::Unchanged => {
                if let (Some(version), Some(reason)) = (&checks.seen, &checks.refused) {
                    error!(routes = %location, %version, %reason, "the newest routes are still refused: the last valid routes stay in force");
                    self.count("InvalidRoutes");
                }
                None
            }
            Fetched::Absent => {
                if checks.seen.take().is_some() {
                    warn!(routes = %location, "the routes were deleted: the routes in force stay until new ones are published");
                }
                checks.refused = None;
                None
            }
            Fetched::Newer(newest) => {
                match self.accept(&newest).await {
                    Ok(table) => {
                        checks.seen = Some(newest.version.clone());
                        checks.refused = None;
                        info!(routes = %location, version = %newest.version, routes_count = table.routes.route_count(), "new routes in force");
                        Some(table)
                    }
                    // Not marked as seen: the next check reads the version again.
                    Err(reason) if reason.is_transient() => {
                        warn!(routes = %location, version = %newest.version, %reason, "the new routes cannot be set up for now: the routes in force stay, and they are tried again at the next check");
                        self.count("RoutesUnreadable");
                        None
                    }
                    Err(reason) => {
                        checks.seen = Some(newest.version.clone());
                        self.refused(&location, &newest.version, &reason);
                        checks.refused = Some(reason.to_string());
                        None
                    }
                }
            }
        }
    }

    /// Parses and checks one version.
    async fn accept(&self, version: &RoutesVersion) -> Result<RoutingTable, RoutesRefused> {
        let routes = RouteTable::parse(
            &version.text,
            &format!("{} ({})", self.source.location(), version.version),
        )?;
        self.table(routes, Some(version.version.clone())).await
    }

    async fn table(
        &self,
        routes: RouteTable,
        version: Option<String>,
    ) -> Result<RoutingTable, RoutesRefused> {
        let longest = routes.longest_action_timeout();
        if longest >= self.lease {
            return Err(RoutesRefused::LeaseTooShort {
                timeout: longest.as_secs(),
                lease: self.lease.as_secs(),
            });
        }
        let actions = self.actions.actions_for(&routes).await?;
        Ok(RoutingTable {
            routes,
            actions,
            version,
        })
    }

    fn refused(&self, location: &str, version: &str, reason: &RoutesRefused) {
        error!(routes = %location, %version, %reason, "new routes refused: the last valid routes stay in force");
        self.count("InvalidRoutes");
    }

    fn count(&self, metric: &str) {
        self.metrics.count(metric, &[], &[&[]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::actions::LogActions;
    use crate::provider::Provider;
    use crate::routes_source::MemoryRoutesSource;

    const REFRESH: Duration = Duration::from_secs(30);
    const LEASE: Duration = Duration::from_secs(60);

    /// Sets up log actions, and refuses an action named `unsettable` as a missing secret
    /// variable would be.
    struct Factory;

    #[async_trait]
    impl ActionsFactory for Factory {
        async fn actions_for(
            &self,
            routes: &RouteTable,
        ) -> Result<Arc<dyn ActionInvoker>, ActionSetupError> {
            match routes.actions().find(|action| action.name == "unsettable") {
                Some(action) => Err(ActionSetupError::MissingSecretVariable {
                    action: action.name.clone(),
                    variable: "AGENT_SECRET".to_owned(),
                }),
                None => Ok(Arc::new(LogActions)),
            }
        }
    }

    /// [`Factory`], but an action named `flaky` cannot have its secret read while the flag
    /// is up, as when Secrets Manager does not answer.
    struct FlakyFactory(Arc<std::sync::atomic::AtomicBool>);

    #[async_trait]
    impl ActionsFactory for FlakyFactory {
        async fn actions_for(
            &self,
            routes: &RouteTable,
        ) -> Result<Arc<dyn ActionInvoker>, ActionSetupError> {
            let down = self.0.load(std::sync::atomic::Ordering::SeqCst);
            match routes.actions().find(|action| action.name == "flaky") {
                Some(action) if down => Err(ActionSetupError::Secret {
                    action: action.name.clone(),
                    origin: "Secrets Manager secret arn:aws:secretsmanager:…".to_owned(),
                    source: SecretError::Unavailable("timed out".to_owned()),
                }),
                _ => Factory.actions_for(routes).await,
            }
        }
    }

    async fn flaky_routing(
        source: &Arc<MemoryRoutesSource>,
        down: &Arc<std::sync::atomic::AtomicBool>,
        metrics: &Metrics,
    ) -> Result<Routing, RoutingError> {
        Routing::from_source(
            Arc::clone(source) as Arc<dyn RoutesSource>,
            bundled(),
            Arc::new(FlakyFactory(Arc::clone(down))),
            REFRESH,
            LEASE,
            metrics.clone(),
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_whose_secret_cannot_be_read_for_now_is_tried_again_not_refused() {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish(&routes_for("push", "first")).await.unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let metrics = Metrics::in_memory();
        let routing = flaky_routing(&source, &down, &metrics).await.unwrap();

        source.publish(&routes_for("push", "flaky")).await.unwrap();
        tokio::time::advance(REFRESH).await;
        assert_eq!(routed(&routing.current().await, "push"), ["first"]);
        assert_eq!(counted(&metrics, "RoutesUnreadable"), 1);
        assert_eq!(counted(&metrics, "InvalidRoutes"), 0, "not refused");

        down.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::advance(REFRESH).await;
        assert_eq!(
            routed(&routing.current().await, "push"),
            ["flaky"],
            "read again, and in force once its secret can be read"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_while_a_secret_cannot_be_read_fails_rather_than_serve_older_routes() {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish(&routes_for("push", "older")).await.unwrap();
        source.publish(&routes_for("push", "flaky")).await.unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));

        let error = flaky_routing(&source, &down, &Metrics::in_memory())
            .await
            .expect_err("the start fails, to be tried again");

        assert!(matches!(error, RoutingError::NotYet { .. }), "{error}");
        assert!(
            error.to_string().contains("cannot be set up for now"),
            "{error}"
        );
    }

    /// Routes sending `event` from GitHub to the action `action`.
    fn routes_for(event: &str, action: &str) -> String {
        format!(
            "[[route]]\nname = \"{event}\"\nprovider = \"github\"\nevents = [\"{event}\"]\n\
             actions = [\"{action}\"]\n\n[action.{action}]\ntype = \"log\"\n"
        )
    }

    fn bundled() -> RouteTable {
        RouteTable::parse(&routes_for("ping", "bundled"), "bundled").unwrap()
    }

    /// The names of the actions GitHub's `event` is routed to.
    fn routed(table: &Arc<RoutingTable>, event: &str) -> Vec<String> {
        table
            .routes
            .actions_for(Provider::Github, event)
            .into_iter()
            .map(|action| action.name.clone())
            .collect()
    }

    async fn routing(source: &Arc<MemoryRoutesSource>, metrics: &Metrics) -> Routing {
        Routing::from_source(
            Arc::clone(source) as Arc<dyn RoutesSource>,
            bundled(),
            Arc::new(Factory),
            REFRESH,
            LEASE,
            metrics.clone(),
        )
        .await
        .unwrap()
    }

    /// Why a processor with `lease` cannot start on `source`.
    async fn refused_start(source: &Arc<MemoryRoutesSource>, lease: Duration) -> RoutingError {
        Routing::from_source(
            Arc::clone(source) as Arc<dyn RoutesSource>,
            bundled(),
            Arc::new(Factory),
            REFRESH,
            lease,
            Metrics::in_memory(),
        )
        .await
        .expect_err("the start is refused")
    }

    fn counted(metrics: &Metrics, name: &str) -> usize {
        metrics
            .captured()
            .iter()
            .filter(|document| document.get(name).is_some())
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn the_bundled_routes_serve_until_routes_are_published() {
        let source = Arc::new(MemoryRoutesSource::new());
        let routing = routing(&source, &Metrics::in_memory()).await;
        assert_eq!(routed(&routing.current().await, "ping"), ["bundled"]);
        assert_eq!(routing.now().version, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_published_while_running_is_in_force_once_the_refresh_interval_has_passed() {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish(&routes_for("push", "first")).await.unwrap();
        let routing = routing(&source, &Metrics::in_memory()).await;
        assert_eq!(routed(&routing.current().await, "push"), ["first"]);

        let version = source.publish(&routes_for("push", "second")).await.unwrap();
        tokio::time::advance(REFRESH - Duration::from_secs(1)).await;
        assert_eq!(
            routed(&routing.current().await, "push"),
            ["first"],
            "not checked again before the interval"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let table = routing.current().await;
        assert_eq!(routed(&table, "push"), ["second"]);
        assert_eq!(table.version, Some(version));
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_version_is_refused_and_counted_at_every_check_while_the_last_valid_serves()
    {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish(&routes_for("push", "valid")).await.unwrap();
        let metrics = Metrics::in_memory();
        let routing = routing(&source, &metrics).await;

        for invalid in [
            "[[route]]\nname = \"broken\"\n".to_owned(),
            routes_for("push", "unsettable"),
        ] {
            source.publish(&invalid).await.unwrap();
            let before = counted(&metrics, "InvalidRoutes");
            for check in 1..=2 {
                tokio::time::advance(REFRESH).await;
                assert_eq!(
                    routed(&routing.current().await, "push"),
                    ["valid"],
                    "{invalid}"
                );
                assert_eq!(
                    counted(&metrics, "InvalidRoutes"),
                    before + check,
                    "{invalid}"
                );
            }
        }

        source.publish(&routes_for("push", "fixed")).await.unwrap();
        tokio::time::advance(REFRESH).await;
        assert_eq!(routed(&routing.current().await, "push"), ["fixed"]);
        let refused = counted(&metrics, "InvalidRoutes");
        tokio::time::advance(REFRESH).await;
        routing.current().await;
        assert_eq!(
            counted(&metrics, "InvalidRoutes"),
            refused,
            "fixed: no longer counted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_the_lease_does_not_outlive_is_refused_saying_so() {
        let source = Arc::new(MemoryRoutesSource::new());
        source
            .publish(&format!(
                "{}timeout_secs = 30\n",
                routes_for("push", "slow")
            ))
            .await
            .unwrap();
        let error = refused_start(&source, Duration::from_secs(30)).await;
        assert!(
            error
                .to_string()
                .contains("an action's timeout (30 s) does not fit this processor's lease (30 s)"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_processor_starting_on_an_invalid_newest_version_takes_the_newest_valid_one_before_it(
    ) {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish(&routes_for("push", "older")).await.unwrap();
        let newest_valid = source.publish(&routes_for("push", "newer")).await.unwrap();
        source
            .publish(&routes_for("push", "unsettable"))
            .await
            .unwrap();
        source.publish("not toml at all [").await.unwrap();
        let metrics = Metrics::in_memory();
        let routing = routing(&source, &metrics).await;
        let table = routing.current().await;
        assert_eq!(routed(&table, "push"), ["newer"]);
        assert_eq!(table.version, Some(newest_valid));
        assert_eq!(counted(&metrics, "InvalidRoutes"), 1);

        tokio::time::advance(REFRESH).await;
        routing.current().await;
        assert_eq!(
            counted(&metrics, "InvalidRoutes"),
            2,
            "the newest stays refused, and counted, until it is replaced"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_processor_with_no_valid_version_to_start_on_refuses_to_start() {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish("[[route]]\n").await.unwrap();
        source
            .publish(&routes_for("push", "unsettable"))
            .await
            .unwrap();
        let error = refused_start(&source, LEASE).await;
        let error = error.to_string();
        assert!(
            error.starts_with("the routes in memory:routes.toml"),
            "{error}"
        );
        assert!(
            error.contains("action `unsettable`")
                && error.ends_with("none of the 1 version(s) before it is valid"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_or_emptied_source_leaves_the_routes_in_force() {
        let source = Arc::new(MemoryRoutesSource::new());
        source.publish(&routes_for("push", "valid")).await.unwrap();
        let metrics = Metrics::in_memory();
        let routing = routing(&source, &metrics).await;

        source.set_unavailable(true);
        tokio::time::advance(REFRESH).await;
        assert_eq!(routed(&routing.current().await, "push"), ["valid"]);
        assert_eq!(counted(&metrics, "RoutesUnreadable"), 1);
        assert_eq!(counted(&metrics, "InvalidRoutes"), 0);

        source.set_unavailable(false);
        source.clear();
        tokio::time::advance(REFRESH).await;
        assert_eq!(routed(&routing.current().await, "push"), ["valid"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_unreachable_at_start_stops_the_start() {
        let source = Arc::new(MemoryRoutesSource::new());
        source.set_unavailable(true);
        let error = refused_start(&source, LEASE).await;
        assert!(matches!(
            error,
            RoutingError::Source(RoutesSourceError::Unavailable { .. })
        ));
    }
}
