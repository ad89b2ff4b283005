//! The router, its middleware, and the server around them (the listener: [`crate::listener`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{MethodFilter, MethodRouter};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;
use crate::error::{ApiError, BODY_LIMIT};
use crate::roles::Permission;
use crate::{api, commands, sse};
use tokio_util::sync::CancellationToken;
use vaultmesh_store::jsonl::StoreOpenError;
use vaultmesh_store::ledger::Leaves;
use vaultmesh_store::replay::ReplayReport;

use crate::ui;
use vaultmesh_engines::auth::EnrollTokens;
use vaultmesh_store::bus::Bus;
use vaultmesh_store::{JsonlStore, PgStore, Store};

/// Bus events kept for clients resuming with `Last-Event-ID`.
pub const BUS_WINDOW: usize = 4096;

/// Content-Security-Policy for every response: no scripts from anywhere but us, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Shared state handed to every handler: one pointer, so the clone axum makes for each
/// request and each middleware is one reference count, not one per field (the per-field
/// clones and drops were 4.5 % of the Command Center's CPU under ingest, issue 24).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub bus: Arc<Bus>,
    /// The bus's events in frames, each made once, which every SSE stream writes.
    pub frames: Arc<crate::sse::frames::Frames>,
    /// Cancelled when the server shuts down; ends every SSE stream so shutdown is not held up.
    pub shutdown: CancellationToken,
    /// SSE keepalive comment interval.
    pub sse_keepalive: Duration,
    /// Enrollment tokens (never logged).
    pub tokens: Arc<EnrollTokens>,
    /// Bytes per hour each node may send, per kind.
    pub budgets: Arc<vaultmesh_engines::budget::Budgets>,
    /// Enrollment attempts per source address (a bad token is cheap to send).
    pub enroll_rate: Arc<vaultmesh_engines::limits::SourceRate>,
    /// The command-signing key; without it, commands cannot be issued.
    pub cc_key: Option<Arc<vaultmesh_proto::auth::NodeKey>>,
    /// The session keys of `cc_key`, for agent requests with a session MAC.
    pub sessions: Arc<vaultmesh_engines::auth::Sessions>,
    pub policies: Arc<vaultmesh_store::policy::LivePolicies>,
    /// Every node's attention.
    pub attention: Arc<vaultmesh_engines::attention::AttentionEngine>,
    /// The Merkle ledger over the scan log.
    pub ledger: Arc<vaultmesh_store::ledger::Ledger>,
    /// How admins authenticate: Cloudflare Access, or the admin bearer token, or neither.
    pub admin: Arc<crate::access::AdminAuth>,
    /// Per-node limit of agent requests.
    pub rate_limit: Arc<vaultmesh_engines::limits::RateLimit>,
    /// Per-node limit of the events agents post about themselves (on top of `rate_limit`).
    pub event_rate: Arc<vaultmesh_engines::limits::EventRate>,
    /// Which nodes' refused enrollments were logged lately.
    pub enroll_refusals: Arc<vaultmesh_engines::auth::Throttle>,
    /// Open `/events` streams per signed-in identity.
    pub sse_slots: Arc<crate::sse::StreamSlots>,
    /// What `/metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Notifications, when `--notify-config` is given.
    pub notify: Option<Arc<vaultmesh_engines::notify::Runtime>>,
    /// Whether the logs can be written, and the log volume's space.
    pub storage: Arc<vaultmesh_store::health::StorageHealth>,
    /// Refused requests in the log, a bounded number per reason.
    pub refusals: Arc<crate::refusals::RefusalLog>,
    /// How long a request may take before it is answered with a timeout error
    /// (`--request-timeout`; the long-poll gets its wait on top, see [`crate::timeout`]).
    pub request_timeout: Duration,
    /// How long a body may take to arrive, and the bytes all bodies may hold at once
    /// (`--body-timeout`, `--body-memory`; see [`crate::timeout`]).
    pub bodies: Arc<crate::timeout::Bodies>,
    /// Signed bodies being received per node id ([`vaultmesh_engines::limits::BODIES_PER_NODE`]).
    pub reading: Arc<vaultmesh_engines::limits::BodiesInFlight>,
    /// The host names admin requests may name ([`crate::guard`]).
    pub hosts: Arc<crate::guard::AllowedHosts>,
}

