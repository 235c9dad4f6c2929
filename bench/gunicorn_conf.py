"""gunicorn settings shared by every benchmarked app, so that only the app differs.

Passing this file with ``--config`` also keeps the repository's ``gunicorn.conf.py`` (access
log on, a worker per core) out of the measurement; the command line sets the bind address,
``--workers 1`` and ``--worker-class sync``.
"""

accesslog = None
errorlog = "-"
loglevel = "warning"
