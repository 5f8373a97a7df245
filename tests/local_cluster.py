"""A Ray cluster of several nodes on this machine, with token auth, for the multi-node tests.

Run as its own process (the test suite's shared Ray session is a different Ray):
``python tests/local_cluster.py --nodes 2 --cpus 1``. It prints one JSON line,
``{"address", "nodes": [{"node_id", "raylet_pid"}, ...]}`` (the head first), then obeys lines
on stdin: ``kill N`` SIGKILLs node N's raylet by the pid it started and removes the node
(``ray.cluster_utils.Cluster.remove_node(allow_graceful=False)``), answering ``killed N``;
``stop`` or end of input shuts the cluster down.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

# Token auth, Ray's public switch, before ray is imported (Ray reads it once, at import).
os.environ["RAY_AUTH_MODE"] = "token"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per node")
    args = parser.parse_args()

    from sweep.dashboard import ensure_token

    ensure_token()  # ~/.ray/auth_token: every node and driver of this machine reads it
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": args.cpus, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=args.cpus) for _ in range(args.nodes - 1)]
    cluster.wait_for_nodes()
    nodes = [cluster.head_node, *workers]

    def raylet_pid(node) -> int:
        return node.all_processes["raylet"][0].process.pid

    print(json.dumps({"address": cluster.address,
                      "nodes": [{"node_id": n.node_id, "raylet_pid": raylet_pid(n)}
                                for n in nodes]}), flush=True)
    try:
        for line in sys.stdin:
            command = line.split()
            if command[:1] == ["kill"]:
                node = nodes[int(command[1])]
                os.kill(raylet_pid(node), signal.SIGKILL)  # the node dies as a machine would
                cluster.remove_node(node, allow_graceful=False)  # its other processes too
                print(f"killed {command[1]}", flush=True)
            elif command[:1] == ["stop"]:
                break
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
