"""The Kubernetes layout: server and console Deployments, a TLS Ingress that routes every API route (WebSockets
with long timeouts), NetworkPolicies, the voices volume really mounted, an HPA on CPU and requests_in_flight with
the prometheus-adapter rule that serves it, workers from the CPU limit, and the streaming profile."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import APIRouter
from starlette.routing import BaseRoute, Route, WebSocketRoute

from tests.infra import kustomize
from tests.infra.promql import exported_names, metric_names
from tests.infra.test_selfhosted import K8S, layouts
from tts_service.api import chat, client_config, health, openai_compat, samples, stream, tickets, tts, voices

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def built(layout: str = "base") -> list[dict[str, Any]]:
    return kustomize.build(layouts()[layout])


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = find(docs, "Deployment", "tts-service")["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def test_every_manifest_is_applied_and_every_overlay_builds() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    # a manifest added beside the others but not listed would silently never be applied
    assert {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"} == listed
    assert set(layouts()) == {"base", "overlays/voices", "overlays/streaming"}
    for layout in layouts():
        assert built(layout), layout


def test_images_are_tagged_with_the_version_and_a_commit() -> None:
    images = {i["name"]: i for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    assert set(images) == {"tts-service", "tts-frontend"}
    for image in images.values():
        assert re.fullmatch(rf"{re.escape(VERSION)}-[0-9a-f]{{7,40}}", image["newTag"]), image
    ours = tuple(f"registry.example.com/{name}:" for name in images)
    seen = 0
    for doc in built():
        for container in kustomize.containers(doc):
            if container["image"].startswith(ours):
                seen += 1
                assert re.search(rf":{re.escape(VERSION)}-[0-9a-f]{{7,40}}$", container["image"]), container["image"]
            else:  # a third-party server (Qdrant) is pinned to its own release
                assert re.search(r":v?\d+\.\d+", container["image"]), container["image"]
    assert seen >= 2


def test_server_and_console_deployments_run_hardened_behind_their_services() -> None:
    docs = built()
    for name, port in (("tts-service", 8085), ("tts-frontend", 8080)):
        pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["ports"][0]["containerPort"] == port
        service = find(docs, "Service", name)
        assert service["spec"]["selector"] == find(docs, "Deployment", name)["spec"]["selector"]["matchLabels"]


def route_path(route: BaseRoute) -> str:
    assert isinstance(route, Route | WebSocketRoute), route
    return route.path


def api_paths() -> list[str]:
    """A concrete path for every route the shim serves (but /metrics), plain and under /api."""
    routers: tuple[APIRouter, ...] = (chat.router, chat.ws_router, health.router, openai_compat.router, tickets.router)
    routers += (tts.router, voices.router, stream.router, client_config.router, samples.router)
    paths = [re.sub(r"\{[^}]+\}", "x1", route_path(route)) for router in routers for route in router.routes]
    return [prefix + path for prefix in ("", "/api") for path in paths]


def ingress_backend(ingress: dict[str, Any], path: str) -> str:
    """The service an Ingress sends `path` to: Exact first, then the longest Prefix (by path elements)."""
    rules = ingress["spec"]["rules"][0]["http"]["paths"]
    exact = [r for r in rules if r["pathType"] == "Exact" and r["path"] == path]
    if exact:
        return str(exact[0]["backend"]["service"]["name"])
    prefixes = [
        r
        for r in rules
        if r["pathType"] == "Prefix" and (r["path"] == "/" or path == r["path"] or path.startswith(r["path"] + "/"))
    ]
    best = max(prefixes, key=lambda r: len(r["path"]))
    return str(best["backend"]["service"]["name"])


def test_the_ingress_serves_tls_and_routes_the_api_to_the_server_and_the_rest_to_the_console() -> None:
    ingress = find(built(), "Ingress", "tts-service")
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert tls["hosts"] == [rule["host"]]
    assert tls["secretName"]
    for path in api_paths():
        assert ingress_backend(ingress, path) == "tts-service", path
    for path in ("/", "/index.html", "/assets/app.js", "/metrics", "/api/metrics", "/ttsx"):
        assert ingress_backend(ingress, path) == "tts-frontend", path  # the metrics stay inside the cluster
    notes = ingress["metadata"]["annotations"]
    # WebSockets and streams: long read/send timeouts, no buffering, and HTTPS only
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    # and the public URL the server hands out is the Ingress's
    config = find(built(), "ConfigMap", "tts-service-config")["data"]
    assert config["PUBLIC_BASE_URL"] == f"https://{rule['host']}"


def test_network_policies_let_only_the_ingress_in_and_the_server_out_to_dns_llm_and_qdrant() -> None:
    docs = built()
    server = find(docs, "NetworkPolicy", "tts-service")["spec"]
    labels = find(docs, "Deployment", "tts-service")["spec"]["template"]["metadata"]["labels"]
    assert server["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(server["policyTypes"]) == {"Ingress", "Egress"}
    sources = [peer["namespaceSelector"]["matchLabels"] for rule in server["ingress"] for peer in rule["from"]]
    assert sources == [{"kubernetes.io/metadata.name": "ingress-nginx"}, {"kubernetes.io/metadata.name": "monitoring"}]
    assert all(p["port"] == 8085 for rule in server["ingress"] for p in rule["ports"])
    egress_ports = {(p["protocol"], p["port"]) for rule in server["egress"] for p in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6333)} <= egress_ports
    # the hosted LLM over the internet, never the cluster's or the cloud's private ranges
    https = next(rule for rule in server["egress"] if rule["ports"] == [{"protocol": "TCP", "port": 443}])
    assert "10.0.0.0/8" in https["to"][0]["ipBlock"]["except"]
    assert "169.254.0.0/16" in https["to"][0]["ipBlock"]["except"]
    console = find(docs, "NetworkPolicy", "tts-frontend")["spec"]
    assert console["egress"] == []
    assert set(console["policyTypes"]) == {"Ingress", "Egress"}
    assert console["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def workers(container: dict[str, Any]) -> int:
    """SYNTH_WORKERS as the kubelet resolves it: the CPU limit in whole cores, rounded up."""
    (entry,) = [e for e in container["env"] if e["name"] == "SYNTH_WORKERS"]
    ref = entry["valueFrom"]["resourceFieldRef"]
    assert ref == {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
    return math.ceil(float(container["resources"]["limits"]["cpu"]))


def test_threads_follow_the_cpu_limit_one_single_threaded_worker_per_core() -> None:
    for layout in ("base", "overlays/streaming"):
        container = server_container(built(layout))
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ORT_INTRA_OP_THREADS"] == "1", layout
        assert workers(container) == math.ceil(float(container["resources"]["limits"]["cpu"]))


def hpa_in_flight_target(docs: list[dict[str, Any]]) -> float:
    spec = find(docs, "HorizontalPodAutoscaler", "tts-service")["spec"]
    (pods,) = [m["pods"] for m in spec["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] == "requests_in_flight"
    assert pods["target"]["type"] == "AverageValue"
    return float(pods["target"]["averageValue"])


def test_the_hpa_scales_on_cpu_and_on_requests_in_flight_served_by_the_adapter_rule() -> None:
    docs = built()
    spec = find(docs, "HorizontalPodAutoscaler", "tts-service")["spec"]
    assert {m["type"] for m in spec["metrics"]} == {"Resource", "Pods"}
    assert any(m.get("resource", {}).get("name") == "cpu" for m in spec["metrics"])
    # about 1.5 requests per worker before the autoscaler adds pods
    assert hpa_in_flight_target(docs) == pytest.approx(1.5 * workers(server_container(docs)))
    # the adapter rule serves exactly that metric, from a series the service exports, per pod
    (adapter,) = kustomize.load_docs(K8S / "monitoring" / "prometheus-adapter-rules.yaml")
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == "requests_in_flight"
    assert metric_names(rule["seriesQuery"]) == {"requests_in_flight"} <= exported_names()
    assert metric_names(rule["metricsQuery"]) == {"series_placeholder"}  # <<.Series>>, filled in by the adapter
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    # Prometheus finds the pods to scrape
    annotations = find(docs, "Deployment", "tts-service")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8085"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_streaming_profile_runs_fewer_larger_pods() -> None:
    base, streaming = built(), built("overlays/streaming")
    base_hpa = find(base, "HorizontalPodAutoscaler", "tts-service")["spec"]
    hpa = find(streaming, "HorizontalPodAutoscaler", "tts-service")["spec"]
    container = server_container(streaming)
    assert workers(container) > workers(server_container(base))  # larger
    assert hpa["maxReplicas"] < base_hpa["maxReplicas"]  # fewer
    # whole cores, requests equal to limits: the Guaranteed class, so workers can have cores of their own
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert float(container["resources"]["limits"]["cpu"]).is_integer()
    assert hpa_in_flight_target(streaming) == pytest.approx(1.5 * workers(container))
    assert (
        hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        >= base_hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    )


def test_the_voices_overlay_really_mounts_the_claim_read_only() -> None:
    docs = built("overlays/voices")
    claim = find(docs, "PersistentVolumeClaim", "tts-service-voices")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    pod = find(docs, "Deployment", "tts-service")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["voices"]["persistentVolumeClaim"] == {"claimName": "tts-service-voices", "readOnly": True}
    mounts = {m["mountPath"]: m for m in server_container(docs)["volumeMounts"]}
    assert mounts["/voices"] == {"name": "voices", "mountPath": "/voices", "readOnly": True}
    # the base's volumes and mounts are all still there
    assert {"/models", "/tmp", "/data"} <= set(mounts)
    assert {"models", "tmp", "data"} <= set(volumes)
