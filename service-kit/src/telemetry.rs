//! JSON logs (one object per line, with span fields such as the correlation id), the
//! OpenTelemetry trace exporter when the environment asks for one ([`crate::traces`]),
//! and the Prometheus recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What traces record when exported (`PHONEBILL_TRACE_FILTER`, an `EnvFilter`, else
/// this): the services' own spans, not the libraries' (the exporter's HTTP client
/// among them, whose spans would feed themselves).
const TRACE_FILTER: &str = "info,sqlx=warn,rdkafka=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,tower=warn,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// Keeps the trace exporter for the life of the process; dropping it exports the spans
/// still queued (within the SDK's shutdown timeout).
#[must_use = "dropping it stops the trace exporter"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces_on(&self) -> bool {
        self.traces.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the JSON log subscriber (`RUST_LOG`, else `default_filter`) and, when
/// `OTEL_EXPORTER_OTLP_*ENDPOINT` is set, the trace exporter for `service`; once per
/// process, later calls (tests) install nothing. Each has its own filter: logs at
/// `warn` still export the services' `info` spans.
pub fn init(service: &str, default_filter: &str) -> Telemetry {
    let provider = if crate::traces::enabled_by_env() {
        match crate::traces::provider(service) {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("traces are off: the OTLP exporter did not start: {e}");
                None
            }
        }
    } else {
        None
    };
    install(default_filter, provider)
}

/// Installs the JSON log subscriber once, without traces (tools and tests).
pub fn init_logging(default_filter: &str) {
    let _ = install(default_filter, None);
}

fn install(default_filter: &str, provider: Option<SdkTracerProvider>) -> Telemetry {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_filter(filter);
    let traces = provider.as_ref().map(|provider| {
        let filter = EnvFilter::try_from_env("PHONEBILL_TRACE_FILTER")
            .unwrap_or_else(|_| EnvFilter::new(TRACE_FILTER));
        crate::traces::layer(provider).with_filter(filter.and(crate::traces::Recorded))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    let traces = provider.filter(|_| installed);
    if traces.is_some() {
        crate::traces::start_head_sampling();
    }
    Telemetry { traces }
}

/// The process-wide Prometheus recorder (installed on first use).
///
/// The recorder keeps every histogram sample until a scrape or an upkeep folds it into
/// the buckets; with no scrape, memory grew by about 20 bytes per request (query-service
/// went from 37 to 76 MiB in 36 s of bill queries). A thread runs the upkeep every
/// [`UPKEEP_EVERY`], whatever runtime the process has.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .expect("the upkeep thread starts");
            handle
        })
        .clone()
}

const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The metrics in Prometheus' text format, the [`crate::sharded`] ones folded in first.
pub fn render(handle: &PrometheusHandle) -> String {
    crate::sharded::publish_all();
    handle.render()
}

/// Where `/metrics` is served. Unset, beside the API on the HTTP port (local runs, tests,
/// the benchmarks); set, on this address alone, so the scrapers' network path reaches
/// nothing but metrics and the API's path no metrics (the chart sets it).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsConfig {
    #[arg(long = "metrics-addr", env = "PHONEBILL_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `router` with `GET /metrics` (this process's recorder) when `metrics` is true: a
/// service with no metrics port of its own serves them beside its API.
pub fn with_metrics<S>(router: axum::Router<S>, metrics: bool) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    if !metrics {
        return router;
    }
    router.route(
        "/metrics",
        axum::routing::get(|| async { render(&metrics_handle()) }),
    )
}

/// The metrics port, bound at build time (port 0 picks a free one) so a taken port
/// stops the service at start.
pub struct MetricsListener(Option<tokio::net::TcpListener>);

impl MetricsListener {
    pub async fn bind(config: &MetricsConfig) -> std::io::Result<Self> {
        Ok(Self(match config.metrics_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        }))
    }

    /// Whether `/metrics` stays on the HTTP port (no port of its own).
    pub fn beside_api(&self) -> bool {
        self.0.is_none()
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves `GET /metrics` (nothing else) until `shutdown`; nothing without a port.
    pub fn serve(
        self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(listener) = self.0 else { return };
            let router = with_metrics(axum::Router::new(), true);
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "metrics listener stopped");
            }
        })
    }
}
