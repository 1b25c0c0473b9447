"""The screening app's web side: a Gradio page and a JSON API on one FastAPI server.

Routes (JSON in and out; ``{"ok": false, "error": "..."}`` with a 4xx status for a bad request):

``GET /api/model``
    the model's identity (architecture, training date, validation AUC and the
    run's other validation figures, threshold, classes), whether Grad-CAM is
    available, the upload limits, and where the validation scores come from.
``GET /api/operating-point?threshold=0.3``
    sensitivity and specificity on the model's validation split at that threshold
    (what the page's slider shows).
``POST /api/screen``
    body ``{"images": [{"name": "V0001.jpg", "data": "<base64 of the file>"}],
    "overlay": true}``; answer ``{"ok": true, "model": {...}, "results": [...]}``
    with, per image in the order sent, ``name``, ``ok``, ``pm_probability``,
    ``threshold``, ``label`` (1 = PM), ``decision``, ``class_name``
    (``"病理性近视 (pathologic myopia)"``), ``class_name_zh``, ``class_name_en``,
    ``confidence``, ``width``, ``height``, ``gradcam`` and ``overlay_png`` (base64
    PNG of the Grad-CAM overlay; null without one); a refused image gives
    ``{"name", "ok": false, "error"}`` and the others are still screened.

The page is served at ``/``.  Neither side ever shows a stack trace: the
project's errors become their one-line message, anything else a one-line
"internal error" (the server's log names the exception).
"""

import base64
import binascii
import html
import json
import os
import sys

from paddle_palm.app import require_web_stack
from paddle_palm.app.screening import display_name, png_base64
from paddle_palm.errors import PalmError, short_message

__all__ = ["create_app", "create_refusal_app", "serve"]

PAGE_TITLE = "病理性近视筛查 · Pathologic-myopia screening"


def _log(message):
    print(f"app: {message}", file=sys.stderr, flush=True)


def _fmt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def _public(result):
    """A result of :meth:`Screener.screen_many` without its pictures, plus the overlay as base64 PNG."""
    out = {k: v for k, v in result.items() if k not in ("photo", "overlay")}
    if result.get("ok"):
        out["overlay_png"] = png_base64(result["overlay"]) if result.get("overlay") is not None else None
    return out


# ----------------------------------------------------------------------------- page fragments


def card_html(screener):
    """The model's identity, as HTML (every value escaped)."""
    c = screener.card
    e = html.escape
    rows = [
        ("Architecture 网络", c.arch),
        ("Model 模型", c.source),
        ("Trained 训练日期", f"{c.trained} ({c.trained_from})" if c.trained else "not recorded"),
        ("Validation AUC 验证集 AUC", f"{_fmt(c.val_auc, 4)}" + (f" ({c.val_source})" if c.val_source else "")),
        ("Validation accuracy / sensitivity / specificity",
         f"{_fmt(c.val_accuracy)} / {_fmt(c.val_sensitivity)} / {_fmt(c.val_specificity)} at threshold {c.threshold:g}"
         + (f", {c.val_images} images" if c.val_images else "")),
        ("Threshold 阈值", f"{c.threshold:g}: PM when the PM probability is at least this"),
        ("Input 输入", f"{c.image_size}x{c.image_size}, preprocessing {c.preprocess}"),
    ]
    body = "".join(f'<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>' for k, v in rows)
    missing = "".join(f"<li>{e(m)}</li>" for m in c.missing)
    missing = f'<details class="palm-missing"><summary>Not recorded</summary><ul>{missing}</ul></details>' if missing else ""
    return (f'<div id="palm-card" data-arch="{e(c.arch)}" data-val-auc="{e(_fmt(c.val_auc, 6))}" '
            f'data-threshold="{c.threshold:g}"><h2>{e(PAGE_TITLE)}</h2>'
            f'<p>Upload fundus photographs (JPEG, PNG or BMP). 上传眼底照片。 This screens; it does not diagnose.</p>'
            f'<table class="palm-card">{body}</table>{missing}</div>')


