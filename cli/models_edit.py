"""``modelbot models set|set-image|aliases|fallbacks``: config edits that keep the file as it was written.

Refs are checked with the catalog's rules. A model outside an existing allowlist is refused with the
sentence of docs/failover.md §2 unless ``--allow`` adds it there; an allowlist is never created as a side effect. The edits
target ``agents.defaults``; a config that still uses the legacy ``agent`` key is edited there (the load
warning suggests ``modelbot config migrate``), so a file never ends up with both sections.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from bot.config.key_paths import KeyPath, format_key_path
from bot.errors import CommandError, InvalidRef, ModelNotAllowed, UnknownModel
from bot.models.agents import agent_ids, agent_models, default_agent_id, default_provider
from bot.models.catalog import Catalog
from bot.models.refs import ModelRef, parse_model_ref, parse_ref, resolve_ref
from bot.providers.registry import spec_for
from cli.common import Context, add_common_options, defaults_path, edit_config, load_context
from cli.output import print_json, print_lines, print_table, warn

if TYPE_CHECKING:
    from bot.config.edit import Change, Json5Document

_ALLOWLIST = "agents.defaults.models"


def register(msub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _leaf(msub, "set", "set the default (primary) model", run_set)
    p.add_argument("ref", metavar="REF", help="provider/model or an alias")
    _allow_option(p)
    p = _leaf(msub, "set-image", "set the image model", run_set_image)
    p.add_argument("ref", metavar="REF", help="provider/model or an alias")
    _allow_option(p)

    aliases = msub.add_parser("aliases", help="short names for models")
    asub = aliases.add_subparsers(dest="aliases_command", metavar="ACTION", required=True)
    p = _leaf(asub, "list", "list the aliases", run_aliases_list)
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _leaf(asub, "add", "add or change an alias", run_aliases_add)
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("ref", metavar="REF")
    _allow_option(p)
    p.add_argument(
        "--create-allowlist",
        action="store_true",
        help=f"create {_ALLOWLIST} (aliases live there) with this model and every model of the chains",
    )
    p = _leaf(asub, "remove", "remove an alias (the model stays allowed)", run_aliases_remove)
    p.add_argument("alias", metavar="ALIAS")

    fallbacks = msub.add_parser("fallbacks", help="the models tried when the primary fails")
    fsub = fallbacks.add_subparsers(dest="fallbacks_command", metavar="ACTION", required=True)
    p = _leaf(fsub, "list", "list the fallbacks in order", run_fallbacks_list)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON for scripts")
    out.add_argument("--plain", action="store_true", help="one model per line")
    p = _leaf(fsub, "add", "append a fallback", run_fallbacks_add)
    p.add_argument("ref", metavar="REF")
    _allow_option(p)
    p = _leaf(fsub, "remove", "remove a fallback", run_fallbacks_remove)
    p.add_argument("ref", metavar="REF")
    _leaf(fsub, "clear", "remove every fallback", run_fallbacks_clear)


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, func: Any
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    add_common_options(p, agent=False, inherit=True)
    p.set_defaults(func=func)
    return p


def _allow_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow", action="store_true", help=f"add the model to the allowlist ({_ALLOWLIST})")


# -- refs ------------------------------------------------------------------------------------------------


def resolve_for_edit(ctx: Context, text: str, *, allow: bool) -> tuple[ModelRef, bool]:
    """The model ``text`` names, and whether ``--allow`` must add it to the allowlist."""
    config = ctx.config
    raw = parse_ref(text)
    if raw.profile is not None:
        raise CommandError(
            "A profile cannot be configured here; people pin one per session with /model provider/model@profile."
        )
    catalog = Catalog.from_config(config)
    agent = default_agent_id(config)
    ref = resolve_ref(raw, aliases=catalog.aliases(), default_provider=default_provider(config, agent)).ref
    spec_for(ref.provider, config)  # an unknown provider is its own error, with suggestions
    try:
        catalog.resolve(str(ref), ref.provider)
    except UnknownModel as exc:
        hint = f" To use a model the catalog does not know, list it under models.providers.{ref.provider}.models."
        raise CommandError(f"{exc}{hint}") from None
    except ModelNotAllowed as exc:
        if not allow:
            raise CommandError(
                f'{exc} Add "{ref}" to {_ALLOWLIST} first, or pass --allow to add it with this change.'
            ) from None
        return ref, True
    return ref, False


def _allow(doc: Json5Document, ref: ModelRef) -> Change:
    return doc.set((*defaults_path(doc), "models", str(ref)), {})


def _same(text: object, ref: ModelRef) -> bool:
    try:
        return isinstance(text, str) and parse_model_ref(text) == ref
    except InvalidRef:
        return False


# -- set, set-image -------------------------------------------------------------------------------------


def run_set(args: argparse.Namespace) -> int:
    return _set_primary(args, "model")


def run_set_image(args: argparse.Namespace) -> int:
    return _set_primary(args, "imageModel")


def _set_primary(args: argparse.Namespace, key: str) -> int:
    ctx = load_context(args)
    ref, needs_allow = resolve_for_edit(ctx, args.ref, allow=args.allow)
    if key == "imageModel" and not Catalog.from_config(ctx.config).accepts_images(ref):
        warn(f"the catalog does not list image input for {ref}")
    if key == "model":
        _warn_about_shadowing(ctx)

    def edit(doc: Json5Document) -> list[Change]:
        base = (*defaults_path(doc), key)
        if key == "model" and not doc.has(base) and ctx.config.agents.defaults.model.fallbacks:
            warn("the built-in default's fallbacks no longer apply once a primary is set; add your own")
        path = base if isinstance(doc.get(base), str) else (*base, "primary")  # keeps `model: "p/m"` short
        if _same(doc.get(path), ref):
            return []
        return ([_allow(doc, ref)] if needs_allow else []) + [doc.set(path, str(ref))]

    return edit_config(ctx, edit)


def _warn_about_shadowing(ctx: Context) -> None:
    for index, agent in enumerate(ctx.config.agents.list):
        if agent.model is not None and agent.model.primary and agent.id == default_agent_id(ctx.config):
            where = format_key_path(("agents", "list", index, "model"))
            warn(f'the default agent "{agent.id}" has its own model ({where}), which wins over this one')


# -- aliases ---------------------------------------------------------------------------------------------


def run_aliases_list(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    aliases = {alias: str(ref) for alias, ref in sorted(Catalog.from_config(ctx.config).aliases().items())}
    if args.json:
        print_json(aliases)
    else:
        print_table(["alias", "model"], [[a, r] for a, r in aliases.items()])
    return 0


def run_aliases_add(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    alias = args.alias.strip()
    if not alias or len(alias) > 64 or any(ch.isspace() or ch in "/@" for ch in alias):
        raise CommandError("An alias is one word (at most 64 characters), without '/', '@' or spaces.")
    has_allowlist = ctx.config.agents.defaults.models is not None
    if not has_allowlist and not args.create_allowlist:
        raise CommandError(
            f"Aliases live in {_ALLOWLIST}, which is also the allowlist and is not set: creating it would "
            "limit /model to the models listed there. Pass --create-allowlist to create it with this "
            "model and every model of the chains."
        )
    # The alias entry is the allowlist entry: adding one is what --allow (or a new allowlist) asks for.
    ref, _ = resolve_for_edit(ctx, args.ref, allow=args.allow or not has_allowlist)
    taken = Catalog.from_config(ctx.config).alias(alias)
    if taken is not None and taken != ref:
        raise CommandError(f'Alias "{alias}" already stands for {taken}; remove it first.')

    def edit(doc: Json5Document) -> list[Change]:
        models: KeyPath = (*defaults_path(doc), "models")
        changes = [] if has_allowlist else _create_allowlist(doc, ctx, ref)
        key = next((k for k in doc.get(models, {}) if _same(k, ref)), None)
        if key is None:
            return [*changes, doc.set((*models, str(ref)), {"alias": alias})]
        if doc.get((*models, key, "alias")) == alias:
            return changes
        return [*changes, doc.set((*models, key, "alias"), alias)]

    return edit_config(ctx, edit)


def _create_allowlist(doc: Json5Document, ctx: Context, ref: ModelRef) -> list[Change]:
    chains = [agent_models(ctx.config, agent) for agent in agent_ids(ctx.config)]
    refs = [r for c in chains for r in (c.primary, *c.fallbacks, c.image_primary, *c.image_fallbacks) if r]
    entries: dict[str, Any] = {str(r): {} for r in dict.fromkeys(refs) if r != ref}
    return [doc.set((*defaults_path(doc), "models"), entries, expand=True)]


def run_aliases_remove(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    wanted = args.alias.strip().lower()

    def edit(doc: Json5Document) -> list[Change]:
        models: KeyPath = (*defaults_path(doc), "models")
        entries = doc.get(models, {})
        for key, entry in entries.items():
            alias = entry.get("alias") if isinstance(entry, dict) else None
            if isinstance(alias, str) and alias.strip().lower() == wanted:
                return [doc.remove((*models, key, "alias"))]
        known = sorted(e["alias"] for e in entries.values() if isinstance(e, dict) and e.get("alias"))
        raise CommandError(f'No alias "{args.alias}". Aliases: {", ".join(known) or "none"}.')

    return edit_config(ctx, edit)


# -- fallbacks -------------------------------------------------------------------------------------------


def run_fallbacks_list(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    fallbacks = list(ctx.config.agents.defaults.model.fallbacks)
    if args.json:
        print_json(fallbacks)
    elif args.plain:
        print_lines(fallbacks)
    else:
        print_table(["#", "model"], [[str(i), ref] for i, ref in enumerate(fallbacks, 1)])
    return 0


def _fallbacks_path(doc: Json5Document) -> tuple[KeyPath, list[Change]]:
    """Where the fallbacks are; the short form ``model: "p/m"`` first becomes ``{ primary: "p/m" }``."""
    base = (*defaults_path(doc), "model")
    changes = [doc.set(base, {"primary": doc.get(base)})] if isinstance(doc.get(base), str) else []
    return (*base, "fallbacks"), changes


def run_fallbacks_add(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    ref, needs_allow = resolve_for_edit(ctx, args.ref, allow=args.allow)
    current = list(ctx.config.agents.defaults.model.fallbacks)

    def edit(doc: Json5Document) -> list[Change]:
        path, changes = _fallbacks_path(doc)
        if any(_same(item, ref) for item in current):
            print(f"{ref} is already a fallback.")
            return []
        changes += [_allow(doc, ref)] if needs_allow else []
        if not doc.has(path):  # the chain came from the built-in default: keep it, plus this one
            return [*changes, doc.set(path, [*current, str(ref)])]
        return [*changes, doc.append(path, str(ref))]

    return edit_config(ctx, edit)


def run_fallbacks_remove(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    catalog = Catalog.from_config(ctx.config)
    raw = parse_ref(args.ref)
    ref = resolve_ref(
        raw,
        aliases=catalog.aliases(),
        default_provider=default_provider(ctx.config, default_agent_id(ctx.config)),
    ).ref
    current = list(ctx.config.agents.defaults.model.fallbacks)
    if not any(_same(item, ref) for item in current):
        raise CommandError(f"{ref} is not a fallback. Fallbacks: {', '.join(current) or 'none'}.")

    def edit(doc: Json5Document) -> list[Change]:
        path, changes = _fallbacks_path(doc)
        if not doc.has(path):
            return [*changes, doc.set(path, [item for item in current if not _same(item, ref)])]
        index = next(i for i, item in enumerate(doc.get(path)) if _same(item, ref))
        return [*changes, doc.remove((*path, index))]

    return edit_config(ctx, edit)


def run_fallbacks_clear(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    if not ctx.config.agents.defaults.model.fallbacks:
        print("There are no fallbacks.")
        return 0

    def edit(doc: Json5Document) -> list[Change]:
        path, changes = _fallbacks_path(doc)
        if not doc.has(path):
            return [*changes, doc.set(path, [])]
        # One item at a time, last first, so comments between the items stay where they are.
        return [*changes, *(doc.remove((*path, i)) for i in reversed(range(len(doc.get(path)))))]

    return edit_config(ctx, edit)
