"""The app factory: ``create_app(index_path)`` builds the FastAPI application
(the FastAPI template's main.py) and :func:`run` serves it with uvicorn.

The index is loaded once, when the app is made (a bad index fails here, before
a port is opened); the reload thread runs while the app does (its lifespan).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..errors import (ConcurrentWriteError, CorruptFileError, EncoderUnavailableError, FingerprintMismatchError,
                      IndexExistsError,
                      LockTimeoutError, NotFittedError, NotFoundError, SimstdBaseError, SimstdError,
                      UnsupportedQueryError)

try:  # the serve extra; `import simstd` never gets here
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (FastAPI needs it for file uploads)
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SimstdError(f'simstd serve needs the serve extra ({exc.name} is missing): pip install "simstd[serve]"') \
        from None

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import DEFAULT_HOST, DEFAULT_PORT, Settings, is_loopback
from .deps import AUTO, IndexHolder
from .media import ThumbnailCache
from .middleware import AssumeJSON, BodySizeLimit
from .routes import api, clip_retrieval, media

if TYPE_CHECKING:  # pragma: no cover
    from ..encoders import Encoder

logger = logging.getLogger("simstd.serve")
STATIC = Path(__file__).with_name("static")

#: The HTTP status of every simstd error, in one place; a class not listed takes
#: its nearest listed base's (SimstdError: the client's request is wrong).
HTTP_STATUS: dict[type[SimstdBaseError], int] = {
    SimstdBaseError: 500,
    SimstdError: 400,
    UnsupportedQueryError: 400,
    NotFoundError: 404,
    NotFittedError: 409,  # the index's state, not the request: fit it first
    FingerprintMismatchError: 409,
    ConcurrentWriteError: 409,
    IndexExistsError: 409,
    CorruptFileError: 503,  # the server's own files: nothing the client can change
    EncoderUnavailableError: 503,
    LockTimeoutError: 503,  # busy: retry later
}


def http_status(exc: SimstdBaseError) -> int:
    """The status of ``exc``: its class's in :data:`HTTP_STATUS`, else its nearest base's."""
    return next(HTTP_STATUS[cls] for cls in type(exc).__mro__ if cls in HTTP_STATUS)


def create_app(index_path: str | Path, *, encoder: Encoder | str | None = AUTO, **settings: Any) -> FastAPI:
    """The HTTP service over the index saved at ``index_path``.

    ``encoder``: ``"auto"`` (the open_clip encoder the index records; text and
    image queries), None (vector and id queries only) or an encoder object.
    Other keyword arguments are :class:`~simstd.serve.config.Settings`
    (``max_k``, ``max_body_bytes``, ``cors_origins``, ``reload_interval``, ...).
    """
    try:
        config = Settings(index_path=index_path, **settings)
    except TypeError as exc:
        raise SimstdError(f"create_app: {exc}; see simstd.serve.config.Settings for the settings") from None
    try:
        holder = IndexHolder(config, encoder)
    except SimstdError as exc:
        from ..encoders import EncoderUnavailableError

        if isinstance(exc, EncoderUnavailableError):
            raise SimstdError(f"{exc}. To serve vector and id queries only, start without an encoder "
                              "(simstd serve --no-encoder; Python: create_app(path, encoder=None))") from None
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.start()
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(
        title="simstd",
        summary="Mixed text+image search with similarity standardization",
        description="simstd's own API (/search, /info, /health), clip-retrieval's back-end API "
                    "(/indices-list, /knn-service, /metadata) and a web page at /. See docs/serve.md.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.settings = config
    app.state.holder = holder
    app.state.thumbnails = ThumbnailCache(config.thumbnail_size, config.thumbnail_cache_bytes,
                                          config.max_image_pixels)
    _add_error_handlers(app)
    app.include_router(api.router)
    app.include_router(clip_retrieval.router)
    app.include_router(media.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # The last added is the outermost: CORS (so even a 413 carries its headers), then the size limit
    # (before anything reads the body), then the Content-Type fix for ClipClient.
    app.add_middleware(AssumeJSON, paths=("/knn-service", "/metadata"))
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"detail": ...}`` with a 4xx code; a bug is a 500 without a traceback."""

    @app.exception_handler(SimstdBaseError)
    async def simstd_error(request: Request, exc: SimstdBaseError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Leave out pydantic's echo of the input (a whole vector or image) and its internals.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()[:20]]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse({"detail": f"{where}: {first['msg']}", "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error (logged on the server)"}, status_code=500)


def run(app: FastAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until interrupted; simstd's own messages (reloads,
    versions held back) are logged to stderr at ``log_level``."""
    root = logging.getLogger("simstd")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     simstd: %(message)s"))
        root.addHandler(handler)
        root.setLevel(log_level.upper())
        root.propagate = False
    if not is_loopback(host):
        logger.warning("listening on %s: the service has no authentication; anyone who can reach this "
                       "address can search the index and read its recorded image files", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=10)


def _version() -> str:
    from .. import __version__

    return __version__
