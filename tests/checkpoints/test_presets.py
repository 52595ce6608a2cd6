"""kzoo.presets: the registry, and fetch() against a local HTTP server and file:// URLs.

The server (127.0.0.1, a free port, one per module) serves tiny archives built here: a fake official folder
(bert_config.json, vocab.txt and two small files standing in for the checkpoint). The tests are about transport
and the cache, not weights; the real registry's URLs are never contacted (test presets are `Preset` objects).
"""

import dataclasses
import hashlib
import http.server
import io
import json
import os
import socket
import stat
import tarfile
import threading
import zipfile

import pytest

from kzoo import presets
from kzoo.presets import (CacheCorruptedError, ChecksumError, DownloadError, MissingFilesError, Preset,
                                      UnknownPresetError, UnsafeArchiveError, fetch)

OFFICIAL_FILES = ("bert_config.json", "vocab.txt", "bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001")
CONTENT = {
    "bert_config.json": json.dumps({"hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 5}).encode(),
    "vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n",
    "bert_model.ckpt.index": bytes(range(256)) * 4,
    "bert_model.ckpt.data-00000-of-00001": os.urandom(300_000),  # a few chunks' worth for the progress bar
}
HF_CONTENT = {"config.json": b'{"model_type": "roberta"}', "model.safetensors": os.urandom(50_000),
              "vocab.json": b'{"a": 0}', "merges.txt": b"#version: 0.2\na b\n"}


def make_zip(members, top="uncased_L-1_H-8_A-1"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
    return buf.getvalue()


def make_tar(members, top=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving `routes` {path: (body, options)}; counts requests per path.

    options: "length" (the Content-Length sent, default len(body)), "stall" (send half the body, then wait for
    `release` (bounded) before closing), "status" (an HTTP error code)."""

    def __init__(self):
        self.routes, self.counts, self.release = {}, {}, threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # bounded requests: a stuck client cannot hold a thread forever

            def do_GET(self):
                outer.counts[self.path] = outer.counts.get(self.path, 0) + 1
                if self.path not in outer.routes:
                    self.send_error(404)
                    return
                body, options = outer.routes[self.path]
                if options.get("status"):
                    self.send_error(options["status"])
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(options.get("length", len(body))))
                self.end_headers()
                if options.get("stall"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    outer.release.wait(10)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path, body, **options):
        self.routes[path] = (body, options)
        return self.base + path

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("KZOO_HOME", str(root))
    return root


def official(name, urls, sha256=None, files=OFFICIAL_FILES):
    return Preset(name=name, family="bert", format="official", urls=urls, files=files, lower_case=True,
                  description="test: 1-layer, 8-hidden", sha256=sha256)


def assert_nothing_cached(cache, name):
    assert not (cache / name).exists()
    leftovers = [p.name for p in cache.iterdir()] if cache.exists() else []
    assert not [p for p in leftovers if not p.startswith(presets.PARTIAL_PREFIX)], leftovers
    assert not [p for p in leftovers if p.startswith(presets.PARTIAL_PREFIX)], f"partial folders left: {leftovers}"


def assert_files(folder, content=CONTENT):
    for name, data in content.items():
        with open(os.path.join(folder, name), "rb") as f:
            assert f.read() == data, name


# ---------------------------------------------------------------------------------------------------------------
# The registry


def test_registry_families_names_and_sources():
    all_presets = presets.list_presets()
    names = [p.name for p in all_presets]
    assert len(names) == len(set(names)) == len(presets.PRESETS)
    assert names == [p.name for p in presets.list_presets()]  # stable order
    assert all(p.family in presets.FAMILIES and p.format in presets.FORMATS for p in all_presets)
    assert {p.family for p in all_presets} == set(presets.FAMILIES)
    for required in ("bert_base_uncased", "bert_base_cased", "bert_large_uncased", "bert_large_cased",
                     "bert_base_multilingual_cased", "bert_large_uncased_wwm", "bert_large_cased_wwm",
                     "albert_base_v2", "albert_large_v2", "electra_small", "electra_base", "electra_large",
                     "roberta_base", "roberta_large", "xlm_roberta_base", "distilbert_base_uncased", "minilm",
                     "deberta_v3_xsmall", "deberta_v3_small", "deberta_v3_base", "deberta_v3_large"):
        assert presets.is_preset(required), required
    small = [p for p in all_presets if p.name.startswith("bert_uncased_L-")]
    assert len(small) == 24
    assert {(p.num_layers, p.hidden_size) for p in small} == {(l, h) for l in (2, 4, 6, 8, 10, 12)
                                                              for h in (128, 256, 512, 768)}
    for alias, target in presets.ALIASES.items():
        assert alias not in presets.PRESETS and presets.get_preset(alias).name == target
    assert presets.get_preset("bert_tiny").urls == (
        "https://storage.googleapis.com/bert_models/2020_02_20/uncased_L-2_H-128_A-2.zip",)
    for p in all_presets:
        assert p.description and p.source and p.num_layers and p.hidden_size, p.name
        assert all(presets._HEX64.match(v) for _, v in p.sha256 or ()), p.name


def test_registry_google_entries_are_https_archives_and_hf_entries_complete():
    for p in presets.list_presets(format="official"):
        assert len(p.urls) == 1 and p.urls[0].startswith("https://storage.googleapis.com/"), p.name
        assert p.is_archive and presets._archive_kind(presets._url_filename(p.urls[0])), p.name
        assert any(f.endswith(".index") for f in p.files) and any(".data-" in f for f in p.files), p.name
        assert any(f in p.files for f in ("vocab.txt", "30k-clean.model")), p.name
    for p in presets.list_presets(format="hf"):
        if p.package:
            assert p.name == "minilm" and p.urls == ()
            continue
        repo = p.source.removeprefix("huggingface.co/")
        assert [presets._url_filename(u) for u in p.urls] == list(p.files)
        assert all(u == f"https://huggingface.co/{repo}/resolve/main/{f}" for u, f in zip(p.urls, p.files))
        # microsoft's DeBERTa-v3 repositories carry pytorch_model.bin (reading it needs torch), not safetensors
        weights = "pytorch_model.bin" if p.family == "deberta_v2" else "model.safetensors"
        assert "config.json" in p.files and weights in p.files, p.name
        tokenizer = {"roberta": {"vocab.json", "merges.txt"}, "xlm_roberta": {"sentencepiece.bpe.model"},
                     "distilbert": {"vocab.txt"}, "deberta_v2": {"spm.model", "tokenizer_config.json"}}[p.family]
        assert tokenizer <= set(p.files), p.name
        assert not p.is_archive


def test_bert_num_params_matches_keras_hub_counts():
    # keras-hub's preset metadata: bert_tiny_en_uncased, bert_small_en_uncased, bert_base_en_uncased, bert_base_en
    assert presets.bert_num_params(2, 128) == 4385920
    assert presets.bert_num_params(4, 512) == 28763648
    assert presets.bert_num_params(12, 768) == 109482240
    assert presets.bert_num_params(12, 768, vocab_size=28996) == 108310272


def test_format_table_lists_every_preset():
    table = presets.format_table()
    lines = table.splitlines()
    assert lines[0] == "| name | family | format | casing | size | source |"
    assert len(lines) == 2 + len(presets.PRESETS)
    assert "| roberta_base | roberta | hf | cased | 12L/768H/12A, 124M | huggingface.co/FacebookAI/roberta-base |" \
        in lines
    plain = presets.format_table(["electra_small", "bert_tiny"], markdown=False).splitlines()
    assert plain[0].split() == ["name", "family", "format", "casing", "size", "source"] and len(plain) == 4
    assert plain[3].startswith("bert_uncased_L-2_H-128_A-2 ")


def test_unknown_name_and_invalid_presets():
    with pytest.raises(UnknownPresetError, match="did you mean bert_base_uncased"):
        presets.get_preset("bert_base_uncase")
    with pytest.raises(ValueError, match="family 'gpt'"):
        Preset(name="x", family="gpt", format="hf", urls=("https://a/b",), files=("b",), lower_case=True,
               description="")
    with pytest.raises(ValueError, match="64 hex"):
        official("x", ("https://a/b.zip",), sha256="abc")
    with pytest.raises(ValueError, match="a name is"):
        official("../x", ("https://a/b.zip",))


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("KZOO_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert presets.cache_root() == str(tmp_path / "xdg" / "kzoo")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert presets.cache_root() == str(tmp_path / "home" / ".cache" / "kzoo")
    monkeypatch.setenv("KZOO_HOME", str(tmp_path / "k"))
    assert presets.cache_path("bert_tiny") == str(tmp_path / "k" / "bert_uncased_L-2_H-128_A-2")
    assert presets.cache_root(tmp_path / "explicit") == str(tmp_path / "explicit")


def test_minilm_resolves_to_the_pip_package():
    from kzoo.checkpoints.pretrained import minilm_folder

    try:
        expected = minilm_folder()
    except ValueError as e:
        pytest.skip(str(e))
    assert fetch("minilm") == expected


# ---------------------------------------------------------------------------------------------------------------
# fetch: good archives, the cache, offline use


def test_zip_download_then_cached_without_network(server, cache):
    url = server.serve("/good/uncased_L-1_H-8_A-1.zip", make_zip(CONTENT))
    preset = official("test_zip", (url,))
    folder = fetch(preset, progress=False)
    assert folder == str(cache / "test_zip" / "uncased_L-1_H-8_A-1")  # the archive's own top folder
    assert_files(folder)
    manifest = json.loads((cache / "test_zip" / presets.MANIFEST).read_text())
    assert manifest["sources"][0]["url"] == url and not manifest["sources"][0]["published_sha256"]
    assert manifest["sources"][0]["bytes"] == len(server.routes["/good/uncased_L-1_H-8_A-1.zip"][0])
    assert set(manifest["files"]) == {f"uncased_L-1_H-8_A-1/{n}" for n in CONTENT}
    assert server.counts["/good/uncased_L-1_H-8_A-1.zip"] == 1
    assert fetch(preset, progress=False) == folder
    assert fetch(dataclasses.replace(preset, urls=("http://127.0.0.1:9/unreachable.zip",)), progress=False) == folder
    assert server.counts["/good/uncased_L-1_H-8_A-1.zip"] == 1  # served from the cache, no request
    assert [p.name for p in cache.iterdir()] == ["test_zip"]


def test_flat_tar_gz_with_published_checksum(server, cache):
    body = make_tar(CONTENT)  # like the small BERT zips: no top-level folder
    url = server.serve("/good/flat.tar.gz", body)
    preset = official("test_tar", (url,), sha256=hashlib.sha256(body).hexdigest())
    folder = fetch(preset, progress=False)
    assert folder == str(cache / "test_tar")
    assert_files(folder)
    assert json.loads((cache / "test_tar" / presets.MANIFEST).read_text())["sources"][0]["published_sha256"]
    assert fetch(preset, progress=False) == folder and server.counts["/good/flat.tar.gz"] == 1


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_file_url(tmp_path, cache, kind):
    archive = tmp_path / f"local.{kind}"
    archive.write_bytes(make_zip(CONTENT) if kind == "zip" else make_tar(CONTENT, top="model"))
    folder = fetch(official(f"test_file_{kind}", (archive.as_uri(),)), progress=False)
    assert os.path.basename(folder) in ("uncased_L-1_H-8_A-1", "model")
    assert_files(folder)


def test_hf_style_multi_file_preset(server, cache):
    urls = tuple(server.serve(f"/hf/org/repo/resolve/main/{name}", data) for name, data in HF_CONTENT.items())
    preset = Preset(name="test_hf", family="roberta", format="hf", urls=urls, files=tuple(HF_CONTENT),
                    lower_case=False, description="test",
                    sha256={"model.safetensors": hashlib.sha256(HF_CONTENT["model.safetensors"]).hexdigest()})
    folder = fetch(preset, progress=False)
    assert folder == str(cache / "test_hf")
    assert_files(folder, HF_CONTENT)
    assert all(server.counts[f"/hf/org/repo/resolve/main/{n}"] == 1 for n in HF_CONTENT)
    sources = json.loads((cache / "test_hf" / presets.MANIFEST).read_text())["sources"]
    assert [s["published_sha256"] for s in sources] == [n == "model.safetensors" for n in HF_CONTENT]
    fetch(preset, progress=False)
    assert all(server.counts[f"/hf/org/repo/resolve/main/{n}"] == 1 for n in HF_CONTENT)


def test_hf_file_missing_on_the_server(server, cache):
    urls = (server.serve("/hf404/config.json", b"{}"), server.base + "/hf404/model.safetensors")
    preset = Preset(name="test_hf404", family="roberta", format="hf", urls=urls,
                    files=("config.json", "model.safetensors"), lower_case=False, description="test")
    with pytest.raises(DownloadError, match=r"could not download .*/hf404/model.safetensors: HTTP 404"):
        fetch(preset, progress=False)
    assert_nothing_cached(cache, "test_hf404")


def test_progress_bar_knows_the_size(server, cache, capsys):
    url = server.serve("/bar/model.zip", make_zip(CONTENT))
    fetch(official("test_bar", (url,)))  # progress=True: a line on stderr
    err = capsys.readouterr().err
    size_mb = f"{len(server.routes['/bar/model.zip'][0]) / 1e6:.1f}"
    assert "test_bar: model.zip" in err and "100.0%" in err and f"/{size_mb} MB" in err
    calls = []
    fetch(official("test_bar_cb", (url,)), progress=lambda done, total, u: calls.append((done, total, u)))
    assert calls[-1] == (len(server.routes["/bar/model.zip"][0]),) * 2 + (url,)


# ---------------------------------------------------------------------------------------------------------------
# fetch: failures leave nothing that looks cached


def test_truncated_response(server, cache):
    body = make_zip(CONTENT)
    url = server.serve("/short/model.zip", body[:1000], length=len(body))  # Content-Length larger than the body
    with pytest.raises(DownloadError, match=rf"could not download {url}: truncated: received 1000 bytes, the "
                                            rf"server announced {len(body)}"):
        fetch(official("test_short", (url,)), progress=False)
    assert_nothing_cached(cache, "test_short")


def test_broken_archive(server, cache):
    body = make_tar(CONTENT)
    url = server.serve("/broken/model.tar.gz", body[: len(body) // 2])  # honest length, cut archive
    with pytest.raises(DownloadError, match=rf"{url} is not a complete tar archive"):
        fetch(official("test_broken", (url,)), progress=False)
    assert_nothing_cached(cache, "test_broken")
    url = server.serve("/broken/model.zip", make_zip(CONTENT)[:-100])
    with pytest.raises(DownloadError, match=rf"{url} is not a complete zip archive"):
        fetch(official("test_broken_zip", (url,)), progress=False)
    assert_nothing_cached(cache, "test_broken_zip")


def test_wrong_checksum(server, cache):
    url = server.serve("/sum/model.zip", make_zip(CONTENT))
    with pytest.raises(ChecksumError, match=rf"{url} has sha256 [0-9a-f]{{64}}, the published one is 0{{64}}"):
        fetch(official("test_sum", (url,), sha256="0" * 64), progress=False)
    assert_nothing_cached(cache, "test_sum")


def test_required_file_missing_from_the_archive(server, cache):
    members = {k: v for k, v in CONTENT.items() if k != "vocab.txt"}
    url = server.serve("/novocab/model.zip", make_zip(members))
    with pytest.raises(MissingFilesError, match=r"gave no vocab.txt \(looked in uncased_L-1_H-8_A-1/"):
        fetch(official("test_novocab", (url,)), progress=False)
    assert_nothing_cached(cache, "test_novocab")


def _zip_with(name, data=b"x", mode=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for good, content in CONTENT.items():
            zf.writestr(good, content)
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return buf.getvalue()


def _tar_with(name, kind=tarfile.REGTYPE, linkname=""):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for good, content in CONTENT.items():
            info = tarfile.TarInfo(good)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        data = b"evil" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("case,archive,member,why", [
    ("zip_dotdot", lambda: _zip_with("../evil"), "../evil", r"outside the folder"),
    ("zip_nested_dotdot", lambda: _zip_with("model/../../evil"), "model/../../evil", r"outside the folder"),
    ("zip_abs", lambda: _zip_with("/tmp/kzoo_abs_evil"), "/tmp/kzoo_abs_evil", r"absolute path"),
    ("zip_symlink", lambda: _zip_with("link", b"/etc/passwd", stat.S_IFLNK | 0o777), "link", r"symbolic link"),
    ("tar_dotdot", lambda: _tar_with("../evil"), "../evil", r"outside the folder"),
    ("tar_abs", lambda: _tar_with("/tmp/kzoo_abs_evil"), "/tmp/kzoo_abs_evil", r"absolute path"),
    ("tar_symlink", lambda: _tar_with("link", tarfile.SYMTYPE, "/etc/passwd"), "link", r"symbolic link"),
    ("tar_hardlink", lambda: _tar_with("hard", tarfile.LNKTYPE, "/etc/passwd"), "hard", r"hard link"),
    ("tar_device", lambda: _tar_with("dev", tarfile.CHRTYPE), "dev", r"device file"),
])
def test_archive_members_escaping_the_folder(server, cache, tmp_path, case, archive, member, why):
    suffix = "zip" if case.startswith("zip") else "tar.gz"
    url = server.serve(f"/evil/{case}.{suffix}", archive())
    with pytest.raises(UnsafeArchiveError, match=rf"{url}: archive member '{member}' .*{why}"):
        fetch(official(f"test_{case}", (url,)), progress=False)
    assert_nothing_cached(cache, f"test_{case}")
    assert not (cache / "evil").exists() and not (tmp_path / "evil").exists()
    assert not os.path.exists("/tmp/kzoo_abs_evil")


def test_corrupted_cache_is_detected_at_the_next_load(server, cache):
    url = server.serve("/corrupt/model.zip", make_zip(CONTENT))
    preset = official("test_corrupt", (url,))
    folder = fetch(preset, progress=False)
    data = os.path.join(folder, "bert_model.ckpt.data-00000-of-00001")
    original = open(data, "rb").read()
    with open(data, "r+b") as f:  # same size, one byte flipped
        f.seek(1000)
        f.write(bytes([original[1000] ^ 0xFF]))
    with pytest.raises(CacheCorruptedError, match=rf"{data}: cached file has sha256 .*corrupted or changed.*"
                                                  rf"force=True"):
        fetch(preset, progress=False)
    assert fetch(preset, progress=False, verify=False) == folder  # sizes only: the flip goes unseen
    with open(data, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(CacheCorruptedError, match=rf"{data}: cached file has 1000 bytes, {len(original)} were "
                                                  rf"recorded at download \(truncated"):
        fetch(preset, progress=False, verify=False)
    with open(data, "wb") as f:
        f.write(original)
    assert fetch(preset, progress=False) == folder  # restored: verifies again
    os.remove(os.path.join(folder, "vocab.txt"))
    with pytest.raises(CacheCorruptedError, match=r"vocab.txt: cached file is missing"):
        fetch(preset, progress=False)
    assert server.counts["/corrupt/model.zip"] == 1
    assert fetch(preset, progress=False, force=True) == folder  # downloads again, replacing the damaged copy
    assert server.counts["/corrupt/model.zip"] == 2
    assert_files(folder)
    assert sorted(p.name for p in cache.iterdir()) == ["test_corrupt"]


def test_no_server_listening(cache):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/bert/uncased_L-1_H-8_A-1.zip"
    with pytest.raises(DownloadError) as info:
        fetch(official("test_offline", (url,)), progress=False, timeout=2)
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert "preset 'test_offline'" in message and f"could not download {url}: no connection" in message
    assert f"its folder would be {cache / 'test_offline'}" in message
    assert f"To install it by hand, download {url}" in message and "bert_config.json, vocab.txt" in message
    assert_nothing_cached(cache, "test_offline")


def test_files_placed_by_hand_are_adopted_offline(cache):
    folder = cache / "test_by_hand" / "uncased_L-1_H-8_A-1"
    folder.mkdir(parents=True)
    for name, data in CONTENT.items():
        (folder / name).write_bytes(data)
    preset = official("test_by_hand", ("http://127.0.0.1:9/never.zip",))
    assert fetch(preset, progress=False) == str(folder)
    assert json.loads((cache / "test_by_hand" / presets.MANIFEST).read_text())["origin"] == "placed by hand"
    (folder / "vocab.txt").write_bytes(b"changed")
    with pytest.raises(CacheCorruptedError, match="vocab.txt: cached file has 7 bytes"):
        fetch(preset, progress=False)
    incomplete = cache / "test_by_hand2"
    incomplete.mkdir()
    (incomplete / "bert_config.json").write_bytes(b"{}")
    with pytest.raises(MissingFilesError, match=r"lacks vocab.txt, bert_model.ckpt.index"):
        fetch(official("test_by_hand2", ("http://127.0.0.1:9/never.zip",)), progress=False)


def test_fetch_stalled_mid_body_times_out(server, cache):
    url = server.serve("/stall/model.zip", make_zip(CONTENT), stall=True)
    with pytest.raises(DownloadError, match=rf"could not download {url}: interrupted after \d+ of \d+ bytes"):
        fetch(official("test_stall", (url,)), progress=False, timeout=0.5)
    assert_nothing_cached(cache, "test_stall")


class Killed(BaseException):
    """Stands in for KeyboardInterrupt / SystemExit arriving mid-download."""


def test_fetch_killed_half_way_leaves_nothing_complete(server, cache):
    body = make_zip(CONTENT)
    url = server.serve("/killed/model.zip", body)

    def kill(done, total, u):
        if done < total:
            raise Killed()

    preset = official("test_killed", (url,))
    presets.CHUNK_SIZE, chunk = 65536, presets.CHUNK_SIZE  # several chunks, so the kill lands mid-body
    try:
        with pytest.raises(Killed):
            fetch(preset, progress=kill)
    finally:
        presets.CHUNK_SIZE = chunk
    assert_nothing_cached(cache, "test_killed")
    # A SIGKILL cannot clean up: it leaves a .partial-* folder, complete or not, which is never taken for the cache.
    leftover = cache / f"{presets.PARTIAL_PREFIX}test_killed-x1y2" / "tree"
    leftover.mkdir(parents=True)
    for name, data in CONTENT.items():
        (leftover / name).write_bytes(data)
    folder = fetch(preset, progress=False)
    assert server.counts["/killed/model.zip"] == 2 and folder == str(cache / "test_killed" / "uncased_L-1_H-8_A-1")
    os.utime(leftover.parent, (0, 0))  # a day old: cleaned up by the next download
    fetch(official("test_killed2", (url,)), progress=False)
    assert not leftover.parent.exists()
