"""The service's routes (one blueprint). The work behind /predict is `Predictor`; formats are `payload`."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from cross_sell.data import schema

from . import metrics, payload
from .payload import ClientError
from .rows import check_api_key

bp = Blueprint("serving", __name__)


def _service():
    return current_app.extensions["cross_sell"]


@bp.get("/health")
def health():
    """Liveness: the process answers and its pointer poller runs (a dead poller would never follow the
    champion again, so the worker should be restarted)."""
    if not _service().holder.poller_alive():
        return {"status": "poller stopped"}, 503
    return {"status": "ok"}


@bp.get("/ready")
def ready():
    holder = _service().holder
    model = holder.current
    if model is None:
        return {"ready": False, "reason": holder.status.last_error or "no champion loaded yet"}, 503
    return {"ready": True, "model_version": model.version}


@bp.get("/model")
def model_info():
    holder = _service().holder
    model, status = holder.current, holder.status
    stale_since = holder.stale_since()
    body = {"loaded": model is not None, "last_check_at": status.last_check_at,
            "last_reload_error": status.last_error, "last_reload_error_at": status.last_error_at,
            "failed_version": status.failed_version, "next_retry_in_seconds": status.next_retry_in_seconds,
            "reloads": status.reloads, "poll_seconds": holder.poll_seconds,
            # What champion.json named at the last poll (beside what serves), and its audit trail's problems.
            "pointer": {"version": status.pointer_version, "problems": status.pointer_problems},
            "stale": stale_since is not None, "stale_since": stale_since,
            "last_poll_completed_at": status.last_poll_completed_at}
    if model is not None:
        manifest = model.manifest
        body.update({"version": model.version, "threshold": model.threshold, "loaded_at": model.loaded_at,
                     "engine": "onnxruntime", "signature": "verified",
                     "load_seconds": round(model.load_seconds, 3), "metrics": manifest.get("metrics"),
                     "onnx_parity": manifest.get("onnx_parity"), "trained_at": manifest.get("trained_at"),
                     "data_fingerprint": manifest.get("data_fingerprint"), "rows": manifest.get("rows"),
                     "run_id": manifest.get("run_id"), "code_version": manifest.get("code_version")})
    shadow = current_app.extensions.get("shadow")
    if shadow is not None:  # the challenger scoring sampled rows beside the champion, if one is named
        body["shadow"] = {"version": shadow.current.version if shadow.current else None,
                          "last_reload_error": shadow.status.last_error}
    return body, 200 if model is not None else 503


@bp.route("/", methods=["GET", "POST"])
def form():
    service = _service()
    values = {k: str(v) for k, v in schema.example_record().items()}
    errors, result, status = {}, None, 200
    if request.method == "POST":
        values = {name: request.form.get(name, "").strip() for name in schema.FEATURES}
        record = {name: (value if value != "" else None) for name, value in values.items()}
        try:
            check_api_key(service.config.api_key, request.form.get("api_key"))
            repeated = sorted(name for name in request.form if len(request.form.getlist(name)) > 1)
            if repeated:  # which value would count is not for the service to guess
                raise ClientError(400, f"field(s) given more than once: {', '.join(map(repr, repeated))}")
            found = service.predictor.predict(payload.RequestRows(1, records=[record]), allow_text=True)
            result = {"probability": found.probabilities[0], "label": found.labels[0],
                      "version": found.model.version, "threshold": found.model.threshold}
        except ClientError as error:
            status = error.status
            errors = {p["field"]: p["message"] for p in error.problems or []}
            errors.setdefault(None, None if error.problems else error.message)
    return render_template("index.html", columns=schema.columns(schema.SERVING), values=values, errors=errors,
                           result=result, needs_key=bool(service.config.api_key)), status


@bp.get("/metrics")
def prometheus():
    body, content_type = metrics.exposition()
    return body, 200, {"Content-Type": content_type}
