"""`keras.export.ExportArchive` storing each variable once.

On the TensorFlow backend Keras' archive lists a tracked model's variables twice: as the
`keras.Variable` wrappers `track()` collects (the SavedModel's `variables` and friends) and as
the `tf.Variable`s the endpoints capture (`_all_variables`). They are different Python objects
over the same buffers, so TensorFlow's checkpoint cannot merge them: every weight is written
twice, the SavedModel is twice its size and every process that loads it, TF Serving included,
restores two copies (keras-team/keras#23553). Listing the wrapped `tf.Variable`s instead makes
both lists hold the same objects, which the checkpoint writes once; the SavedModel's attributes
and signatures stay as they were.
"""

import keras
import tensorflow as tf

PACKED_FEATURES = {name: tf.TensorSpec([None, None], tf.int32, name=name)
                   for name in ("input_word_ids", "input_mask", "input_type_ids")}


def _unwrapped(variable):
    value = getattr(variable, "value", None)  # a keras.Variable's tf.Variable on the TensorFlow backend
    return value if hasattr(value, "handle") else variable


def export_archive(*resources):
    """A `keras.export.ExportArchive` tracking `resources` (models, layers, TF resources) whose
    SavedModel stores each variable once."""
    archive = keras.export.ExportArchive()
    for resource in resources:
        archive.track(resource)
    tracked = getattr(archive, "_tf_trackable", None)
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        if tracked is not None and hasattr(tracked, name):
            setattr(tracked, name, [_unwrapped(v) for v in getattr(tracked, name)])
    return archive


def traced_once(model):
    """`model(features, training=False)` on packed int32 features of any batch and length, as one
    `tf.function` with a fixed signature: the endpoints of an export all call it, so the model is
    traced once per export instead of once per endpoint and per tracing pass of the archive (four
    times for a classifier's two signatures). Grappler inlines the call: served latency measured the
    same (MiniLM, batch 1 and 32, interleaved)."""
    return tf.function(lambda features: model(features, training=False), input_signature=[PACKED_FEATURES],
                       autograph=False).get_concrete_function()
