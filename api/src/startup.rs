//! Building and running the application: config, stores, background tasks, HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use allot_ledger::Ledger;
use tokio::task::JoinHandle;

use crate::catalog::{self, Catalog};
use crate::clock::Clock;
use crate::config::Settings;
use crate::identity::tokens::TokenKeys;
use crate::identity::{dev_bootstrap, Identity};
use crate::leader::Leader;
use crate::routes;
use crate::secrets::Secrets;
use crate::state::AppState;

/// A built application, bound to its port, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    /// The operator listener (`http.ops_addr`): readiness and metrics, when configured.
    ops: Option<(u16, Server)>,
    state: web::Data<AppState>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, String> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// As [`Application::build`], judging opening and closing times by `clock`: tests
    /// pass a [`Clock::settable`] to move time forward instead of waiting for it.
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> Result<Application, String> {
        crate::metrics::handle();
        // The mode first: production without its settings, or dev mode on a public
        // address, never gets as far as a store.
        let settings = crate::production::prepare(settings)?;
        // Secrets next: a production start without them fails before touching a store.
        let secrets = crate::secrets::load(&settings)?;
        let stores = Stores::connect(&settings, clock).await?;
        let state = web::Data::new(compose(settings, &secrets, stores)?);
        if state.settings.dev_mode {
            dev_bootstrap::ensure_admin(&state.identity, &state.settings.data_dir).await?;
        }

        let tasks = spawn_background(&state);
        let (listener, port) = bind(&state.settings.http.addr)?;
        let ops = match state.settings.http.ops_addr.as_str() {
            "" => {
                tracing::warn!(
                    "readiness and metrics are served on the public listener: set \
                    ALLOT_OPS_ADDR to give operators a listener of their own"
                );
                None
            }
            addr => {
                let (ops_listener, ops_port) = bind(addr)?;
                Some((ops_port, serve_ops(state.clone(), ops_listener)?))
            }
        };
        let server = serve(state.clone(), listener, ops.is_none())?;
        Ok(Application { port, server, ops, state, tasks })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operator listener's port, when there is one.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops.as_ref().map(|(port, _)| *port)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT/SIGTERM; in-flight requests finish, then background tasks stop.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = match self.ops {
            None => self.server.await,
            Some((_, ops)) => {
                // Both stop on the same signal; the operator listener outlives nothing.
                let (public, ops) = tokio::join!(self.server, ops);
                public.and(ops)
            }
        };
        for task in self.tasks {
            task.abort();
        }
        result
    }
}

/// The shared handles every service is built from.
struct Stores {
    db: allot_store::Pool,
    ledger: Arc<Ledger>,
    catalog: Arc<Catalog>,
}

impl Stores {
    /// Postgres (migrated), the TigerBeetle client, and the offerings set up in both.
    async fn connect(settings: &Settings, clock: Clock) -> Result<Stores, String> {
        let db = allot_store::pool(&settings.database.url, settings.database.pool_max)?;
        allot_store::migrate(&db).await.map_err(|e| format!("migrations: {e}"))?;
        let ledger = Arc::new(
            Ledger::connect(settings.ledger.cluster.into(), &settings.ledger.addresses)
                .map_err(|e| e.to_string())?,
        );
        // Production loads seed offerings closed: an admin opens each one deliberately.
        catalog::load_seed_files(&db, &settings.offerings_dir, settings.dev_mode).await?;
        let catalog = Arc::new(Catalog::new(clock));
        let setup = catalog.refresh(&db, &ledger);
        tokio::time::timeout(Duration::from_secs(30), setup)
            .await
            .map_err(|_| "TigerBeetle did not answer within 30 s".to_string())?
            .map_err(|e| format!("loading offerings: {e:?}"))?;
        Ok(Stores { db, ledger, catalog })
    }
}

