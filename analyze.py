"""`analyze --checkpoints-path <run | sweep | tree>`: summaries, seed groups, effects, comparisons, exports.

A thin shim for a checkout: `python analyze.py --checkpoints-path runs/reg/latest` runs the installed
`analyze` command (sweeper.cli.analyze_main), as does `sweeper analyze`. Give two paths to compare them
side by side. See docs/analysis.md.
"""

from sweeper.cli import analyze_main as main

if __name__ == "__main__":
    main()
