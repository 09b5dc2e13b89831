"""Reports built on the lower layers: robustness reports, comparisons, profiles and plots."""
