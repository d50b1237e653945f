"""`analyze --checkpoints-path <run | sweep | tree>`: summaries, seed groups, effects, comparisons, exports.

A thin shim for a checkout: `python analyze.py --checkpoints-path runs/reg/latest` runs the installed
`analyze` command (sweeper.analyze_cli.main), as does `sweeper analyze`. Give two paths to compare them
side by side. See docs/analysis.md.
"""

from sweeper.analyze_cli import main

if __name__ == "__main__":
    main()
