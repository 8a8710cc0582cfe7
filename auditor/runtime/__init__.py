"""What the services drive: settings, sampling, the hand-off schema, the worker and its budget, the
audit runner, records, the store, telemetry and CPU priority.

The floor the BentoML services in ``service/`` stand on; it imports every library floor below it
(the testbed only to build the embedded default model). Map: docs/contracts.md.
"""
