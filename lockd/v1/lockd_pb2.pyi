from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LockMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCK_MODE_UNSPECIFIED: _ClassVar[LockMode]
    LOCK_MODE_EXCLUSIVE: _ClassVar[LockMode]
    LOCK_MODE_SHARED: _ClassVar[LockMode]

class NoticeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_KIND_UNSPECIFIED: _ClassVar[NoticeKind]
    NOTICE_KIND_REVOKE_REQUESTED: _ClassVar[NoticeKind]
    NOTICE_KIND_FORCE_RELEASED: _ClassVar[NoticeKind]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_ACQUIRED: _ClassVar[EventType]
    EVENT_TYPE_RELEASED: _ClassVar[EventType]
    EVENT_TYPE_EXPIRED: _ClassVar[EventType]
    EVENT_TYPE_WAITER_ADDED: _ClassVar[EventType]
    EVENT_TYPE_WAITER_REMOVED: _ClassVar[EventType]
    EVENT_TYPE_LOCK_DELAYED: _ClassVar[EventType]
    EVENT_TYPE_LOCK_DELAY_ENDED: _ClassVar[EventType]
    EVENT_TYPE_VALUE_CHANGED: _ClassVar[EventType]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_FOLLOWER: _ClassVar[Role]
    ROLE_CANDIDATE: _ClassVar[Role]
    ROLE_LEADER: _ClassVar[Role]
    ROLE_UNREACHABLE: _ClassVar[Role]
LOCK_MODE_UNSPECIFIED: LockMode
LOCK_MODE_EXCLUSIVE: LockMode
LOCK_MODE_SHARED: LockMode
NOTICE_KIND_UNSPECIFIED: NoticeKind
NOTICE_KIND_REVOKE_REQUESTED: NoticeKind
NOTICE_KIND_FORCE_RELEASED: NoticeKind
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_ACQUIRED: EventType
EVENT_TYPE_RELEASED: EventType
EVENT_TYPE_EXPIRED: EventType
EVENT_TYPE_WAITER_ADDED: EventType
EVENT_TYPE_WAITER_REMOVED: EventType
EVENT_TYPE_LOCK_DELAYED: EventType
EVENT_TYPE_LOCK_DELAY_ENDED: EventType
EVENT_TYPE_VALUE_CHANGED: EventType
ROLE_UNSPECIFIED: Role
ROLE_FOLLOWER: Role
ROLE_CANDIDATE: Role
ROLE_LEADER: Role
ROLE_UNREACHABLE: Role

