"""Importers of recorded CSV data: purchase events, monthly meter data, generic transactions.

Each reads a CSV, validates every row against the event contracts, publishes
to the right topic through a sink (Kafka or JSON-Lines files), shows
progress, and writes a report of rejected rows (line number and reason)
without stopping. See :mod:`simulators.importers.base` for the shared
machinery and one module per format.
"""
