"""A channel is a plug-in: a made-up one (tests/fakes/echo_channel.py) is configured, validated and run by
``modelbot run`` beside the built-in ones, with no line of bot/ knowing it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.channels import ChannelRegistry
from bot.config.loader import LoadedConfig, load_config
from bot.errors import ConfigError
from bot.redaction import process_secrets
from cli.channels import BUILTIN_CHANNELS
from cli.run_cmd import serve
from tests.cli_helpers import write_config
from tests.fakes.echo_channel import EchoAdapter, EchoSettings, echo_plugin

WITH_ECHO = BUILTIN_CHANNELS.with_plugin(echo_plugin())


def _load(tmp_path: Path, text: str, channels: ChannelRegistry = WITH_ECHO, **env: str) -> LoadedConfig:
    path = Path(write_config(tmp_path / "config.json5", text))
    return load_config(path, env=env, must_exist=True, channels=channels)


def _error(tmp_path: Path, text: str, channels: ChannelRegistry = WITH_ECHO) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, channels)
    assert info.value.file == str(tmp_path / "config.json5")
    return info.value


def test_the_plugins_settings_model_reads_its_section(tmp_path: Path) -> None:
    """``channels.echo`` becomes the plug-in's own typed settings, beside the built-in channels' defaults."""
    loaded = _load(
        tmp_path,
        "{channels: {echo: {enabled: true, room: 'kitchen', apiKey: '${ECHO_KEY}'}}}",
        ECHO_KEY="k-1",
    )
    echo = loaded.config.channels.section("echo")
    assert isinstance(echo, EchoSettings)
    assert (echo.enabled, echo.room, echo.api_key, echo.greeting) == (
        True,
        "kitchen",
        "k-1",
        "hello from echo",
    )
    assert not loaded.config.channels.telegram.enabled


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("{channels: {echo: {rooom: 'x'}}}", "channels.echo.rooom", "unknown key `rooom` (did you mean `room`?)"),
        ("{channels: {echo: {room: ''}}}", "channels.echo.room", "expected a non-empty string"),
        ("{channels: {echo: {enabled: 'maybe'}}}", "channels.echo.enabled", "expected true or false"),
        ("{channels: {irc: {}}}", "channels.irc", "unknown channel `irc` (channels of this modelbot: telegram, discord, echo)"),
        ("{bindings: [{agentId: 'main', match: {channel: 'irc'}}]}", "bindings[0].match.channel", "expected one of: telegram, discord, echo, console"),
    ],
)  # fmt: skip
def test_its_errors_name_the_key_path_like_every_other(
    tmp_path: Path, text: str, key_path: str, expected: str
) -> None:
    """Bad settings of a plug-in's section read exactly as the core's own errors do."""
    error = _error(tmp_path, text)
    assert (error.key_path, error.expected) == (key_path, expected)


def test_a_channel_that_is_not_registered_is_unknown(tmp_path: Path) -> None:
    """Without the plug-in, its section is an error naming the channels there are."""
    error = _error(tmp_path, "{channels: {echo: {enabled: true}}}", BUILTIN_CHANNELS)
    assert (error.key_path, error.expected) == (
        "channels.echo",
        "unknown channel `echo` (channels of this modelbot: telegram, discord)",
    )


def test_bindings_may_name_a_registered_channel(tmp_path: Path) -> None:
    """A binding's channel is any registered plug-in's name."""
    loaded = _load(tmp_path, "{bindings: [{agentId: 'main', match: {channel: 'echo', chatId: 'kitchen'}}]}")
    assert loaded.config.bindings[0].match.channel == "echo"


def test_its_secret_stays_out_of_the_file_and_out_of_the_logs(tmp_path: Path) -> None:
    """A declared secret written into the file is refused with the plug-in's variable; from ${VAR} it is redacted."""
    error = _error(tmp_path, "{channels: {echo: {apiKey: 'plain-secret-value'}}}")
    assert error.key_path == "channels.echo.apiKey"
    assert 'write "${ECHO_API_KEY}"' in error.expected
    loaded = _load(
        tmp_path, "{channels: {echo: {enabled: true, apiKey: '${MY_ECHO}'}}}", MY_ECHO="echo-secret-1"
    )
    assert "echo-secret-1" in set(process_secrets(loaded, {}, []))


def test_a_disabled_channel_may_leave_its_variables_unset(tmp_path: Path) -> None:
    """As for the built-in channels: an unset ${VAR} of a channel that is not enabled reads as empty."""
    loaded = _load(tmp_path, "{channels: {echo: {apiKey: '${NOT_SET_HERE}'}}}")
    assert loaded.config.channels.echo.api_key == ""


async def test_modelbot_run_builds_starts_and_stops_the_plugin(tmp_path: Path) -> None:
    """`modelbot run` with only echo enabled: its builder gets its settings and the pipeline, a turn runs
    through the bot, and stop reaches it."""
    built: list[EchoAdapter] = []
    channels = BUILTIN_CHANNELS.with_plugin(echo_plugin(built))
    config = write_config(tmp_path / "c.json5", "{channels: {echo: {enabled: true, greeting: 'hi there'}}}")
    env = {**os.environ, "MODELBOT_STATE_DIR": str(tmp_path / "state")}
    stop = asyncio.Event()
    running = asyncio.create_task(serve(config, stop=stop, env=env, log_level="WARNING", channels=channels))
    deadline = asyncio.get_running_loop().time() + 20
    while not (built and "ready" in built[0].events) and not running.done():
        assert asyncio.get_running_loop().time() < deadline, "the echo channel never became ready"
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(running, 20) == 0
    [echo] = built
    assert echo.events == ["start", "ready", "stop"]
    assert echo.settings.greeting == "hi there"
    assert echo.replies and "[demo]" in echo.replies[0] and "hi there" in echo.replies[0]
