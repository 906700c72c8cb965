"""`python -m stox_gateway` is `stox-gateway`."""

from stox_gateway.cli.main import app

app(prog_name="stox-gateway")
