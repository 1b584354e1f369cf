"""Install the runtime dependencies pyproject.toml declares (not the package itself) into this interpreter.

Used by compose/images/Dockerfile: the dependency layer is cached until pyproject.toml changes, while the
harness's sources are copied in later layers. (pip has no "install only the dependencies" switch.)
"""

import subprocess
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *deps], check=True)
