"""The pod environment runs: the rendered StatefulSet of each overlay, started on this
machine the way its pods start, against the real broker.

Each "pod" gets the container's own command and env (ConfigMap included), `BYTEWAX_POD_NAME =
<statefulset>-<i>`, a hostfile written by the init container's own script (its cluster DNS names
then mapped to 127.0.0.1 and free ports: the one liberty taken, with the API port, since the
pods share this machine's network), and the recovery store made by the `init-recovery` script,
all pods at once as `Parallel` starts them. The cluster forms and decides every input; a second
start with another replica count resumes from the same recovery directory and accounts for the
new input with nothing lost. So a manifest naming a wrong variable, path, port or module fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from operators.config.settings import Settings
from operators.shipments.surge import iter_shipment_surge
from operators.tickets.surge import iter_ticket_surge
from tests.flows.kafka_runs import io_topics, kafka_settings, keyed, produce_raw, with_topics
from tests.flows.recovery_checks import by_id, unaccounted_inputs
from tests.flows.recovery_runs import FlowProcess, TopicFollower, flow_env, free_ports, wait_all
from tests.k8s.manifests import FLOWS, K8S, ROOT, container, env_values, one, render

pytestmark = [pytest.mark.kafka, pytest.mark.dataflow]


def with_replicas(rendered: list[dict[str, Any]], replicas: int) -> list[dict[str, Any]]:
    """The overlay as an operator rescales it: replicas and BYTEWAX_REPLICAS together."""
    sts = one(rendered, "StatefulSet")
    sts["spec"]["replicas"] = replicas
    init = container(sts["spec"]["template"]["spec"], "init-hostfile", init=True)
    for e in init["env"]:
        if e["name"] == "BYTEWAX_REPLICAS":
            e["value"] = str(replicas)
    return rendered


def script_env(spec: dict[str, Any], **extra: str) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "PYTHONPATH": str(ROOT), **env_values(spec), **extra}


def start_pods(
    rendered: list[dict[str, Any]], base_env: dict[str, str], volumes: Path, logs: Path
) -> list[FlowProcess]:
    sts = one(rendered, "StatefulSet")
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    spec = sts["spec"]["template"]["spec"]
    (config_map,) = [obj for obj in rendered if obj["kind"] == "ConfigMap"]
    process = container(spec, "process")
    env = env_values(process)
    mounts = {m["mountPath"]: volumes / m["name"] for m in process["volumeMounts"]}

    def local(path: str) -> str:
        for mount, directory in mounts.items():
            if path == mount or path.startswith(mount + "/"):
                return str(directory / path[len(mount) :].lstrip("/"))
        raise AssertionError(f"{path} is on no volume of the pod")

    for directory in mounts.values():
        directory.mkdir(parents=True, exist_ok=True)
    hostfile = Path(local(env["BYTEWAX_HOSTFILE_PATH"]))
    init = container(spec, "init-hostfile", init=True)
    subprocess.run(
        init["command"],
        env=script_env(init, BYTEWAX_HOSTFILE_PATH=str(hostfile), BYTEWAX_NAMESPACE="test"),
        check=True,
        timeout=10,
    )
    ports = iter(free_ports(replicas))
    text = re.sub(r"(?m)^\S+\.svc\.cluster\.local:9999$", lambda _: f"127.0.0.1:{next(ports)}",
                  hostfile.read_text())  # fmt: skip
    assert len(text.split()) == replicas and "cluster.local" not in text
    hostfile.write_text(text)

    recovery = local(env["BYTEWAX_RECOVERY_DIRECTORY"])
    init = container(spec, "init-recovery", init=True)
    inits = [
        subprocess.Popen(
            init["command"],
            env=script_env(
                init, BYTEWAX_POD_NAME=f"{name}-{i}", BYTEWAX_RECOVERY_DIRECTORY=recovery
            ),
        )
        for i in reversed(range(replicas))  # the waiting pods first, pod 0 last
    ]
    assert [p.wait(60) for p in inits] == [0] * replicas
    parts = int(env_values(init)["BYTEWAX_RECOVERY_PARTS"])
    assert sorted(p.name for p in Path(recovery).iterdir()) == sorted(
        f"part-{i}.sqlite3" for i in range(parts)
    )

    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for i, api_port in enumerate(free_ports(replicas)):
        pod_env = {
            **base_env,
            **config_map["data"],
            "KAFKA_BOOTSTRAP_SERVERS": base_env["KAFKA_BOOTSTRAP_SERVERS"],
            **env,
            "BYTEWAX_POD_NAME": f"{name}-{i}",
            "BYTEWAX_HOSTFILE_PATH": str(hostfile),
            "BYTEWAX_RECOVERY_DIRECTORY": recovery,
            "BYTEWAX_DATAFLOW_API_CACHE_PATH": local(env["BYTEWAX_DATAFLOW_API_CACHE_PATH"]),
            "BYTEWAX_DATAFLOW_API_PORT": str(api_port),
        }
        args = [sys.executable if a == "python" else a for a in process["command"]]
        args += process["args"]
        log = logs / f"{name}-{i}-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, env=pod_env, stdout=out, stderr=out)
        started.append(FlowProcess(args, proc, log))
    return started


def outputs(settings: Settings, flow: str) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The flow's outputs and dead letters, each grouped by id."""
    topics = settings.topics
    out_topic, id_field, dlq = {
        "shipments": (topics.shipments_decisions, "decision_id", topics.shipments_dlq),
        "tickets": (topics.tickets_responses, "response_id", topics.tickets_dlq),
    }[flow]
    with TopicFollower(settings, [out_topic]) as follower:
        out = by_id(follower.read_to_end(), id_field)
    with TopicFollower(settings, [dlq]) as follower:
        dead = by_id(follower.read_to_end(), "dead_letter_id")
    return out, dead


