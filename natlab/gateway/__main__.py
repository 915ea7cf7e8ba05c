"""``python -m natlab.gateway <spec.json>``: run one gateway on the spec's datapath (inside its namespace)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from natlab.errors import NatlabError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m natlab.gateway <gw-NAME.json>  (run inside the gateway's netns)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from natlab.datapaths import registry
    from natlab.gateway.service import build_engine
    from natlab.gateway.spec import GatewaySpec

    try:
        spec = GatewaySpec.from_json(Path(args[0]).read_text())
        datapath = registry.get(spec.datapath)
        if datapath.in_process:
            raise ValueError(f"the {datapath.name} datapath runs inside its caller, not as a gateway process")
        return datapath.serve(datapath.gateway(spec, *build_engine(spec)))
    except (NatlabError, OSError, ValueError, TypeError) as err:
        message = err.message if isinstance(err, NatlabError) else f"{type(err).__name__}: {err}"
        logging.getLogger("natlab.gateway").error("gateway failed: %s", message)
        return 1


if __name__ == "__main__":
    sys.exit(main())
