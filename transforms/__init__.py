"""segments: customer segments kept up to date from warehouse snapshots.

Every pipeline step is a plain function of (config, date) in this package; the CLI
(`transforms.cli.app`), the Airflow DAGs and the tests all call the same functions.
"""

__version__ = "0.1.0"
