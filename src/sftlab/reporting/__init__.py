"""Run reports: figures, calibration, and the self-contained HTML page per run or for several runs."""
