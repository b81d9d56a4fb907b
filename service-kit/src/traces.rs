//! OpenTelemetry traces: the `tracing` spans of every service exported over OTLP/HTTP,
//! and the W3C trace context carried across HTTP, the outbox rows and Kafka headers, so
//! that one customer action is one trace through every service and the broker.
//!
//! - **Configured by the standard variables.** On only when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not
//!   `true`); `OTEL_SERVICE_NAME` (else the service's own name),
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`
//!   (OpenTelemetry's default: `parentbased_always_on`), `OTEL_BSP_*` (the batch queue,
//!   2,048 spans by default) are read by the SDK. Off, no layer is installed and the
//!   helpers below carry nothing.
//! - **Never slows a request.** A finished span goes into the batch processor's bounded
//!   queue (dropped when full) and a thread of its own exports it; a collector that is
//!   down costs that thread its export timeout, not a request. `phonebill_trace_spans_total`
//!   counts spans `ended`, `exported` and `export_failed`; ended minus the other two (once
//!   the queue has drained) is what the full queue dropped.
//! - **Sampled at the head.** An HTTP request's sampling is decided before its span
//!   exists ([`head`]): a caller's decision is followed; a new trace is kept always for
//!   a write (a product change, a login: few, and each one someone may have to follow)
//!   and by the configured sampler for a read (bill queries: many). A request left out makes no
//!   OpenTelemetry span at all (its span has the [`UNTRACED`] target, which the trace
//!   layer never sees, nor anything made inside it), yet carries a `traceparent` with the
//!   sampled flag off to the events it causes, so every service downstream leaves that
//!   change out too. Building a span the sampler then drops cost a bill query about half
//!   its instructions again (RESULTS.md).
//! - **Context as text.** [`traceparent`] reads the current span's context as the W3C
//!   `traceparent` (and `tracestate`); [`continue_trace`] makes a span the child of such
//!   a context. The same pair travels in HTTP headers, in an event's stored metadata
//!   (so a relay in another process continues the trace) and in Kafka record headers.

use std::collections::HashMap;

use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceId, TracerProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, SdkTracerProvider,
    ShouldSample, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Context as LayerContext, Filter};

/// The header (and metadata key) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Vendor-specific trace state travelling beside [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// Whether the environment asks for traces to be exported.
pub fn enabled_by_env() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracer provider for `service` (`OTEL_SERVICE_NAME` wins), exporting over
/// OTLP/HTTP to the configured endpoint.
pub fn provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_sampler(HeadDecided(configured_sampler()))
        .with_span_processor(Counted)
        .with_batch_exporter(CountedExporter(exporter))
        .with_resource(resource.build())
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`, with the
/// W3C propagator installed for [`traceparent`] and [`continue_trace`].
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Without the code location and thread name on every span: each is attributes made
    // per span (a thread name is an allocation), on the request's path.
    // Nor is the span's context made current in OpenTelemetry's own context at every
    // poll: the services read it from the span ([`traceparent`]).
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("phonebill"))
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_context_activation(false)
}

/// The target of an HTTP request's span when traces are off or the head sampler left the
/// request out: the trace layer never sees it.
pub const UNTRACED: &str = "service_kit::http::untraced";

