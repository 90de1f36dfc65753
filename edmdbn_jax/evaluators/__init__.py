"""LOSO scoring (metrics) and the reports written to a run directory."""
