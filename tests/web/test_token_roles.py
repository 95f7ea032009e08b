"""A team sharing one server (MILS_WEB_AUTH=token, web.auth): what each token's role may do to
whose jobs and batches, who owns them, who acted in each event, the limit on a user token's jobs
in flight (MILS_TOKEN_MAX_ACTIVE), the migration that made every older token an admin, and
`mils token create --role`.

Through Flask's test client on the real PostgreSQL with a real SQLite-backed queue per test; no
worker runs, so a submitted job stays queued.
"""

from __future__ import annotations

import html
import io
from datetime import datetime, timezone

import pytest
from alembic import command
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import column, func, select, table

from tests.support.media import make_zip
from web import create_app
from worker.cli import cli
from worker.core import Settings
from worker.store import db as store_db
from worker.store.db import alembic_config, open_store, upgrade
from worker.store.queries import job_detail
from worker.store.schema import ApiToken, Batch, BatchItem, Job
from worker.store.tokens import create_token

# With token auth the web takes registry names only: the tests' fakes under names (MILS_MODELS).
FAKE_LLM, FAKE_SCORER = "fake-llm", "fake-scorer"
REGISTRY = """\
[generators.fake-llm]
spec = "py:tests.support.fakes:worker_generator"

[scorers.fake-scorer]
spec = "py:tests.support.fakes:worker_scorer"
"""
ROLES = {"admin": "admin", "alice": "user", "bob": "user", "rita": "reader"}
# Who acts on what alice (a user) made: the admin, alice herself, another user, a reader.
ACTORS = {"admin": "admin", "owner": "alice", "other user": "bob", "reader": "rita"}
MAY_ACT = {"admin": True, "owner": True, "other user": False, "reader": False}


@pytest.fixture
def app(pg, queue_db, tmp_path, monkeypatch):
    (tmp_path / "models.toml").write_text(REGISTRY)
    monkeypatch.setenv("MILS_MODELS", str(tmp_path / "models.toml"))
    return create_app({"DATABASE_URL": pg, "WTF_CSRF_ENABLED": False, "TESTING": True, "AUTH": "token"})


@pytest.fixture
def Session(pg):
    return open_store(pg)


@pytest.fixture
def tokens(Session) -> dict[str, dict]:
    """name -> the bearer header of a token of that name with its role (ROLES)."""
    with Session.begin() as session:
        raw = {name: create_token(session, name, role) for name, role in ROLES.items()}
    return {name: {"Authorization": f"Bearer {value}"} for name, value in raw.items()}


def submit_job(client, headers):
    return client.post("/api/jobs", headers=headers, data={"sample": "chelsea", "llm": FAKE_LLM,
                                                           "scorer": FAKE_SCORER, "steps": "2", "candidates": "4"})


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


def submit_batch(client, headers, name: str = "squares", items: int = 2):
    keys = "abcdefgh"[:items]
    members = {"manifest.csv": ("id,path\n" + "".join(f"{k},{k}.png\n" for k in keys)).encode(),
               **{f"{k}.png": png((40 * i, 200, 40)) for i, k in enumerate(keys)}}
    return client.post("/api/batches", headers=headers, data={
        "name": name, "llm": FAKE_LLM, "scorer": FAKE_SCORER, "steps": "1", "candidates": "4",
        "archive": (io.BytesIO(make_zip(members)), "squares.zip")})


@pytest.fixture
def made(app, tokens) -> dict:
    """A job and a batch of two items that alice (a user) submitted; all queued."""
    client = app.test_client()
    job = submit_job(client, tokens["alice"])
    batch = submit_batch(client, tokens["alice"])
    assert job.status_code == 201 and batch.status_code == 201, (job.get_data(True), batch.get_data(True))
    return {"job": job.get_json()["id"], "batch": "squares"}


def statuses(Session, target: str, made: dict) -> set[str]:
    """The statuses of alice's job, or of her batch's jobs."""
    with Session() as session:
        if target == "job":
            return {session.get(Job, made["job"]).status.value}
        return {s.value for s in session.scalars(select(Job.status).join(BatchItem, BatchItem.job_id == Job.id)
                                                 .join(Batch).where(Batch.name == made["batch"]))}


