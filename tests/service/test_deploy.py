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
    for service in ("postgres:", "redis:", "migrate:", "web:", "worker:", "flower:"):
        assert f"\n  {service}" in text, service
    assert "noeviction" in text and "capabilities: [gpu]" in text


def test_flower_runs_from_the_image_on_5555_and_the_workers_send_task_events():
    import yaml

    from worker.celery_app import app

    flower = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["flower"]
    assert flower["entrypoint"][:4] == ["celery", "-A", "worker.celery_app", "flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert '".[flower]"' in (ROOT / "Dockerfile").read_text()
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event