tokio::task_local! {
    /// The context of the request being handled that was not sampled: what its effects
    /// carry downstream ([`traceparent_here`]), and the sign that nothing made while it
    /// runs goes to traces ([`Recorded`]).
    static UNSAMPLED_REQUEST: SpanContext;
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` configure (the SDK's
/// own reading of them).
fn configured_sampler() -> Box<dyn ShouldSample> {
    opentelemetry_sdk::trace::Config::default().sampler
}

static HEAD_SAMPLER: OnceLock<Box<dyn ShouldSample>> = OnceLock::new();

/// Turns on head sampling of HTTP requests ([`head`]); once the trace layer is installed.
pub(crate) fn start_head_sampling() {
    let _ = HEAD_SAMPLER.set(configured_sampler());
}

/// Where an HTTP request stands in traces, decided before its span is made.
#[derive(Debug, Clone)]
pub enum Head {
    /// Traces are off.
    Off,
    /// Traced: the span continues `parent` (the caller's context), else starts a trace.
    Sampled(Option<opentelemetry::Context>),
    /// Left out: no span is recorded, and this context (the caller's trace, or a new
    /// one, with the sampled flag off) is what the request's effects carry.
    Unsampled(SpanContext),
}

/// What a request is, for its head decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// GET, HEAD, OPTIONS: many, alike; sampled by the configured ratio.
    Read,
    /// Anything else (a product change, a login): few, and each one a customer's action
    /// someone may have to follow; a new trace is always kept.
    Write,
}

/// The head decision for a request carrying `traceparent` and `tracestate`, by the
/// configured sampler; [`Head::Off`] while traces are off.
pub fn head(kind: RequestKind, traceparent: Option<&str>, tracestate: Option<&str>) -> Head {
    match HEAD_SAMPLER.get() {
        Some(sampler) => head_by(sampler.as_ref(), kind, traceparent, tracestate),
        None => Head::Off,
    }
}

/// The head decision of `sampler`: the one it would make for the request's server span,
/// except that a write starting a trace is always kept (a caller's decision is followed
/// for writes too).
pub fn head_by(
    sampler: &dyn ShouldSample,
    kind: RequestKind,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Head {
    let parent = extract(traceparent, tracestate);
    if parent.is_none() && kind == RequestKind::Write {
        return Head::Sampled(None);
    }
    let ids = RandomIdGenerator::default();
    let trace_id = parent.as_ref().map_or_else(
        || ids.new_trace_id(),
        |cx| cx.span().span_context().trace_id(),
    );
    let sampled = sampler.should_sample(
        parent.as_ref(),
        trace_id,
        "http",
        &SpanKind::Server,
        &[],
        &[],
    );
    if !matches!(sampled.decision, SamplingDecision::Drop) {
        return Head::Sampled(parent);
    }
    let state = parent
        .as_ref()
        .map(|cx| cx.span().span_context().trace_state().clone())
        .unwrap_or_default();
    Head::Unsampled(SpanContext::new(
        trace_id,
        ids.new_span_id(),
        TraceFlags::default(),
        false,
        state,
    ))
}

/// Runs `request` (an HTTP request's handling) as the unsampled request `context`.
pub fn unsampled<F: std::future::Future>(
    context: SpanContext,
    request: F,
) -> impl std::future::Future<Output = F::Output> {
    UNSAMPLED_REQUEST.scope(context, request)
}

/// Samples a server span at the root as the HTTP layer's head decision already did ([`head`]:
/// only requests it sampled make one); every other span as the configured sampler says.
#[derive(Debug, Clone)]
struct HeadDecided(Box<dyn ShouldSample>);

impl ShouldSample for HeadDecided {
    fn should_sample(
        &self,
        parent: Option<&opentelemetry::Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let root = !parent.is_some_and(|cx| cx.span().span_context().is_valid());
        if root && *kind == SpanKind::Server {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: vec![],
                trace_state: Default::default(),
            };
        }
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// The trace layer's filter beside its `EnvFilter`: no span of a request the head left
/// out, nor any span made while one is handled (it would otherwise start a trace of
/// its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded;

impl<S> Filter<S> for Recorded {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &LayerContext<'_, S>) -> bool {
        meta.target() != UNTRACED && !(meta.is_span() && UNSAMPLED_REQUEST.try_with(|_| ()).is_ok())
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        use tracing::subscriber::Interest;
        if meta.target() == UNTRACED {
            Interest::never()
        } else if meta.is_span() {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

/// The W3C context of `span` as (`traceparent`, `tracestate`); `None` when traces are off
/// or the span is not part of a sampled or valid trace.
pub fn traceparent(span: &tracing::Span) -> Option<(String, Option<String>)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    inject(&cx)
}

/// The W3C context the current work passes on: the current span's, or, inside a request
/// the head sampler left out, that request's (sampled flag off).
pub fn traceparent_here() -> Option<(String, Option<String>)> {
    traceparent(&tracing::Span::current()).or_else(|| {
        let unsampled = UNSAMPLED_REQUEST.try_with(Clone::clone).ok()?;
        inject(&opentelemetry::Context::new().with_remote_span_context(unsampled))
    })
}

fn inject(cx: &opentelemetry::Context) -> Option<(String, Option<String>)> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    let parent = carrier.remove(TRACEPARENT)?;
    let state = carrier.remove(TRACESTATE).filter(|s| !s.is_empty());
    Some((parent, state))
}

/// The valid context in `traceparent` (and `tracestate`), if any.
fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent?.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the context in `traceparent` (and `tracestate`); an absent or
/// malformed context leaves it a root. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some(cx) = extract(traceparent, tracestate) {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the context in `traceparent` (a batch span and the traces of its
/// messages); nothing when absent or malformed.
pub fn link(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = extract(traceparent, None) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The W3C context (`traceparent`, `tracestate`) among a message's headers, as pairs
/// of name and bytes (a consumed Kafka message's, or a copy of them).
pub fn in_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> (Option<&'a str>, Option<&'a str>) {
    let (mut parent, mut state) = (None, None);
    for (key, value) in headers {
        let value = value.and_then(|v| std::str::from_utf8(v).ok());
        match key {
            TRACEPARENT => parent = value,
            TRACESTATE => state = value,
            _ => {}
        }
    }
    (parent, state)
}

/// The W3C context a Kafka message carries in its headers.
pub fn of_message<M: rdkafka::Message>(message: &M) -> (Option<&str>, Option<&str>) {
    use rdkafka::message::Headers;
    match message.headers() {
        Some(headers) => in_headers(headers.iter().map(|h| (h.key, h.value))),
        None => (None, None),
    }
}

/// The span of `consumer` processing `messages`, one partition's run: the child of the
/// message's trace when the run is one message, else linked to each message's trace
/// (OpenTelemetry's messaging conventions for batches).
pub fn consume_span<M: rdkafka::Message>(consumer: &str, messages: &[M]) -> tracing::Span {
    let Some(first) = messages.first() else {
        return tracing::Span::none();
    };
    let topic = first.topic();
    let span = tracing::info_span!("consume", otel.name = %format_args!("{topic} process"),
        otel.kind = "consumer", messaging.system = "kafka", messaging.destination.name = topic,
        messaging.consumer.group.name = consumer, messaging.batch.message_count = messages.len(),
        messaging.destination.partition.id = first.partition(),
        messaging.kafka.offset = first.offset());
    if span.is_disabled() {
        return span;
    }
    if let [one] = messages {
        let (parent, state) = of_message(one);
        continue_trace(&span, parent, state);
    } else {
        for message in messages {
            link(&span, of_message(message).0);
        }
    }
    span
}

/// Counts the spans that end (those sampled); the batch processor after it exports them.
#[derive(Debug)]
struct Counted;

impl SpanProcessor for Counted {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, _span: SpanData) {
        // On the request's thread: the series is looked up once, not per span.
        static ENDED: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
        ENDED
            .get_or_init(|| metrics::counter!("phonebill_trace_spans_total", "outcome" => "ended"))
            .increment(1);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The OTLP exporter, counting what it sent and what failed.
#[derive(Debug)]
struct CountedExporter<E>(E);

impl<E: SpanExporter> SpanExporter for CountedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        let outcome = if result.is_ok() {
            "exported"
        } else {
            "export_failed"
        };
        metrics::counter!("phonebill_trace_spans_total", "outcome" => outcome).increment(spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_traces<T>(test: impl FnOnce(&InMemorySpanExporter) -> T) -> T {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(layer(&provider));
        let out = tracing::subscriber::with_default(subscriber, || test(&exporter));
        let _ = provider.force_flush();
        out
    }

    #[test]
    fn given_a_traceparent_when_a_span_continues_it_then_the_span_carries_that_trace_and_passes_it_on(
    ) {
        with_traces(|_| {
            let span = tracing::info_span!("consume");
            continue_trace(&span, Some(PARENT), Some("vendor=1"));
            let (parent, state) = traceparent(&span).expect("a sampled context");
            assert!(parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
            assert_ne!(parent, PARENT, "the span's own id, not its parent's");
            assert!(parent.ends_with("-01"), "sampled, as its parent was");
            assert_eq!(state.as_deref(), Some("vendor=1"));
        });
    }

    #[test]
    fn given_a_malformed_or_absent_traceparent_then_the_span_starts_a_trace_of_its_own() {
        with_traces(|_| {
            for bad in [Some("00-zz-00-01"), Some(""), None] {
                let span = tracing::info_span!("consume");
                continue_trace(&span, bad, None);
                let (parent, _) = traceparent(&span).expect("a root span is traced too");
                assert!(!parent.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
            }
        });
    }

    #[test]
    fn given_a_batch_span_linked_to_its_messages_traces_then_the_exported_span_holds_the_links() {
        let spans = with_traces(|exporter| {
            {
                let span = tracing::info_span!("publish batch");
                link(&span, Some(PARENT));
                link(&span, Some("not a context"));
                let _entered = span.enter();
            }
            exporter.get_finished_spans().unwrap()
        });
        assert_eq!(spans.len(), 1);
        let links = &spans[0].links.links;
        assert_eq!(links.len(), 1);
        assert_eq!(
            links[0].span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    const UNSAMPLED_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    /// The head decision for a write whose caller did not sample its trace.
    fn unsampled_caller() -> SpanContext {
        let head = head_by(
            &ratio(1.0),
            RequestKind::Write,
            Some(UNSAMPLED_PARENT),
            None,
        );
        let Head::Unsampled(context) = head else {
            panic!("an unsampled parent is followed");
        };
        context
    }

    fn ratio(r: f64) -> Sampler {
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
    }

    #[test]
    fn given_a_sampled_caller_then_the_request_is_traced_as_its_child_whatever_the_ratio() {
        let Head::Sampled(Some(parent)) =
            head_by(&ratio(0.0), RequestKind::Read, Some(PARENT), None)
        else {
            panic!("a sampled parent is followed");
        };
        assert_eq!(
            parent.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn given_an_unsampled_caller_then_the_request_stays_out_of_its_trace_and_passes_the_flag_on() {
        let context = unsampled_caller();
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(!context.is_sampled());
        assert_ne!(context.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn given_no_caller_then_the_ratio_decides_for_a_read_and_one_left_out_gets_a_trace_id_of_its_own(
    ) {
        let read = RequestKind::Read;
        let sampled = head_by(&ratio(1.0), read, None, None);
        assert!(matches!(sampled, Head::Sampled(None)));
        let Head::Unsampled(context) = head_by(&ratio(0.0), read, Some("garbage"), None) else {
            panic!("ratio 0 samples no root");
        };
        assert!(context.is_valid() && !context.is_sampled());
        let off = head(read, None, None);
        assert!(matches!(off, Head::Off), "no trace layer installed");
    }

    #[test]
    fn given_no_caller_a_write_starts_a_kept_trace_whatever_the_ratio() {
        let kept = head_by(&ratio(0.0), RequestKind::Write, None, None);
        assert!(matches!(kept, Head::Sampled(None)));
    }

    #[test]
    fn a_root_server_span_is_sampled_because_the_head_already_chose_it_and_others_by_the_ratio() {
        let sampler = HeadDecided(Box::new(ratio(0.0)));
        let decide = |kind: SpanKind| {
            sampler
                .should_sample(None, TraceId::from(7), "x", &kind, &[], &[])
                .decision
        };
        assert_eq!(decide(SpanKind::Server), SamplingDecision::RecordAndSample);
        assert_eq!(decide(SpanKind::Consumer), SamplingDecision::Drop);
    }

    #[test]
    fn inside_an_unsampled_request_nothing_is_recorded_and_its_effects_carry_the_unsampled_context()
    {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber =
            tracing_subscriber::registry().with(layer(&provider).with_filter(Recorded));
        let context = unsampled_caller();
        let carried = tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(target: UNTRACED, "http");
            let carried = futures::executor::block_on(unsampled(
                context,
                async {
                    let inner = tracing::info_span!("inner");
                    let _entered = inner.enter();
                    traceparent_here()
                }
                .instrument(request),
            ));
            let _traced = tracing::info_span!("outside").entered();
            carried
        });
        let _ = provider.force_flush();
        let (parent, _) = carried.expect("the unsampled request's context");
        assert!(parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(parent.ends_with("-00"), "the sampled flag is off: {parent}");
        let names: Vec<_> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .map(|s| s.name.into_owned())
            .collect();
        assert_eq!(names, ["outside"], "only the span outside the request");
    }

    #[test]
    fn with_no_trace_layer_then_there_is_no_context_to_carry() {
        let span = tracing::info_span!("anything");
        assert_eq!(traceparent(&span), None);
    }
}
