"""AuthInterceptor: every RPC's ACL check, and the refusal of messages that do not parse.

For each call it looks up the method's rule in `acl.RULES` (unknown methods need `admin`), takes
the caller's identity from its verified client certificate (`tls.identity_of`) and answers
PERMISSION_DENIED (reason PERMISSION_DENIED, metadata permission/prefix/identity) before the
servicer runs. It also turns a request that does not decode (bad UTF-8 in a string field,
garbage bytes) into INVALID_ARGUMENT naming the message type, where gRPC would answer INTERNAL.
The ACL is swapped atomically by `reload()` (SIGHUP). No business rules.
"""

from __future__ import annotations

import inspect
import uuid

import grpc
import structlog

from . import acl as A
from .errors import ErrorCode, LockdAbort, to_status
from .interceptors import PerMethodInterceptor
from .tls import identity_of

log = structlog.get_logger(component="auth")


class _Undecodable:
    """Stands for a request message that failed to parse."""

    __slots__ = ("type_name", "error")

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name = type_name
        self.error = error


def _safe_deserializer(deserialize):
    if deserialize is None:
        return None
    type_name = getattr(getattr(deserialize, "__self__", None), "__name__", "request")

    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as e:  # noqa: BLE001 - DecodeError and friends
            return _Undecodable(type_name, type(e).__name__)
    return parse


def _bad_message_status(bad: _Undecodable) -> grpc.Status:
    return to_status(ErrorCode.INVALID_ARGUMENT,
                     f"request: not a valid {bad.type_name} message (e.g. a string field that is "
                     f"not UTF-8)", {"field": "request"})


# CloseSession answers OK for an unknown session (closing is idempotent), so it must answer the
# same for another identity's session: the servicer does that check itself.
_OWNERSHIP_IN_SERVICER = {"/lockd.v1.Lock/CloseSession"}


class AuthInterceptor(PerMethodInterceptor):
    """Checks the ACL for every RPC (see module docstring). `acl=None` allows everything."""

    def __init__(self, acl: A.Acl | None = None, session_owner=None) -> None:
        super().__init__()
        self.acl = acl or A.Acl.allow_all_acl()
        # session id -> the identity that opened it (None: no such session); read from the FSM
        self.session_owner = session_owner

    def reload(self, acl: A.Acl) -> None:
        """Use `acl` for every RPC that starts from now on (one reference swap)."""
        self.acl = acl

    def _denied(self, method: str, rule: A.Rule, request, context) -> grpc.Status | None:
        if isinstance(request, _Undecodable):
            return _bad_message_status(request)
        acl = self.acl
        if rule.permission == A.PUBLIC or (acl.allow_all and self.session_owner is None):
            return None
        identity = identity_of(context)
        why = acl.check(identity, rule, request)
        if why is not None:
            log.info("rpc_denied", rpc=method.rpartition("/")[2], identity=identity,
                     permission=why.permission, prefix=why.prefix)
            return to_status(ErrorCode.PERMISSION_DENIED, why.message, why.metadata)
        if method in _OWNERSHIP_IN_SERVICER:
            return None
        return self._foreign_session(request, identity)

    def op_denied(self, method: str, request, identity: str) -> LockdAbort | None:
        """The ACL check of one operation of the lock stream, as its unary RPC `method` gets
        it from this interceptor: why it is refused (PERMISSION_DENIED, or SESSION_NOT_FOUND
        for another identity's session), or None."""
        acl = self.acl
        rule = A.rule_for(method)
        if rule.permission == A.PUBLIC or (acl.allow_all and self.session_owner is None):
            return None
        why = acl.check(identity, rule, request)
        if why is not None:
            log.info("rpc_denied", rpc=method.rpartition("/")[2], identity=identity,
                     permission=why.permission, prefix=why.prefix)
            return LockdAbort(ErrorCode.PERMISSION_DENIED, why.message, dict(why.metadata))
        if self._foreign_session(request, identity) is not None:
            return LockdAbort(ErrorCode.SESSION_NOT_FOUND, "session not found (expired or closed)")
        return None

    def _foreign_session(self, request, identity: str) -> grpc.Status | None:
        """SESSION_NOT_FOUND when `request.session_id` names another identity's session.

        The same answer as for a session that does not exist, so that an id cannot be probed.
        Ids are compared in canonical form (the servicer accepts any UUID spelling).
        """
        sid = getattr(request, "session_id", None)
        if not sid or not isinstance(sid, str) or self.session_owner is None:
            return None
        try:
            sid = str(uuid.UUID(sid))
        except ValueError:
            return None   # the servicer refuses it as INVALID_ARGUMENT
        owner = self.session_owner(sid)
        if owner is None or owner == identity:
            return None
        log.info("session_access_denied", identity=identity)
        return to_status(ErrorCode.SESSION_NOT_FOUND, "session not found (expired or closed)")

    def _wrap(self, method: str, handler):
        rule = A.rule_for(method)
        deser = _safe_deserializer(handler.request_deserializer)
        ser = handler.response_serializer
        denied = self._denied

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                status = denied(method, rule, request, context)
                if status is not None:
                    await context.abort_with_status(status)
                result = inner(request, context)
                return (await result) if inspect.isawaitable(result) else result
            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=deser, response_serializer=ser)

        if handler.unary_stream is not None:
            inner = handler.unary_stream

            async def unary_stream(request, context):
                status = denied(method, rule, request, context)
                if status is not None:
                    await context.abort_with_status(status)
                result = inner(request, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                elif inspect.isawaitable(result):
                    await result
            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=deser, response_serializer=ser)

        async def checked(request_iterator, context):
            async for req in request_iterator:
                if isinstance(req, _Undecodable):
                    await context.abort_with_status(_bad_message_status(req))
                yield req

        if handler.stream_stream is not None:
            inner = handler.stream_stream

            async def stream_stream(request_iterator, context):
                status = denied(method, rule, None, context)
                if status is not None:
                    await context.abort_with_status(status)
                result = inner(checked(request_iterator, context), context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                elif inspect.isawaitable(result):
                    await result
            return grpc.stream_stream_rpc_method_handler(
                stream_stream, request_deserializer=deser, response_serializer=ser)

        if handler.stream_unary is not None:
            inner = handler.stream_unary

            async def stream_unary(request_iterator, context):
                status = denied(method, rule, None, context)
                if status is not None:
                    await context.abort_with_status(status)
                result = inner(checked(request_iterator, context), context)
                return (await result) if inspect.isawaitable(result) else result
            return grpc.stream_unary_rpc_method_handler(
                stream_unary, request_deserializer=deser, response_serializer=ser)
        return handler
