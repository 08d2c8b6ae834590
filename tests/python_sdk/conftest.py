"""Starts the project's Connect simulator for the official Python SDK tests."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = """
tokens:
  - { name: sdk, token: sdk-token, vaults: { "*": read-write } }
  - { name: sdk-reader, token: sdk-read-token, vaults: { "SDK Vault": read } }
vaults:
  - name: SDK Vault
    items:
      - title: Login Item
        tags: [sdk, login]
        urls: [{ href: "https://login.example", primary: true }]
        fields:
          - { label: username, value: sdk-user, purpose: USERNAME }
          - { label: password, value: sdk-password, purpose: PASSWORD }
      - title: File Item
        category: SECURE_NOTE
        files:
          - { name: notes.txt, content: "file body from the simulator" }
      - title: abcdefghijklmnopqrstuvwxyz
        fields: [{ label: note, value: an id-like title }]
      - title: OTP Item
        fields:
          - { label: one-time password, type: OTP, value: "otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP&issuer=Example" }
  - name: Other Vault
    items:
      - { title: Elsewhere, fields: [{ label: x, value: y }] }
"""


@pytest.fixture(scope="session")
def connect_url(tmp_path_factory):
    binary = os.environ.get("OPO_SIM_BIN", str(ROOT / "target" / "debug" / "connect-sim"))
    if not os.path.exists(binary):
        pytest.fail(f"simulator binary {binary} is missing: run `cargo build -p connect-sim` first (or set OPO_SIM_BIN)")
    data = tmp_path_factory.mktemp("sim") / "data.yaml"
    data.write_text(DATA)
    proc = subprocess.Popen(
        [binary, "--data", str(data), "--listen", "127.0.0.1:0", "--log-level", "warn"],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line.startswith("connect-sim listening on "):
            pytest.fail(f"simulator did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip().rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
