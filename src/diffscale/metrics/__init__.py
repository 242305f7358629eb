"""Per-cell evaluation: torch-fidelity metrics, CLIPScore, compositional accuracy; each with a bootstrap CI."""
