"""`python -m harness.results_io`: print the JSON Schema of `--json` (docs/results-schema.json is this output)."""

import sys

from harness.results_io.models import schema_text

sys.stdout.write(schema_text())
