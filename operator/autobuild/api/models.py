"""The AutomatedBuild API (``autobuild.dev/v1alpha1``) as pydantic models.

These models are the single source of truth: ``make crds`` generates the CRD from them, the CLI
and the operator validate with them. Field names are snake_case in Python and camelCase on the
wire (aliases).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from autobuild import API_GROUP, API_VERSION, KIND
from autobuild.api import checks, repos
from autobuild.api.conditions import ConditionType
from autobuild.api.regex import Regex

# Build args that every build receives, as Docker Hub sets them; users cannot override them.
BUILTIN_BUILD_ARGS: Final = (
    "SOURCE_BRANCH",
    "SOURCE_COMMIT",
    "COMMIT_MSG",
    "DOCKER_REPO",
    "DOCKERFILE_PATH",
    "DOCKER_TAG",
    "IMAGE_NAME",
)

_MIN_TIMEOUT = 60
_MAX_TIMEOUT = 24 * 3600
_MIN_POLL = 60


def _cel(rule: str, message: str) -> dict[str, Any]:
    """A CEL ``x-kubernetes-validations`` entry for ``json_schema_extra``."""
    return {"rule": rule, "message": message}


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        frozen=True,
    )


class Provider(StrEnum):
    """Where the source repository is hosted; decides webhooks and credentials."""

    GITHUB = "github"
    BITBUCKET = "bitbucket"
    GITLAB = "gitlab"
    GIT = "git"


class Visibility(StrEnum):
    """Visibility of the image repository (Docker Hub's public/private)."""

    PUBLIC = "Public"
    PRIVATE = "Private"


class SourceType(StrEnum):
    """Whether a build rule watches branches or tags."""

    BRANCH = "Branch"
    TAG = "Tag"


class RunPolicy(StrEnum):
    """How builds of one AutomatedBuild run next to each other (OpenShift BuildConfig semantics)."""

    SERIAL = "Serial"
    SERIAL_LATEST_ONLY = "SerialLatestOnly"
    PARALLEL = "Parallel"


class Trigger(StrEnum):
    """What asked for a build."""

    CREATE = "Create"
    MANUAL = "Manual"
    PUSH = "Push"
    POLL = "Poll"
    TRIGGER_URL = "TriggerURL"


class BuildPhase(StrEnum):
    """Where one build stands."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"


def _secret_ref(description: str) -> Any:
    """An optional reference to a Secret in the AutomatedBuild's namespace."""
    return Field(
        default=None, max_length=253, pattern=checks.DNS1123_SUBDOMAIN, description=description
    )


_DURATION_DOC = "A duration of whole hours, minutes and seconds, such as 90s, 5m or 1h30m."


class SourceSpec(_Model):
    """The git repository to build from."""

    repo: Annotated[
        str,
        Field(
            min_length=3,
            max_length=512,
            pattern=checks.REPO,
            description="host/owner/name (e.g. github.com/acme/app) or an https:// or http:// "
            "git URL. Credentials never go here: use credentialsSecret.",
        ),
    ]
    provider: Provider | None = Field(
        default=None,
        description="github, bitbucket, gitlab or git. Inferred from the host when omitted "
        "(github.com, bitbucket.org, gitlab.com; anything else is plain git).",
    )
    credentials_secret: str | None = _secret_ref(
        "Name of a Secret in the same namespace whose key `token` holds the linked "
        "account's access token, used to clone private repositories and manage webhooks; an "
        "optional key `username` is sent with it (default per provider: x-access-token, "
        "oauth2, x-token-auth). The Secret must list the repo's host in its annotation "
        "`autobuild.dev/git-hosts` (comma-separated, `*` for any) or the repository in "
        "`autobuild.dev/git-repos` (`host/owner/name` or a prefix such as `github.com/acme/*`); "
        "with both, both must allow it.",
    )
    webhook_secret: str | None = _secret_ref(
        "Name of a Secret in the same namespace whose key `secret` verifies webhook "
        "deliveries (HMAC for GitHub and Bitbucket, token for GitLab).",
    )
    poll_interval: str | None = Field(
        default=None,
        max_length=32,
        pattern=checks.DURATION,
        description="Poll the repository's branches and tags this often, as a fallback when "
        f"webhooks cannot reach the cluster. At least 1m. {_DURATION_DOC}",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(f"duration(self) >= duration('{_MIN_POLL}s')", "must be at least 1m")
            ]
        },
    )

    @field_validator("repo")
    @classmethod
    def _repo_has_owner_and_name(cls, repo: str) -> str:
        path = repos.repo_path_segments(repo)
        if len(path) < 2:
            raise checks.InputError("", f"{repo!r} needs an owner and a name")
        if any(segment in (".", "..") for segment in path):
            raise checks.InputError("", f"{repo!r} has a '.' or '..' segment")
        return repo

    @field_validator("poll_interval")
    @classmethod
    def _poll_interval_range(cls, value: str | None) -> str | None:
        if value is not None and checks.parse_duration(value, "") < _MIN_POLL:
            raise checks.InputError("", "must be at least 1m")
        return value


