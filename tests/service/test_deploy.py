"""The deployment files: docker-compose.yml is checked by Docker Compose v2 itself."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_file_is_valid():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "check_compose.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout


def test_compose_declares_the_services_the_design_names():
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("postgres:", "redis:", "migrate:", "web:", "worker:"):
        assert f"\n  {service}" in text, service
    assert "noeviction" in text and "capabilities: [gpu]" in text
