"""The review web app (FastAPI): the page, its JSON API, spectrogram PNGs and band-passed WAV clips.

Routes name candidates only by integer id; anything else is a 4xx. The page and its two
static files are served from the package (no build step, nothing fetched from elsewhere).
"""

from __future__ import annotations

import hmac
import secrets
import socket
from importlib import resources
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from ..errors import DawnchorusError, InputError, OutputError
from ..data.species import SpeciesTable
from .candidates import Candidate
from .learning import MODES
from .media import CONTEXT_S, bandpassed_wav, spectrogram_png
from .session import MAX_REVIEWER_LENGTH, ReviewSession, open_session

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_BODY_BYTES = 4096  # a decision is a few dozen bytes; anything larger is not one
_STATIC_TYPES = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}


class DecisionRequest(BaseModel):
    decision: Literal["tp", "fp", "skip"]
    reviewer: Optional[str] = Field(default=None, max_length=MAX_REVIEWER_LENGTH)


class ModeRequest(BaseModel):
    mode: Literal[MODES]


def create_app(*, candidates: Sequence[Candidate], audio_dir: str | Path, db_path: str | Path,
               reviewer: str = "anonymous", cache_dir: str | Path | None = None,
               allowed_hosts: Sequence[str] | None = None, token: str | None = None, index_dir: str | Path | None = None,
               learn_every: int = 10, mode: str = "likely", species: SpeciesTable | None = None) -> FastAPI:
    """The review app for ``candidates`` (see :mod:`dawnchorus.review.candidates`) over ``audio_dir``.

    Decisions go to the SQLite file ``db_path`` (created if needed); spectrograms are cached
    in ``cache_dir`` (default: ``<db stem>_cache`` next to the database). ``allowed_hosts``
    restricts the Host header, which keeps other web sites out of a localhost server
    (DNS rebinding); None accepts any. With ``token``, every request (the page, the API, the
    images and the audio) must carry it: ``Authorization: Bearer TOKEN``, or the cookie that
    opening ``/?token=TOKEN`` once sets, so the printed link is all a reviewer needs. With
    ``index_dir`` (an index from ``dawnchorus index``) the page learns: every ``learn_every``
    decisions a head on the candidates' embeddings re-ranks the undecided ones (``review.learning``).
    """
    session = open_session(candidates=candidates, audio_dir=audio_dir, db_path=db_path, reviewer=reviewer,
                           cache_dir=cache_dir, index_dir=index_dir, learn_every=learn_every, mode=mode, species=species)
    app = FastAPI(title="dawnchorus review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.session = session
    if token is not None:
        _require_token(app, token)
    if allowed_hosts is not None:
        _restrict_hosts(app, allowed_hosts)  # added last, so it runs first
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(DawnchorusError)
    async def _input_problem(request: Request, exc: DawnchorusError):
        # e.g. an audio file that became unreadable after start-up: the page shows the message;
        # a full disk is the server's trouble, not the request's (507: the reviewer may try again)
        return JSONResponse(status_code=507 if isinstance(exc, OutputError) else 422, content={"detail": str(exc)})

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(_static_text("index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str):
        if name not in _STATIC_TYPES:  # a fixed list: no path from the client reaches the file system
            raise HTTPException(status_code=404, detail="no such file")
        return Response(_static_text(name), media_type=_STATIC_TYPES[name], headers={"Cache-Control": "no-cache"})

    @app.get("/api/session")
    def session_info():
        return {"reviewer": session.default_reviewer, "candidates": len(session.order), "db": session.db_path.name}

    @app.get("/api/candidates")
    def list_candidates():
        return JSONResponse(session.listing(), headers={"Cache-Control": "no-store"})

    @app.get("/api/candidates/{candidate_id}/history")
    def history(candidate_id: int):
        return _known(session, candidate_id, session.history)

    @app.get("/api/candidates/{candidate_id}/spectrogram.png")
    def spectrogram(candidate_id: int, context_s: float = CONTEXT_S, pan: int = 0):
        view = _known(session, candidate_id, session.box_view)
        return Response(spectrogram_png(view, cache_dir=session.cache_dir, context_s=context_s, pan=pan), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/candidates/{candidate_id}/audio.wav")
    def audio(candidate_id: int):
        view = _known(session, candidate_id, session.box_view)
        return Response(bandpassed_wav(view), media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/candidates/{candidate_id}/decision")
    def decide(candidate_id: int, body: DecisionRequest):
        return _known(session, candidate_id, lambda i: session.decide(i, body.decision, body.reviewer))

    @app.get("/api/learning")
    def learning():
        return JSONResponse(session.learning(), headers={"Cache-Control": "no-store"})

    @app.post("/api/learning")
    def set_mode(body: ModeRequest):
        return session.set_mode(body.mode)

    return app


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before anything parses them, whether they
    declare their length or arrive chunked (read here, bounded, then handed on)."""

    def __init__(self, app, *, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(scope, receive, send)
        body, first = b"", None
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                first = message
                break
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        handed = False

        async def replay():
            nonlocal handed
            if handed:
                return await receive()
            handed = True
            return first if first is not None else {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = JSONResponse(status_code=413, content={"detail": f"request body over {self.limit} bytes"})
        await response(scope, receive, send)


def _known(session: ReviewSession, candidate_id: int, action: Callable):
    try:
        return action(candidate_id)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no candidate {candidate_id} in this review session") from None


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _restrict_hosts(app: FastAPI, allowed_hosts: Sequence[str]) -> None:
    allowed = {h.lower().strip("[]") for h in allowed_hosts}

    @app.middleware("http")
    async def check_host(request: Request, call_next):
        host = urlsplit("//" + request.headers.get("host", "")).hostname  # handles ports and [IPv6]
        if host not in allowed:
            return JSONResponse(status_code=400, content={"detail": "unexpected Host header"})
        return await call_next(request)


TOKEN_COOKIE = "dawnchorus_review_token"
MIN_TOKEN_LENGTH = 16


def _require_token(app: FastAPI, token: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise InputError(f"the review token must have at least {MIN_TOKEN_LENGTH} characters; use a longer one or let "
                         "'dawnchorus review' make one")
    expected = token.encode()

    def matches(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected)  # constant time

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        in_query = request.query_params.get("token")
        if not (matches(bearer if scheme.lower() == "bearer" else None) or matches(request.cookies.get(TOKEN_COOKIE))
                or matches(in_query)):
            return JSONResponse(status_code=401, content={"detail": "this review page needs its token: open the link "
                                                                    "'dawnchorus review' printed"})
        response = await call_next(request)
        if in_query is not None:  # the link was opened: later requests of the page carry the cookie instead
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response


def new_token() -> str:
    return secrets.token_urlsafe(24)


def read_token_file(path: str | Path) -> str:
    path = Path(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--token-file {path}: cannot read it ({exc})") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise InputError(f"--token-file {path}: the token must be one word of at least {MIN_TOKEN_LENGTH} characters")
    return token


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK_HOSTS or host.startswith("127.")


def page_url(host: str, port: int, *, token: str | None = None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket; binding it here (not in uvicorn) turns a busy port into a clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another port with --port") from None
    return listener


def run_server(*, app: FastAPI, host: str = "127.0.0.1", port: int = 8765,
               on_ready: Callable[[str], None] | None = None, token: str | None = None) -> None:
    """Serve ``app`` until Ctrl+C; ``on_ready`` gets the page URL once the port is open (port 0: any free port)."""
    import uvicorn

    listener = bind_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    if on_ready is not None:
        on_ready(page_url(host, listener.getsockname()[1], token=token))
    server.run(sockets=[listener])
