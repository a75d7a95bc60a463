"""Spec models: the strict, frozen shape of orchestr.yaml, context nodes and workflows.

Parsing happens once, at the edge; everything past it works with these types. Every key in
PRODUCT.md is here; anything else is an error (`extra="forbid"`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h|d)\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MAX_SECONDS = 3650 * 86400.0  # ten years: longer would be a typo, and timedelta overflows
# The JSON Schema twin of _DURATION (ECMA-262 syntax): what editors accept must match the loader.
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d)\s*)+$"


def parse_duration(value: object) -> object:
    """`90s`, `5m`, `1h30m`, `500ms`, `2d`, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 5m or 1h, got a boolean")
    if isinstance(value, int | float) and value == value:  # NaN is not a duration
        seconds = float(max(min(value, _MAX_SECONDS + 1), -1))
    elif isinstance(value, str) and _DURATION.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, like 90s, 5m, 1h or 1h30m")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"duration too long: at most {_MAX_SECONDS // 86400:g} days")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _positive(value: timedelta) -> timedelta:
    if value.total_seconds() <= 0:
        raise ValueError("must be longer than zero")
    return value


def _duration_schema(*, positive: bool) -> WithJsonSchema:
    """Text with units, or a bare number of seconds: both load, so editors must accept both."""
    seconds: dict[str, Any] = {"type": "number", "maximum": _MAX_SECONDS}
    seconds["exclusiveMinimum" if positive else "minimum"] = 0
    text = {"type": "string", "pattern": DURATION_PATTERN}
    return WithJsonSchema({"anyOf": [text, seconds], "examples": ["90s", "5m", "1h 30m", 90]})


Duration: TypeAlias = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _duration_schema(positive=False),
]
PositiveDuration: TypeAlias = Annotated[Duration, AfterValidator(_positive), _duration_schema(positive=True)]

_MODEL_REF = re.compile(r"^[A-Za-z0-9_.-]+:\S+$")


def _check_model_ref(value: str) -> str:
    if not _MODEL_REF.match(value):
        raise ValueError(
            f"invalid model {value!r}: write provider:model, e.g. anthropic:claude-sonnet-4-6"
        )
    return value


ModelRef: TypeAlias = Annotated[
    str, AfterValidator(_check_model_ref), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z0-9_.-]+:\\S+$"})
]


def _scalar_to_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue: TypeAlias = Annotated[str, BeforeValidator(_scalar_to_text)]
Scalar: TypeAlias = str | bool | int | float
StepIdText: TypeAlias = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*$", max_length=64)]
EnvName: TypeAlias = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


class Strict(BaseModel):
    # defer_build: a model builds its validator on first use, not at import (28 models cost ~40 ms
    # at start-up, and a nested model is validated through its parent's schema, never its own)
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)


class Retry(Strict):
    """`attempts` counts every attempt, the first included."""

    attempts: int = Field(default=1, ge=1, le=100)
    backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(seconds=60)
    on: tuple[Literal["error", "timeout", "unverified"], ...] = ("error", "timeout", "unverified")

    def merged_over(self, base: Retry | None) -> Retry:
        """This retry's explicitly set keys laid over `base`."""
        if base is None:
            return self
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})


class Budget(Strict):
    max_tokens: int = Field(ge=1)


class Permissions(Strict):
    """A ceiling: an action is allowed only if every level that sets its key allows it."""

    tools: tuple[str, ...] | None = None
    read: tuple[str, ...] | None = None
    write: tuple[str, ...] | None = None
    commands: tuple[str, ...] | None = None
    hosts: tuple[str, ...] | None = None


PERMISSION_KEYS = ("tools", "read", "write", "commands", "hosts")


# --- the context tree -----------------------------------------------------------------------


class ContextNodeSpec(Strict):
    title: str = Field(min_length=1)
    description: str = ""
    facts: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    vars: dict[str, Scalar] = Field(default_factory=dict)
    permissions: Permissions = Permissions()


# --- verification checks --------------------------------------------------------------------


