"""``modelbot auth export|import|gen-key|rekey``: move auth state between stores, and keep its key.

Export and import work on the store ``auth.store`` names (the file, or the database), in the seed's
``auth-profiles.json`` format, so a file store moves into the database and back with nothing lost.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.auth import atomic_file
from bot.auth.transfer import (
    ImportReport,
    export_document,
    import_document,
    merge_import,
    parse_export,
)
from bot.auth.types import AuthProfiles
from bot.config.paths import SECRET_KEY_ENV
from bot.errors import CommandError
from cli.common import (
    Context,
    add_common_options,
    agent_of,
    database_url,
    load_context,
    opened_auth,
    run_async,
)
from cli.output import warn

if TYPE_CHECKING:  # the sealing (cryptography) and SQLAlchemy only for the commands here that use them,
    # not for every `modelbot auth …` that registers them
    from bot.auth.secret_box import SecretBox


def register(asub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = asub.add_parser(
        "export", help="write the auth state in the auth-profiles.json format (secrets in clear)"
    )
    add_common_options(p)
    p.add_argument("--file", help="write to this file (mode 0600) instead of stdout")
    p.set_defaults(func=run_export)
    p = asub.add_parser("import", help="merge an auth-profiles.json file into the auth store")
    add_common_options(p)
    p.add_argument(
        "path", metavar="P", help="a file in the auth-profiles.json format (e.g. from `auth export`)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.set_defaults(func=run_import)
    p = asub.add_parser("gen-key", help=f"print a new random key for {SECRET_KEY_ENV}")
    p.set_defaults(func=run_gen_key)
    p = asub.add_parser("rekey", help=f"re-encrypt the stored secrets with the first key of {SECRET_KEY_ENV}")
    add_common_options(p, agent=False)
    p.set_defaults(func=run_rekey)


# -- export ------------------------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    agent = agent_of(args, ctx.config)
    text, where = run_async(_export(ctx, agent))
    if args.file is None:
        sys.stdout.write(text)
        if sys.stdout.isatty():
            warn(
                "the export holds every secret in clear text; prefer --file, which is written with mode 0600"
            )
        return 0
    target = Path(args.file).expanduser()
    write_private(target, text)
    print(
        f"Exported the auth state of {where} to {target} (mode 0600). It holds the secrets in clear text: "
        "keep it safe, and delete it once it has been imported."
    )
    return 0


async def _export(ctx: Context, agent: str) -> tuple[str, str]:
    async with opened_auth(ctx, agent) as store:
        return await export_document(store), store.where


def write_private(target: Path, text: str) -> None:
    """Write ``text`` atomically to a new file of mode 0600 (replacing any file there)."""
    staged = atomic_file.stage(target, text.encode("utf-8"))
    try:
        os.fsync(staged.fd)
    except BaseException:
        atomic_file.discard(staged)
        raise
    atomic_file.install(staged)
    atomic_file.sync_dir(target.parent)


# -- import ------------------------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    agent = agent_of(args, ctx.config)
    source = Path(args.path).expanduser()
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CommandError(f"{source}: not UTF-8 text. Nothing was imported.") from None
    incoming = parse_export(text, str(source))
    report, where = run_async(_import(ctx, agent, incoming, dry_run=args.dry_run))
    if not report.changed:
        print(f"Nothing to import: {source} holds nothing that {where} lacks ({len(report.items)} skipped).")
        return 0
    print(f"{'Would import' if args.dry_run else 'Imported'} {source} into {where}:")
    for outcome in ("added", "updated", "skipped"):
        if items := report.of(outcome):
            print(f"  {outcome + ':':9}{', '.join(items)}")
    return 0


async def _import(
    ctx: Context, agent: str, incoming: AuthProfiles, *, dry_run: bool
) -> tuple[ImportReport, str]:
    async with opened_auth(ctx, agent) as store:
        if dry_run:
            return merge_import(await store.areload(), incoming).report, store.where
        return await import_document(store, incoming), store.where


# -- keys ------------------------------------------------------------------------------------------------------


def run_gen_key(_args: argparse.Namespace) -> int:
    from bot.auth.secret_box import generate_key  # noqa: PLC0415

    print(generate_key())
    return 0


def run_rekey(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    if ctx.config.auth.store != "database":
        raise CommandError(
            'auth.store is "file": auth-profiles.json is not encrypted, so there is nothing to rekey.'
        )
    from bot.auth.secret_box import SecretBox, parse_keys  # noqa: PLC0415

    keys = parse_keys(ctx.env.get(SECRET_KEY_ENV, ""))
    if len(keys) < 2:
        raise CommandError(
            f"{SECRET_KEY_ENV} holds one key. To rotate it, set {SECRET_KEY_ENV}=NEW,OLD (a new key from "
            "`modelbot auth gen-key`, then the current one) on every host, run `modelbot auth rekey`, "
            f"then set {SECRET_KEY_ENV}=NEW alone. Nothing was changed."
        )
    count = run_async(_rekey(ctx, SecretBox(keys)))
    print(
        f"Re-encrypted the secrets of {count} profile(s) of every agent with the first key of {SECRET_KEY_ENV}. "
        f"Now set {SECRET_KEY_ENV} to that key alone on every host and restart them."
    )
    return 0


async def _rekey(ctx: Context, box: SecretBox) -> int:
    from bot.store.auth_state import open_auth_state  # noqa: PLC0415

    async with open_auth_state(database_url(ctx)) as state:
        return await state.reseal_all(box.reseal)