@pytest.mark.timeout(240)
@pytest.mark.parametrize("flow", FLOWS)
def test_the_pods_form_a_cluster_decide_and_resume_with_another_size(
    flow: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    rendered = render(K8S / "overlays" / flow)
    replicas = one(rendered, "StatefulSet")["spec"]["replicas"]
    assert replicas == 2
    settings = with_topics(kafka_settings(kafka_bootstrap, kafka_tail=False), flow)
    base_env = {**flow_env(settings), "SURGEFLOW_KAFKA_TAIL": "false"}
    surge = iter_shipment_surge if flow == "shipments" else iter_ticket_surge
    generated = list(surge(seed=31, steady_events=40, burst_factor=3))
    half = len(generated) // 2
    topic = io_topics(settings, flow)[0]
    volumes = tmp_path / "volumes"  # the claim and the emptyDirs, shared by the two starts

    placed = produce_raw(settings, topic, keyed(generated[:half]))
    wait_all(start_pods(rendered, base_env, volumes, tmp_path / "logs"), timeout=120)
    first, first_dead = outputs(settings, flow)
    assert first, "the cluster decided nothing"
    # bytewax wrote its dataflow.json on the API cache volume (read-only root filesystem)
    assert (volumes / "api-cache" / "dataflow.json").exists()

    placed += produce_raw(settings, topic, keyed(generated[half:]))
    resized = with_replicas(rendered, 1)
    wait_all(start_pods(resized, base_env, volumes, tmp_path / "logs"), timeout=120)
    both, dead = outputs(settings, flow)
    if flow == "shipments":
        assert unaccounted_inputs(generated, placed, both, dead) == []
    else:  # one response per message (a duplicate message is answered once)
        messages = {json.loads(g.record.value or b"")["message_id"] for g in generated}
        answered = {copies[0]["message_id"] for copies in both.values()}
        assert (answered, dead) == (messages, {})
        assert not first_dead
    # resumed, not restarted: the second start did not answer the first half again
    assert len(both) > len(first)
    again = [i for i, copies in both.items() if i in first and len(copies) > 1]
    assert len(again) < len(first)