/// What the [`crate::agent_auth::Signed`] extractor needs of the state.
impl axum::extract::FromRef<AppState> for crate::agent_auth::AgentAuth {
    fn from_ref(state: &AppState) -> Self {
        crate::agent_auth::AgentAuth {
            store: Arc::clone(&state.store),
            rate_limit: Arc::clone(&state.rate_limit),
            reading: Arc::clone(&state.reading),
            sessions: Arc::clone(&state.sessions),
            verified: Some(state.metrics.agent_credentials.clone()),
        }
    }
}

/// What the admin gate ([`crate::access::admin_auth`]) needs of the state.
impl axum::extract::FromRef<AppState> for Arc<crate::access::AdminAuth> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.admin)
    }
}

/// What the host guard ([`crate::guard::check`]) needs of the state.
impl axum::extract::FromRef<AppState> for Arc<crate::guard::AllowedHosts> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.hosts)
    }
}

/// What the time limits ([`crate::timeout::limit`]) need of the state.
impl axum::extract::FromRef<AppState> for crate::timeout::TimeLimits {
    fn from_ref(state: &AppState) -> Self {
        crate::timeout::TimeLimits {
            request_timeout: state.request_timeout,
            bodies: Arc::clone(&state.bodies),
        }
    }
}

/// What the rejection counter ([`crate::metrics::count_rejections`]) needs of the state.
impl axum::extract::FromRef<AppState> for crate::metrics::Counting {
    fn from_ref(state: &AppState) -> Self {
        crate::metrics::Counting {
            metrics: Arc::clone(&state.metrics),
            refusals: Arc::clone(&state.refusals),
        }
    }
}

/// One route of [`app`]: a method, a path template and its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// What the identity asking needs ([`crate::roles`]); `None` on the agents' and public
    /// routes, which the admin gate does not cover.
    pub needs: Option<Permission>,
    handler: MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Route {
    fn new<H, T>(method: Method, path: &'static str, handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        // Reading needs `read`; a write is admin-only until its route says otherwise.
        let needs = (!crate::access::is_public(path)).then_some(if method == Method::GET {
            Permission::Read
        } else {
            Permission::Admin
        });
        Route {
            method,
            path,
            needs,
            handler: axum::routing::on(filter, handler),
        }
    }

    /// What the route needs, when it is not the default.
    fn needs(mut self, p: Permission) -> Route {
        self.needs = Some(p);
        self
    }

    /// The route's handler behind the check of what its identity may do.
    fn guarded(self) -> MethodRouter<AppState> {
        let Some(needs) = self.needs else {
            return self.handler;
        };
        let route = format!("{} {}", self.method, self.path);
        self.handler.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let allowed = crate::roles::check(
                    req.extensions().get::<crate::roles::Identity>(),
                    needs,
                    &route,
                );
                async move {
                    match allowed {
                        Ok(()) => next.run(req).await,
                        Err(e) => axum::response::IntoResponse::into_response(
                            ApiError::NotAllowed(e.to_string()),
                        ),
                    }
                }
            },
        ))
    }

    /// A larger body limit than [`BODY_LIMIT`] for this route.
    fn body_limit(mut self, limit: usize) -> Route {
        self.handler = self.handler.layer(DefaultBodyLimit::max(limit));
        self
    }
}

