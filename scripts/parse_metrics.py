#!/usr/bin/env python3
"""Parses an OpenMetrics text exposition (stdin) with the Prometheus client's own parser and
prints every sample as JSON: [{"name": ..., "labels": {...}, "value": ...}, ...].

A malformed exposition fails here, not in a hand-written check: the integration test
tests/metrics_exposition.rs feeds it what the example server's /metrics serves.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = [
    {"name": s.name, "labels": s.labels, "value": s.value}
    for family in text_string_to_metric_families(sys.stdin.read())
    for s in family.samples
]
json.dump(samples, sys.stdout)
