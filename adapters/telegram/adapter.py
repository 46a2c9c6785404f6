"""The Telegram channel: lifecycle, and routing of messages and button presses to the core and back."""

from __future__ import annotations

import logging

from telegram import BotCommand, Message, Update, User
from telegram.error import BadRequest, InvalidToken
from telegram.ext import CallbackQueryHandler, ContextTypes, MessageHandler, filters

from adapters.common.jobs import Jobs
from adapters.telegram import incoming as read
from adapters.telegram.access import REFUSAL, AccessPolicy, ChatAdmins, Gate
from adapters.telegram.buttons import PickerButtons
from adapters.telegram.client import (
    ALLOWED_UPDATES,
    PTBApplication,
    Timings,
    build_application,
    setup_error,
    webhook_path,
)
from adapters.telegram.render import BAD_IMAGE, FAILED, UNSUPPORTED, plain_pieces
from adapters.telegram.sender import ChatUnavailable, Sender, Target
from adapters.telegram.settings import TelegramChannel
from adapters.telegram.stream import reply_stream, send_pieces
from bot.chat import ImagePart, Incoming
from bot.conversation.help import COMMAND_DESCRIPTIONS
from bot.conversation.pipeline import ChatPipeline

log = logging.getLogger("modelbot.telegram")

Context = ContextTypes.DEFAULT_TYPE  # the adapter reads nothing from PTB's context


