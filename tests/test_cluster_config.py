"""The cluster launcher files (cluster.yaml, cluster-aws.yaml): valid for Ray's own cluster-config
schema and its ``ray up`` preparation, and starting what the README says they start."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parent.parent
FILES = ("cluster.yaml", "cluster-aws.yaml")


def load(name: str) -> dict[str, Any]:
    config = yaml.safe_load((REPO / name).read_text())
    assert isinstance(config, dict)
    return config


@pytest.mark.parametrize("name", FILES)
def test_the_file_passes_rays_schema_and_preparation(name: str) -> None:
    """What ``ray up`` does before it touches a machine: the schema check of the file as written,
    then the provider's defaults merged in and the whole checked again."""
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = load(name)
    jsonschema.validate(config, schema)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["available_node_types"], "no node types after preparation"


def test_the_default_is_the_on_premise_provider() -> None:
    provider = load("cluster.yaml")["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and provider["worker_ips"]


@pytest.mark.parametrize("name", FILES)
def test_nodes_install_thingsray_and_the_head_starts_it_on_the_cluster(name: str) -> None:
    config = load(name)
    assert config["file_mounts"]["~/thingsray"] == "."
    assert config["file_mounts"]["~/thingsray.env"] == "cluster/thingsray.env"
    assert any("pip install" in command and "~/thingsray" in command for command in config["setup_commands"])
    head = config["head_start_ray_commands"]
    starts = [i for i, command in enumerate(head) if "ray start --head" in command]
    ups = [i for i, command in enumerate(head) if "thingsray up --address auto" in command]
    assert starts and ups and starts[0] < ups[0], "Ray starts before the platform joins it"
    assert ". ~/thingsray.env" in head[ups[0]], "the platform reads the settings file"
    assert "--dashboard-host=127.0.0.1" in head[starts[0]], "Ray's dashboard stays off the network"
    assert any("ray start --address=$RAY_HEAD_IP:6379" in command for command in config["worker_start_ray_commands"])


def test_the_settings_example_names_the_external_database() -> None:
    example = (REPO / "cluster" / "thingsray.env.example").read_text()
    assert "THINGSRAY_DATABASE_URL=postgresql://" in example


def test_joining_a_cluster_without_an_external_database_stops_with_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGSRAY_")}
    done = subprocess.run([sys.executable, "-m", "thingsray", "up", "--address", "auto"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "THINGSRAY_DATABASE_URL" in done.stderr and "embedded database serves one machine" in done.stderr
