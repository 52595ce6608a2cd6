"""`tf.distribute` strategies by name: one device, in-process mirrored,
multi-worker mirrored (collective all-reduce over gRPC) and Cloud TPU."""

import glob
import json
import os
import socket
import threading

import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")

# Seconds a TPU reachability probe (a TCP connect, a GCE metadata lookup) may take.
TPU_PROBE_TIMEOUT = 3.0
_TPU_ENV_VARS = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")
_CLUSTER_JOBS = ("chief", "worker", "evaluator")


def get_strategy(name="default", num_gpus=None, worker_hosts=None, task_index=None, tpu=None):
    """Returns a `tf.distribute.Strategy` by name.

    Create the strategy first, before building models or running other
    TensorFlow ops (multi-worker collectives and TPUs must be configured
    before TensorFlow initialises its devices), then build and compile the
    model inside `strategy.scope()` and call `model.fit` as usual.

    Args:
        name: one of `STRATEGIES`:
            "default": no distribution (`tf.distribute.get_strategy()`).
            "one_device": `OneDeviceStrategy` on the first GPU, else the CPU.
            "mirrored": in-process `MirroredStrategy` over all local GPUs (or
                the first `num_gpus`). With no GPU (or `num_gpus=0`) it
                mirrors over the CPU: over every logical CPU device when the
                CPU was split with `tf.config.set_logical_device_configuration`
                (2 logical CPUs give 2 replicas), else over the one CPU. The
                devices are passed explicitly, so a `TF_CONFIG` in the
                environment never turns this into a cluster strategy.
            "multi_worker_mirrored": `MultiWorkerMirroredStrategy`, one process
                per machine, synchronous collective all-reduce over gRPC (ring
                on CPU, NCCL on GPUs: `CommunicationImplementation.AUTO`). The
                cluster comes from `worker_hosts` + `task_index` when given,
                else from the `TF_CONFIG` environment variable (validated here).
                Every worker runs the same program; each uses its local GPUs
                (or its CPU as one replica).
            "tpu": `TPUStrategy` on a Cloud TPU. Fails fast with a ValueError
                when no TPU can be found (see `tpu`).
        num_gpus: "mirrored": how many local GPUs to use (0: the CPU);
            "one_device": 1 (the first GPU, which must exist) or 0 (the CPU).
        worker_hosts: "multi_worker_mirrored": the workers' "host:port"
            addresses, as a list or a comma-separated string, the same on
            every worker. Overrides `TF_CONFIG` (with a warning).
        task_index: with `worker_hosts`: this process's index in it.
        tpu: "tpu": a Cloud TPU name (resolved through the GCE metadata
            server and the Cloud TPU API, so only on Google Cloud), a
            "grpc://host:8470" address (TPU nodes), or "local" (TPU VMs).
            Default: the TPU_NAME / KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS /
            TPU_CONFIG environment variables, else "local" when this machine
            has TPU devices (/dev/accel*, /dev/vfio/N).

    Batch sizes are GLOBAL. Every batch size given to kzoo (and to
    `model.fit`) is the batch of one optimizer step over all replicas: Keras
    distributes each batch, so the per-replica batch is
    `global_batch // strategy.num_replicas_in_sync` (keep it divisible), and
    the loss of each replica is scaled by `1 / num_replicas_in_sync` so the
    summed gradients equal those of the single-device global batch.
    Learning-rate schedules (warmup, decay) count optimizer steps, which are
    global steps: adding replicas at a fixed global batch leaves
    `steps = examples // global_batch` and the schedule unchanged.

    Multi-worker notes (Keras 3, TensorFlow backend):
      * `model.fit` distributes its input with
        `strategy.experimental_distribute_dataset`, which auto-shards it
        across workers. NumPy inputs get `AutoShardPolicy.DATA` from Keras:
        every worker must pass the SAME full arrays, and each global batch is
        split between the workers' replicas. For a `tf.data.Dataset`, batch
        with the global batch size; the default policy (AUTO) shards by file
        when the dataset reads files and by DATA otherwise; set
        `tf.data.Options().experimental_distribute.auto_shard_policy` to DATA
        for an element-exact split (each step's per-replica batches, over all
        workers, are then exactly the single-process global batch), or OFF
        when each worker's dataset is already its own shard. Every worker
        must run the same number of steps: use a finite dataset with the same
        number of global batches everywhere (`drop_remainder=True`) or pass
        `steps_per_epoch`.
      * Keras 3's `fit` / `evaluate` / `predict` do not work with the stock
        `tf.distribute.MultiWorkerMirroredStrategy` once there are two
        workers (keras-team/keras#20585): kzoo returns a subclass whose
        `reduce` accepts what Keras passes (see `_MultiWorkerMirroredStrategy`).
      * Every worker must run the same `fit` / `evaluate` calls (they meet in
        collectives). Keras 3 does not save "on the chief only" for you:
        write checkpoints, exports and logs only where `is_chief(strategy)`
        (or to per-worker paths), or the workers overwrite each other.
      * Variables created in the scope start equal on every worker (the
        chief's initial values are broadcast).

    Examples:
        >>> strategy = get_strategy()  # no distribution
        >>> strategy = get_strategy("one_device")  # GPU:0, else the CPU
        >>> strategy = get_strategy("mirrored", num_gpus=2)  # doctest: +SKIP
        >>> with strategy.scope():  # doctest: +SKIP
        ...     model = bert_classifier(config, num_classes=2)
        ...     model.compile(...)
        >>> model.fit(train_ds, epochs=3)  # train_ds batched with the GLOBAL batch  # doctest: +SKIP

        Two machines, the same script on both; TF_CONFIG differs only in the
        task index (0 on 10.0.0.1, 1 on 10.0.0.2):

        >>> os.environ["TF_CONFIG"] = json.dumps({  # doctest: +SKIP
        ...     "cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
        ...     "task": {"type": "worker", "index": 0}})
        >>> strategy = get_strategy("multi_worker_mirrored")  # doctest: +SKIP

        or the same cluster without TF_CONFIG:

        >>> strategy = get_strategy("multi_worker_mirrored",  # doctest: +SKIP
        ...                         worker_hosts="10.0.0.1:12345,10.0.0.2:12345", task_index=0)

        Cloud TPU (a TPU VM; a TPU node by address; a TPU node by name on GCE):

        >>> strategy = get_strategy("tpu", tpu="local")  # doctest: +SKIP
        >>> strategy = get_strategy("tpu", tpu="grpc://10.0.0.3:8470")  # doctest: +SKIP
        >>> strategy = get_strategy("tpu", tpu="my-tpu")  # doctest: +SKIP

    Raises:
        ValueError: an unknown name, an option that does not apply to `name`
            (`num_gpus` outside mirrored/one_device, `worker_hosts` or
            `task_index` outside multi_worker_mirrored, `tpu` outside tpu),
            more GPUs than present, a bad or missing cluster (`TF_CONFIG`,
            `worker_hosts`, `task_index`), or no TPU found.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown distribution strategy {name!r}; expected one of {list(STRATEGIES)}")
    if num_gpus is not None:
        if name not in ("mirrored", "one_device"):
            raise ValueError(f"num_gpus only applies to 'mirrored' and 'one_device', not {name!r}")
        if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 0:
            raise ValueError(f"num_gpus must be an integer >= 0, got {num_gpus!r}")
    for arg, value in (("worker_hosts", worker_hosts), ("task_index", task_index)):
        if value is not None and name != "multi_worker_mirrored":
            raise ValueError(f"{arg} only applies to 'multi_worker_mirrored', not {name!r}")
    if tpu is not None and name != "tpu":
        raise ValueError(f"tpu only applies to the 'tpu' strategy, not {name!r}")

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return _one_device(num_gpus)
    if name == "mirrored":
        return _mirrored(num_gpus)
    if name == "multi_worker_mirrored":
        return _multi_worker_mirrored(worker_hosts, task_index)
    return _tpu_strategy(tpu)


def strategy_summary(strategy=None):
    """A one-line description for logs (default: the current strategy).

    E.g. "MirroredStrategy: 2 replicas in sync (local: CPU:0, CPU:1)" or
    "MultiWorkerMirroredStrategy: 2 replicas in sync (local: CPU:0), task worker:1 of 2 workers".
    """
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    replicas = strategy.num_replicas_in_sync
    cls = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        cls = "MultiWorkerMirroredStrategy"  # the class is CollectiveAllReduceStrategy (or kzoo's subclass)
    elif cls == "_DefaultDistributionStrategy":
        cls = "default strategy (no distribution)"
    text = f"{cls}: {replicas} replica{'s' if replicas != 1 else ''} in sync"
    try:
        devices = strategy.extended.worker_devices
    except (RuntimeError, NotImplementedError, AttributeError):  # the default strategy has none
        devices = ()
    if devices:
        short = [d.rsplit("/", 1)[-1].replace("device:", "") for d in devices]
        text += f" (local: {', '.join(short) if len(short) <= 4 else short[0] + ' .. ' + short[-1]})"
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if jobs and not is_tpu_strategy(strategy):
        workers = sum(len(jobs.get(job, ())) for job in ("chief", "worker"))
        text += f", task {resolver.task_type}:{resolver.task_id} of {workers} worker{'s' if workers != 1 else ''}"
    elif is_tpu_strategy(strategy) and resolver is not None:
        text += f", TPU {getattr(resolver, '_tpu', '?')}"
    return text


def is_tpu_strategy(strategy=None):
    """Whether `strategy` (default: the current one) is a `TPUStrategy` (any version)."""
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    tpu_classes = (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy,
                   tf.compat.v1.distribute.experimental.TPUStrategy)
    return isinstance(strategy, tpu_classes)


def is_chief(strategy=None):
    """Whether this process should write checkpoints, exports and logs.

    True except on the non-chief workers of a multi-worker strategy (the
    chief is the "chief" task, else worker 0 when the cluster has no chief).
    """
    strategy = tf.distribute.get_strategy() if strategy is None else strategy
    extended = getattr(strategy, "extended", None)
    in_multi_worker = getattr(extended, "_in_multi_worker_mode", None)
    if not callable(in_multi_worker) or not in_multi_worker():
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


# ---------------------------------------------------------------- local


def _one_device(num_gpus):
    if num_gpus is not None and num_gpus > 1:
        raise ValueError(f"one_device uses one device, got num_gpus={num_gpus}; use 'mirrored' for several")
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if num_gpus == 1 and not gpus:
        raise ValueError("num_gpus=1 but this machine has no GPU")
    if num_gpus == 0 or not gpus:
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.OneDeviceStrategy(gpus[0])


def _mirrored(num_gpus):
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise ValueError(f"num_gpus={num_gpus} but this machine has {len(gpus)} GPU(s)")
        gpus = gpus[:num_gpus]
    # No GPU: every logical CPU (one, unless the user split the CPU).
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


# ---------------------------------------------------------------- multi-worker


def _check_address(address, where):
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"{where}: expected a 'host:port' string, got {address!r}")
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{where}: expected a 'host:port' string, got {address!r}")
    return address.strip()


def _check_index(index, count, where):
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"{where} must be an integer, got {index!r}")
    if not 0 <= index < count:
        raise ValueError(f"{where}={index} is out of range for {count} task(s) (0..{count - 1})")


def parse_tf_config(text):
    """Validates a TF_CONFIG string for multi-worker mirrored training.

    Returns `(cluster, task_type, task_index)`; raises a ValueError naming
    TF_CONFIG and the bad field.
    """
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError("TF_CONFIG['cluster'] is missing or not an object; expected e.g. "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}')
    if "ps" in cluster:
        raise ValueError("TF_CONFIG['cluster'] has 'ps' (parameter server) tasks; multi_worker_mirrored uses "
                         "only 'worker' (and an optional 'chief'): use tf.distribute.ParameterServerStrategy")
    unknown = sorted(set(cluster) - set(_CLUSTER_JOBS))
    if unknown:
        raise ValueError(f"TF_CONFIG['cluster'] has unknown job(s) {unknown}; expected 'worker' and optionally 'chief'")
    if "worker" not in cluster and "chief" not in cluster:
        raise ValueError("TF_CONFIG['cluster'] needs a 'worker' list (and optionally a 'chief' list of one address)")
    seen = set()
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"TF_CONFIG['cluster']['{job}'] must be a non-empty list of 'host:port', got {addresses!r}")
        for i, address in enumerate(addresses):
            address = _check_address(address, f"TF_CONFIG['cluster']['{job}'][{i}]")
            if address in seen:
                raise ValueError(f"TF_CONFIG['cluster'] lists {address} twice")
            seen.add(address)
    if len(cluster.get("chief", ())) > 1:
        raise ValueError(f"TF_CONFIG['cluster']['chief'] must have one address, got {cluster['chief']}")
    task = config.get("task")
    if not isinstance(task, dict):
        raise ValueError("TF_CONFIG['task'] is missing or not an object; expected e.g. "
                         '{"type": "worker", "index": 0}')
    task_type, index = task.get("type"), task.get("index")
    if task_type not in ("chief", "worker"):
        detail = " (an evaluator runs outside the training cluster: use another strategy there)" \
            if task_type == "evaluator" else ""
        raise ValueError(f"TF_CONFIG['task']['type'] must be 'worker' or 'chief', got {task_type!r}{detail}")
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG['task']['type'] is {task_type!r} but TF_CONFIG['cluster'] has no {task_type!r} list")
    _check_index(index, len(cluster[task_type]), "TF_CONFIG['task']['index']")
    return cluster, task_type, index


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` with a `reduce` that Keras 3 can use.

    Keras 3 (TensorFlow backend) does not train under the stock strategy with
    two or more workers (open upstream: keras-team/keras#20585,
    keras-team/keras#20329, tensorflow/tensorflow#72388), in two places of
    keras/src/backend/tensorflow/trainer.py:
      * `fit` / `evaluate` / `predict` first call
        `strategy.reduce("MEAN", first_batch, axis=None)` on the whole
        `(x, y)` structure to build the model symbolically
        (`_maybe_symbolic_build`); the multi-worker `reduce` takes a single
        value and fails with "Attempt to convert a value ({...: PerReplica
        ...}) with an unsupported type (<class 'dict'>) to a Tensor".
      * every step, the logs (scalar metric results, already equal on every
        replica) go through `strategy.reduce("MEAN", v, axis=0)`
        (`reduce_per_replica`), which fails with "Invalid reduction
        dimension 0 for input with 0 dimensions".
    So this `reduce` maps over nested structures (as `MirroredStrategy`'s
    does) and reduces a per-replica scalar across replicas only (`axis=None`:
    the mean over replicas, the only meaning a batch axis can have for a
    scalar). Everything else is the stock strategy, and
    `isinstance(s, tf.distribute.MultiWorkerMirroredStrategy)` holds.
    """

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def reduce_one(v):
            if axis is not None:
                local = self.experimental_local_results(v)[0]
                if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    return parent.reduce(reduce_op, v, axis=None)
            return parent.reduce(reduce_op, v, axis=axis)

        return tf.nest.map_structure(reduce_one, value)