/// Every service, each given only the handles and settings it needs.
fn compose(settings: Settings, secrets: &Secrets, stores: Stores) -> Result<AppState, String> {
    let Stores { db, ledger, catalog } = stores;
    let ledger_timeout = Duration::from_millis(settings.ledger.timeout_ms);
    let grace = settings.payments.settlement_grace_seconds;
    if grace > crate::config::SETTLEMENT_GRACE_SECONDS_MAX {
        return Err(format!(
            "payments.settlement_grace_seconds: at most {}",
            crate::config::SETTLEMENT_GRACE_SECONDS_MAX
        ));
    }
    let access_seconds = settings.identity.access_token_seconds;
    let tokens = Arc::new(TokenKeys::new(&secrets.token_secret, access_seconds));
    let ids = &settings.identity;
    let verifiers = crate::identity::Verifiers {
        kyc: crate::identity::kyc::from_settings(
            &ids.kyc_url,
            &ids.kyc_key,
            &ids.kyc_callback_secret,
            &secrets.identity_key,
            settings.dev_mode,
        )?,
        sms: crate::identity::sms::from_settings(&ids.sms_url, &ids.sms_key)?.map(Arc::from),
        email: crate::notify::senders::from_settings(&settings.notify)?.map(Arc::from),
        dev_mode: settings.dev_mode,
    };
    let identity = Identity::new(
        db.clone(),
        tokens.clone(),
        &secrets.identity_key,
        settings.identity.clone(),
        verifiers,
    );
    let handles = crate::fairness::Handles {
        db: db.clone(),
        ledger: ledger.clone(),
        catalog: catalog.clone(),
        ledger_timeout,
        settlement_grace_seconds: grace,
    };
    let fairness = crate::fairness::Fairness::new(
        handles,
        &settings.fairness,
        &secrets.token_secret,
        &secrets.identity_key,
    );
    let reservations = crate::reservations::Reservations::new(
        ledger.clone(),
        catalog.clone(),
        fairness.gate.clone(),
        ledger_timeout,
        grace,
    );
    let partners = crate::partners::Partners::new(
        db.clone(),
        ledger.clone(),
        catalog.clone(),
        reservations.clone(),
        &secrets.token_secret,
        &secrets.identity_key,
        settings.fairness.rate_limit_partner_per_second,
        ledger_timeout,
    );
    let payments = crate::payments::Payments::new(
        db.clone(),
        ledger.clone(),
        catalog.clone(),
        crate::payments::gateway::Gateways::load(&settings)?,
        settings.payments.clone(),
        settings.dev_mode,
        ledger_timeout,
    );
    let notify =
        crate::notify::Notifier::new(db.clone(), ledger.clone(), catalog.clone(), ledger_timeout);
    let exports = crate::exports::Exports::new(
        ledger.clone(),
        catalog.clone(),
        settings.ledger.cluster.into(),
        crate::secrets::Source::new(&settings)?,
        settings.exports.signing_key.clone(),
    );
    let ticket_key = crate::tickets::signing_key(
        &settings.tickets.signing_key,
        &crate::secrets::Source::new(&settings)?,
    )?;
    let tickets =
        crate::tickets::Tickets::new(db.clone(), catalog.clone(), ticket_key, &settings.tickets);
    let alerts = crate::alerts::Alerts::new(db.clone(), settings.alerts.clone());
    let reports = crate::reports::Reports::new(
        ledger.clone(),
        db.clone(),
        ledger_timeout,
        &secrets.token_secret,
    );
    let http = &settings.http;
    let proxies =
        crate::client_ip::TrustedProxies::parse(&http.trusted_proxies, http.trust_forwarded_for)?;
    Ok(AppState {
        partners,
        proxies,
        tokens,
        identity,
        fairness,
        reservations,
        payments,
        notify,
        exports,
        reports,
        tickets,
        alerts,
        ledger,
        db,
        catalog,
        settings,
    })
}

