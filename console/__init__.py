"""The web console: a Dash app for operators and analysts, reading only the engine's HTTP API and Prometheus.

``meterseg console`` serves it on its own port (``METERSEG_CONSOLE_PORT``,
default 8050). A login page takes the API's bearer token and keeps it on the
server (:mod:`console.auth`); every page calls the API with it
(:mod:`console.client`). Pages, one module each in :mod:`console.pages`:
overview, consumption, meter health, revenue and operations, segments,
client view and the rule segment builder. Dash and plotly serve their
JavaScript from the installed Python packages (``serve_locally``): nothing
is fetched from the internet at run time.
"""