class ImageSpec(_Model):
    """The image repository that builds push to."""

    registry: str = Field(
        default="docker.io",
        max_length=253,
        pattern=checks.REGISTRY,
        description="Registry host, with an optional port. Default docker.io.",
    )
    namespace: Annotated[
        str,
        Field(
            min_length=1,
            max_length=255,
            pattern=checks.IMAGE_NAMESPACE,
            description="Docker Hub's 'Repository Namespace': the user or organisation "
            "(lowercase; other registries may use several path components).",
        ),
    ]
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=255,
            pattern=checks.IMAGE_NAME,
            description="Docker Hub's 'Repository Name' (lowercase).",
        ),
    ]
    visibility: Visibility = Field(description="Public or Private.")
    short_description: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="Docker Hub's short description, at most 100 characters.",
        ),
    ]
    push_secret: str | None = _secret_ref(
        "Name of a kubernetes.io/dockerconfigjson Secret in the same namespace with "
        "push rights to the registry; mounted as Kaniko's /kaniko/.docker/config.json. Its "
        "annotation `autobuild.dev/image-repos` (e.g. `docker.io/acme/*`), when present, must "
        'cover the image; `autobuild.dev/manage-existing-repos: "true"` lets autobuild change '
        "visibility and description of repositories it did not create.",
    )
    ca_secret: str | None = _secret_ref(
        "Name of a Secret in the same namespace whose key `ca.crt` holds the PEM certificate(s) "
        "of the CA that signed the registry's TLS certificate (a self-signed or private-CA "
        "registry). Trusted, besides the system's CAs, for this registry only: by Kaniko "
        "(pushes, cache, base images) and by the operator's own registry checks. Plain HTTP is "
        "not a per-AutomatedBuild choice: the operator's AUTOBUILD_INSECURE_REGISTRIES.",
    )

    @property
    def repository(self) -> str:
        """The full image repository, e.g. ``docker.io/acme/app``."""
        return f"{self.registry}/{self.namespace}/{self.name}"


