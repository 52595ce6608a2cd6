"""TF Serving warm-up requests: `assets.extra/tf_serving_warmup_requests`.

When TF Serving loads a SavedModel version it replays the records of this file (a TFRecord of
`tensorflow.serving.PredictionLog` protos) through the model before marking the version
available, so the first real requests do not pay for lazy initialisation
(https://www.tensorflow.org/tfx/serving/saved_model_warmup). The file must be inside the version
folder when the server first sees it, so write it into the temporary folder of
`kzoo.export.write_version` before the rename (`export_classifier(warmup_texts=...)` does).

Example:
>>> write_warmup_requests("savedmodels/intents/.tmp-3-ab12cd34", "intents",
...                       [{"text": ["play some jazz"]}, {"text": ["hi", "wake me at 7"]}])  # doctest: +SKIP
'savedmodels/intents/.tmp-3-ab12cd34/assets.extra/tf_serving_warmup_requests'
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving refuses a warm-up file with more records than this (saved_model_warmup_util.cc).
MAX_WARMUP_RECORDS = 1000


def _tensor_proto(name, values):
    if isinstance(values, (tf.Tensor, tf.Variable)):
        values = values.numpy()
    array = np.asarray(values, dtype=object if _is_text(values) else None)
    if array.ndim == 0:
        raise ValueError(f"warm-up input {name!r} must have a batch dimension, got a scalar")
    if array.dtype == object:
        return tf.make_tensor_proto([_to_bytes(v) for v in array.reshape(-1)], dtype=tf.string,
                                    shape=array.shape)
    return tf.make_tensor_proto(array)


def _is_text(values):
    if isinstance(values, (str, bytes)):
        return True
    array = np.asarray(values)
    if array.dtype.kind in "USa":
        return True
    return array.dtype == object and array.size > 0 and isinstance(array.reshape(-1)[0], (str, bytes))


def _to_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _signature_def(export_dir, signature_name):
    """The SignatureDef of `export_dir/saved_model.pb`, or None if there is no such file."""
    path = os.path.join(os.fspath(export_dir), "saved_model.pb")
    if not os.path.isfile(path):
        return None
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    signatures = saved_model.meta_graphs[0].signature_def
    if signature_name not in signatures:
        raise ValueError(f"{path} has no signature {signature_name!r}; it has {sorted(signatures)}")
    return signatures[signature_name]


def write_warmup_requests(export_dir, model_name, inputs, signature_name="serving_default", num_records=None):
    """Writes `export_dir/assets.extra/tf_serving_warmup_requests`.

    Args:
        export_dir: a SavedModel folder, normally the temporary folder of a version being written
            (the file must be in place before TF Serving sees the version).
        model_name: `model_spec.name` of the requests (the name the server serves the model as).
        inputs: one request's inputs, a mapping {signature input name: values with a batch
            dimension}, or a list of such mappings, one request each.
        signature_name: `model_spec.signature_name`.
        num_records: how many records to write, cycling through the requests (TF Serving runs
            every record); default one per request; at most 1000, TF Serving's limit.

    Returns:
        The path of the file written.

    Raises:
        ValueError: no requests, too many records, or (when `export_dir` already holds
            `saved_model.pb`) a signature or input names/dtypes that do not match the SavedModel.
    """
    requests = [inputs] if hasattr(inputs, "keys") else list(inputs)
    if not requests or any(not request for request in requests):
        raise ValueError("write_warmup_requests needs at least one request with at least one input")
    num_records = len(requests) if num_records is None else int(num_records)
    if not 1 <= num_records <= MAX_WARMUP_RECORDS:
        raise ValueError(f"num_records must be in [1, {MAX_WARMUP_RECORDS}] (TF Serving's limit), got {num_records}")
    signature = _signature_def(export_dir, signature_name)

    protos = []
    for request_inputs in requests:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
        for name, values in request_inputs.items():
            request.inputs[name].CopyFrom(_tensor_proto(name, values))
        if signature is not None:
            if set(request.inputs) != set(signature.inputs):
                raise ValueError(f"warm-up inputs {sorted(request.inputs)} do not match the inputs "
                                 f"{sorted(signature.inputs)} of signature {signature_name!r}")
            for name, tensor in request.inputs.items():
                want = signature.inputs[name].dtype
                if tensor.dtype != want:
                    raise ValueError(f"warm-up input {name!r} has dtype {tf.dtypes.as_dtype(tensor.dtype).name}; "
                                     f"signature {signature_name!r} takes {tf.dtypes.as_dtype(want).name}")
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        protos.append(log.SerializeToString())

    path = os.path.join(os.fspath(export_dir), WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(num_records):
            writer.write(protos[i % len(protos)])
    return path


def read_warmup_logs(path):
    """The `PredictionLog` protos of a warm-up file (or of the SavedModel folder holding one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]


def read_warmup_requests(path):
    """The inputs of each warm-up record, [{input name: numpy array}] (strings as bytes objects)."""
    return [{name: tf.make_ndarray(tensor) for name, tensor in log.predict_log.request.inputs.items()}
            for log in read_warmup_logs(path)]
