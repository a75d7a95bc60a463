"""Model providers: `provider:model` resolved to an adapter, its key checked before anything runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestr.errors import ConfigurationError
from orchestr.models import ProjectConfig
from orchestr.providers.base import Provider

BUILTIN = {
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "openai": ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
}
NO_KEY = "not-needed"


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: str  # "anthropic" | "openai"
    api_key: str
    base_url: str | None


def split_model(ref: str) -> tuple[str, str]:
    provider, _, model = ref.partition(":")
    return provider, model


def endpoint(provider: str, config: ProjectConfig, env: Mapping[str, str]) -> Endpoint:
    """Where a provider lives and its key; ConfigurationError (exit 2) naming a missing variable."""
    if provider in BUILTIN:
        kind, key_var, url_var = BUILTIN[provider]
        key = env.get(key_var)
        if not key:
            raise ConfigurationError(
                f"{key_var} is not set: models from '{provider}' need it (export {key_var}=..., "
                f"or run offline with --replay FILE)")
        return Endpoint(provider, kind, key, env.get(url_var) or None)
    spec = config.providers[provider]
    key = NO_KEY
    if spec.api_key_env:
        key = env.get(spec.api_key_env, "")
        if not key:
            raise ConfigurationError(f"{spec.api_key_env} is not set: provider '{provider}' (orchestr.yaml) needs it")
    return Endpoint(provider, spec.kind, key, spec.base_url)


def check_keys(models: Iterable[str], config: ProjectConfig, env: Mapping[str, str]) -> None:
    problems = []
    for provider in sorted({split_model(m)[0] for m in models}):
        try:
            endpoint(provider, config, env)
        except ConfigurationError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigurationError("; ".join(problems))


def connect(point: Endpoint, *, timeout: float) -> Provider:
    """The SDK adapter for an endpoint: the only place an SDK gets imported."""
    if point.kind == "anthropic":
        from orchestr.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name=point.name, api_key=point.api_key, base_url=point.base_url, timeout=timeout)
    from orchestr.providers.openai import OpenAIProvider

    return OpenAIProvider(name=point.name, api_key=point.api_key, base_url=point.base_url, timeout=timeout)
