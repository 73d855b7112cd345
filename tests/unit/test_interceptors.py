"""`PerMethodInterceptor`: each method's handler is wrapped once, then reused."""

import asyncio
from types import SimpleNamespace

import grpc

from lockd.interceptors import PerMethodInterceptor


def test_each_method_is_wrapped_once_and_a_new_handler_is_wrapped_again():
    wrapped = []

    class Tag(PerMethodInterceptor):
        def _wrap(self, method, handler):
            wrapped.append(method)
            return grpc.unary_unary_rpc_method_handler(handler.unary_unary)

    registered = {"/s/A": grpc.unary_unary_rpc_method_handler(lambda r, c: r),
                  "/s/B": grpc.unary_unary_rpc_method_handler(lambda r, c: r)}

    async def continuation(details):
        return registered.get(details.method)

    async def main():
        i = Tag()
        call = lambda m: i.intercept_service(continuation, SimpleNamespace(method=m))  # noqa: E731
        a1, a2, b = await call("/s/A"), await call("/s/A"), await call("/s/B")
        assert a1 is a2 and a1 is not registered["/s/A"] and b is not a1
        assert await call("/s/unknown") is None
        registered["/s/A"] = grpc.unary_unary_rpc_method_handler(lambda r, c: r)
        a3 = await call("/s/A")                  # a different handler: wrapped afresh
        assert a3 is not a1
    asyncio.run(main())
    assert wrapped == ["/s/A", "/s/B", "/s/A"]
