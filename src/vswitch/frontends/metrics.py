"""Prometheus metrics of a `SwitchApi`: what `GET /metrics` serves (prometheus-client's text format).

Owns: the metric names, types, help texts and labels, by Prometheus' conventions — counters end in
``_total`` (the client adds it), a counter never goes down while its switch runs, one label set per
series: per port ``{switch, port}`` (drops also ``reason``, the core's `Reason` label), per switch
``{switch}``. Read at each scrape from the api's own answers (`list_switches`, `stats`, `fdb_show`):
nothing is kept here, so a scrape costs what those calls cost and never touches the datapath's hot
path (each call is one request to the datapath thread, between two batches).

A switch deleted while a scrape reads it is left out of that scrape (its NotFound is not an error).
Must not touch: HTTP (rest.py serves it), the switches themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from vswitch.control.api import SwitchApi
from vswitch.control.model import NotFound

#: (field of PortStatsInfo, metric name without _total, help)
_PORT_COUNTERS = (
    ("rx_frames", "vswitch_port_rx_frames", "Frames the switch received from the port"),
    ("rx_bytes", "vswitch_port_rx_bytes", "Bytes the switch received from the port"),
    ("tx_frames", "vswitch_port_tx_frames", "Frames the switch sent out of the port"),
    ("tx_bytes", "vswitch_port_tx_bytes", "Bytes the switch sent out of the port"),
    ("floods", "vswitch_port_floods", "Frames from the port the switch flooded (broadcast, multicast, unknown)"),
    ("learned", "vswitch_port_learned", "MAC addresses learned on the port"),
    ("moved", "vswitch_port_moved", "MAC addresses that moved to the port from another"),
    ("static_refused", "vswitch_port_static_refused",
     "Frames from a MAC that is static on another port (neither learned nor moved)"),
    ("mirrored", "vswitch_port_mirrored", "A mirroring source's frames (in or out) a destination got"),
    ("mirror_tx", "vswitch_port_mirror_tx", "Port mirroring copies a destination port was given"),
)


class SwitchCollector:
    """A prometheus-client collector reading `api` at each scrape."""

    def __init__(self, api: SwitchApi) -> None:
        self.api = api

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: the families are known only when collected

    def collect(self) -> Iterator[Metric]:
        port_labels, switch_labels = ["switch", "port"], ["switch"]
        counters = {f: CounterMetricFamily(name, text, labels=port_labels) for f, name, text in _PORT_COUNTERS}
        drops = CounterMetricFamily("vswitch_port_drops", "Frames dropped, by the port they came from (or were "
                                    "for) and the reason", labels=[*port_labels, "reason"])
        port_up = GaugeMetricFamily("vswitch_port_up", "1 while the port forwards (admin and link up)",
                                    labels=port_labels)
        entries = GaugeMetricFamily("vswitch_fdb_entries", "Entries in the switch's MAC table",
                                    labels=[*switch_labels, "kind"])
        capacity = GaugeMetricFamily("vswitch_fdb_capacity", "Dynamic entries the MAC table may hold",
                                     labels=switch_labels)
        evictions = CounterMetricFamily("vswitch_fdb_evictions", "Dynamic entries the MAC table evicted (full, "
                                        "or shrunk), fairly from the port holding the most", labels=switch_labels)
        kernel = GaugeMetricFamily("vswitch_switch_datapath_kernel",
                                   "1 while the kernel fast path (tc-bpf) forwards the switch, 0 on the Python "
                                   "datapath", labels=switch_labels)
        info = GaugeMetricFamily("vswitch_switch_info", "The switch's type, datapath and state, as labels (always 1)",
                                 labels=[*switch_labels, "type", "datapath", "state"])
        confirm = GaugeMetricFamily("vswitch_switch_awaiting_confirm",
                                    "1 while an External switch's takeover waits for its confirm", labels=switch_labels)
        for sw in self.api.list_switches():
            try:
                stats = self.api.stats(sw.name)
                fdb = self.api.fdb_show(sw.name)
            except NotFound:  # deleted meanwhile
                continue
            for s in stats:
                values: dict[str, Any] = vars(s)
                for f, fam in counters.items():
                    fam.add_metric([sw.name, s.port], values[f])
                for reason, n in sorted(s.drops.items()):
                    drops.add_metric([sw.name, s.port, reason], n)
            for p in sw.ports:
                port_up.add_metric([sw.name, p.name], 1.0 if p.up else 0.0)
            n_static = sum(1 for e in fdb if e.static)
            entries.add_metric([sw.name, "dynamic"], len(fdb) - n_static)
            entries.add_metric([sw.name, "static"], n_static)
            capacity.add_metric([sw.name], sw.max_entries)
            evictions.add_metric([sw.name], sw.fdb_evictions)
            on_kernel = sw.datapath.startswith("kernel")
            kernel.add_metric([sw.name], 1.0 if on_kernel else 0.0)
            info.add_metric([sw.name, sw.type, "kernel" if on_kernel else "python", sw.state], 1.0)
            confirm.add_metric([sw.name], 1.0 if sw.state == "awaiting-confirm" else 0.0)
        yield from counters.values()
        yield from (drops, port_up, entries, capacity, evictions, kernel, info, confirm)


def render(api: SwitchApi) -> tuple[bytes, str]:
    """The metrics of `api` now, in Prometheus' text format, and its content type. Raises what the
    api's reads raise (but NotFound for a switch deleted meanwhile)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(api))
    # the classic text format (0.0.4), with metric names escaped to it: what every Prometheus reads
    # (Debian's 2.42 included), not prometheus-client's newest 1.0.0, which old servers refuse
    return generate_latest(registry, escaping="underscores"), CONTENT_TYPE_PLAIN_0_0_4


__all__ = ["SwitchCollector", "render"]
