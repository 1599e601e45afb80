"""A FastAPI app to run behind edgeward.

Start it with the flags that go with edgeward (see README.md):

    uvicorn app:app --proxy-headers --forwarded-allow-ips=127.0.0.1 --root-path /api
"""

import os

from fastapi import FastAPI, Request, Response

app = FastAPI(title="edgeward example")

# Set to "0" to see edgeward take this replica out of rotation once its readiness probe
# fails (the upstream-health part of the gateway polls /health/ready).
_ready = os.environ.get("APP_READY", "1") != "0"


@app.get("/health/live")
def live() -> dict:
    """200 while the process runs."""
    return {"status": "live"}


@app.get("/health/ready")
def ready(response: Response) -> dict:
    """200 when this replica should take traffic, 503 otherwise."""
    if not _ready:
        response.status_code = 503
        return {"status": "not ready"}
    return {"status": "ready"}


@app.get("/echo")
async def echo(request: Request) -> dict:
    """What the app sees of the request once uvicorn has applied the proxy headers."""
    return {
        "client_host": request.client.host if request.client else None,
        "scheme": request.url.scheme,
        "root_path": request.scope.get("root_path", ""),
        "path": request.url.path,
        "url": str(request.url),
        "pid": os.getpid(),
        "headers": dict(request.headers),
    }
