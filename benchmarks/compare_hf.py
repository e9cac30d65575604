"""sftlab vs transformers.Trainer on identical work: `python benchmarks/compare_hf.py --quick`.

`--task token_classification|question_answering|seq2seq` runs `benchmarks/bench_tasks.py`, `--task causal_lm`
`benchmarks/bench_causal_lm.py`; classification (the default) is cases a-d.

The implementation lives in `sftlab.bench` so `sftlab bench` runs the same thing from an installed package.
"""

import sys

from sftlab.bench import main

if __name__ == "__main__":
    sys.exit(main())
