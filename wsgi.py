"""WSGI entry points for running ec2gw under a WSGI server other than `ec2gw serve`.

    gunicorn -b 127.0.0.1:8444 wsgi:ec2      # the EC2 Query API
    gunicorn -b 127.0.0.1:8888 wsgi:s3       # Cumulus (S3)
    gunicorn -b 127.0.0.1:8444 -b 127.0.0.1:8888 wsgi:app   # both: the listener's port decides

Settings come from the environment (EC2GW_DATA_DIR, EC2GW_DATABASE_URL, EC2GW_CONFIG, EC2GW_S3_PORT,
...), as for `ec2gw serve`. `app` tells the endpoints apart by the port the request arrived on
(SERVER_PORT == EC2GW_S3_PORT is Cumulus); behind a reverse proxy that port is the proxy's, so
there mount `ec2` and `s3` on listeners of their own. Each server process builds its own App on
its first request (no database connection crosses a fork), creates the schema, the administrator
(credentials in <data dir>/admin.credentials) and the default address pool if they are missing.
The compute worker that carries out RunInstances and friends is a process of its own: run
`ec2gw compute-worker` beside the WSGI server (`ec2gw serve` starts it itself).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ec2gw.app import App
from ec2gw.cli.serve import first_start
from ec2gw.config import Settings

__all__ = ["app", "ec2", "s3", "Endpoint"]

_lock = threading.Lock()
_built: dict[int, App] = {}  # pid -> App: one per process, built after the server forked


def _application() -> App:
    pid = os.getpid()
    app = _built.get(pid)
    if app is not None:
        return app
    with _lock:
        app = _built.get(pid)
        if app is None:
            settings = Settings.load()
            os.makedirs(settings.data_dir, exist_ok=True)
            app = App(settings)
            app.db.create_schema()
            first_start(app)
            _built.clear()
            _built[pid] = app
    return app


class Endpoint:
    """A WSGI callable for one endpoint ("ec2", "s3") or both ("app"), built from EC2GW_* settings
    on its first request."""

    def __init__(self, which: str) -> None:
        self.which = which

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = _application()
        if self.which == "ec2":
            return app.ec2(environ, start_response)
        if self.which == "s3":
            return app.s3(environ, start_response)
        return app.wsgi(environ, start_response)

    def __repr__(self) -> str:
        return f"<ec2gw WSGI endpoint {self.which}>"


#: the EC2 Query API
ec2 = Endpoint("ec2")
#: Cumulus, the S3-compatible store
s3 = Endpoint("s3")
#: both endpoints, told apart by the port the request arrived on (EC2GW_S3_PORT is Cumulus)
app = Endpoint("app")