class OpenSessionRequest(_message.Message):
    __slots__ = ("session_id", "ttl_ms", "client_name")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ttl_ms: int
    client_name: str
    def __init__(self, session_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., client_name: _Optional[str] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id", "ttl_ms", "created")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ttl_ms: int
    created: bool
    def __init__(self, session_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., created: _Optional[bool] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id", "request_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    request_id: str
    def __init__(self, session_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, released: _Optional[_Iterable[str]] = ...) -> None: ...

class KeepAliveRequest(_message.Message):
    __slots__ = ("seq", "session_ids")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seq: _Optional[int] = ..., session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SessionLease(_message.Message):
    __slots__ = ("session_id", "ttl_ms", "expired", "notices")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ttl_ms: int
    expired: bool
    notices: _containers.RepeatedCompositeFieldContainer[LockNotice]
    def __init__(self, session_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., expired: _Optional[bool] = ..., notices: _Optional[_Iterable[_Union[LockNotice, _Mapping]]] = ...) -> None: ...

class LockNotice(_message.Message):
    __slots__ = ("kind", "name", "token")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    kind: NoticeKind
    name: str
    token: int
    def __init__(self, kind: _Optional[_Union[NoticeKind, str]] = ..., name: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class KeepAliveResponse(_message.Message):
    __slots__ = ("seq", "leases")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    leases: _containers.RepeatedCompositeFieldContainer[SessionLease]
    def __init__(self, seq: _Optional[int] = ..., leases: _Optional[_Iterable[_Union[SessionLease, _Mapping]]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id", "stale_ok")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    stale_ok: bool
    def __init__(self, session_id: _Optional[str] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "ttl_ms", "client_name", "held", "waiting")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ttl_ms: int
    client_name: str
    held: _containers.RepeatedScalarFieldContainer[str]
    waiting: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., client_name: _Optional[str] = ..., held: _Optional[_Iterable[str]] = ..., waiting: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionInfo
    def __init__(self, session: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class AcquireRequest(_message.Message):
    __slots__ = ("session_id", "name", "request_id", "mode", "permits", "wait_ms", "value", "reentrant", "owner", "lock_delay_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PERMITS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REENTRANT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LOCK_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    request_id: str
    mode: LockMode
    permits: int
    wait_ms: int
    value: bytes
    reentrant: bool
    owner: str
    lock_delay_ms: int
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., request_id: _Optional[str] = ..., mode: _Optional[_Union[LockMode, str]] = ..., permits: _Optional[int] = ..., wait_ms: _Optional[int] = ..., value: _Optional[bytes] = ..., reentrant: _Optional[bool] = ..., owner: _Optional[str] = ..., lock_delay_ms: _Optional[int] = ...) -> None: ...

class AcquireResponse(_message.Message):
    __slots__ = ("granted", "token", "lock", "count")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    token: int
    lock: LockInfo
    count: int
    def __init__(self, granted: _Optional[bool] = ..., token: _Optional[int] = ..., lock: _Optional[_Union[LockInfo, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class LockSpec(_message.Message):
    __slots__ = ("name", "mode", "permits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PERMITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    mode: LockMode
    permits: int
    def __init__(self, name: _Optional[str] = ..., mode: _Optional[_Union[LockMode, str]] = ..., permits: _Optional[int] = ...) -> None: ...

class AcquireManyRequest(_message.Message):
    __slots__ = ("session_id", "locks", "request_id", "wait_ms", "value", "lock_delay_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOCK_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    locks: _containers.RepeatedCompositeFieldContainer[LockSpec]
    request_id: str
    wait_ms: int
    value: bytes
    lock_delay_ms: int
    def __init__(self, session_id: _Optional[str] = ..., locks: _Optional[_Iterable[_Union[LockSpec, _Mapping]]] = ..., request_id: _Optional[str] = ..., wait_ms: _Optional[int] = ..., value: _Optional[bytes] = ..., lock_delay_ms: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("name", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class AcquireManyResponse(_message.Message):
    __slots__ = ("granted", "grants")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, granted: _Optional[bool] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("session_id", "name", "token", "request_id", "acquire_request_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    token: int
    request_id: str
    acquire_request_id: str
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., token: _Optional[int] = ..., request_id: _Optional[str] = ..., acquire_request_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class CheckTokenRequest(_message.Message):
    __slots__ = ("name", "token", "stale_ok")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    stale_ok: bool
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class CheckTokenResponse(_message.Message):
    __slots__ = ("valid", "holder_tokens")
    VALID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    holder_tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, valid: _Optional[bool] = ..., holder_tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class Holder(_message.Message):
    __slots__ = ("token", "mode", "value", "client_name", "count", "owner", "lock_delay_ms")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    LOCK_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    token: int
    mode: LockMode
    value: bytes
    client_name: str
    count: int
    owner: str
    lock_delay_ms: int
    def __init__(self, token: _Optional[int] = ..., mode: _Optional[_Union[LockMode, str]] = ..., value: _Optional[bytes] = ..., client_name: _Optional[str] = ..., count: _Optional[int] = ..., owner: _Optional[str] = ..., lock_delay_ms: _Optional[int] = ...) -> None: ...

class Waiter(_message.Message):
    __slots__ = ("mode", "client_name")
    MODE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    mode: LockMode
    client_name: str
    def __init__(self, mode: _Optional[_Union[LockMode, str]] = ..., client_name: _Optional[str] = ...) -> None: ...

class LockInfo(_message.Message):
    __slots__ = ("name", "mode", "permits", "holders", "waiters", "lock_delay_until_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PERMITS_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    WAITERS_FIELD_NUMBER: _ClassVar[int]
    LOCK_DELAY_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    mode: LockMode
    permits: int
    holders: _containers.RepeatedCompositeFieldContainer[Holder]
    waiters: _containers.RepeatedCompositeFieldContainer[Waiter]
    lock_delay_until_ms: int
    def __init__(self, name: _Optional[str] = ..., mode: _Optional[_Union[LockMode, str]] = ..., permits: _Optional[int] = ..., holders: _Optional[_Iterable[_Union[Holder, _Mapping]]] = ..., waiters: _Optional[_Iterable[_Union[Waiter, _Mapping]]] = ..., lock_delay_until_ms: _Optional[int] = ...) -> None: ...

class GetLockRequest(_message.Message):
    __slots__ = ("name", "stale_ok")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    name: str
    stale_ok: bool
    def __init__(self, name: _Optional[str] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class GetLockResponse(_message.Message):
    __slots__ = ("exists", "lock", "revision")
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    lock: LockInfo
    revision: int
    def __init__(self, exists: _Optional[bool] = ..., lock: _Optional[_Union[LockInfo, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListLocksRequest(_message.Message):
    __slots__ = ("prefix", "page_size", "page_token", "stale_ok")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    page_size: int
    page_token: str
    stale_ok: bool
    def __init__(self, prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class ListLocksResponse(_message.Message):
    __slots__ = ("locks", "next_page_token", "revision")
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    locks: _containers.RepeatedCompositeFieldContainer[LockInfo]
    next_page_token: str
    revision: int
    def __init__(self, locks: _Optional[_Iterable[_Union[LockInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class StreamOp(_message.Message):
    __slots__ = ("op_id", "acquire", "acquire_many", "release", "keepalive", "cancel")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_MANY_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    op_id: int
    acquire: AcquireRequest
    acquire_many: AcquireManyRequest
    release: ReleaseRequest
    keepalive: KeepAliveRequest
    cancel: CancelOp
    def __init__(self, op_id: _Optional[int] = ..., acquire: _Optional[_Union[AcquireRequest, _Mapping]] = ..., acquire_many: _Optional[_Union[AcquireManyRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ..., keepalive: _Optional[_Union[KeepAliveRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelOp, _Mapping]] = ...) -> None: ...

class CancelOp(_message.Message):
    __slots__ = ("op_id",)
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    op_id: int
    def __init__(self, op_id: _Optional[int] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[StreamOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[StreamOp, _Mapping]]] = ...) -> None: ...

class OpError(_message.Message):
    __slots__ = ("code", "message", "reason", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StreamResult(_message.Message):
    __slots__ = ("op_id", "acquire", "acquire_many", "release", "keepalive", "error")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_FIELD_NUMBER: _ClassVar[int]
    ACQUIRE_MANY_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    op_id: int
    acquire: AcquireResponse
    acquire_many: AcquireManyResponse
    release: ReleaseResponse
    keepalive: KeepAliveResponse
    error: OpError
    def __init__(self, op_id: _Optional[int] = ..., acquire: _Optional[_Union[AcquireResponse, _Mapping]] = ..., acquire_many: _Optional[_Union[AcquireManyResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., keepalive: _Optional[_Union[KeepAliveResponse, _Mapping]] = ..., error: _Optional[_Union[OpError, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StreamResult, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("revision", "type", "name", "token", "mode", "value", "client_name", "cause", "lock_delay_until_ms")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    LOCK_DELAY_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    type: EventType
    name: str
    token: int
    mode: LockMode
    value: bytes
    client_name: str
    cause: str
    lock_delay_until_ms: int
    def __init__(self, revision: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., name: _Optional[str] = ..., token: _Optional[int] = ..., mode: _Optional[_Union[LockMode, str]] = ..., value: _Optional[bytes] = ..., client_name: _Optional[str] = ..., cause: _Optional[str] = ..., lock_delay_until_ms: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("prefix", "after_revision")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    after_revision: int
    def __init__(self, prefix: _Optional[str] = ..., after_revision: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("events", "revision")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    revision: int
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class LeaderInfo(_message.Message):
    __slots__ = ("name", "token", "value", "client_name", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: int
    value: bytes
    client_name: str
    revision: int
    def __init__(self, name: _Optional[str] = ..., token: _Optional[int] = ..., value: _Optional[bytes] = ..., client_name: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class CampaignRequest(_message.Message):
    __slots__ = ("session_id", "name", "value", "request_id", "wait_ms", "lock_delay_ms")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    LOCK_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    value: bytes
    request_id: str
    wait_ms: int
    lock_delay_ms: int
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[bytes] = ..., request_id: _Optional[str] = ..., wait_ms: _Optional[int] = ..., lock_delay_ms: _Optional[int] = ...) -> None: ...

class CampaignResponse(_message.Message):
    __slots__ = ("leader",)
    LEADER_FIELD_NUMBER: _ClassVar[int]
    leader: LeaderInfo
    def __init__(self, leader: _Optional[_Union[LeaderInfo, _Mapping]] = ...) -> None: ...

class ProclaimRequest(_message.Message):
    __slots__ = ("session_id", "name", "token", "value", "request_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    token: int
    value: bytes
    request_id: str
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., token: _Optional[int] = ..., value: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...

class ProclaimResponse(_message.Message):
    __slots__ = ("leader",)
    LEADER_FIELD_NUMBER: _ClassVar[int]
    leader: LeaderInfo
    def __init__(self, leader: _Optional[_Union[LeaderInfo, _Mapping]] = ...) -> None: ...

class LeaderRequest(_message.Message):
    __slots__ = ("name", "stale_ok")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    name: str
    stale_ok: bool
    def __init__(self, name: _Optional[str] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class LeaderResponse(_message.Message):
    __slots__ = ("has_leader", "leader", "revision")
    HAS_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    has_leader: bool
    leader: LeaderInfo
    revision: int
    def __init__(self, has_leader: _Optional[bool] = ..., leader: _Optional[_Union[LeaderInfo, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class ObserveRequest(_message.Message):
    __slots__ = ("name", "after_revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_revision: int
    def __init__(self, name: _Optional[str] = ..., after_revision: _Optional[int] = ...) -> None: ...

class ObserveResponse(_message.Message):
    __slots__ = ("leader",)
    LEADER_FIELD_NUMBER: _ClassVar[int]
    leader: LeaderInfo
    def __init__(self, leader: _Optional[_Union[LeaderInfo, _Mapping]] = ...) -> None: ...

class ResignRequest(_message.Message):
    __slots__ = ("session_id", "name", "token", "request_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    token: int
    request_id: str
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., token: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ResignResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "raft_address", "grpc_address", "role", "term", "commit_index", "applied_index", "lag", "ready", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    raft_address: str
    grpc_address: str
    role: Role
    term: int
    commit_index: int
    applied_index: int
    lag: int
    ready: bool
    error: str
    def __init__(self, id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., lag: _Optional[int] = ..., ready: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("local_only",)
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    local_only: bool
    def __init__(self, local_only: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("self_id", "leader_id", "leader_grpc_address", "members", "sessions", "locks", "waiters", "next_token", "revision", "member_ids")
    SELF_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    WAITERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    self_id: str
    leader_id: str
    leader_grpc_address: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    sessions: int
    locks: int
    waiters: int
    next_token: int
    revision: int
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, self_id: _Optional[str] = ..., leader_id: _Optional[str] = ..., leader_grpc_address: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., sessions: _Optional[int] = ..., locks: _Optional[int] = ..., waiters: _Optional[int] = ..., next_token: _Optional[int] = ..., revision: _Optional[int] = ..., member_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("raft_address", "grpc_address", "join_timeout_ms")
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    JOIN_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    raft_address: str
    grpc_address: str
    join_timeout_ms: int
    def __init__(self, raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., join_timeout_ms: _Optional[int] = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("member_ids", "already_member")
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_MEMBER_FIELD_NUMBER: _ClassVar[int]
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    already_member: bool
    def __init__(self, member_ids: _Optional[_Iterable[str]] = ..., already_member: _Optional[bool] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("id", "timeout_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_ms: int
    def __init__(self, id: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("member_ids", "leadership_transferred", "leader_id", "already_removed")
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    LEADERSHIP_TRANSFERRED_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_REMOVED_FIELD_NUMBER: _ClassVar[int]
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    leadership_transferred: bool
    leader_id: str
    already_removed: bool
    def __init__(self, member_ids: _Optional[_Iterable[str]] = ..., leadership_transferred: _Optional[bool] = ..., leader_id: _Optional[str] = ..., already_removed: _Optional[bool] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("target_id", "timeout_ms")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    target_id: str
    timeout_ms: int
    def __init__(self, target_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("leader_id", "leader_grpc_address", "previous_leader_id")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    leader_grpc_address: str
    previous_leader_id: str
    def __init__(self, leader_id: _Optional[str] = ..., leader_grpc_address: _Optional[str] = ..., previous_leader_id: _Optional[str] = ...) -> None: ...

class SaveSnapshotRequest(_message.Message):
    __slots__ = ("chunk_bytes",)
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk_bytes: int
    def __init__(self, chunk_bytes: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("data", "total_bytes")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_bytes: int
    def __init__(self, data: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_id_prefix", "client_name", "identity", "ttl_ms", "ttl_left_ms", "held", "waiting")
    SESSION_ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    TTL_LEFT_MS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    session_id_prefix: str
    client_name: str
    identity: str
    ttl_ms: int
    ttl_left_ms: int
    held: _containers.RepeatedScalarFieldContainer[str]
    waiting: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id_prefix: _Optional[str] = ..., client_name: _Optional[str] = ..., identity: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., ttl_left_ms: _Optional[int] = ..., held: _Optional[_Iterable[str]] = ..., waiting: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionSummary]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class KillSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class KillSessionResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, released: _Optional[_Iterable[str]] = ...) -> None: ...

class ForceReleaseRequest(_message.Message):
    __slots__ = ("name", "tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class ForcedGrant(_message.Message):
    __slots__ = ("client_name", "token")
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    client_name: str
    token: int
    def __init__(self, client_name: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class ForceReleaseResponse(_message.Message):
    __slots__ = ("released", "lock")
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    released: _containers.RepeatedCompositeFieldContainer[ForcedGrant]
    lock: LockInfo
    def __init__(self, released: _Optional[_Iterable[_Union[ForcedGrant, _Mapping]]] = ..., lock: _Optional[_Union[LockInfo, _Mapping]] = ...) -> None: ...

class RevokeLockRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeLockResponse(_message.Message):
    __slots__ = ("notified",)
    NOTIFIED_FIELD_NUMBER: _ClassVar[int]
    notified: _containers.RepeatedCompositeFieldContainer[ForcedGrant]
    def __init__(self, notified: _Optional[_Iterable[_Union[ForcedGrant, _Mapping]]] = ...) -> None: ...