def url(target: str, made: dict, action: str = "") -> str:
    base = f"/api/jobs/{made['job']}" if target == "job" else f"/api/batches/{made['batch']}"
    return f"{base}/{action}" if action else base


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("target", ["job", "batch"])
@pytest.mark.parametrize("actor", list(ACTORS))
def test_every_role_reads_everything(app, tokens, made, actor, target):
    response = app.test_client().get(url(target, made), headers=tokens[ACTORS[actor]])
    assert response.status_code == 200 and response.get_json()["owner"] == "alice"


@pytest.mark.parametrize("target", ["job", "batch"])
@pytest.mark.parametrize("actor", list(ACTORS))
def test_only_an_admin_and_the_owner_may_cancel(app, Session, tokens, made, actor, target):
    response = app.test_client().post(url(target, made, "cancel"), headers=tokens[ACTORS[actor]])
    if MAY_ACT[actor]:
        assert response.status_code == 200, response.get_data(True)
        assert statuses(Session, target, made) == {"cancelled"}
    else:
        assert response.status_code == 403
        message = response.get_json()["error"]["message"]
        assert f"token {ACTORS[actor]!r} is a {ROLES[ACTORS[actor]]}" in message
        assert statuses(Session, target, made) == {"queued"}


@pytest.mark.parametrize("target", ["job", "batch"])
@pytest.mark.parametrize("actor", list(ACTORS))
def test_only_an_admin_and_the_owner_may_resume(app, Session, tokens, made, actor, target):
    client = app.test_client()
    assert client.post(url(target, made, "cancel"), headers=tokens["alice"]).status_code == 200
    response = client.post(url(target, made, "resume"), headers=tokens[ACTORS[actor]])
    if MAY_ACT[actor]:
        assert response.status_code == 202, response.get_data(True)
        assert statuses(Session, target, made) == {"queued"}
    else:
        assert response.status_code == 403 and "token" in response.get_json()["error"]["message"]
        assert statuses(Session, target, made) == {"cancelled"}


@pytest.mark.parametrize("actor", list(ACTORS))
def test_every_role_but_reader_submits_and_owns_what_it_submits(app, Session, tokens, made, actor):
    client, name = app.test_client(), ACTORS[actor]
    with Session() as session:
        jobs_before = session.scalar(select(func.count()).select_from(Job))
    job, batch = submit_job(client, tokens[name]), submit_batch(client, tokens[name], name="mine")
    with Session() as session:
        jobs_after = session.scalar(select(func.count()).select_from(Job))
        batches = set(session.scalars(select(Batch.name)))
    if actor == "reader":
        assert job.status_code == batch.status_code == 403
        assert "is a reader" in job.get_json()["error"]["message"]
        assert jobs_after == jobs_before and batches == {"squares"}
        return
    assert job.status_code == batch.status_code == 201
    assert job.get_json()["owner"] == name and batch.get_json()["owner"] == name
    assert jobs_after == jobs_before + 3  # the job and the batch's two


@pytest.mark.parametrize("actor", list(ACTORS))
def test_only_an_admin_and_the_owner_may_add_items_to_a_batch(app, Session, tokens, made, actor):
    response = submit_batch(app.test_client(), tokens[ACTORS[actor]], items=4)  # c and d are new
    with Session() as session:
        items = session.scalar(select(func.count()).select_from(BatchItem))
    if MAY_ACT[actor]:
        assert response.status_code == 200 and response.get_json()["submission"]["added"] == 2
        assert items == 4
    else:
        assert response.status_code == 403 and items == 2


@pytest.mark.parametrize("actor", list(ACTORS))
def test_a_variant_is_a_submission_owned_by_its_token_and_continuing_is_acting(app, Session, tokens, made, actor):
    """Any role but reader may run a variant of a batch it can read (a new batch, its own); only an
    admin and the owner may continue the owner's job to more steps."""
    client, name = app.test_client(), ACTORS[actor]
    variant = client.post("/api/batches", headers=tokens[name], data={"name": "again", "like": "squares",
                                                                      "top_k": "2"})
    with Session() as session:
        copies = session.scalar(select(func.count()).select_from(BatchItem).join(Batch).where(Batch.name == "again"))
    if actor == "reader":
        assert variant.status_code == 403 and copies == 0
    else:
        assert variant.status_code == 201, variant.get_data(True)
        assert variant.get_json()["owner"] == name and copies == 2
    assert client.post(url("job", made, "cancel"), headers=tokens["alice"]).status_code == 200
    longer = client.post(url("job", made, "resume"), headers=tokens[name], data={"steps": "5"})
    with Session() as session:
        steps = session.get(Job, made["job"]).settings["steps"]
    assert (longer.status_code, steps) == ((202, 5) if MAY_ACT[actor] else (403, 2)), longer.get_data(True)


