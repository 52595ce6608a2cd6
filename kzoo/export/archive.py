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
