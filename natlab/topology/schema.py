"""JSON Schema of topology files, shipped as ``natlab/schemas/topology.schema.json``.

Regenerate after changing the models: ``python -m natlab.topology.schema --write``.
A test fails while the shipped file and the code disagree.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from natlab.shipped import shipped_dir
from natlab.topology.model import TopologyFile

SCHEMA_PATH = shipped_dir("schemas") / "topology.schema.json"


def topology_schema() -> dict[str, Any]:
    schema = TopologyFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "natlab topology"
    return schema


def render() -> str:
    return json.dumps(topology_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        SCHEMA_PATH.write_text(render())
    else:
        sys.stdout.write(render())
