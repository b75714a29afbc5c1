"""One module per console page; each has ``render(api, prometheus, filters, query)`` and, when it has its own
controls, ``register(app)`` for their callbacks."""
