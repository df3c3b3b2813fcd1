"""Generic Bytewax pieces that name no flow: records, validation, dead letters, guards, metrics,
clocks, the async agent step and its lanes, logging, preflight, shutdown and recovery checks."""