def operating_point_html(screener, threshold):
    """What the slider shows: sensitivity and specificity on the validation split at ``threshold``."""
    try:
        op = screener.operating_point(threshold)
    except PalmError as exc:
        return f'<p class="palm-error-message">{html.escape(str(exc))}</p>'
    e = html.escape
    if op.get("exact"):
        return (f'<div id="palm-op" data-threshold="{op["threshold"]:.2f}" data-sensitivity="{_fmt(op["sensitivity"], 6)}" '
                f'data-specificity="{_fmt(op["specificity"], 6)}"><p>At threshold <b>{op["threshold"]:.2f}</b> on the '
                f'validation split: sensitivity 灵敏度 <b>{_fmt(op["sensitivity"])}</b> '
                f'({op["true_positives"]}/{op["positives"]}), specificity 特异度 <b>{_fmt(op["specificity"])}</b> '
                f'({op["true_negatives"]}/{op["negatives"]}).</p><p class="palm-note">{e(op["source"])}</p></div>')
    if op.get("recorded_threshold") is None:
        return ('<div id="palm-op" data-sensitivity="n/a" data-specificity="n/a"><p>The run recorded no '
                'validation sensitivity or specificity.</p></div>')
    at = (f'At threshold <b>{op["threshold"]:.2f}</b>: sensitivity <b>{_fmt(op["sensitivity"])}</b>, '
          f'specificity <b>{_fmt(op["specificity"])}</b> ({e(str(op["source"]))}).'
          if op["sensitivity"] is not None or op["specificity"] is not None else
          f'At threshold <b>{op["threshold"]:.2f}</b>: not recorded.')
    return (f'<div id="palm-op" data-threshold="{op["threshold"]:.2f}" data-sensitivity="{_fmt(op["sensitivity"], 6)}" '
            f'data-specificity="{_fmt(op["specificity"], 6)}"><p>{at}</p><p class="palm-note">The run recorded '
            f'only its own threshold {op["recorded_threshold"]:g}: sensitivity {_fmt(op["recorded_sensitivity"])}, '
            f'specificity {_fmt(op["recorded_specificity"])}. Per-image validation scores would show every threshold: '
            'run tools/eval.py on the weights, or start the app with --valid-data DIR.</p></div>')


def results_html(screener, results, threshold):
    """One block per photograph: probability, decisions, photograph and Grad-CAM overlay side by side."""
    e = html.escape
    if not results:
        return ""
    blocks = []
    for r in results:
        name = e(r["name"])
        if not r.get("ok"):
            blocks.append(f'<div class="palm-result palm-error" data-name="{name}" data-ok="0"><h3>{name}</h3>'
                          f'<p class="palm-error-message">{e(r["error"])}</p></div>')
            continue
        at_slider = int(r["pm_probability"] >= float(threshold))
        slider_line = ""
        if abs(float(threshold) - r["threshold"]) > 1e-9:
            slider_line = (f'<p class="palm-slider-decision" data-label="{at_slider}">At the slider\'s threshold '
                           f'{float(threshold):.2f}: {e(screener.class_names(at_slider)[0])}</p>')
        overlay = (f'<figure><img class="palm-overlay" alt="Grad-CAM overlay of {name}" '
                   f'src="data:image/png;base64,{r["overlay_png"]}"><figcaption>Grad-CAM: regions that raised the score '
                   f'of {e(r["gradcam"]["class_name"])}</figcaption></figure>' if r.get("overlay_png") else
                   f'<p class="palm-note">{e(screener.gradcam_note or "no Grad-CAM overlay")}</p>')
        blocks.append(
            f'<div class="palm-result" data-name="{name}" data-ok="1" data-pm-probability="{r["pm_probability"]:.6f}" '
            f'data-label="{r["label"]}"><h3>{name}</h3>'
            f'<p class="palm-probability">PM probability 病理性近视概率: <b>{r["pm_probability"]:.4f}</b></p>'
            f'<p class="palm-decision">Decision at the model\'s threshold {r["threshold"]:g} 判定: '
            f'<b>{e(r["class_name"])}</b></p>{slider_line}'
            f'<div class="palm-pictures"><figure><img class="palm-photo" alt="{name}" '
            f'src="data:image/png;base64,{r["photo_png"]}"><figcaption>{r["width"]}x{r["height"]}</figcaption></figure>'
            f'{overlay}</div></div>')
    return '<div class="palm-results">' + "".join(blocks) + "</div>"


_CSS = """
.palm-card th { text-align: left; padding-right: 1em; font-weight: 600; }
.palm-pictures { display: flex; gap: 12px; flex-wrap: wrap; }
.palm-pictures figure { margin: 0; flex: 0 1 448px; }
.palm-pictures img { width: 100%; height: auto; display: block; }
.palm-error-message { color: #b00020; font-weight: 600; }
.palm-note { color: #555; font-size: 0.9em; }
.palm-result { border-top: 1px solid #ddd; padding-top: 8px; margin-top: 8px; }
"""


# ----------------------------------------------------------------------------- the app


