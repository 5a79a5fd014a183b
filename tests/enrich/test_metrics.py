"""The enricher's metrics: the served set (prometheus_client) and the no-op set of batch runs agree."""

from __future__ import annotations

from enrich.adapters.metrics import NAMES, Metrics, Unserved


def test_the_no_op_metrics_have_every_metric_the_served_ones_have() -> None:
    metrics = vars(Metrics())
    served = {name for name, value in metrics.items() if hasattr(value, "collect") and name != "registry"}
    assert served == set(NAMES)
    unserved = Unserved()
    for name in NAMES:  # the engine's calls, all accepted and ignored
        metric = getattr(unserved, name)
        metric.labels("conn").inc(3)
        metric.set(1.0)
        metric.observe(0.5)
    assert unserved.render() == b""


def test_served_metrics_render_what_was_counted() -> None:
    metrics = Metrics()
    metrics.records_out.labels("conn").inc(3)
    assert b'kubezeek_records_out_total{log="conn"} 3.0' in metrics.render()
