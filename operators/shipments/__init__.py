"""The shipments domain: reference data, enrich, rules, decision windows, its agent, its surge."""