/// Loops every instance runs (catalog refresh, outbox and payments, which claim rows with
/// `SKIP LOCKED`; the waiting room's controller, under its own lease), and the ones only
/// the leader runs (projector, waitlist offers, unusual-activity rules).
fn spawn_background(state: &web::Data<AppState>) -> Vec<JoinHandle<()>> {
    let leader = Leader::default();
    let campaign = tokio::spawn(leader.clone().campaign(state.settings.database.url.clone()));
    let interval = Duration::from_millis(state.settings.ledger.projector_interval_ms);
    let projector = tokio::spawn(crate::projector::run(
        state.ledger.clone(),
        state.db.clone(),
        state.catalog.clone(),
        interval,
        leader.clone(),
    ));
    // Other instances may change offerings: converge on Postgres every few seconds, and
    // keep figures to show (marked stale) if the ledger stops answering.
    let refresher = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(e) = state.catalog.refresh(&state.db, &state.ledger).await {
                    tracing::warn!(error = %e, "catalog refresh failed");
                }
                state.catalog.warm_availability(&state.ledger, state.tb_timeout()).await;
            }
        })
    };
    let payments = crate::payments::worker::run(
        state.payments.clone(),
        state.notify.clone(),
        state.settings.notify.clone(),
        leader.clone(),
    );
    let payments = tokio::spawn(payments);
    // Every process (not only the leader) refuses the tokens of sessions any process revoked.
    let revocations = tokio::spawn(state.identity.clone().watch_revocations());
    let verifications = tokio::spawn(state.identity.clone().watch_verifications());
    // Every instance delivers partners' status webhooks (rows claimed with SKIP LOCKED).
    let partner_webhooks = tokio::spawn(state.partners.clone().deliver_webhooks());
    // The unusual-activity rules, on the leader: they only write alerts.
    let alerts = tokio::spawn(state.alerts.clone().run(leader.clone()));
    let mut tasks = vec![
        campaign,
        projector,
        refresher,
        payments,
        revocations,
        verifications,
        partner_webhooks,
        alerts,
    ];
    tasks.extend(state.fairness.spawn(&leader));
    tasks
}

fn bind(addr: &str) -> Result<(TcpListener, u16), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    Ok((listener, port))
}

/// The operator listener: liveness, readiness and metrics, nothing a client calls.
fn serve_ops(state: web::Data<AppState>, listener: TcpListener) -> Result<Server, String> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes::health::configure_operator)
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(|e| e.to_string())?
    .run();
    Ok(server)
}

/// The public listener; readiness and metrics only when `operator` (no listener of their
/// own).
fn serve(
    state: web::Data<AppState>,
    listener: TcpListener,
    operator: bool,
) -> Result<Server, String> {
    let body_max = state.settings.http.body_bytes_max;
    let workers = match state.settings.http.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(body_max).error_handler(routes::json_error))
            .app_data(web::PayloadConfig::default().limit(body_max))
            .app_data(web::QueryConfig::default().error_handler(routes::query_error))
            .app_data(web::PathConfig::default().error_handler(routes::path_error))
            .configure(|cfg| routes::configure(cfg, operator))
            .default_service(web::to(routes::not_found))
            .wrap(from_fn(routes::middleware::localize_errors))
            .wrap(from_fn(routes::middleware::track))
            .wrap(tracing_actix_web::TracingLogger::<routes::logging::RequestSpan>::new())
    })
    .workers(workers)
    .backlog(4096)
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(|e| e.to_string())?
    .run();
    Ok(server)
}

/// `main`: logging, configuration, build, serve.
pub async fn run_from_env() -> Result<(), String> {
    let settings = Settings::load().map_err(|e| format!("configuration: {e}"))?;
    init_logging(&settings.http.log_format);
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "allot-api serving");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

/// Logs at `ALLOT_LOG` (default `info`), except what the database driver says below
/// `info`, whatever `ALLOT_LOG` asks: at `debug` it prints every statement with the values
/// bound to it (emails, password hashes, second-factor secrets, token hashes).
fn init_logging(format: &str) {
    use tracing_subscriber::filter::{filter_fn, EnvFilter};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("ALLOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let quiet_driver = filter_fn(|meta| {
        !(meta.target().starts_with("tokio_postgres") && *meta.level() > tracing::Level::INFO)
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "pretty" {
        builder.finish().with(quiet_driver).try_init()
    } else {
        builder.json().finish().with(quiet_driver).try_init()
    };
}