/// Every route: [`app`] is built from this list, so it is the router itself, and tests walk it
/// (every write refuses a cross-site request: `tests/guard.rs`).
pub fn routes() -> Vec<Route> {
    use Method as M;
    use Permission as P;
    vec![
        Route::new(M::GET, "/", ui::handlers::dashboard),
        Route::new(M::GET, "/assets/app.css", ui::handlers::stylesheet),
        Route::new(M::GET, "/assets/console.js", ui::handlers::console_script),
        Route::new(
            M::GET,
            "/assets/dashboard.js",
            ui::handlers::dashboard_script,
        ),
        Route::new(M::GET, "/console", ui::handlers::console_page),
        Route::new(M::GET, "/console/kpis", ui::handlers::kpis_fragment),
        Route::new(M::GET, "/console/nodes", ui::handlers::nodes_fragment),
        Route::new(M::GET, "/console/nodes/{id}", ui::handlers::node_fragment),
        Route::new(
            M::GET,
            "/console/nodes/{id}/row",
            ui::handlers::row_fragment,
        ),
        Route::new(
            M::GET,
            "/console/attention",
            ui::handlers::attention_fragment,
        ),
        Route::new(M::GET, "/console/findings", ui::handlers::findings_fragment),
        Route::new(M::GET, "/console/feed", ui::handlers::feed_fragment),
        Route::new(M::POST, "/console/events", ui::handlers::post_form).needs(P::EventsWrite),
        Route::new(M::POST, "/console/commands", ui::handlers::post_command)
            .needs(P::CommandsIssue),
        Route::new(M::GET, "/console/add-node", ui::add_node::add_node_page).needs(P::Admin),
        Route::new(M::GET, "/assets/add-node.js", ui::add_node::script),
        Route::new(M::POST, "/console/enroll-tokens", ui::add_node::post_mint),
        Route::new(
            M::POST,
            "/console/enroll-tokens/{id}/revoke",
            ui::add_node::post_revoke,
        ),
        Route::new(
            M::POST,
            "/console/nodes/{id}/decommission",
            ui::handlers::post_decommission,
        ),
        Route::new(
            M::POST,
            "/console/nodes/{id}/rename",
            ui::handlers::post_rename,
        ),
        Route::new(M::GET, "/healthz", api::healthz),
        Route::new(M::GET, "/auth/login", crate::oidc::login),
        Route::new(M::GET, "/auth/callback", crate::oidc::callback),
        Route::new(M::POST, "/auth/logout", crate::oidc::logout),
        Route::new(M::POST, "/api/agent/heartbeat", api::post_heartbeat),
        Route::new(M::POST, "/api/agent/enroll", api::post_enroll),
        Route::new(M::POST, "/api/agent/events", api::post_agent_event)
            .body_limit(api::AGENT_EVENT_BODY_MAX),
        Route::new(M::POST, "/api/agent/scans", api::post_scan)
            .body_limit(vaultmesh_proto::scan::limits::REPORT_BODY_MAX),
        Route::new(M::GET, "/api/attention", api::attention),
        Route::new(M::GET, "/api/notifiers", api::notifiers),
        Route::new(M::GET, "/api/ledger/root", api::ledger_root),
        Route::new(M::GET, "/api/ledger/proof/{scan_id}", api::ledger_proof),
        Route::new(M::POST, "/api/enroll-tokens", crate::enroll_tokens::post),
        Route::new(M::GET, "/api/enroll-tokens", crate::enroll_tokens::get).needs(P::Admin),
        Route::new(
            M::DELETE,
            "/api/enroll-tokens/{id}",
            crate::enroll_tokens::delete,
        ),
        Route::new(M::POST, "/api/api-tokens", crate::api_tokens::post),
        Route::new(M::GET, "/api/api-tokens", crate::api_tokens::get).needs(P::Admin),
        Route::new(M::DELETE, "/api/api-tokens/{id}", crate::api_tokens::delete),
        Route::new(M::POST, "/api/nodes/{id}/revoke", api::revoke_node),
        Route::new(
            M::POST,
            "/api/nodes/{id}/decommission",
            api::decommission_node,
        ),
        Route::new(M::POST, "/api/nodes/{id}/readmit", api::readmit_node),
        Route::new(M::POST, "/api/nodes/{id}/rename", api::rename_node),
        Route::new(M::GET, "/api/nodes", api::list_nodes),
        Route::new(M::GET, "/api/nodes/{id}", api::get_node),
        Route::new(M::GET, "/api/nodes/{id}/history", api::node_history),
        Route::new(M::GET, "/api/events", api::list_events),
        Route::new(M::POST, "/api/events", api::post_event).needs(P::EventsWrite),
        Route::new(M::GET, "/api/commands", commands::list),
        Route::new(M::POST, "/api/commands", commands::issue).needs(P::CommandsIssue),
        Route::new(M::GET, commands::POLL_ROUTE, commands::poll),
        Route::new(M::POST, "/api/agent/receipts", commands::receipt),
        Route::new(M::GET, "/events", sse::events),
        Route::new(M::GET, "/metrics", crate::metrics::scrape),
    ]
}