def _multi_worker_mirrored(worker_hosts, task_index):
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    tf_config = os.environ.get("TF_CONFIG", "").strip()
    if worker_hosts is None:
        if task_index is not None:
            raise ValueError("task_index was given without worker_hosts")
        if not tf_config:
            raise ValueError(
                "multi_worker_mirrored needs a cluster: set the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}) '
                "or pass worker_hosts='host1:port,host2:port' and task_index")
        parse_tf_config(tf_config)
        # TFConfigClusterResolver reads TF_CONFIG (validated above).
        return _MultiWorkerMirroredStrategy(communication_options=options)

    hosts = worker_hosts.split(",") if isinstance(worker_hosts, str) else worker_hosts
    if not isinstance(hosts, (list, tuple)) or not hosts:
        raise ValueError(f"worker_hosts must be 'host:port,host:port' or a list of 'host:port', got {worker_hosts!r}")
    hosts = [_check_address(h, f"worker_hosts[{i}]") for i, h in enumerate(hosts)]
    if len(set(hosts)) != len(hosts):
        raise ValueError(f"worker_hosts lists an address twice: {hosts}")
    if task_index is None:
        raise ValueError(f"worker_hosts was given without task_index (this worker's index in {hosts})")
    _check_index(task_index, len(hosts), "task_index")
    if tf_config:
        logging.warning("get_strategy: worker_hosts/task_index given; ignoring TF_CONFIG")
    # A SimpleClusterResolver rather than writing TF_CONFIG: it does not
    # change the process environment (which subprocesses inherit, and which
    # MirroredStrategy reads). It does not detect GPUs, so tell it how many.
    num_gpus = len(tf.config.get_visible_devices("GPU"))
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": hosts}), task_type="worker", task_id=task_index, rpc_layer="grpc",
        num_accelerators={"GPU": num_gpus} if num_gpus else None)
    return _MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)