# --------------------------------------------------------------------------- who acted


def test_events_name_the_token_that_acted_never_its_hash(app, Session, tokens, made):
    client = app.test_client()
    job_id = made["job"]
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=tokens["admin"]).status_code == 200
    assert client.post(f"/api/jobs/{job_id}/resume", headers=tokens["alice"]).status_code == 202
    body = client.get(f"/api/jobs/{job_id}", headers=tokens["rita"])
    events = [(e["kind"], e["actor"]) for e in body.get_json()["events"]]
    assert events == [("submitted", "alice"), ("cancel_requested", "admin"), ("cancelled", "admin"),
                      ("resumed", "alice")]
    with Session() as session:
        hashes = list(session.scalars(select(ApiToken.token_sha256)))
    assert not any(h in body.get_data(True) for h in hashes)
    # A batch's jobs record who cancelled the batch.
    assert client.post("/api/batches/squares/cancel", headers=tokens["admin"]).status_code == 200
    item_job = client.get("/api/batches/squares/items", headers=tokens["alice"]).get_json()["items"][0]["job_id"]
    kinds = {(e["kind"], e["actor"]) for e in client.get(f"/api/jobs/{item_job}", headers=tokens["alice"])
             .get_json()["events"]}
    assert {("submitted", "alice"), ("cancelled", "admin")} <= kinds
    # The page says it too, to whoever signed in.
    client.post("/login", data={"token": tokens["rita"]["Authorization"].split()[1]})
    page = client.get(f"/jobs/{job_id}").get_data(True)
    assert "submitted with token alice" in page and "by token admin" in page


# --------------------------------------------------------------------------- the pages


def login(client, tokens, name: str) -> None:
    response = client.post("/login", data={"token": tokens[name]["Authorization"].split()[1]})
    assert response.status_code == 302


def test_the_pages_show_actions_only_to_who_may_take_them_and_refuse_the_others(app, Session, tokens, made):
    job_id = made["job"]
    reader, other, owner = app.test_client(), app.test_client(), app.test_client()
    login(reader, tokens, "rita")
    login(other, tokens, "bob")
    login(owner, tokens, "alice")
    for client in (reader, other):
        page = client.get(f"/jobs/{job_id}").get_data(True)
        assert 'id="cancel-job"' not in page
        assert 'id="cancel-batch"' not in client.get("/batches/squares").get_data(True)
        refused = client.post(f"/jobs/{job_id}/cancel")
        assert refused.status_code == 403 and ("not its own" in refused.get_data(True)
                                               or "is a reader" in refused.get_data(True))
        assert client.post("/batches/squares/cancel").status_code == 403
    reader_page = reader.get("/jobs").get_data(True)
    assert "New job" not in reader_page and "New job" in other.get("/jobs").get_data(True)
    refused = reader.post("/jobs/new", data={"task": "image-caption", "sample": "chelsea"})
    assert refused.status_code == 403 and "is a reader" in refused.get_data(True)
    assert statuses(Session, "job", made) == statuses(Session, "batch", made) == {"queued"}
    assert 'id="cancel-job"' in owner.get(f"/jobs/{job_id}").get_data(True)
    assert owner.post(f"/jobs/{job_id}/cancel").status_code == 302
    assert owner.post("/batches/squares/cancel").status_code == 302
    assert statuses(Session, "job", made) == statuses(Session, "batch", made) == {"cancelled"}
    events = app.test_client().get(f"/api/jobs/{job_id}", headers=tokens["admin"]).get_json()["events"]
    assert events[-1] == {**events[-1], "kind": "cancelled", "actor": "alice"}


# --------------------------------------------------------------------------- the limit on jobs in flight


