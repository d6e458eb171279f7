"""``clustertasks tls init``: a local CA and a server certificate, and how to trust them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clustertasks import errors
from clustertasks.service import certificates

app = typer.Typer(help="HTTPS for a local server: a CA of its own.", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True)

EXIT_USAGE = 4


@app.command("init")
def init(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", envvar="CLUSTERTASKS_TLS_DIR", help="Where to write the CA and certificate."
        ),
    ] = Path("./tls"),
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Make a local CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    try:
        files = certificates.make_local_ca(directory, overwrite=force)
    except errors.ConfigurationError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    ca, cert, key = files.ca.resolve(), files.cert.resolve(), files.key.resolve()
    out.print(
        f"""wrote the CA {ca} (its key {files.ca_key.resolve()}, mode 0600)
and the server certificate {cert} with its key {key}
(valid for {", ".join(certificates.SERVER_NAMES)}).

Serve HTTPS:
  clustertasks serve --tls-cert {cert} --tls-key {key}
  (or CLUSTERTASKS_TLS_CERT={cert} CLUSTERTASKS_TLS_KEY={key})

Trust the CA from the clients:
  Python SDKs     export REQUESTS_CA_BUNDLE={ca}
                  or Config(protocol="https", ca="{ca}") (alibabacloud-cs20151215),
                  AcsClient(..., verify="{ca}") (aliyun-python-sdk-core)
  Go, Terraform   export SSL_CERT_FILE={ca}
  Node            export NODE_EXTRA_CA_CERTS={ca}
  curl            curl --cacert {ca} https://127.0.0.1:8080/healthz
  clustertasks    --ca-cert {ca} (or CLUSTERTASKS_CA_CERT) on every client command"""
    )