def _page(screener):
    gr = require_web_stack()

    def on_screen(paths, threshold):
        try:
            files = []
            if len(paths or []) > screener.limits.max_images:
                return (f'<p class="palm-error-message">{len(paths)} photographs chosen; at most '
                        f'{screener.limits.max_images} at a time. 照片太多。</p>'), []
            for path in paths or []:
                name = display_name(os.path.basename(str(path)))
                size = os.path.getsize(path)
                if size > screener.limits.max_bytes:
                    files.append((name, None, size))
                else:
                    with open(path, "rb") as fh:
                        files.append((name, fh.read(), size))
            if not files:
                return ('<p class="palm-error-message" id="palm-nothing">Choose one or more photographs first. '
                        '请先选择照片。</p>'), []
            results = []
            for name, data, size in files:
                if data is None:
                    results.append({"name": name, "ok": False, "error": (
                        f"{name}: file too large ({size / 1048576:.1f} MB); at most "
                        f"{screener.limits.max_bytes / 1048576:g} MB per photograph is accepted")})
                else:
                    results.extend(screener.screen_many([(name, data)]))
            for r in results:
                if r.get("ok"):
                    r["photo_png"] = png_base64(r.pop("photo"))
                    overlay = r.pop("overlay")
                    r["overlay_png"] = png_base64(overlay) if overlay is not None else None
            return results_html(screener, results, threshold), results
        except PalmError as exc:
            return f'<p class="palm-error-message">{html.escape(" ".join(str(exc).split()))}</p>', []
        except Exception as exc:  # never a stack trace on the page
            _log(f"error on the page: {type(exc).__name__}: {short_message(exc)}")
            return ('<p class="palm-error-message">Internal error while screening; the server log names it. '
                    '内部错误。</p>'), []

    def on_slider(threshold, results):
        return operating_point_html(screener, threshold), results_html(screener, results or [], threshold)

    with gr.Blocks(title=PAGE_TITLE, analytics_enabled=False, delete_cache=(600, 600)) as page:
        gr.HTML(card_html(screener), elem_id="model-card")
        with gr.Row():
            with gr.Column(scale=3):
                photos = gr.File(label="Fundus photographs 眼底照片 (JPEG, PNG, BMP)", file_count="multiple",
                                 type="filepath", elem_id="photos")
                button = gr.Button("Screen 筛查", variant="primary", elem_id="screen-button")
            with gr.Column(scale=2):
                slider = gr.Slider(0.0, 1.0, value=round(screener.threshold, 2), step=0.01, elem_id="threshold",
                                   label="Threshold 阈值 (sensitivity/specificity on the validation split)")
                op = gr.HTML(operating_point_html(screener, screener.threshold), elem_id="operating-point")
        out = gr.HTML("", elem_id="results")
        state = gr.State([])
        button.click(on_screen, [photos, slider], [out, state], api_visibility="private", concurrency_limit=2)
        slider.change(on_slider, [slider, state], [op, out], api_visibility="private")
    return page


class _TooLarge(Exception):
    pass


