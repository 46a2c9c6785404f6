"""Help texts for the chat commands, and the short descriptions the platforms show in their command menus."""

from __future__ import annotations

from bot.conversation.commands import echo

# (name, description) for Telegram's setMyCommands and Discord's application commands. Telegram wants
# lower-case names of 1–32 characters and descriptions of 1–256; Discord caps descriptions at 100,
# so every description here stays within 100.
COMMAND_DESCRIPTIONS: list[tuple[str, str]] = [
    ("model", "Show or switch the model: /model, /model list, /model <number>, /model provider/model"),
    ("new", "Start a fresh conversation, optionally with another model"),
    ("reset", "Clear this conversation's history, optionally switching model"),
    ("status", "Show this conversation's model, credential and history size"),
    ("retry", "Send your last message again after an interrupted answer"),
    ("stop", "Stop the answer in progress"),
    ("help", "List the commands, or explain one: /help <command>"),
]

# Plain text on purpose: it is safe whether an adapter sends it as text or renders it as Markdown.
_OVERVIEW = [
    "Commands:",
    "/model — the current model and a numbered picker",
    "/model list [page] — list the available models",
    "/model <number> — switch to that model from the list",
    "/model provider/model — switch model (an alias works too)",
    "/model status — models, fallbacks and credentials",
    "/model default — go back to the default model",
    "/new [model] — start a fresh conversation",
    "/reset [model] — clear this conversation's history",
    "/status — this conversation's model, credential and history size",
    "/retry — send your last message again after an interrupted answer",
    "/stop — stop the answer in progress",
    "/help <command> — more about one command",
]
_ADMIN_OVERVIEW = [
    "",
    "Admin:",
    "/model provider/model@profile — pin one credential for this conversation",
    "/reset @username or /reset user:<id> — reset another member's conversation",
]

_TOPICS: dict[str, str] = {
    "model": (
        "/model shows the current model and a numbered list of model families.\n"
        "/model list [page] — more of the list.\n"
        "/model <number> — switch to that family (your current provider if it offers it).\n"
        "/model provider/model — switch to exactly that model; an alias such as /model sonnet works too.\n"
        "/model status — the current model, whether a fallback answered, the fallbacks and credentials.\n"
        "/model default — drop your choice and use the default model again.\n"
        "A model you pick stays for this conversation; if it fails, the fallbacks answer for that turn only."
    ),
    "new": (
        "/new starts a fresh conversation: the history is cleared and credential pins are dropped.\n"
        "Your model choice is kept; /new provider/model starts with that model instead."
    ),
    "reset": (
        "/reset clears this conversation's history and drops credential pins.\n"
        "Your model choice is kept; /reset provider/model switches model at the same time."
    ),
    "status": "/status shows this conversation's model, the credential in use and how long the history is.",
    "retry": "/retry sends your last message again, for example after an answer was interrupted.",
    "stop": "/stop cancels the answer that is being written.",
    "help": "/help lists the commands; /help <command> explains one of them.",
}
_ADMIN_TOPICS: dict[str, str] = {
    "model": (
        "Admin: /model provider/model@profile pins one credential for this conversation; it is never "
        "rotated. /model provider/model without @ drops the pin."
    ),
    "reset": (
        "Admin: /reset @username or /reset user:<id> resets another member's conversation in this chat "
        "(a Discord mention works too); add a model to switch theirs: /reset @username provider/model."
    ),
}


def help_text(topic: str | None, *, is_admin: bool) -> str:
    """The overview, or the help on one command; admin-only commands are shown to admins only."""
    if topic is None:
        lines = _OVERVIEW + (_ADMIN_OVERVIEW if is_admin else [])
        return "\n".join(lines)
    name = topic.strip().removeprefix("/").lower()
    text = _TOPICS.get(name)
    if text is None:
        return f"There is no /{echo(name)} command. Send /help for the list."
    admin_text = _ADMIN_TOPICS.get(name)
    if is_admin and admin_text is not None:
        return text + "\n" + admin_text
    return text
