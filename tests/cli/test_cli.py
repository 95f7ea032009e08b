"""The `mils` console script, run for real in subprocesses, on bad input.

Each bad input must end with a non-zero exit status and one "Error: ..." line on stderr
naming the cause: never a Python traceback, and never after loading a real model (the
private MILS_HOME of each test must hold no model cache afterwards).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image


def _mils() -> str:
    # Prefer the script installed next to this interpreter (pip install -e); a pyenv shim,
    # say, would add its own start-up time and might pick another Python.
    beside = Path(sys.executable).with_name("mils")
    found = str(beside) if beside.exists() else shutil.which("mils")
    assert found, "the `mils` console script is not installed (pip install -e '.[test]')"
    return found


def png_bytes(size=(64, 48), noise: bool = True) -> bytes:
    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)) if noise else Image.new("RGB", size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def with_dimensions(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with its IHDR claiming another size (and a valid CRC, so only the size is off)."""
    assert png[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def run_mils(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MILS_DATABASE_URL"}
    env.update(MILS_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([_mils(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    png = png_bytes()
    (folder / "good.png").write_bytes(png)
    (folder / "notes.png").write_text("these are my notes, not a picture\n")
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(with_dimensions(png, 20_000, 20_000))  # over Pillow's bomb limit
    (folder / "big.png").write_bytes(with_dimensions(png, 8_000, 6_000))  # over MILS's 40 MP, under Pillow's
    (folder / "a-folder.png").mkdir()
    return folder


def test_huge_png_header_is_what_it_claims():
    data = with_dimensions(png_bytes(), 20_000, 20_000)
    with pytest.raises(Image.DecompressionBombError):  # Pillow checks the size when opening
        Image.open(io.BytesIO(data))
    assert Image.open(io.BytesIO(with_dimensions(png_bytes(), 8_000, 6_000))).size == (8_000, 6_000)


BAD = [
    # id, arguments ({in} is the inputs folder), what the error line must say
    ("missing-file", ["{in}/nowhere.png"], r"nowhere\.png: no such file"),
    ("text-named-png", ["{in}/notes.png"], r"notes\.png: not an image"),
    ("truncated-png", ["{in}/truncated.png"], r"truncated\.png: the image is truncated or corrupt"),
    ("empty-file", ["{in}/empty.png"], r"empty\.png: the file is empty"),
    ("a-folder", ["{in}/a-folder.png"], r"a-folder\.png"),
    ("huge-dimensions", ["{in}/huge.png"], r"huge\.png: image dimensions are too large"),
    ("over-pixel-limit", ["{in}/big.png"], r"big\.png: 8000x6000 pixels is over the 40,000,000-pixel limit"),
    ("steps-0", ["{in}/good.png", "--steps", "0"], r"steps must be between 1 and 1000"),
    ("epsilon-2", ["{in}/good.png", "--epsilon", "2"], r"epsilon must be between 0 and 1"),
    ("steps-not-a-number", ["{in}/good.png", "--steps", "many"], r"'many' is not a valid integer"),
    ("unknown-scorer", ["{in}/good.png", "--scorer", "nope"], r"unknown scorer 'nope'"),
    ("unknown-llm", ["{in}/good.png", "--llm", "/nonexistent/model"], r"LLM '/nonexistent/model': no such directory"),
    ("image-and-sample", ["{in}/good.png", "--sample", "chelsea"], r"give an INPUT image file or --sample NAME"),
    ("neither-image-nor-sample", [], r"give an INPUT image file or --sample NAME"),
    ("unknown-sample", ["--sample", "nope"], r"Invalid value for '--sample'"),
]


@pytest.mark.parametrize(("args", "cause"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_fails_with_one_error_line_and_no_traceback(inputs, mils_home, tmp_path, args, cause):
    out = run_mils("caption", *(a.format(**{"in": inputs}) for a in args), home=mils_home, cwd=tmp_path)
    everything = out.stdout + out.stderr
    assert out.returncode != 0, everything
    assert "Traceback" not in everything, everything
    assert out.stdout == ""
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out.stderr
    assert re.search(cause, errors[0]), out.stderr
    if out.returncode == 1:  # our own errors: that line is all of stderr
        assert out.stderr.strip().splitlines() == errors, out.stderr
    else:  # click's usage errors (2): usage, a hint, then the one error line
        assert out.returncode == 2 and out.stderr.rstrip().endswith(errors[0]), out.stderr
    assert not (mils_home / "cache").exists(), "a bad input loaded (or began to load) a model"


def test_bad_model_spec_stores_no_job(inputs, mils_home, tmp_path):
    """A spec that cannot work is refused before the job is created."""
    out = run_mils("caption", str(inputs / "good.png"), "--scorer", "nope", home=mils_home, cwd=tmp_path)
    assert out.returncode == 1
    from worker.store.db import forget_engines, open_store
    from worker.store.schema import Job

    url = f"sqlite:///{mils_home / 'mils.db'}"
    try:
        with open_store(url)() as session:
            assert session.query(Job).count() == 0
    finally:
        forget_engines()


def test_help_and_db_upgrade(mils_home, tmp_path):
    out = run_mils("--help", home=mils_home, cwd=tmp_path)
    assert out.returncode == 0 and "caption" in out.stdout and "db" in out.stdout
    out = run_mils("db", "upgrade", home=mils_home, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"schema up to date: sqlite:///{mils_home / 'mils.db'}"
    assert (mils_home / "mils.db").exists()


def test_llm_server_refuses_a_taken_port_and_a_missing_model(mils_home, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_mils("llm-server", "--port", str(port), home=mils_home, cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert re.search(rf"^Error: cannot listen on 127.0.0.1:{port}: Address already in use$", out.stderr, re.M)
    out = run_mils("llm-server", "--model", str(tmp_path / "nope.gguf"), "--port", "0", home=mils_home, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.search(r"^Error: GGUF '.*nope.gguf': no such file$", out.stderr, re.M)


def test_bad_generator_specs_are_refused_before_anything_loads(inputs, mils_home, tmp_path):
    for spec, cause in [("openai:@http://127.0.0.1:1/v1", r"openai:MODEL@BASE_URL"),
                        (f"gguf:{tmp_path / 'missing.gguf'}", r"no such file")]:
        out = run_mils("caption", str(inputs / "good.png"), "--llm", spec, home=mils_home, cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert re.search(cause, out.stderr), out.stderr
    assert not (mils_home / "cache").exists()
