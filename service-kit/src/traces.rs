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
//! - **Context as text.** [`traceparent`] reads the current span's context as the W3C
//!   `traceparent` (and `tracestate`); [`continue_trace`] makes a span the child of such
//!   a context. The same pair travels in HTTP headers, in an event's stored metadata
//!   (so a relay in another process continues the trace) and in Kafka record headers.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("phonebill"))
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
}

/// The W3C context of `span` as (`traceparent`, `tracestate`); `None` when traces are off
/// or the span is not part of a sampled or valid trace.
pub fn traceparent(span: &tracing::Span) -> Option<(String, Option<String>)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let parent = carrier.remove(TRACEPARENT)?;
    let state = carrier.remove(TRACESTATE).filter(|s| !s.is_empty());
    Some((parent, state))
}

/// Makes `span` a child of the context in `traceparent` (and `tracestate`); an absent or
/// malformed context leaves it a root. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(parent) = traceparent else { return };
    let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), parent.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the context in `traceparent` (a batch span and the traces of its
/// messages); nothing when absent or malformed.
pub fn link(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(parent) = traceparent else { return };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), parent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
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
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing_subscriber::layer::SubscriberExt;

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

    #[test]
    fn with_no_trace_layer_then_there_is_no_context_to_carry() {
        let span = tracing::info_span!("anything");
        assert_eq!(traceparent(&span), None);
    }
}
