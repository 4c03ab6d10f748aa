"""Optional Prometheus endpoint: the service's accounting for Grafana and friends.

The exporter never touches the serving loop's live counters: it serves the last
status snapshot (the one published on the status topic about once a second), so a
scrape costs the loop nothing and needs no lock. Needs ``prometheus_client``
(``pip install "livetrack[metrics]"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Snapshot = Callable[[], dict[str, Any] | None]


class _StatusCollector:
    """Turns a status snapshot into Prometheus metric families at scrape time."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self._snapshot()
        if st is None:
            return
        for name in ("received", "processed", "skipped"):
            yield CounterMetricFamily(
                f"livetrack_frames_{name}", f"Frames {name} by the service.", value=st[name]
            )
        rejected = CounterMetricFamily(
            "livetrack_frames_rejected", "Messages rejected, by reason.", labels=["reason"]
        )
        for reason, n in sorted(st["rejected"].items()):
            rejected.add_metric([reason], n)
        yield rejected
        published = CounterMetricFamily(
            "livetrack_published", "Messages published, by topic.", labels=["topic"]
        )
        for topic, n in sorted(st["published"].items()):
            published.add_metric([topic], n)
        yield published
        latency = GaugeMetricFamily(
            "livetrack_latency_seconds",
            "Latency per stage over the recent window (end_to_end: from t_acq_ns to publish).",
            labels=["stage", "quantile"],
        )
        for stage, q in sorted(st["latency_ms"].items()):
            if stage == "batch_size":  # a count, not a time
                continue
            latency.add_metric([stage, "0.5"], q["p50"] / 1e3)
            latency.add_metric([stage, "0.99"], q["p99"] / 1e3)
        yield latency
        yield GaugeMetricFamily(
            "livetrack_active_tracks", "Tracks alive in the linker.", value=st["active_tracks"]
        )
        yield GaugeMetricFamily(
            "livetrack_uptime_seconds", "Seconds since the service started.", value=st["uptime_s"]
        )
        policy = GaugeMetricFamily(
            "livetrack_policy",
            "The frame policy in force (1 for the one in force).",
            labels=["policy"],
        )
        for p in ("realtime", "lossless"):
            policy.add_metric([p], float(st["policy"] == p))
        yield policy


class MetricsServer:
    """An HTTP ``/metrics`` endpoint in a daemon thread.

    Parameters
    ----------
    snapshot
        Returns the latest status map (or None before the first one).
    host, port
        Where to listen; port 0 picks a free one (see :attr:`port`).
    """

    def __init__(self, snapshot: Snapshot, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise RuntimeError(
                "the metrics endpoint needs prometheus_client: pip install 'livetrack[metrics]'"
            ) from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_StatusCollector(snapshot))
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port: int = self._server.server_port

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2)
