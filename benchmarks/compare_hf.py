"""sftlab vs transformers.Trainer on identical work: `python benchmarks/compare_hf.py --quick`.

The implementation lives in `sftlab.bench` so `sftlab bench` runs the same thing from an installed package.
"""

import sys

from sftlab.bench import main

if __name__ == "__main__":
    sys.exit(main())