class BuildRule(_Model):
    """One build rule (a row of Docker Hub's 'Build Rules'): which refs build, with which tags."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.source.startsWith('/') "
                    "|| !self.dockerTag.matches('[{][\\\\\\\\][1-9][}]')",
                    "{\\1}..{\\9} need a /regex/ source with capture groups",
                ),
                _cel(
                    "!self.source.startsWith('/') || size(self.source) >= 3",
                    "a regex source needs a pattern between the slashes",
                ),
            ]
        }
    )

    source_type: SourceType = Field(
        default=SourceType.BRANCH,
        description="Branch or Tag: what kind of git ref this rule watches.",
    )
    source: Annotated[
        str,
        Field(
            min_length=1,
            max_length=255,
            pattern=checks.RULE_SOURCE,
            description="An exact branch or tag name, or a regular expression between slashes "
            "(e.g. /^v([0-9.]+)$/, searched anywhere in the name unless anchored; RE2 syntax; "
            "up to 9 capture groups).",
        ),
    ]
    docker_tag: str = Field(
        default="{sourceref}",
        min_length=1,
        max_length=255,
        pattern=checks.DOCKER_TAG_TEMPLATE,
        description="Comma-separated image tags. {sourceref} is the whole branch or tag name; "
        "{\\1}..{\\9} are the regex's groups. Characters not allowed in an image tag become '-'. "
        "Default {sourceref}.",
    )
    dockerfile: str = Field(
        default="Dockerfile",
        min_length=1,
        max_length=1024,
        pattern=checks.REPO_PATH,
        description="Path of the Dockerfile relative to the build context.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("!self.startsWith('/')", "must be relative to the build context"),
                _cel(
                    "!(self == '..' || self.startsWith('../') || self.endsWith('/..') "
                    "|| self.contains('/../'))",
                    "must not escape the repository ('..')",
                ),
            ]
        },
    )
    context: str = Field(
        default="/",
        min_length=1,
        max_length=1024,
        pattern=checks.REPO_PATH,
        description="Build context relative to the repository root; / is the root.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(self == '..' || self.startsWith('../') || self.startsWith('/../') "
                    "|| self.endsWith('/..') || self.contains('/../'))",
                    "must not escape the repository ('..')",
                ),
            ]
        },
    )
    autobuild: bool = Field(
        default=True,
        description="Pushes to a matching ref build automatically (Docker Hub's 'Autobuild').",
    )
    build_cache: bool = Field(
        default=True,
        description="Use Kaniko's layer cache, kept in a sibling repository "
        "(<repository>/buildcache; on Docker Hub <namespace>/<name>-buildcache).",
    )

    @field_validator("source")
    @classmethod
    def _source_is_valid(cls, source: str) -> str:
        if cls.is_regex_source(source):
            checks.compile_source_regex(source, "")
        else:
            checks.check_git_ref_name(source, "")
        return source

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile_inside_repo(cls, value: str) -> str:
        return checks.check_repo_path(value, "", allow_leading_slash=False)

    @field_validator("context")
    @classmethod
    def _context_inside_repo(cls, value: str) -> str:
        return checks.check_repo_path(value, "", allow_leading_slash=True)

    @model_validator(mode="after")
    def _tag_placeholders_match_groups(self) -> BuildRule:
        groups = self.source_regex.groups if self.source_regex is not None else 0
        checks.check_tag_template(self.docker_tag, "", groups)
        return self

    @staticmethod
    def is_regex_source(source: str) -> bool:
        """True when ``source`` is written as ``/regex/``."""
        return len(source) >= 2 and source.startswith("/") and source.endswith("/")

    @property
    def source_regex(self) -> Regex | None:
        """The compiled regex of a ``/regex/`` source, None for an exact name."""
        if not self.is_regex_source(self.source):
            return None
        return checks.compile_source_regex(self.source, "")

    @property
    def context_sub_path(self) -> str:
        """The context as a path relative to the repository root ('' for the root)."""
        return self.context.strip("/")


def _default_rules() -> list[BuildRule]:
    return [BuildRule(source_type=SourceType.BRANCH, source="main", docker_tag="latest")]


class HistoryLimit(_Model):
    """How many finished builds (Jobs and status entries) to keep; the newest is always kept."""

    succeeded: int = Field(default=5, ge=0, le=100, description="Successful builds to keep.")
    failed: int = Field(
        default=5, ge=0, le=100, description="Failed, cancelled and timed-out builds to keep."
    )


class AutomatedBuildSpec(_Model):
    """What to build, where to push it, and when."""

    source: SourceSpec
    image: ImageSpec
    tags: list[BuildRule] = Field(
        default_factory=_default_rules,
        min_length=1,
        max_length=32,
        description="Build rules. Default: one Branch rule main -> latest.",
    )
    auto_build_on_push: bool = Field(
        default=True,
        description="Master switch: pushes build automatically (rules still need autobuild: true).",
    )
    build_args: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Extra --build-arg values. Docker Hub's build variables (SOURCE_BRANCH, "
        "SOURCE_COMMIT, COMMIT_MSG, DOCKER_REPO, DOCKERFILE_PATH, DOCKER_TAG, IMAGE_NAME) are "
        "always set and cannot be overridden.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"self.all(k, k.matches('{checks.BUILD_ARG_NAME}'))",
                    "build arg names must match " + checks.BUILD_ARG_NAME,
                ),
                _cel(
                    "self.all(k, !(k in " + repr(list(BUILTIN_BUILD_ARGS)).replace("'", '"') + "))",
                    "Docker Hub's build variables are set by autobuild and cannot be overridden",
                ),
            ]
        },
    )
    trigger_secret: str | None = _secret_ref(
        "Name of a Secret in the same namespace whose key `trigger-token` enables Docker Hub's "
        "build trigger URL: POST /hooks/trigger/NAMESPACE/NAME/TOKEN.",
    )
    run_policy: RunPolicy = Field(
        default=RunPolicy.SERIAL,
        description="Per (rule, ref) queue: Serial runs one build at a time; SerialLatestOnly "
        "also lets a newer commit of the ref supersede the one waiting; Parallel runs all.",
    )
    timeout: str = Field(
        default="1h",
        max_length=32,
        pattern=checks.DURATION,
        description=f"How long one build may run before it is stopped (TimedOut). 1m to 24h. "
        f"{_DURATION_DOC}",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"duration(self) >= duration('{_MIN_TIMEOUT}s') && "
                    f"duration(self) <= duration('{_MAX_TIMEOUT}s')",
                    "must be between 1m and 24h",
                )
            ]
        },
    )
    history_limit: HistoryLimit = Field(default_factory=HistoryLimit)

    @field_validator("build_args")
    @classmethod
    def _build_arg_names(cls, args: dict[str, str]) -> dict[str, str]:
        for name in args:
            if not re.fullmatch(checks.BUILD_ARG_NAME, name):
                raise checks.InputError(
                    "", f"{name!r} is not a valid build arg name ([A-Za-z_][A-Za-z0-9_]*)"
                )
            if name in BUILTIN_BUILD_ARGS:
                raise checks.InputError(
                    "", f"{name} is one of Docker Hub's build variables, set by autobuild"
                )
        return args

    @field_validator("timeout")
    @classmethod
    def _timeout_range(cls, value: str) -> str:
        seconds = checks.parse_duration(value, "")
        if not _MIN_TIMEOUT <= seconds <= _MAX_TIMEOUT:
            raise checks.InputError("", "must be between 1m and 24h")
        return value

    @property
    def timeout_seconds(self) -> int:
        """``timeout`` in seconds."""
        return checks.parse_duration(self.timeout, "")

    @property
    def poll_seconds(self) -> int | None:
        """``source.pollInterval`` in seconds (None: no polling)."""
        interval = self.source.poll_interval
        return None if interval is None else checks.parse_duration(interval, "")

    @property
    def provider(self) -> Provider:
        """The explicit provider, or the one the repo's host implies."""
        if self.source.provider is not None:
            return self.source.provider
        return {
            "github.com": Provider.GITHUB,
            "bitbucket.org": Provider.BITBUCKET,
            "gitlab.com": Provider.GITLAB,
        }.get(repos.repo_host(self.source.repo), Provider.GIT)


