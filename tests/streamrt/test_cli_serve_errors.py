import socket

from typer.testing import CliRunner

from streamrt.cli import app


def test_serve_on_a_busy_port_says_so_and_exits_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = CliRunner().invoke(app, ["serve", "--fake-model", "--port", str(port)])
    assert out.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.output and "in use" in out.output


def test_serve_rejects_an_impossible_port():
    out = CliRunner().invoke(app, ["serve", "--fake-model", "--port", "70000"])
    assert out.exit_code == 2 and "65535" in out.output
