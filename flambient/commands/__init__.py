"""One module per CLI command; each exposes ``register(app: typer.Typer) -> None``.

Commands only parse and validate arguments and call the library; they hold no logic of their
own. :mod:`flambient.cli` discovers every module here.
"""
