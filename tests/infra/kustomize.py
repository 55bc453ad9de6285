"""What `kubectl apply -k` applies, built offline: a small kustomize for the features infra/k8s uses.

Supported: `resources` (files, and folders with their own kustomization), `images` (newName, newTag) and
`patches` (strategic merge patches from files, matched by kind and name). Any other field fails loudly, so no
manifest can rely on something these tests do not build.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "images", "patches"}
# Lists merged element by element in a strategic merge patch (their patchMergeKey is `name`); others are replaced.
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes", "volumeMounts", "ports"}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    assert not unknown, f"{folder}: kustomize fields these tests do not build: {unknown}"
    assert kustomization["kind"] == "Kustomization"
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        target = (folder / resource).resolve()
        docs.extend(build(target) if target.is_dir() else copy.deepcopy(load_docs(target)))
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, patch
        for change in load_docs(folder / patch["path"]):
            (doc,) = [
                d for d in docs if d["kind"] == change["kind"] and d["metadata"]["name"] == change["metadata"]["name"]
            ]
            merge(doc, change)
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in containers(doc):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    found: list[dict[str, Any]] = [*spec.get("containers", []), *spec.get("initContainers", [])]
    return found


def merge(base: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic merge patch of `patch` into `base`, in place."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        elif key in MERGE_BY_NAME and isinstance(value, list) and isinstance(base.get(key), list):
            for item in value:
                match = next((b for b in base[key] if b.get("name") == item.get("name")), None)
                if match is None:
                    base[key].append(copy.deepcopy(item))
                else:
                    merge(match, item)
        else:
            base[key] = copy.deepcopy(value)