class Condition(_Model):
    """A status condition: its type a ConditionType, its reason a Reason (api/conditions.py)."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=316, description=f"One of {', '.join(ConditionType)}.")
    status: str = Field(pattern=r"^(True|False|Unknown)$", description="True, False or Unknown.")
    reason: str = Field(
        default="",
        max_length=1024,
        description="Why, in one CamelCase word (all of them: docs/troubleshooting.md).",
    )
    message: str = Field(default="", max_length=32768, description="The details, for people.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition describes."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )


class BuildRecord(_Model):
    """One build, as recorded in status."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="Build id, unique within the AutomatedBuild.")
    rule: int = Field(ge=0, description="Index of the build rule in spec.tags.")
    source_type: SourceType
    source_ref: str = Field(description="The branch or tag name that was built.")
    commit: str = Field(description="The full commit id that was built.")
    trigger: Trigger
    tags: list[str] = Field(
        default_factory=list, description="The image tags, rendered from the rule's dockerTag."
    )
    job_name: str = Field(default="", description="The build's Kaniko Job.")
    phase: BuildPhase = BuildPhase.PENDING
    start_time: datetime | None = Field(default=None, description="When the Job started.")
    completion_time: datetime | None = Field(default=None, description="When the build ended.")
    duration_seconds: int | None = Field(
        default=None, ge=0, description="From startTime to completionTime."
    )
    digest: str | None = Field(
        default=None, description="The image manifest digest Kaniko pushed (Succeeded builds)."
    )
    digests: dict[str, str | None] = Field(
        default_factory=dict,
        description="Each pushed tag's manifest digest as the registry reports it after the "
        "build (null: it could not be read); a mismatch with digest sets reason DigestMismatch.",
    )
    reason: str | None = Field(
        default=None,
        description="Why the build is where it is: a failure's classified reason, "
        "DigestMismatch, a cause that keeps it Pending (docs/troubleshooting.md).",
    )
    message: str | None = Field(
        default=None, description="The reason in a sentence; never a copy of the build log."
    )
    commit_status: str | None = Field(
        default=None,
        description="The GitHub commit status state last posted for this build (pending, "
        "success, failure, error); unset when none is posted (no linked GitHub account).",
    )