impl AppState {
    /// Spends `bytes` of `node`'s hourly `kind` budget; a refusal is counted in
    /// `vaultmesh_budget_refusals_total`.
    pub fn spend(
        &self,
        node: uuid::Uuid,
        kind: vaultmesh_engines::budget::Kind,
        bytes: usize,
    ) -> Result<(), ApiError> {
        self.budgets.spend(node, kind, bytes).map_err(|e| {
            self.metrics
                .budget_refusals
                .with_label_values(&[kind.name()])
                .inc();
            ApiError::from(e)
        })
    }
}

/// The whole HTTP surface. Split from [`Server`] so tests can drive it without a socket.
pub fn app(state: AppState) -> Router {
    let gate = axum::middleware::from_fn_with_state(state.clone(), crate::access::admin_auth);
    routes()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.guarded()))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(gate)
        // Before authentication: the host of admin requests, the site of every write.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::check,
        ))
        // Inside the counter, so timeouts are counted (and logged) like any other refusal.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::timeout::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::count_rejections,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends `Origin: null`
        // with a page's own form posts, which the cross-site guard must refuse — the console's
        // forms would not work without script. Other sites still get no referrer.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("cache-control"),
            HeaderValue::from_static("no-store"),
        ))
        // Spans only: failures are logged once, rate-limited, by `refusals` (and an internal
        // error by `ApiError`), not once per 5xx here — a flood must not fill the journal.
        .layer(TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreOpenError),
    #[error("cannot open the PostgreSQL store: {0}")]
    Postgres(#[from] vaultmesh_store::postgres::PgError),
    /// A bad token, signing key or policy file: the operator must fix the configuration.
    #[error("{0}")]
    Config(String),
    /// Another process writes this log directory.
    #[error("{0}")]
    Locked(#[from] vaultmesh_store::dirlock::LockError),
}

/// A bound, not yet running, Command Center.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    addr: SocketAddr,
    replay: ReplayReport,
    scan_tick: Duration,
    ledger_interval: Duration,
    /// Held until the server stops: one writer per log directory.
    lock: vaultmesh_store::dirlock::DirLock,
    /// The log volume to watch, its minimum free space, and how often to measure it.
    volume: (
        std::path::PathBuf,
        vaultmesh_store::health::MinFree,
        Duration,
    ),
    /// The connection bound and timeouts.
    connections: crate::listener::ConnLimits,
    /// The log-directory store (not with PostgreSQL), which keeps a state snapshot every
    /// `--snapshot-interval` and at shutdown.
    snapshots: Option<(Arc<JsonlStore>, Duration)>,
}