def test_a_user_token_over_its_jobs_in_flight_is_a_429_and_nothing_is_stored(app, Session, tokens, monkeypatch):
    monkeypatch.setenv("MILS_TOKEN_MAX_ACTIVE", "3")
    client = app.test_client()
    assert submit_job(client, tokens["alice"]).status_code == 201
    assert submit_job(client, tokens["alice"]).status_code == 201
    with Session() as session:
        before = session.scalar(select(func.count()).select_from(Job))
    over = submit_batch(client, tokens["alice"])  # 2 + 2 > 3: refused whole, not cut short
    assert over.status_code == 429 and over.headers["Retry-After"] == "30"
    message = over.get_json()["error"]["message"]
    assert "'alice' has 2 job(s) queued or running" in message and "limit of 3" in message
    assert submit_job(client, tokens["alice"]).status_code == 201  # 3: at the limit
    third = submit_job(client, tokens["alice"])
    assert third.status_code == 429 and third.headers["Retry-After"] == "30"
    with Session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == before + 1
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
        first = session.scalar(select(Job.id).order_by(Job.id))
    # Another user's count is its own; an admin has no limit; a finished job frees a place.
    assert submit_job(client, tokens["bob"]).status_code == 201
    for _ in range(4):
        assert submit_job(client, tokens["admin"]).status_code == 201
    assert client.post(f"/api/jobs/{first}/cancel", headers=tokens["alice"]).status_code == 200
    assert submit_job(client, tokens["alice"]).status_code == 201


def test_a_form_over_the_limit_is_shown_again_with_the_message_beside_it(app, Session, tokens, monkeypatch):
    monkeypatch.setenv("MILS_TOKEN_MAX_ACTIVE", "1")
    client = app.test_client()
    login(client, tokens, "alice")
    assert submit_job(client, tokens["alice"]).status_code == 201
    with Session() as session:
        before = session.scalar(select(func.count()).select_from(Job))
    refused = client.post("/jobs/new", data={"task": "image-caption", "sample": "chelsea", "llm": FAKE_LLM,
                                             "scorer": FAKE_SCORER, "steps": "3", "candidates": "4"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    page = html.unescape(refused.get_data(True))
    assert "'alice' has 1 job(s) queued or running" in page and "limit of 1" in page
    assert '<form' in page and 'value="chelsea"' in page  # the form, with what was typed
    members = {"manifest.csv": b"id,path\na,a.png\n", "a.png": png((0, 200, 40))}
    refused = client.post("/batches/new", data={
        "name": "over", "llm": FAKE_LLM, "scorer": FAKE_SCORER, "steps": "1", "candidates": "4",
        "archive": (io.BytesIO(make_zip(members)), "over.zip")})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert "limit of 1" in html.unescape(refused.get_data(True)) and 'value="over"' in refused.get_data(True)
    with Session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == before
        assert session.scalar(select(func.count()).select_from(Batch)) == 0


# --------------------------------------------------------------------------- the migration and the CLI


def test_tokens_made_before_roles_become_admins_and_their_old_jobs_have_no_owner(db_url):
    engine = store_db.get_engine(db_url)
    command.upgrade(alembic_config(db_url), "0014")
    # A token as it was at revision 0014 (no role: the model's default would name it).
    tokens = table("api_tokens", column("name"), column("token_sha256"), column("created_at"))
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(tokens.insert().values(name="old", token_sha256="0" * 64, created_at=now))
        job_id = connection.execute(Job.__table__.insert().values(
            task="image-caption", status="succeeded", settings=Settings(steps=1).to_dict(), generator="embedded",
            scorer="embedded", model_versions={}, input_info={}, options={}, created_at=now, priority=0,
            auto_resumes=0, attempts=0, cancel_requested=False).returning(Job.__table__.c.id)).scalar_one()
    upgrade(db_url)
    Session = open_store(db_url)
    with Session.begin() as session:
        assert session.scalar(select(ApiToken.role).where(ApiToken.name == "old")) == "admin"
        assert job_detail(session, job_id)["owner"] is None
        create_token(session, "new")
    with Session() as session:
        assert session.scalar(select(ApiToken.role).where(ApiToken.name == "new")) == "user"


def test_mils_token_create_takes_a_role(pg, monkeypatch):
    monkeypatch.setenv("MILS_DATABASE_URL", pg)
    runner = CliRunner()
    made = runner.invoke(cli, ["token", "create", "wall-screen", "--role", "reader"])
    assert made.exit_code == 0 and made.output.startswith("mils_")
    assert runner.invoke(cli, ["token", "create", "ci"]).exit_code == 0
    bad = runner.invoke(cli, ["token", "create", "x", "--role", "owner"])
    assert bad.exit_code != 0 and "'owner' is not one of 'admin', 'user', 'reader'" in bad.output
    listed = runner.invoke(cli, ["token", "list"]).output.splitlines()
    assert [line.split("\t")[1:3] for line in listed] == [["wall-screen", "reader"], ["ci", "user"]]
    with open_store(pg)() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 2