class LatestBuild(_Model):
    """A flat summary of the newest build, for printer columns."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(default="", description="The newest build's id (status.builds[0]).")
    phase: BuildPhase | None = None
    source_ref: str = Field(default="", description="The branch or tag it built.")
    commit: str = Field(default="", description="The full commit id it built.")
    short_commit: str = Field(default="", description="The commit's first 7 characters.")
    tags: str = Field(default="", description="The build's image tags, comma-separated.")
    digest: str = Field(default="", description="The pushed manifest digest.")
    reason: str = Field(default="", description="The build's reason, if any.")
    start_time: datetime | None = Field(default=None, description="When its Job started.")
    completion_time: datetime | None = Field(default=None, description="When it ended.")


class RepositoryState(_Model):
    """What the operator applied to an image repository (visibility, short description)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", description="The repository, e.g. docker.io/acme/app.")
    kind: str = Field(default="", description="DockerHub, Harbor or Registry (no such notion).")
    visibility: str | None = Field(
        default=None, description="The visibility it has now (Public or Private)."
    )
    description: str | None = Field(default=None, description="The short description it has now.")
    applied: list[str] = Field(default_factory=list, description="What was changed last time.")
    reason: str = Field(
        default="", description="Why the settings are not (all) applied; empty when they are."
    )
    message: str = Field(default="", description="The reason in a sentence.")
    created: bool | None = Field(
        default=None,
        description="True when autobuild created the repository (Docker Hub), its Harbor "
        "project, or found it missing before its first push: only then does autobuild change "
        "its visibility and description, unless the push Secret allows managing existing "
        "repositories (annotation autobuild.dev/manage-existing-repos).",
    )


class RepositoryStatus(RepositoryState):
    """``status.repository``: the image repository and its build-cache repository."""

    cache: RepositoryState | None = Field(
        default=None, description="The build-cache repository, when a rule has buildCache."
    )
    observed: str = Field(
        default="",
        description="Which spec.image and push Secret version these settings were applied for "
        "(empty while they are to be applied again).",
    )


class WebhookResponse(_Model):
    """GitHub's record of the last delivery to a hook."""

    model_config = ConfigDict(extra="ignore")

    code: int | None = Field(default=None, description="The HTTP status the delivery got.")
    status: str | None = Field(
        default=None, description="GitHub's word for it (active, unused, ...)."
    )
    message: str | None = Field(default=None, description="GitHub's message about it.")


class WebhookStatus(_Model):
    """``status.webhook``: the push webhook the operator registered on GitHub."""

    model_config = ConfigDict(extra="ignore")

    repository: str = Field(default="", description="The GitHub repository (OWNER/NAME).")
    url: str = Field(default="", description="Where the hook delivers (AUTOBUILD_PUBLIC_URL).")
    id: int | None = Field(
        default=None, description="GitHub's hook id; unset while no hook is registered."
    )
    active: bool | None = Field(default=None, description="Whether GitHub delivers to it.")
    last_response: WebhookResponse | None = Field(
        default=None, description="GitHub's answer to the last delivery, when it reported one."
    )
    observed: str = Field(
        default="",
        description="Which repository, URL and Secret versions the hook was registered for "
        "(empty while it is to be registered again).",
    )