# ---------------------------------------------------------------- TPU


def _bounded(fn, timeout):
    """Runs `fn()` in a daemon thread; (True, result) or (False, error or 'timed out')."""
    result = []

    def target():
        try:
            result.append((True, fn()))
        except Exception as e:  # noqa: BLE001 - reported to the caller
            result.append((False, e))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else (False, f"timed out after {timeout:g} s")


def _tcp_reachable(host, port, timeout=TPU_PROBE_TIMEOUT):
    def connect():
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True

    ok, detail = _bounded(connect, timeout + 0.5)
    return ok, detail


def _local_tpu_devices():
    found = sorted(glob.glob("/dev/accel*")) + sorted(p for p in glob.glob("/dev/vfio/*") if p[-1].isdigit())
    try:
        found += [d.name for d in tf.config.list_physical_devices("TPU")]
    except Exception:  # noqa: BLE001 - no TPU support in this TensorFlow build
        pass
    return found


def _no_tpu(reason, tried):
    return ValueError(f"no TPU found: {reason}. Tried: {'; '.join(tried)}")


def _tpu_strategy(tpu):
    tried = []
    source = "the tpu argument"
    if tpu is None:
        tried.append("tpu argument (not given)")
        for var in _TPU_ENV_VARS:
            if os.environ.get(var, "").strip():
                tpu, source = os.environ[var].strip(), f"${var}"
                break
            tried.append(f"${var} (not set)")
    if tpu is None:
        devices = _local_tpu_devices()
        tried.append("local TPU devices /dev/accel*, /dev/vfio/N, tf.config TPU devices (none)")
        if not devices:
            raise _no_tpu("no TPU name or address given and this machine has no TPU devices "
                          "(pass tpu='name', 'grpc://host:8470' or 'local', or set TPU_NAME)", tried)
        tpu, source = "local", f"local devices {devices[:4]}"
    if not isinstance(tpu, str) or not tpu.strip():
        raise ValueError(f"tpu must be a TPU name, 'grpc://host:port' or 'local', got {tpu!r}")
    tpu = tpu.strip()
    tried.append(f"{tpu!r} from {source}")

    if source == "$TPU_CONFIG":
        tpu = None  # the Cloud TPU client reads the node name, project and zone from TPU_CONFIG
    elif tpu == "local":
        devices = _local_tpu_devices()
        if not devices:
            raise _no_tpu("tpu='local' but this machine has no TPU devices "
                          "(/dev/accel*, /dev/vfio/N, tf.config TPU devices)", tried)
    elif "://" in tpu or "," in tpu or source == "$KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS":
        first = tpu.split(",")[0].strip()
        address = first.split("://", 1)[-1]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            host, port = address, "8470"
        ok, detail = _tcp_reachable(host, port)
        if not ok:
            raise _no_tpu(f"the TPU address {host}:{port} is not reachable ({detail})", tried)
    else:
        # A TPU name: the resolver asks the GCE metadata server for the project and
        # zone, with no timeout (it hangs or waits long off Google Cloud).
        meta = os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_IP") or "metadata.google.internal"
        host, sep, port = meta.rpartition(":")
        if not sep or not port.isdigit():
            host, port = meta, "80"
        ok, detail = _tcp_reachable(host, port)
        if not ok:
            raise _no_tpu(f"TPU name {tpu!r} can only be resolved on Google Cloud, and the GCE metadata server "
                          f"{host}:{port} is not reachable ({detail}); pass tpu='grpc://host:8470' or 'local'", tried)

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise _no_tpu(f"{type(e).__name__}: {e}", tried) from e
    return tf.distribute.TPUStrategy(resolver)
