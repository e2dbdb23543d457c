//! What ferry's two Prometheus exporters share: the sidecar's `/metrics` ([`crate::metrics`])
//! and `ferry fetch --metrics-listen` (in the binary). Both serve the OpenMetrics text format
//! encoded by `prometheus-client`; a series is declared by one [`series`] call, which creates
//! it, registers it and hands back the handle the exporter updates.

use prometheus_client::registry::{Metric, Registry, Unit};

/// The content type of the OpenMetrics text [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A new series (a gauge, counter or family) registered in `registry` as `name`, with `unit`'s
/// suffix when given, and `help`; the registry keeps one handle, the caller gets the other.
pub fn series<M: Metric + Clone + Default>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> M {
    let metric = M::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

/// The OpenMetrics text of every series in `registry` now.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[test]
    fn a_series_is_registered_with_its_unit_and_updated_through_its_handle() {
        let mut r = Registry::default();
        let plain: Gauge = series(&mut r, "plain", "A plain gauge", None);
        let sized: Gauge = series(&mut r, "sized", "A gauge in bytes", Some(Unit::Bytes));
        plain.set(3);
        sized.set(7);
        let text = encode(&r);
        assert!(text.contains("# HELP plain A plain gauge.\n"), "{text}");
        assert!(text.contains("\nplain 3\n"), "{text}");
        assert!(text.contains("# UNIT sized_bytes bytes\n"), "{text}");
        assert!(text.contains("\nsized_bytes 7\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
