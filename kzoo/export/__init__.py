"""Export: SavedModels with serving signatures, in TF Serving's layout, and
TF Hub-style preprocessing + encoder models."""

from kzoo.export.classifier import export_classifier
from kzoo.export.hub import HubExport, export_hub_encoder
from kzoo.export.precision import SERVING_DTYPES, serving_copy
from kzoo.export.sentence import export_sentence_encoder
from kzoo.export.span_labeler import export_span_labeler
from kzoo.export.tagger import export_tagger
from kzoo.export.versions import committed_versions, latest_version, next_version, write_version
from kzoo.export.warmup import read_warmup_logs, read_warmup_requests, write_warmup_requests