class TelegramAdapter:
    """Runs the bot on python-telegram-bot: long polling, or a webhook when configured; decides nothing."""

    name = "telegram"

    def __init__(
        self, pipeline: ChatPipeline, settings: TelegramChannel, *, timings: Timings | None = None
    ) -> None:
        self._pipeline = pipeline
        self._settings = settings
        self._timings = timings if timings is not None else Timings()
        chat_admins = ChatAdmins(self._fetch_admins, ttl_s=self._timings.admin_cache_s)
        self._gate = Gate(AccessPolicy(settings.allow_from, settings.admins), chat_admins)
        self._app: PTBApplication | None = None
        self._sender: Sender | None = None
        self._buttons: PickerButtons | None = None
        self._jobs = Jobs("telegram")
        self._bot_id = 0
        self._username = ""

    @property
    def username(self) -> str:
        """The bot's @username as getMe returned it (set by ``start``)."""
        return self._username

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """getMe, setMyCommands, then long polling (deleteWebhook first) or the webhook server."""
        if self._app is not None:
            return
        app = self._app = build_application(self._settings)
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_error_handler(self._on_error)
        try:
            await app.initialize()
            self._bot_id, self._username = app.bot.id, app.bot.username
            sender = self._sender = Sender(
                app.bot, attempts=self._timings.send_attempts, backoff_s=self._timings.retry_backoff_s
            )
            self._buttons = PickerButtons(self._pipeline, self._gate, sender, self._username)
            await self._register_commands(app)
            await app.start()
            await self._receive(app)
        except BaseException as exc:
            await self._shutdown(app)
            error = setup_error(exc, self._settings)
            if error is not None:
                # PTB's InvalidToken quotes the token: keep it out of the chain (and so out of tracebacks).
                raise error from (None if isinstance(exc, InvalidToken) else exc)
            raise
        mode = "webhook" if self._settings.webhook is not None else "long polling"
        log.info("telegram: running as @%s (%s)", self._username, mode)

    async def _register_commands(self, app: PTBApplication) -> None:
        """The command menu; getMe already worked, so a failure here is a warning, never a failed start."""
        commands = [BotCommand(name, text) for name, text in COMMAND_DESCRIPTIONS]
        try:
            await self.sender.call(None, lambda _: app.bot.set_my_commands(commands))
        except Exception as exc:
            log.warning(
                "telegram: could not register the command menu (setMyCommands): %s; the bot runs without it",
                exc,
            )

    async def _receive(self, app: PTBApplication) -> None:
        assert app.updater is not None
        hook = self._settings.webhook
        if hook is None:
            await app.updater.start_polling(
                timeout=self._timings.poll_timeout_s, allowed_updates=ALLOWED_UPDATES
            )
            return
        await app.updater.start_webhook(
            listen=hook.listen,
            port=hook.port,
            url_path=webhook_path(hook.url),
            webhook_url=hook.url,
            secret_token=hook.secret_token,
            allowed_updates=ALLOWED_UPDATES,
        )

    async def stop(self) -> None:
        """Stop receiving, let in-flight turns finish (cancelled after a grace period), disconnect."""
        app = self._app
        if app is None:
            return
        await self._shutdown(app)
        log.info("telegram: stopped")

    async def _shutdown(self, app: PTBApplication) -> None:
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()  # hands the updates already fetched to the jobs
            await self._jobs.drain(self._timings.stop_grace_s)
            await app.shutdown()
        finally:
            self._app = None
            await app.bot.shutdown()  # a failed initialize() leaves the HTTP clients open; idempotent

    # -- updates ------------------------------------------------------------------------------------------

    async def _on_message(self, update: Update, context: Context) -> None:
        """Decide only whether the message concerns us; the work runs in the chat's lane."""
        message, user = update.message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        group = read.in_group(message) and self._settings.require_mention
        if not read.concerns_us(message, self._bot_id, self._username, require_mention=group):
            return
        command = read.leading_command(message)
        if command is not None and command.name == "stop":
            self._jobs.spawn(self._serve(message, user))  # must not wait behind the turn it stops
        else:
            self._jobs.submit(message.chat.id, self._serve(message, user))

    async def _on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is not None and self._buttons is not None:
            self._jobs.spawn(self._buttons.press(query))

    async def _on_error(self, update: object, context: Context) -> None:
        log.error("telegram: error while handling an update: %s", context.error, exc_info=context.error)

    # -- messages -----------------------------------------------------------------------------------------

    async def _serve(self, message: Message, user: User) -> None:
        is_group = read.in_group(message)
        target = Target(message.chat.id, read.topic(message), message.message_id if is_group else None)
        try:
            await self._answer(message, user, target, is_group)
        except ChatUnavailable:
            return  # blocked or removed: logged by the sender, nothing more to do for this chat
        except Exception:
            log.exception("telegram: answering a message in chat %s failed", message.chat.id)
            try:
                await send_pieces(self.sender, target, plain_pieces(FAILED))
            except Exception as exc:
                log.warning("telegram: could not tell chat %s about the failure: %s", message.chat.id, exc)

    async def _answer(self, message: Message, user: User, target: Target, is_group: bool) -> None:
        if not self._gate.allows(user.id, user.username, message.chat.id):
            log.info("telegram: refused user %s in chat %s (not in allowFrom)", user.id, message.chat.id)
            if not (is_group and self._settings.silent_refusal_in_groups):
                await send_pieces(self.sender, target, plain_pieces(REFUSAL))
            return
        if read.has_unsupported_media(message):
            await send_pieces(self.sender, target, plain_pieces(UNSUPPORTED))
            return
        images: tuple[ImagePart, ...] = ()
        source = read.image_source(message)
        if source is not None:
            image = await self._download(source)
            if image is None:
                await send_pieces(self.sender, target, plain_pieces(BAD_IMAGE))
                return
            images = (image,)
        replied_to = read.replied_to_member(message)
        msg = Incoming(
            platform="telegram",
            chat_id=str(message.chat.id),
            user_id=str(user.id),
            text=read.clean_text(message, self._username),
            user_name=user.username,
            thread_id=str(target.thread_id) if target.thread_id is not None else None,
            is_group=is_group,
            is_admin=await self._gate.is_admin(user.id, user.username, message.chat.id, group=is_group),
            images=images,
            bot_username=self._username,
            reply_to_user_id=str(replied_to) if replied_to is not None else None,
        )
        interval = self._timings.group_edit_interval_s if is_group else self._timings.edit_interval_s
        stream = reply_stream(
            self.sender, target, interval_s=interval, typing_interval_s=self._timings.typing_interval_s
        )
        try:
            await self._pipeline.handle(msg, stream)  # delivers through the stream
        finally:
            await stream.close()

    async def _download(self, source: read.ImageSource) -> ImagePart | None:
        if source.size is not None and source.size > read.MAX_DOWNLOAD_BYTES:
            return None
        bot = self.sender.bot
        try:
            file = await self.sender.call(None, lambda _: bot.get_file(source.file_id))
            data = bytes(await self.sender.call(None, lambda _: file.download_as_bytearray()))
        except BadRequest as exc:  # "file is too big", an expired file id
            log.info("telegram: could not download an image: %s", exc)
            return None
        media_type = read.sniff_image(data)
        return ImagePart(media_type, data) if media_type is not None else None

    async def _fetch_admins(self, chat_id: int) -> list[int]:
        members = await self.sender.call(chat_id, self.sender.bot.get_chat_administrators)
        return [member.user.id for member in members]

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            raise RuntimeError("the Telegram adapter is not running")
        return self._sender

    @property
    def busy(self) -> int:
        """Messages and button presses still being handled."""
        return self._jobs.busy

    @property
    def running(self) -> bool:
        return self._app is not None and self._app.running
