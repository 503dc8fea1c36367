"""Wire contract v1: topics (:mod:`.topics`) and payloads (:mod:`.payload`)."""
