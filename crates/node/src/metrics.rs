//! Prometheus metrics (prometheus-client), exposed at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InferLabels {
    pub engine: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuorumLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub inferences: Family<InferLabels, Counter>,
    pub inference_seconds: Histogram,
    pub models_published: Counter,
    pub http_errors: Family<HttpLabels, Counter>,
    pub quorums: Family<QuorumLabels, Counter>,
    pub finalized_height: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("verity");
        let inferences = Family::<InferLabels, Counter>::default();
        let inference_seconds = Histogram::new(exponential_buckets(1e-5, 3.0, 14));
        let models_published = Counter::default();
        let http_errors = Family::<HttpLabels, Counter>::default();
        registry.register(
            "inferences",
            "Inference requests by engine and outcome",
            inferences.clone(),
        );
        registry.register(
            "inference_seconds",
            "Engine execution time per inference",
            inference_seconds.clone(),
        );
        registry.register(
            "models_published",
            "Models published to this node",
            models_published.clone(),
        );
        registry.register(
            "http_errors",
            "Error responses by status code",
            http_errors.clone(),
        );
        let quorums = Family::<QuorumLabels, Counter>::default();
        registry.register(
            "quorums",
            "Quorum requests this node coordinated, by outcome",
            quorums.clone(),
        );
        let finalized_height = Gauge::default();
        registry.register(
            "finalized_height",
            "Height of the last finalized ledger block",
            finalized_height.clone(),
        );
        Metrics {
            registry,
            quorums,
            finalized_height,
            inferences,
            inference_seconds,
            models_published,
            http_errors,
        }
    }

    pub fn quorum(&self, agreed: bool) {
        let outcome = if agreed { "agreed" } else { "disagreed" };
        self.quorums.get_or_create(&QuorumLabels { outcome }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
