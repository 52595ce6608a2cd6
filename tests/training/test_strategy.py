"""`get_strategy`: argument and TF_CONFIG validation, local strategies, TPU
fail-fast, and mirrored over split CPUs (in a subprocess)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from kzoo.training import strategy as strategy_lib
from kzoo.training.strategy import STRATEGIES, get_strategy, is_chief, is_tpu_strategy, strategy_summary
from tests.conftest import REPO

TPU_ENV = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG", "GCE_METADATA_HOST", "GCE_METADATA_IP")


def closed_port():
    """A localhost port nothing listens on (bound to port 0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_cluster_env(monkeypatch):
    for var in ("TF_CONFIG",) + TPU_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_strategy_names():
    assert STRATEGIES == ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
    with pytest.raises(ValueError, match=r"unknown distribution strategy 'horovod'.*'multi_worker_mirrored', 'tpu'"):
        get_strategy("horovod")


@pytest.mark.parametrize("name, kwargs, match", [
    ("default", {"num_gpus": 1}, "num_gpus only applies to 'mirrored' and 'one_device'"),
    ("multi_worker_mirrored", {"num_gpus": 0}, "num_gpus only applies"),
    ("tpu", {"num_gpus": 1}, "num_gpus only applies"),
    ("mirrored", {"num_gpus": -1}, "num_gpus must be an integer >= 0"),
    ("mirrored", {"num_gpus": 1.5}, "num_gpus must be an integer >= 0"),
    ("mirrored", {"num_gpus": True}, "num_gpus must be an integer >= 0"),
    ("one_device", {"num_gpus": 2}, "one_device uses one device"),
    ("default", {"worker_hosts": "a:1,b:2"}, "worker_hosts only applies to 'multi_worker_mirrored'"),
    ("mirrored", {"task_index": 0}, "task_index only applies to 'multi_worker_mirrored'"),
    ("tpu", {"worker_hosts": ["a:1"], "task_index": 0}, "worker_hosts only applies"),
    ("mirrored", {"tpu": "local"}, "tpu only applies to the 'tpu' strategy"),
    ("multi_worker_mirrored", {"tpu": "my-tpu"}, "tpu only applies"),
])
def test_options_that_do_not_apply(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_strategy(name, **kwargs)


def test_more_gpus_than_present():
    present = len(tf.config.list_logical_devices("GPU"))
    with pytest.raises(ValueError, match=f"num_gpus={present + 1} but this machine has {present} GPU"):
        get_strategy("mirrored", num_gpus=present + 1)
    if not present:
        with pytest.raises(ValueError, match="num_gpus=1 but this machine has no GPU"):
            get_strategy("one_device", num_gpus=1)


@pytest.mark.parametrize("kwargs, match", [
    ({}, r"set the TF_CONFIG environment variable .* or pass worker_hosts="),
    ({"task_index": 0}, "task_index was given without worker_hosts"),
    ({"worker_hosts": "127.0.0.1:1,127.0.0.1:2"}, "worker_hosts was given without task_index"),
    ({"worker_hosts": "127.0.0.1:1,127.0.0.1:2", "task_index": 2}, r"task_index=2 is out of range for 2 task\(s\)"),
    ({"worker_hosts": ["127.0.0.1:1", "127.0.0.1:2"], "task_index": -1}, "task_index=-1 is out of range"),
    ({"worker_hosts": "127.0.0.1:1", "task_index": "0"}, "task_index must be an integer"),
    ({"worker_hosts": "localhost", "task_index": 0}, r"worker_hosts\[0\]: expected a 'host:port'"),
    ({"worker_hosts": "a:1,b:port", "task_index": 0}, r"worker_hosts\[1\]: expected a 'host:port'"),
    ({"worker_hosts": "a:1,,b:2", "task_index": 0}, r"worker_hosts\[1\]"),
    ({"worker_hosts": "a:99999", "task_index": 0}, "expected a 'host:port'"),
    ({"worker_hosts": [], "task_index": 0}, "worker_hosts must be"),
    ({"worker_hosts": 5, "task_index": 0}, "worker_hosts must be"),
    ({"worker_hosts": "a:1,a:1", "task_index": 0}, "lists an address twice"),
])
def test_multi_worker_arguments(no_cluster_env, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_strategy("multi_worker_mirrored", **kwargs)


def tf_config(cluster=None, task=None, **extra):
    config = {"cluster": cluster if cluster is not None else {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
              "task": task if task is not None else {"type": "worker", "index": 0}}
    config.update(extra)
    return json.dumps(config)


@pytest.mark.parametrize("value, match", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ("[1, 2]", "TF_CONFIG must be a JSON object, got list"),
    ('{"task": {"type": "worker", "index": 0}}', r"TF_CONFIG\['cluster'\] is missing"),
    (tf_config(cluster={}), r"TF_CONFIG\['cluster'\] is missing or not an object"),
    (tf_config(cluster=["10.0.0.1:2222"]), r"TF_CONFIG\['cluster'\] is missing or not an object"),
    (tf_config(cluster={"worker": ["a:1"], "ps": ["b:2"]}), r"'ps' .*ParameterServerStrategy"),
    (tf_config(cluster={"worker": ["a:1"], "master": ["b:2"]}), r"unknown job\(s\) \['master'\]"),
    (tf_config(cluster={"evaluator": ["a:1"]}), r"needs a 'worker' list"),
    (tf_config(cluster={"worker": "a:1,b:2"}), r"TF_CONFIG\['cluster'\]\['worker'\] must be a non-empty list"),
    (tf_config(cluster={"worker": []}), r"TF_CONFIG\['cluster'\]\['worker'\] must be a non-empty list"),
    (tf_config(cluster={"worker": ["a:1", "b"]}), r"TF_CONFIG\['cluster'\]\['worker'\]\[1\]: expected a 'host:port'"),
    (tf_config(cluster={"worker": ["a:1", 7]}), r"TF_CONFIG\['cluster'\]\['worker'\]\[1\]"),
    (tf_config(cluster={"worker": ["a:1", "a:1"]}), "lists a:1 twice"),
    (tf_config(cluster={"chief": ["a:1", "b:2"], "worker": ["c:3"]}), r"\['chief'\] must have one address"),
    ('{"cluster": {"worker": ["a:1"]}}', r"TF_CONFIG\['task'\] is missing"),
    (tf_config(task={"type": "ps", "index": 0}), r"TF_CONFIG\['task'\]\['type'\] must be 'worker' or 'chief'"),
    (tf_config(task={"type": "evaluator", "index": 0}), "an evaluator runs outside the training cluster"),
    (tf_config(task={"index": 0}), r"TF_CONFIG\['task'\]\['type'\] must be"),
    (tf_config(task={"type": "chief", "index": 0}), r"\['type'\] is 'chief' but TF_CONFIG\['cluster'\] has no 'chief'"),
    (tf_config(task={"type": "worker", "index": 2}), r"TF_CONFIG\['task'\]\['index'\]=2 is out of range for 2"),
    (tf_config(task={"type": "worker", "index": -1}), r"TF_CONFIG\['task'\]\['index'\]=-1 is out of range"),
    (tf_config(task={"type": "worker", "index": "0"}), r"TF_CONFIG\['task'\]\['index'\] must be an integer"),
    (tf_config(task={"type": "worker", "index": True}), r"TF_CONFIG\['task'\]\['index'\] must be an integer"),
    (tf_config(task={"type": "worker"}), r"TF_CONFIG\['task'\]\['index'\] must be an integer, got None"),
])
def test_malformed_tf_config(no_cluster_env, value, match):
    no_cluster_env.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match=match):
        get_strategy("multi_worker_mirrored")


def test_valid_tf_config_parses():
    # Only parsed: creating the strategy would start collectives in this process.
    cluster, task_type, index = strategy_lib.parse_tf_config(tf_config(
        cluster={"chief": ["a:1"], "worker": ["b:2", "c:3"], "evaluator": ["d:4"]},
        task={"type": "worker", "index": 1}))
    assert (task_type, index) == ("worker", 1) and cluster["worker"] == ["b:2", "c:3"]
    assert strategy_lib.parse_tf_config(tf_config())[1:] == ("worker", 0)
    assert strategy_lib.parse_tf_config(tf_config(cluster={"chief": ["[::1]:5"]}, task={"type": "chief", "index": 0}))


def test_local_strategies():
    cpus = len(tf.config.list_logical_devices("CPU"))
    gpus = len(tf.config.list_logical_devices("GPU"))
    default = get_strategy()
    assert default is tf.distribute.get_strategy() and default.num_replicas_in_sync == 1
    assert strategy_summary(default) == "default strategy (no distribution): 1 replica in sync"

    one = get_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and one.num_replicas_in_sync == 1
    assert strategy_summary(one) == f"OneDeviceStrategy: 1 replica in sync (local: {'GPU' if gpus else 'CPU'}:0)"
    cpu = get_strategy("one_device", num_gpus=0)
    assert cpu.extended.worker_devices[0].endswith("CPU:0")

    mirrored = get_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == (gpus or cpus)
    assert strategy_summary(mirrored).startswith(f"MirroredStrategy: {gpus or cpus} replica")
    assert get_strategy("mirrored", num_gpus=0).num_replicas_in_sync == cpus
    for s in (default, one, mirrored):
        assert not is_tpu_strategy(s) and is_chief(s)
    assert not is_tpu_strategy() and is_chief()


@pytest.fixture
def no_tpu_here():
    if strategy_lib._local_tpu_devices():
        pytest.skip("this machine has TPU devices")


def timed_error(**kwargs):
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        get_strategy("tpu", **kwargs)
    return str(info.value), time.monotonic() - start


def test_tpu_fails_fast_without_tpu(no_cluster_env, no_tpu_here):
    bound = 2 * strategy_lib.TPU_PROBE_TIMEOUT + 2  # seconds; each case takes ~0 s here
    message, seconds = timed_error()
    assert seconds < bound, seconds
    assert message.startswith("no TPU found: no TPU name or address given and this machine has no TPU devices")
    for tried in ("tpu argument (not given)", "$TPU_NAME (not set)", "/dev/accel*"):
        assert tried in message

    message, seconds = timed_error(tpu="local")
    assert seconds < bound and "tpu='local' but this machine has no TPU devices" in message, (seconds, message)

    port = closed_port()
    message, seconds = timed_error(tpu=f"grpc://127.0.0.1:{port}")
    assert seconds < bound and f"TPU address 127.0.0.1:{port} is not reachable" in message, (seconds, message)

    no_cluster_env.setenv("TPU_NAME", f"grpc://127.0.0.1:{port}")  # the name may come from the environment
    message, seconds = timed_error()
    assert seconds < bound and "from $TPU_NAME" in message and "not reachable" in message, (seconds, message)
    no_cluster_env.delenv("TPU_NAME")

    # A TPU name needs the GCE metadata server: unreachable (the default
    # metadata.google.internal off Google Cloud, or a closed port) fails within the probe timeout.
    message, seconds = timed_error(tpu="my-tpu")
    assert seconds < bound and "TPU name 'my-tpu' can only be resolved on Google Cloud" in message, (seconds, message)
    no_cluster_env.setenv("GCE_METADATA_HOST", f"127.0.0.1:{port}")
    message, seconds = timed_error(tpu="my-tpu")
    assert seconds < bound and f"metadata server 127.0.0.1:{port} is not reachable" in message, (seconds, message)

    with pytest.raises(ValueError, match="tpu must be a TPU name"):
        get_strategy("tpu", tpu="  ")


def test_tpu_probe_is_bounded(monkeypatch):
    # A lookup that hangs (as DNS or a black-holed address can) is cut off at the timeout.
    monkeypatch.setattr(strategy_lib.socket, "create_connection", lambda *a, **k: time.sleep(5))
    start = time.monotonic()
    ok, detail = strategy_lib._tcp_reachable("10.255.255.1", 8470, timeout=0.5)
    assert not ok and "timed out" in detail and time.monotonic() - start < 3


SPLIT_CPU_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from kzoo.training.strategy import get_strategy, strategy_summary
    mirrored = get_strategy("mirrored")
    x = mirrored.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group + 1)
    print("RESULT " + json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "devices": list(mirrored.extended.worker_devices),
        "sum": int(mirrored.reduce("SUM", x, axis=None)),
        "cpu_only": get_strategy("mirrored", num_gpus=0).num_replicas_in_sync,
        "one_device": get_strategy("one_device").num_replicas_in_sync,
        "summary": strategy_summary(mirrored),
    }))
""")


def test_mirrored_uses_every_logical_cpu(tmp_path):
    script = tmp_path / "split_cpu.py"
    script.write_text(SPLIT_CPU_SCRIPT)
    # A TF_CONFIG in the environment must not turn "mirrored" into a cluster strategy.
    cluster = tf_config(cluster={"worker": [f"127.0.0.1:{closed_port()}", "127.0.0.1:1"]})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", PYTHONPATH=REPO, TF_CONFIG=cluster)
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              env=env, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"split-CPU subprocess timed out after 120 s; stderr tail:\n{(e.stderr or '')[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"split-CPU subprocess failed (rc {proc.returncode}); stderr tail:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2 and result["cpu_only"] == 2 and result["one_device"] == 1, result
    assert [d.rsplit("/", 1)[-1] for d in result["devices"]] == ["device:CPU:0", "device:CPU:1"], result
    assert all(d.startswith("/job:localhost/") for d in result["devices"]), result
    assert result["sum"] == 3  # replica ids 0 and 1, plus one each
    assert result["summary"] == "MirroredStrategy: 2 replicas in sync (local: CPU:0, CPU:1)"
