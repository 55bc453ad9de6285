"""The metric names PromQL queries read (parsed with Prometheus's grammar), and the names the service exports."""

from __future__ import annotations

import re
from typing import Any

import promql_parser
from prometheus_client.registry import CollectorRegistry

from tts_service.observability import Metrics

# Grafana's and prometheus-adapter's placeholders, replaced by something of the same kind before parsing.
PLACEHOLDERS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "<<.Series>>": "series_placeholder",
    "<<.LabelMatchers>>": 'namespace="ns",pod="p"',
    "<<.GroupBy>>": "pod",
}


def metric_names(expr: str) -> set[str]:
    """Every metric a query selects; raises ValueError when it is not valid PromQL."""
    for placeholder, value in PLACEHOLDERS.items():
        expr = expr.replace(placeholder, value)
    names: set[str] = set()
    _walk(promql_parser.parse(expr), names)
    return names


def _walk(node: Any, names: set[str]) -> None:
    if isinstance(node, promql_parser.VectorSelector):
        name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
        assert name, f"a selector without a metric name: {node}"
        names.add(name)
    elif isinstance(node, promql_parser.MatrixSelector):
        _walk(node.vector_selector, names)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            _walk(arg, names)
    elif isinstance(node, promql_parser.AggregateExpr):
        _walk(node.expr, names)
        if node.param is not None:
            _walk(node.param, names)
    elif isinstance(node, promql_parser.BinaryExpr):
        _walk(node.lhs, names)
        _walk(node.rhs, names)
    elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        _walk(node.expr, names)


def exported_names(registry: CollectorRegistry | None = None) -> set[str]:
    """The series names a scrape of the service's /metrics can show, whether or not they have samples yet."""
    registry = registry or Metrics().registry
    names: set[str] = set()
    for family in registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count", ""),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


def labels_of(expr: str) -> set[str]:
    """Label names a query's matchers use (a cheap guard against misspelt labels)."""
    return set(re.findall(r"([a-z_]+)\s*[=!]~?\s*\"", expr))