class FileContains(Strict):
    path: str
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        # a pattern is literal, so an invalid one is wrong on every run: say so before the first
        try:
            re.compile(value, re.MULTILINE)
        except re.error as exc:
            at = f" at position {exc.pos}" if exc.pos is not None else ""
            raise ValueError(f"invalid regular expression {value!r}: {exc.msg}{at}") from None
        return value


class JsonSchemaTarget(Strict):
    path: str | None = None
    schema_: str | dict[str, Any] = Field(alias="schema")


class ToolCallMatch(Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ExitCodeCheck(Strict):
    exit_code: int


class FileExistsCheck(Strict):
    file_exists: str


class FileContainsCheck(Strict):
    file_contains: FileContains


class JsonSchemaCheck(Strict):
    json_schema: JsonSchemaTarget


class CommandCheck(Strict):
    command: str
    timeout: PositiveDuration = timedelta(seconds=60)


class ExprCheck(Strict):
    expr: str


class ToolCalledCheck(Strict):
    tool_called: ToolCallMatch


CHECK_KINDS = ("exit_code", "file_exists", "file_contains", "json_schema", "command", "expr", "tool_called")


def _check_kind(value: object) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if isinstance(value, dict):
        kinds = [k for k in value if k in CHECK_KINDS]
        return kinds[0] if len(kinds) == 1 else None
    return None


Check: TypeAlias = Annotated[
    Annotated[ExitCodeCheck, Tag("exit_code")]
    | Annotated[FileExistsCheck, Tag("file_exists")]
    | Annotated[FileContainsCheck, Tag("file_contains")]
    | Annotated[JsonSchemaCheck, Tag("json_schema")]
    | Annotated[CommandCheck, Tag("command")]
    | Annotated[ExprCheck, Tag("expr")]
    | Annotated[ToolCalledCheck, Tag("tool_called")],
    Discriminator(_check_kind),
]


def check_kind(check: Check) -> str:
    kind = _check_kind(check)
    assert kind is not None
    return kind


# --- workflows ------------------------------------------------------------------------------


class Schedule(Strict):
    cron: str
    timezone: str = "UTC"
    catchup: Literal["none", "latest", "all"] = "latest"
    catchup_window: PositiveDuration = timedelta(hours=24)
    overlap: Literal["skip", "queue"] = "skip"
    deadline: PositiveDuration | None = None


InputType: TypeAlias = Literal["string", "integer", "number", "boolean"]


def scalar_has_type(value: Scalar, kind: InputType) -> bool:
    """Whether a YAML scalar is a value of an input type, as `-i` would parse it."""
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    return isinstance(value, str)


class InputSpec(Strict):
    # `enum` comes before `default` so that the default's validator can see both it and `type`
    type: InputType = "string"
    enum: tuple[Scalar, ...] | None = None
    default: Scalar | None = None
    description: str = ""
    required: bool = False

    @field_validator("default")
    @classmethod
    def _default_fits(cls, value: Scalar | None, info: ValidationInfo) -> Scalar | None:
        """A default is used as written: one that `-i` could never produce would surprise at run time."""
        kind, enum = info.data.get("type"), info.data.get("enum")
        if value is None or kind is None:
            return value
        if not scalar_has_type(value, kind):
            raise ValueError(f"{_shown(value)} is {_kind_of(value)}, but the input's type is {kind}: "
                             + _default_fix(value, kind))
        if enum is not None and value not in enum:
            raise ValueError(f"{_shown(value)} is not one of the input's enum values "
                             f"({', '.join(map(_shown, enum))}): use one of them, or add it to `enum:`")
        return value


def _shown(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _kind_of(value: Scalar) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    return "a decimal number" if isinstance(value, float) else "text"


def _default_fix(value: Scalar, kind: InputType) -> str:
    if kind == "string":
        return f'quote it: "{_shown(value)}"'
    if kind == "boolean":
        return "write true or false, without quotes"
    if isinstance(value, str):
        try:
            (int if kind == "integer" else float)(value)
        except ValueError:
            pass
        else:
            return f"write {value.strip()} without quotes"
    return "write a whole number" if kind == "integer" else "write a number"


class OutputSpec(Strict):
    schema_: dict[str, Any] = Field(alias="schema")


class AgentSpec(Strict):
    model: ModelRef | None = None
    instructions: str = ""
    context: str | None = None
    tools: tuple[str, ...] = ()
    max_turns: int = Field(default=20, ge=1, le=500)
    permissions: Permissions | None = None
    budget: Budget | None = None


class StepBase(Strict):
    id: StepIdText
    name: str | None = None
    needs: Annotated[tuple[StepIdText, ...], BeforeValidator(_one_or_many)] = ()
    if_: str | None = Field(default=None, alias="if")
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    timeout: PositiveDuration | None = None
    retry: Retry | None = None
    continue_on_error: bool = False
    verify: tuple[Check, ...] = ()


class ShellStep(StepBase):
    run: str = Field(min_length=1)
    cwd: str | None = None


class AgentStep(StepBase):
    agent: str
    prompt: str = Field(min_length=1)
    context: str | None = None
    files: tuple[str, ...] = ()
    output: OutputSpec | None = None
    permissions: Permissions | None = None
    budget: Budget | None = None
    max_turns: int | None = Field(default=None, ge=1, le=500)


class ApprovalSpec(Strict):
    """A person decides (see docs/approvals.md); nothing grants itself, so the timeout fails the step."""

    message: str = Field(min_length=1)
    show: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] = ()
    timeout: PositiveDuration = timedelta(hours=24)
    notify: str | None = Field(default=None, min_length=1)


class ApprovalStep(StepBase):
    approval: ApprovalSpec


STEP_KEYS = {"run": "shell", "agent": "agent", "approval": "approval"}


def _step_kind(value: object) -> str | None:
    if isinstance(value, ShellStep):
        return "shell"
    if isinstance(value, AgentStep):
        return "agent"
    if isinstance(value, ApprovalStep):
        return "approval"
    if isinstance(value, dict):
        kinds = [kind for key, kind in STEP_KEYS.items() if key in value]
        return kinds[0] if len(kinds) == 1 else None
    return None


Step: TypeAlias = Annotated[
    Annotated[ShellStep, Tag("shell")] | Annotated[AgentStep, Tag("agent")]
    | Annotated[ApprovalStep, Tag("approval")],
    Discriminator(_step_kind),
]


class WorkflowDefaults(Strict):
    model: ModelRef | None = None
    timeout: PositiveDuration | None = None
    retry: Retry | None = None


class WorkflowSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")] | None = None
    description: str = ""
    context: str | None = None
    schedule: Schedule | None = None
    inputs: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], InputSpec] = Field(
        default_factory=dict
    )
    secrets: tuple[EnvName, ...] = ()
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    budget: Budget | None = None
    defaults: WorkflowDefaults = WorkflowDefaults()
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    steps: tuple[Step, ...] = Field(min_length=1)
    # run_command's children run in the sandbox, with the step's permissions as their reach
    sandbox: bool = False


