"""``medsamkit serve`` option checks (before any model is loaded) and client import hygiene."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from medsamkit.cli.commands import main
from medsamkit.cli.serve import is_loopback
from remote_server import REPO


def test_loopback_detection():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org", "10.0.0.1"):
        assert not is_loopback(host), host


def test_refuses_non_loopback_without_token(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "Refusing to listen on 0.0.0.0 without a token" in err and "--token-file" in err


def test_token_file_checks(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--token-file", str(short)]) == 2
    assert "shorter than 16" in capsys.readouterr().err
    assert main(["serve", "--port", "0", "--token-file", str(tmp_path / "missing.txt")]) == 2
    assert "Cannot read the token file" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(["serve", "--port", "0", "--token-file", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err


def test_busy_port_is_reported_before_loading_a_model(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_client_imports_without_server_or_model_packages():
    """The remote client needs neither FastAPI/uvicorn (server side) nor torch (the model runs remotely)."""
    code = ("import sys, medsamkit.backend, medsamkit.backend.remote, "
            "medsamkit.protocol, medsamkit.protocol.wire; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch', 'slicer', 'qt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(REPO), env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("spec", ["local", None, "http://127.0.0.1:1", "ftp://x"])
def test_open_backend_dispatch(spec):
    from medsamkit.backend import is_remote_spec, open_backend
    from medsamkit.backend.errors import ServerUnreachableError
    from medsamkit.errors import InputError

    if spec == "ftp://x":
        with pytest.raises(InputError, match="Unknown backend"):
            open_backend(spec)
    elif is_remote_spec(spec):
        with pytest.raises(ServerUnreachableError):
            open_backend(spec, timeout=2, connect_timeout=0.5, retries=0)
    else:
        assert not is_remote_spec(spec)


def test_backend_cli_options():
    import argparse

    from medsamkit.cli.options import add_backend_options, backend_from_options
    from medsamkit.backend.errors import ServerUnreachableError

    p = argparse.ArgumentParser()
    add_backend_options(p)
    args = p.parse_args([])
    assert args.backend == "local" and args.server_token_file is None
    args = p.parse_args(["--backend", "http://127.0.0.1:1", "--server-timeout", "2"])
    with pytest.raises(ServerUnreachableError, match="127.0.0.1:1"):
        backend_from_options(args)
