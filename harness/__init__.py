"""hierbench: benchmark harness for hierarchical edge-cloud training."""
