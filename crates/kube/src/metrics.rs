//! Operator metrics, registered into a registry the binary owns.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_core::Phase;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// `strata_operator_*` metrics.
#[derive(Debug)]
pub struct Metrics {
    pub reconcile_runs: Counter,
    pub reconcile_skipped: Counter,
    pub reconcile_failures: Family<ReasonLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub instances: Family<PhaseLabels, Gauge>,
    phases: Mutex<HashMap<String, Phase>>,
}

impl Metrics {
    /// Creates the metrics and registers them under the `strata_operator` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconcile_runs: Counter::default(),
            reconcile_skipped: Counter::default(),
            reconcile_failures: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            instances: Family::default(),
            phases: Mutex::new(HashMap::new()),
        };
        let sub = registry.sub_registry_with_prefix("strata_operator");
        sub.register(
            "reconcile_runs",
            "Reconciles started",
            metrics.reconcile_runs.clone(),
        );
        sub.register(
            "reconcile_skipped",
            "Reconciles that found the instance and its objects as the last full pass left them, and did nothing",
            metrics.reconcile_skipped.clone(),
        );
        sub.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            metrics.reconcile_failures.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            metrics.reconcile_duration.clone(),
        );
        sub.register(
            "instances",
            "PostgresInstances by phase, as last reconciled by this operator",
            metrics.instances.clone(),
        );
        for phase in Phase::ALL {
            let _ = metrics.instances.get_or_create(&PhaseLabels {
                phase: phase.as_str().to_owned(),
            });
        }
        metrics
    }

    pub fn failure(&self, reason: &str) {
        self.reconcile_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records the phase of one instance (`None`: it is gone) and recomputes
    /// the per-phase gauge.
    pub fn set_phase(&self, key: &str, phase: Option<Phase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        match phase {
            Some(p) => phases.insert(key.to_owned(), p),
            None => phases.remove(key),
        };
        for p in Phase::ALL {
            let count = phases.values().filter(|v| **v == p).count();
            self.instances
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exports_the_documented_names() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconcile_runs.inc();
        m.failure("kube_api");
        m.reconcile_duration.observe(0.02);
        m.set_phase("ns/a", Some(Phase::Ready));
        m.set_phase("ns/b", Some(Phase::Ready));
        m.set_phase("ns/c", Some(Phase::Provisioning));
        m.set_phase("ns/c", None);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("strata_operator_reconcile_runs_total 1"),
            "{out}"
        );
        assert!(out.contains("strata_operator_reconcile_failures_total{reason=\"kube_api\"} 1"));
        assert!(out.contains("strata_operator_reconcile_duration_seconds_count 1"));
        assert!(out.contains("strata_operator_instances{phase=\"Ready\"} 2"));
        assert!(out.contains("strata_operator_instances{phase=\"Provisioning\"} 0"));
    }
}