def _error(status, message):
    """The JSON answer of a refused request: one line, never a stack trace."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"ok": False, "error": " ".join(str(message).split())}, status_code=status)


def _body_limit(limits):
    """Most bytes of one request: base64 (4/3 of the bytes) of at most ``max_images`` files, capped."""
    return max(64 << 20, (limits.max_bytes * 4) // 3 + (1 << 20))


async def _read_body(request, max_body):
    """The request body, refused (:class:`_TooLarge`) as soon as it passes ``max_body`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise _TooLarge()
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_body:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _screen_request(body, limits):
    """``(images, overlay, None)`` of a ``/api/screen`` body, or ``(None, None, error message)``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None, 'the body is not JSON; expected {"images": [{"name": "...", "data": "<base64>"}]}'
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list) or not images:
        return None, None, 'expected {"images": [{"name": "...", "data": "<base64>"}, ...]} with at least one image'
    if len(images) > limits.max_images:
        return None, None, f"{len(images)} images sent; at most {limits.max_images} per request"
    overlay = payload.get("overlay", True)
    if not isinstance(overlay, bool):
        return None, None, f"overlay must be true or false, got {overlay!r}"
    return images, overlay, None


def _decoded(item, i, limits):
    """``(name, bytes, None)`` of one uploaded image, or ``(name, None, error message)``."""
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        return f"image {i + 1}", None, f"image {i + 1}: expected an object with a base64 string 'data'"
    name = display_name(item.get("name"), fallback=f"image {i + 1}")
    if len(item["data"]) > (limits.max_bytes * 4) // 3 + 4:
        return name, None, f"{name}: file too large; at most {limits.max_bytes / 1048576:g} MB per photograph is accepted"
    try:
        return name, base64.b64decode(item["data"], validate=True), None
    except (binascii.Error, ValueError):
        return name, None, f"{name}: 'data' is not valid base64"


def _screen_all(screener, images, overlay):
    """Screen every uploaded image (a bad one gets its own error entry); the public results."""
    results = []
    for i, item in enumerate(images):
        name, data, problem = _decoded(item, i, screener.limits)
        if problem:
            results.append({"name": name, "ok": False, "error": problem})
        else:
            results.extend(screener.screen_many([(name, data)], overlay=overlay))
    return [_public(r) for r in results]


def _model_summary(screener):
    card = screener.card
    return {"arch": card.arch, "threshold": card.threshold, "source": card.source, "val_auc": card.val_auc,
            "trained": card.trained}


def _add_routes(app, screener):
    """The JSON API: ``/api/model``, ``/api/operating-point`` and ``/api/screen``."""
    from fastapi import Request
    from starlette.concurrency import run_in_threadpool

    limits = screener.limits
    max_body = _body_limit(limits)

    @app.get("/api/model")
    def api_model():
        return screener.describe()

    @app.get("/api/operating-point")
    def api_operating_point(threshold: str = ""):
        try:
            value = float(threshold)
        except ValueError:
            return _error(400, f"threshold must be a number in [0, 1], got {threshold!r}")
        try:
            return screener.operating_point(value)
        except PalmError as exc:
            return _error(400, exc)

    @app.post("/api/screen")
    async def api_screen(request: Request):
        try:
            body = await _read_body(request, max_body)
        except _TooLarge:
            return _error(413, f"request too large: at most {max_body / 1048576:g} MB per request and "
                               f"{limits.max_bytes / 1048576:g} MB per photograph")
        images, overlay, problem = _screen_request(body, limits)
        if problem:
            return _error(400, problem)
        try:
            results = await run_in_threadpool(_screen_all, screener, images, overlay)
        except PalmError as exc:
            return _error(400, exc)
        except Exception as exc:  # one line, never a stack trace
            _log(f"error in /api/screen: {type(exc).__name__}: {short_message(exc)}")
            return _error(500, "internal error while screening; the server log names it")
        return {"ok": all(r["ok"] for r in results), "model": _model_summary(screener), "results": results}


def create_app(screener):
    """The FastAPI application: the JSON routes and the Gradio page at ``/``.

    Args:
        screener: a :class:`paddle_palm.app.screening.Screener` (loaded once, shared by every request).

    Returns:
        fastapi.FastAPI
    """
    gr = require_web_stack()
    from fastapi import FastAPI

    limits = screener.limits
    app = FastAPI(title=PAGE_TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    _add_routes(app, screener)
    page = _page(screener)
    return gr.mount_gradio_app(app, page, path="/", max_file_size=2 * limits.max_bytes, ssr_mode=False,
                               show_error=False, css=_CSS, footer_links=[])


def create_refusal_app(message):
    """An app that only says why the model was not loaded (``--serve-load-errors``).

    Where nobody reads the server's console (a hosted app), the page and every
    API route answer with the one-line reason (status 503) instead of the app
    simply not being there.

    Args:
        message: the one-line reason (e.g. a refused checkpoint).

    Returns:
        fastapi.FastAPI
    """
    gr = require_web_stack()
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    text = " ".join(str(message).split())
    app = FastAPI(title=PAGE_TITLE, docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST"])
    def refused(rest: str):
        return JSONResponse({"ok": False, "error": f"the model was not loaded: {text}"}, status_code=503)

    with gr.Blocks(title=PAGE_TITLE, analytics_enabled=False) as page:
        gr.HTML(f'<div id="palm-card"><h2>{html.escape(PAGE_TITLE)}</h2><p class="palm-error-message" '
                f'id="palm-load-error">The model was not loaded: {html.escape(text)}</p></div>')
    return gr.mount_gradio_app(app, page, path="/", ssr_mode=False, show_error=False, css=_CSS, footer_links=[])


def _check_port(host, port):
    import socket

    from paddle_palm.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(screener, host="127.0.0.1", port=7860, refusal=None):
    """Serve the app until interrupted (Ctrl-C or SIGTERM end it cleanly).

    Args:
        screener: the loaded :class:`paddle_palm.app.screening.Screener` (None with ``refusal``).
        host: address to bind (``127.0.0.1``: this machine only; ``0.0.0.0``: every interface).
        port: TCP port.
        refusal: instead of a model, the one-line reason it was not loaded (see :func:`create_refusal_app`).
    """
    import uvicorn

    _check_port(host, port)
    app = create_refusal_app(refusal) if refusal is not None else create_app(screener)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving the screening app on http://{shown}:{port}/ (API: /api/screen, /api/model); Ctrl-C stops",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
