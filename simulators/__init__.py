"""Synthetic data for meterseg: a meter-fleet simulator and importers of recorded CSV data.

The simulator is how every user first meets meterseg and how every quality
figure of the engine is scored, so it writes an exact ground truth next to the
events it produces. One concept per module:

* :mod:`simulators.archetypes` - the catalogue of hidden load shapes;
* :mod:`simulators.fleet` - meters and customers as numpy arrays (scales to millions);
* :mod:`simulators.clock` - the simulated clock and its pacing against wall time;
* :mod:`simulators.faults` - the fault catalogue and the per-run fault schedule;
* :mod:`simulators.shifts` - scheduled behaviour shifts;
* :mod:`simulators.groundtruth` - the ground-truth document;
* :mod:`simulators.encode` - fast deterministic serialisation of events;
* :mod:`simulators.partition` - Kafka's murmur2 partitioner, vectorised;
* :mod:`simulators.sinks` - Kafka, JSON-Lines file and null sinks;
* :mod:`simulators.commerce` - purchases, bills, maintenance and feedback;
* :mod:`simulators.generator` - the interval loop tying it all together;
* :mod:`simulators.importers` - CSV importers (purchases, monthly meter data, transactions);
* :mod:`simulators.cli` - the ``simulate`` and ``import`` sub-commands.
"""