class LastTrigger(_Model):
    """The last build request the operator handled, and what came of it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="The request id (`create` for the build on creation).")
    time: datetime | None = Field(default=None, description="When the operator handled it.")
    ref: str = Field(default="", description="The ref asked for; empty: every exact rule's ref.")
    commit: str = Field(default="", description="The commit asked for; empty: the ref's head.")
    builds: list[str] = Field(default_factory=list, description="Ids of the builds it started.")
    reason: str = Field(default="", description="Triggered, NothingToBuild or InvalidTrigger.")
    message: str = Field(default="", description="What came of it, in a sentence.")


# Bounds of status.pushes (planning/replay.py keeps to them): refs kept, deliveries per ref.
MAX_BUILT_REFS: Final = 32
MAX_REF_DELIVERIES: Final = 4


class BuiltRef(_Model):
    """The newest build of one branch or tag, kept after its Job is pruned."""

    model_config = ConfigDict(extra="ignore")

    ref: str = Field(max_length=1024, description="The full git ref, e.g. refs/heads/main.")
    commit: str = Field(max_length=64, description="The commit its newest build built.")
    time: datetime = Field(description="When its newest build was requested.")
    commit_time: datetime | None = Field(
        default=None,
        description="The newest commit time among its builds, as webhook deliveries gave it.",
    )
    deliveries: list[str] = Field(
        default_factory=list,
        max_length=MAX_REF_DELIVERIES,
        description="The last webhook deliveries (provider:id) that built it, newest first: "
        "a redelivery of one builds nothing.",
    )


class PushRecord(_Model):
    """What stops a captured webhook push from building old code again once its Job is gone
    (after a restart too): a push whose commit is not newer than the ref's last build builds
    only while it is the ref's head."""

    model_config = ConfigDict(extra="ignore")

    since: datetime | None = Field(
        default=None,
        description="For refs not in refs: a push whose commit is not newer than this builds "
        "only while it is the ref's head (the first visit, or the newest build of a ref that "
        "fell out of refs).",
    )
    refs: list[BuiltRef] = Field(
        default_factory=list,
        max_length=MAX_BUILT_REFS,
        description="The refs built most recently, newest first.",
    )


class AutomatedBuildStatus(_Model):
    """What the operator observed; written by the operator only."""

    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status was written for."
    )
    observed_source: str = Field(
        default="",
        description="The spec.source (repo, provider, credentials Secret) whose repository "
        "answered last; a new one is checked with git ls-remote.",
    )
    image: str = Field(default="", description="The full image repository builds push to.")
    webhook_path: str = Field(
        default="",
        description="Where the git host's push webhook goes on the operator's webhook address "
        "(verified with spec.source.webhookSecret, or the secret of the hook the operator "
        "registered: status.webhook).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description=f"One per type: {', '.join(ConditionType)}; kstatus reads "
        f"{ConditionType.READY}, {ConditionType.RECONCILING} and {ConditionType.STALLED}.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    latest_build: LatestBuild | None = None
    repository: RepositoryStatus | None = None
    webhook: WebhookStatus | None = Field(
        default=None,
        description="The push webhook registered on GitHub for you (AUTOBUILD_PUBLIC_URL and a "
        "linked account with admin rights); see the WebhookReady condition.",
    )
    builds: list[BuildRecord] = Field(default_factory=list, description="Newest first.")
    last_trigger: LastTrigger | None = Field(
        default=None,
        description="The last build request handled: creation or an autobuild.dev/trigger request.",
    )
    pushes: PushRecord | None = Field(
        default=None,
        description="Per ref, the newest build and the webhook deliveries that made it: "
        "replays and redeliveries build nothing (docs/webhooks.md).",
    )


class ObjectMeta(BaseModel):
    """The part of metadata the core reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=253, pattern=checks.DNS1123_SUBDOMAIN)
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class AutomatedBuild(BaseModel):
    """A whole AutomatedBuild object."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: str = Field(alias="apiVersion", pattern=rf"^{re.escape(API_GROUP)}/{API_VERSION}$")
    kind: str = Field(pattern=rf"^{KIND}$")
    metadata: ObjectMeta
    spec: AutomatedBuildSpec
    status: AutomatedBuildStatus = Field(default_factory=AutomatedBuildStatus)