impl Server {
    /// Opens the store (replaying the logs), binds the listener and prepares the state. Nothing
    /// is served until [`Server::run`].
    pub async fn bind(config: &ServeConfig) -> Result<Server, ServeError> {
        // Configuration first: a bad token, key or policy must not cost a replay.
        crate::listener::ensure_open_files(config.connections.max_connections)
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let tokens = Arc::new(config.tokens().map_err(ServeError::Config)?);
        let cc_key = config
            .load_signing_key()
            .map_err(ServeError::Config)?
            .map(Arc::new);
        let loaded = vaultmesh_store::policy::Policies::load(config.policy_dir.as_deref())
            .map_err(ServeError::Config)?;
        let policies = Arc::new(vaultmesh_store::policy::LivePolicies::new(
            config.policy_dir.as_deref(),
            loaded,
        ));
        let notify_config = config
            .notify_config
            .as_deref()
            .map(|path| vaultmesh_engines::notify::load(path, &policies.get().known_profiles()))
            .transpose()
            .map_err(ServeError::Config)?;
        let roles = config
            .roles
            .as_deref()
            .map(crate::roles::RoleMap::load)
            .transpose()
            .map_err(|e| ServeError::Config(format!("--roles {e}")))?;
        let access = config
            .access
            .config()
            .map(crate::access::AccessVerifier::new)
            .transpose()
            .map_err(ServeError::Config)?
            .map(Arc::new);
        let lock = vaultmesh_store::dirlock::DirLock::acquire(&config.log_dir)?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut opts = config.store_options();
        opts.observer = Some(Arc::clone(&metrics) as Arc<dyn vaultmesh_store::Observer>);
        let storage = Arc::clone(&opts.health);
        let budgets = Arc::new(vaultmesh_engines::budget::Budgets::with_fleet(
            config.budgets,
            config.fleet_budgets,
        ));
        let bus = Arc::new(Bus::new(BUS_WINDOW, config.sse_buffer));
        let shutdown = CancellationToken::new();
        let frames = crate::sse::frames::Frames::start(&bus, config.sse_buffer, shutdown.clone());
        let store_bus = Arc::clone(&bus);
        // The store's replay hands the ledger the scan log's lines: one read for both.
        let mut snapshots = None;
        let (store, replay, leaves): (Arc<dyn Store>, ReplayReport, Leaves) =
            match &config.store_url {
                None => {
                    let (store, replay, leaves) = tokio::task::spawn_blocking(move || {
                        let mut leaves = Leaves::default();
                        JsonlStore::open_feeding(&opts, store_bus, Some(&mut leaves))
                            .map(|(store, replay)| (store, replay, leaves))
                    })
                    .await
                    .map_err(|e| ServeError::Serve(std::io::Error::other(e.to_string())))??;
                    let store = Arc::new(store);
                    snapshots = Some((Arc::clone(&store), config.heartbeats.snapshot_interval));
                    (store, replay, leaves)
                }
                Some(url) => {
                    let mut leaves = Leaves::default();
                    let (store, replay) =
                        PgStore::open(url, &opts, store_bus, Some(&mut leaves)).await?;
                    (Arc::new(store), replay, leaves)
                }
            };
        metrics.replayed(replay.lines, replay.elapsed);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (dir, origin, key) = (
            config.log_dir.clone(),
            config.ledger_origin.clone(),
            cc_key.clone(),
        );
        let ledger = tokio::task::spawn_blocking(move || {
            vaultmesh_store::ledger::Ledger::open(&dir, &origin, key, leaves)
        })
        .await
        .map_err(|e| ServeError::Serve(std::io::Error::other(e.to_string())))?
        .map_err(|e| ServeError::Serve(std::io::Error::other(e.to_string())))?;
        let attention = Arc::new(
            vaultmesh_engines::attention::AttentionEngine::new(
                Arc::clone(&store),
                Arc::clone(&policies),
                config.attention,
            )
            .with_storage(Arc::clone(&storage))
            .with_budgets(Arc::clone(&budgets)),
        );
        let console_url = notify_config
            .as_ref()
            .map(|nc| nc.config.console_url.clone());
        let oidc = config
            .oidc
            .config(console_url.as_deref())
            .map_err(ServeError::Config)?
            .map(crate::oidc::Oidc::new)
            .transpose()
            .map_err(ServeError::Config)?
            .map(Arc::new);
        // The public name, when one is configured: where admins open the console.
        let public = config
            .oidc
            .public_url
            .as_deref()
            .or(console_url.as_deref())
            .and_then(crate::guard::HostName::of_url);
        let hosts = crate::guard::AllowedHosts::new(
            addr,
            &config
                .allowed_hosts
                .iter()
                .cloned()
                .chain(public)
                .collect::<Vec<_>>(),
        );
        let notify = match notify_config {
            None => None,
            Some(nc) => Some(Arc::new(
                vaultmesh_engines::notify::Runtime::open(
                    nc,
                    &config.log_dir,
                    Arc::clone(&store),
                    Arc::clone(&attention),
                    Some(Arc::clone(&metrics) as Arc<dyn vaultmesh_engines::Observer>),
                )
                .map_err(ServeError::Config)?,
            )),
        };
        let api_tokens = Arc::new(crate::api_tokens::ApiTokens::new(
            Arc::clone(&store),
            config.api_token_rate,
            config.api_token_burst,
        ));
        let state = AppState(Arc::new(Shared {
            store,
            attention,
            ledger: Arc::new(ledger),
            admin: Arc::new(crate::access::AdminAuth {
                access,
                admin_token: config.admin_token.clone().map(crate::access::AdminToken),
                roles: roles.map(Arc::new),
                api_tokens,
                oidc,
            }),
            sse_slots: crate::sse::StreamSlots::new(config.sse),
            enroll_refusals: Arc::new(vaultmesh_engines::auth::Throttle::new(
                vaultmesh_engines::auth::REFUSAL_EVENT_EVERY,
            )),
            rate_limit: Arc::new(vaultmesh_engines::limits::RateLimit::new(
                config.agent_rate,
                config.agent_burst,
            )),
            event_rate: Arc::new(vaultmesh_engines::limits::EventRate::new(
                config.agent_event_rate,
                config.agent_event_burst,
            )),
            bus,
            frames,
            shutdown,
            sse_keepalive: config.sse_keepalive,
            tokens,
            budgets: Arc::clone(&budgets),
            enroll_rate: Arc::new(vaultmesh_engines::limits::SourceRate::new(
                config.enroll_rate,
                config.enroll_burst,
            )),
            sessions: Arc::new(vaultmesh_engines::auth::Sessions::new(cc_key.clone())),
            cc_key,
            policies,
            metrics,
            notify,
            storage,
            request_timeout: config.request_timeout,
            bodies: Arc::new(crate::timeout::Bodies::new(
                config.body_timeout,
                config.body_memory(),
            )),
            reading: Arc::default(),
            refusals: Arc::default(),
            hosts: Arc::new(hosts),
        }));
        Ok(Server {
            listener,
            state,
            addr,
            replay,
            scan_tick: config.scan_tick,
            ledger_interval: config.ledger_interval,
            lock,
            volume: (config.log_dir.clone(), config.min_free, config.disk_check),
            connections: config.connections,
            snapshots,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What replaying the logs found.
    pub fn replay_report(&self) -> &ReplayReport {
        &self.replay
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let _lock = self.lock;
        let streams = self.state.shutdown.clone();
        let (dir, min_free, every) = self.volume;
        tokio::spawn(vaultmesh_store::health::watch_volume(
            dir,
            min_free,
            every,
            Arc::clone(&self.state.storage),
            streams.clone(),
        ));
        // Notifications first: subscribed before the attention engine logs its first change.
        if let Some(n) = &self.state.notify {
            n.spawn(&self.state.bus, streams.clone());
        }
        let engine = Arc::clone(&self.state.attention);
        tokio::spawn(engine.run(Arc::clone(&self.state.bus), streams.clone()));
        let orchestrator = vaultmesh_engines::orchestrator::Orchestrator::new(
            Arc::clone(&self.state.store),
            Arc::clone(&self.state.policies),
            self.state.cc_key.clone(),
            self.scan_tick,
        )
        .with_metrics(Arc::clone(&self.state.metrics) as Arc<dyn vaultmesh_engines::Observer>);
        tokio::spawn(orchestrator.run(streams.clone()));

        if let Some(alarm) = self.state.ledger.alarm() {
            vaultmesh_store::ledger::raise_incident(self.state.store.as_ref(), &alarm).await;
        }
        tokio::spawn(Arc::clone(&self.state.ledger).run(
            Arc::clone(&self.state.store),
            self.ledger_interval,
            streams.clone(),
        ));
        tokio::spawn(Arc::clone(&self.state.refusals).run(streams.clone()));
        if let Some((store, every)) = &self.snapshots {
            let (store, every, stop) = (Arc::clone(store), *every, streams.clone());
            tokio::spawn(async move { store.keep_snapshots(every, stop).await });
        }
        if let Some(access) = &self.state.admin.access {
            tokio::spawn(Arc::clone(access).run(streams.clone()));
        }
        if let Some(oidc) = &self.state.admin.oidc {
            tokio::spawn(Arc::clone(oidc).run(streams.clone()));
        }
        // The listener gives every request its peer address (handlers, the refusal log).
        let metrics = self.state.metrics.connections.clone();
        let served = crate::listener::serve(
            self.listener,
            app(self.state),
            self.connections,
            metrics,
            async move {
                shutdown.await;
                // Open SSE streams would hold graceful shutdown forever; end them.
                streams.cancel();
            },
        )
        .await
        .map_err(ServeError::Serve);
        // No request is in flight any more: the next start reads no heartbeat line.
        if let Some((store, _)) = &self.snapshots
            && let Err(e) = store.write_snapshot("shutdown").await
        {
            tracing::warn!(error = %e, "Cannot write the state snapshot at shutdown; the next start replays more of the heartbeat log.");
        }
        served
    }
}
