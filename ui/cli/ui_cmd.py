"""``privsynth ui``: the browser app (sign-in, each user's own workspace), served locally."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``ui`` command."""
    parser = subparsers.add_parser(
        "ui",
        help="start the browser app (accounts, upload, train, generate, evaluate)",
        description="Serve the privsynth web app: users sign in (accounts and their roles in "
        "$PRIVSYNTH_HOME/users.sqlite; see `privsynth users`) and each works in a workspace of "
        "their own; every budget is a data source's, in the one ledger "
        "$PRIVSYNTH_HOME/ledger.sqlite that the CLI and the flows share, and only a custodian "
        "sets one. Binds to 127.0.0.1 by default; put it behind an HTTPS reverse proxy before "
        "opening it to a network. Sends no analytics and makes no outbound calls.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--data-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="a server folder whose CSV/Parquet files users may pick (repeat for "
        "more; also PRIVSYNTH_UI_DATA_DIRS)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=None,
        help="largest upload, in MiB (default 200; PRIVSYNTH_UI_MAX_UPLOAD_MB)",
    )
    signup = parser.add_mutually_exclusive_group()
    signup.add_argument(
        "--no-signup",
        dest="signup",
        action="store_false",
        default=None,
        help="visitors cannot create accounts; the operator adds them with "
        "`privsynth users add` (also PRIVSYNTH_UI_SIGNUP=0). The default when "
        "a --data-dir is given",
    )
    signup.add_argument(
        "--signup",
        dest="signup",
        action="store_true",
        help="visitors may create analyst accounts, even with --data-dir "
        "(also PRIVSYNTH_UI_SIGNUP=1); the default without one",
    )
    parser.add_argument(
        "--max-trainings",
        type=int,
        default=None,
        help="trainings that may run at once, all users together (default 2)",
    )
    parser.add_argument(
        "--dask-address",
        default=None,
        metavar="ADDRESS",
        help="scheduler of an existing Dask cluster (tcp://HOST:8786): every training, "
        "evaluation and audit the app starts runs its tasks there, as `privsynth run "
        "--dask-address` does (also PRIVSYNTH_UI_DASK_ADDRESS; users cannot change it)",
    )
    parser.set_defaults(func=ui_cmd)


def ui_cmd(args: argparse.Namespace) -> int:
    """Start the server and block until interrupted."""
    import os
    from pathlib import Path

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from privsynth_ui.server import serve
    from privsynth_ui.settings import UISettings
    from privsynth_ui.web import create_app

    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dirs"] = tuple(Path(d) for d in args.data_dir)
    if args.max_upload_mb is not None:
        overrides["max_upload_bytes"] = int(args.max_upload_mb * 2**20)
    if args.signup is not None:
        overrides["allow_signup"] = args.signup
    if args.max_trainings is not None:
        overrides["max_trainings"] = args.max_trainings
    if args.dask_address is not None:
        overrides["dask_address"] = args.dask_address
    settings = UISettings.from_env(**overrides)  # ConfigError: a malformed address, a folder
    if settings.dask_address:
        say_cluster(settings.dask_address)
    serve(settings, create_app, host=args.host, port=args.port)
    return 0


def say_cluster(address: str) -> None:
    """Say whether the cluster answers now. Not fatal: each training checks it again, and is
    refused with the same message while it does not (a cluster may come up after the app)."""
    import sys

    from privsynth_core.errors import ConfigError
    from privsynth_flows.runtime import reach_cluster

    try:
        reach_cluster(address)
    except ConfigError as exc:
        print(
            f"privsynth ui: warning: {exc}; trainings are refused until it answers",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"privsynth ui: flow runs run their tasks on the Dask cluster at {address}")