# --- orchestr.yaml --------------------------------------------------------------------------


class ProviderSpec(Strict):
    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str | None = None
    api_key_env: EnvName | None = None


class Reach(Strict):
    """What an MCP server can touch, in the keys of permissions; an omitted key reaches nothing."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    @field_validator("read", "write")
    @classmethod
    def _project_relative(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern or pattern.startswith(("/", "\\")) or ".." in re.split(r"[\\/]+", pattern):
                raise ValueError(f"'{pattern}' must be a glob relative to the project root, without '..' "
                                 "(e.g. data/**): a server's reach is measured in project paths")
        return value


_HEADER_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def header_variables(value: str) -> list[str]:
    """The `${NAME}` variables a header value takes from orchestr's environment."""
    return _HEADER_VAR.findall(value)


def expand_header(value: str, environ: Mapping[str, str]) -> str:
    return _HEADER_VAR.sub(lambda m: environ.get(m[1], ""), value)


class McpServerSpec(Strict):
    """A stdio server (`command`) or a remote one (`url`, Streamable HTTP): exactly one of the two."""

    command: str | None = None
    args: tuple[str, ...] = ()
    url: Annotated[str, Field(pattern=r"^https?://[^/?#\s]+")] | None = None
    headers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")], str] = Field(default_factory=dict)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    # names of orchestr's own environment variables passed through (tokens stay out of the file)
    env_from: tuple[EnvName, ...] = ()
    timeout: PositiveDuration = timedelta(seconds=30)
    # how long one tool call may take before it is an error the model reads (the step's own
    # timeout still bounds it)
    call_timeout: PositiveDuration = timedelta(seconds=60)
    # None: the server is taken to reach everything (only a step allowed everything may use it)
    reach: Reach | None = None
    # start a stdio server with a narrower reach without the sandbox (where none can be had)
    unsafe_no_sandbox: bool = False

    @model_validator(mode="after")
    def _one_source_per_variable(self) -> McpServerSpec:
        both = [name for name in self.env_from if name in self.env]
        if both:
            raise ValueError(f"{', '.join(both)} is set both in `env:` and in `env_from:`: "
                             "keep one (env_from passes orchestr's own value through)")
        return self

    @model_validator(mode="after")
    def _command_or_url(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            which = "both `command:` and `url:`" if self.command is not None else "neither `command:` nor `url:`"
            raise ValueError(f"an MCP server needs exactly one of `command:` (a stdio server) or `url:` "
                             f"(a Streamable HTTP server); this one has {which}")
        if self.url is not None and (self.args or self.env or self.unsafe_no_sandbox):
            raise ValueError("`args:`, `env:` and `unsafe_no_sandbox:` apply to a stdio server (`command:`), "
                             "not to a remote one (`url:`)")
        if self.command is not None and self.headers:
            raise ValueError("`headers:` apply to a remote server (`url:`), not to a stdio one (`command:`)")
        unknown = sorted({n for v in self.headers.values() for n in header_variables(v)} - set(self.env_from))
        if unknown:
            raise ValueError(f"headers use ${{{unknown[0]}}}, which is not listed in `env_from:`: add "
                             f"env_from: [{', '.join(unknown)}] so orchestr passes its value")
        return self

    @property
    def label(self) -> str:
        if self.url is not None:
            return self.url
        import shlex

        return shlex.join([self.command or "", *self.args])


class ProjectDefaults(Strict):
    model: ModelRef | None = None
    timeout: PositiveDuration | None = None
    retry: Retry | None = None
    max_parallel: int | None = Field(default=None, ge=1, le=256)


class StateConfig(Strict):
    """Where run records and the schedule ledger live (docs/state.md); ORCHESTR_STATE_URL wins."""

    # postgresql://[user@]host[:port]/dbname[?options]; keep the password out of it: PGPASSWORD or
    # ~/.pgpass (libpq reads both), so orchestr.yaml can be committed.
    url: str | None = Field(default=None, pattern=r"^postgres(ql)?://\S+$")


class ProjectConfig(Strict):
    state_dir: str = ".orchestr"
    # A shared state store (PostgreSQL) for several machines; none: SQLite under state_dir.
    state: StateConfig | None = None
    defaults: ProjectDefaults = ProjectDefaults()
    providers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ProviderSpec] = Field(
        default_factory=dict
    )
    mcp_servers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")], McpServerSpec] = Field(
        default_factory=dict
    )
    secrets: tuple[EnvName, ...] = ()
    # `required`: `run` refuses (exit 2) when orchestr.lock is missing or stale (see docs/review.md)
    lock: Literal["optional", "required"] = "optional"

    @model_validator(mode="after")
    def _no_builtin_override(self) -> ProjectConfig:
        for name in self.providers:
            if name in ("anthropic", "openai"):
                raise ValueError(
                    f"provider '{name}' is built in; give the extra endpoint another name"
                )
        return self
