"""cluster/aws-gpu.yaml, the example `ray up` file, passes the checks `ray up` itself runs first:
Ray's defaults filled in (prepare_config) and Ray's cluster-launcher JSON schema
(validate_config). No cloud call is made."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_FILE = Path(__file__).resolve().parents[1] / "cluster" / "aws-gpu.yaml"


def load() -> dict:
    return yaml.safe_load(CLUSTER_FILE.read_text())


def test_the_cluster_file_is_valid_for_ray_up():
    config = load()
    validate_config(prepare_config(copy.deepcopy(config)))
    # What this project needs on every node, and token auth on every node.
    setup = " ".join(config["setup_commands"])
    assert "torch==2.13.0" in setup and "pip install -q -e ~/crack-sweep" in setup
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    workers = config["available_node_types"]["gpu_worker"]["node_config"]
    assert workers["InstanceType"].startswith("g5.")  # one NVIDIA A10G each


def test_the_schema_check_is_real():
    config = load()
    config["available_node_types"]["gpu_worker"]["min_wrokers"] = 1  # a typo
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        validate_config(prepare_config(config))
